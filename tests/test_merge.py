"""Adapter merging (issue 6): exactness against independently computed ΔW, TIES/DARE against their definitions,
heads, multi-task prediction, folding into fp32 / 8-bit bases, bad input, CLI.

Tiny random BERTs (hidden 32, 2 layers) and peft LoRA adapters with random non-zero B (init_lora_weights=False).
The reference deltas come from peft's own ``get_delta_weight`` on the live models, not from skewtune's code.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from peft import IA3Config, LoraConfig, PeftModel, get_peft_model  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast  # noqa: E402

from skewtune.adapters.io import read_manifest, render_card, verify_folder, write_manifest  # noqa: E402
from skewtune.backbones.registry import base_fingerprint  # noqa: E402
from skewtune.errors import MergeError  # noqa: E402
from skewtune.merge import MERGE_METHODS, MultiTaskClassifier, merge_adapters, merge_into_base  # noqa: E402
from skewtune.merge.methods import derive_seed  # noqa: E402
from skewtune.utils.io import sha256_file  # noqa: E402

WORDS = ["good", "bad", "movie", "great", "awful", "fine", "plot", "love", "hate", "ok", "the", "a", "is", "was"]
HIDDEN = 32
HEAD_KEYS = ("classifier.weight", "classifier.bias", "bert.pooler.dense.weight", "bert.pooler.dense.bias")
TEXTS = ["good movie", "the plot was awful", "i love it", "hate hate hate", "ok fine", "a great plot is good"]


# ------------------------------------------------------------------------------------------------ fixtures


def _make_base(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *[f"w{i}" for i in range(40)]]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=48, max_position_embeddings=64, num_labels=3)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def _load_base(base: Path, num_labels: int = 3) -> torch.nn.Module:
    return BertForSequenceClassification.from_pretrained(str(base), num_labels=num_labels,
                                                         ignore_mismatched_sizes=True).eval()


class Made:
    """A saved adapter plus peft's own view of it (dense deltas and head tensors)."""

    def __init__(self, path: Path, deltas: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> None:
        self.path, self.deltas, self.heads = path, deltas, heads


def _make_adapter(root: Path, name: str, base: Path, *, r: int = 4, alpha: float = 8, rslora: bool = False,
                  targets: tuple[str, ...] = ("query", "value"), rank_pattern: dict | None = None,
                  alpha_pattern: dict | None = None, labels: tuple[str, ...] = ("negative", "neutral", "positive"),
                  dataset: str = "tweets", seed: int = 0) -> Made:
    torch.manual_seed(seed)
    model = _load_base(base, len(labels))
    config = LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, target_modules=list(targets), task_type="SEQ_CLS",
                        modules_to_save=["classifier", "bert.pooler.dense"], init_lora_weights=False,
                        rank_pattern=rank_pattern or {}, alpha_pattern=alpha_pattern or {})
    peft_model = get_peft_model(model, config)
    deltas, heads = {}, {}
    with torch.no_grad():
        for module_name, module in peft_model.base_model.model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                module.lora_B["default"].weight.mul_(3.0)  # make the updates visible in the logits
                deltas[module_name] = module.get_delta_weight("default").detach().double().clone()
        for key in HEAD_KEYS:
            param = peft_model.base_model.model.get_submodule(key.rsplit(".", 1)[0]).modules_to_save["default"]
            tensor = getattr(param, key.rsplit(".", 1)[1])
            tensor.add_(0.2 * torch.randn_like(tensor))
            heads[key] = tensor.detach().double().clone()
    folder = root / name
    peft_model.save_pretrained(str(folder))
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base)
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    manifest = {
        "task_type": "seq_cls", "backbone": str(base), "base_model": str(base),
        "base_fingerprint": base_fingerprint(str(base)), "adapter_type": "rslora" if rslora else "lora",
        "quant": "none", "id2label": {str(i): lab for i, lab in enumerate(labels)}, "languages": ["en"],
        "dataset": dataset, "training": {}, "metrics": {"eval_macro_f1": 0.5}, "imbalance": None, "decision": None,
        "lineage": None, "name": name,
    }
    (folder / "README.md").write_text(render_card(manifest))
    write_manifest(folder, manifest)
    return Made(folder, deltas, heads)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    base = _make_base(root / "base", seed=0)
    made = {
        # equal-rank plain LoRA
        "a1": _make_adapter(root, "a1", base, r=4, alpha=8, seed=1),
        # rsLoRA, other rank and alpha, one more target module (union with zero deltas)
        "a2": _make_adapter(root, "a2", base, r=8, alpha=4, rslora=True, targets=("query", "key", "value"), seed=2),
        # rank_pattern + alpha_pattern
        "a3": _make_adapter(root, "a3", base, r=4, alpha=8, rank_pattern={"layer.0.attention.self.query": 2},
                            alpha_pattern={"value": 16}, seed=3),
        # another label set (multi-task)
        "p1": _make_adapter(root, "p1", base, r=4, alpha=8, labels=("neg", "pos"), dataset="polarity", seed=4),
    }
    # not LoRA: IA3
    torch.manual_seed(5)
    ia3 = get_peft_model(_load_base(base), IA3Config(target_modules=["query", "value"], feedforward_modules=[],
                                                     task_type="SEQ_CLS"))
    ia3.save_pretrained(str(root / "ia3"))
    return {"root": root, "base": base, "ia3": root / "ia3", **made}


def _merged_view(folder: Path, base: Path, num_labels: int = 3) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """Load a merged folder with vanilla peft; return peft's dense deltas per layer and the model."""
    model = PeftModel.from_pretrained(_load_base(base, num_labels), str(folder)).eval()
    deltas = {}
    for module_name, module in model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            deltas[module_name] = module.get_delta_weight("default").detach().double()
    return deltas, model


def _expected_sum(made: list[Made], weights: list[float], scale: float = 1.0) -> dict[str, torch.Tensor]:
    modules = sorted(set().union(*(m.deltas for m in made)))
    out = {}
    for module in modules:
        shape = next(m.deltas[module].shape for m in made if module in m.deltas)
        out[module] = scale * sum((w * m.deltas.get(module, torch.zeros(shape, dtype=torch.float64))
                                   for w, m in zip(weights, made)), torch.zeros(shape, dtype=torch.float64))
    return out


def _inputs(base: Path) -> dict[str, torch.Tensor]:
    tok = BertTokenizerFast.from_pretrained(str(base))
    return dict(tok(TEXTS, padding=True, return_tensors="pt"))


def _reference_logits(base: Path, deltas: dict[str, torch.Tensor], heads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the base with W + ΔW written in by hand and the given heads."""
    model = _load_base(base, heads["classifier.weight"].shape[0])
    with torch.no_grad():
        for module, delta in deltas.items():
            model.get_submodule(module).weight.add_(delta.float())
        for key, value in heads.items():
            model.get_parameter(key).copy_(value.float())
        return model(**_inputs(base)).logits


def _max_err(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    assert set(got) == set(want)
    return max(float((got[k] - want[k]).abs().max()) for k in want)


# ------------------------------------------------------------------------------------------------ exact methods


@pytest.mark.parametrize(
    ("method", "weights", "scale"),
    [("linear", [0.3, 0.7, 0.5], 1.0), ("cat", [0.5, -1.2, 0.25], 1.0), ("task_arithmetic", None, 0.8)],
)
def test_exact_methods_match_weighted_sum_and_reload(world, tmp_path, method, weights, scale):
    made = [world["a1"], world["a2"], world["a3"]]
    out = merge_adapters([m.path for m in made], weights=weights, method=method, scale=scale,
                         output_dir=tmp_path / "m")
    ws = weights or [1.0, 1.0, 1.0]
    want = _expected_sum(made, ws, scale)
    got, model = _merged_view(out, world["base"])
    assert _max_err(got, want) <= 1e-5
    manifest = verify_folder(out)
    assert manifest["lineage"]["max_abs_error"] <= 1e-5
    # heads: weighted average (weights normalised to sum 1; uniform when they sum to ≤ 0)
    total = sum(ws)
    hw = [w / total for w in ws] if total > 0 else [1 / 3] * 3
    heads = {k: sum(w * m.heads[k] for w, m in zip(hw, made)) for k in HEAD_KEYS}
    with torch.no_grad():
        logits = model(**_inputs(world["base"])).logits
    assert float((logits - _reference_logits(world["base"], want, heads)).abs().max()) <= 1e-4
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["use_rslora"] is False and cfg["peft_type"] == "LORA"
    ranks = {k: v["rank"] for k, v in manifest["lineage"]["layers"].items()}
    if method == "cat":  # ranks add up: a1 4 + a2 8 + a3 (2 on layer-0 query, else 4)
        assert ranks["bert.encoder.layer.0.attention.self.query"] == 14
        assert ranks["bert.encoder.layer.0.attention.self.key"] == 8
    else:
        assert max(ranks.values()) <= HIDDEN


def test_lineage_card_and_manifest(world, tmp_path):
    made = [world["a1"], world["a3"]]
    out = merge_adapters([m.path for m in made], method="ties", density=0.5, output_dir=tmp_path / "t")
    manifest = read_manifest(out)
    lineage = manifest["lineage"]
    assert lineage["method"] == "ties" and lineage["parameters"]["density"] == 0.5
    assert [s["adapter_model_sha256"] for s in lineage["sources"]] == [
        sha256_file(m.path / "adapter_model.safetensors") for m in made]
    assert [s["name"] for s in lineage["sources"]] == ["a1", "a3"]
    assert set(lineage["layers"]) == set(made[0].deltas) and all("rel_fro_error" in v for v in lineage["layers"].values())
    assert manifest["base_fingerprint"] == base_fingerprint(str(world["base"]))
    card = (out / "README.md").read_text()
    assert card.startswith("---") and "## Merge lineage" in card and lineage["sources"][0]["adapter_model_sha256"] in card
    assert sorted(manifest["files"]) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]


# ------------------------------------------------------------------------------------------------ TIES / DARE


def _trim(t: torch.Tensor, density: float) -> torch.Tensor:
    k = min(t.numel(), max(1, round(density * t.numel())))
    threshold = t.abs().flatten().sort(descending=True).values[k - 1]
    return torch.where(t.abs() >= threshold, t, torch.zeros_like(t))


def _ties_direct(tensors: list[torch.Tensor], weights: list[float], sign_method: str) -> torch.Tensor:
    taus = [w * t for w, t in zip(weights, tensors)]
    if sign_method == "total":
        gamma = torch.sign(sum(taus))
    else:
        gamma = torch.sign(sum(torch.sign(t) for t in taus))
    gamma[gamma == 0] = 1
    num = torch.zeros_like(taus[0])
    cnt = torch.zeros_like(taus[0])
    for t in taus:
        agree = (torch.sign(t) == gamma) & (t != 0)
        num += torch.where(agree, t, 0.0)
        cnt += agree.double()
    return num / cnt.clamp(min=1)


def _dare_masks(module: str, shapes: list[torch.Size], density: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(derive_seed(seed, module))
    return [torch.rand(s, generator=g, dtype=torch.float64) < density for s in shapes]


def _direct(method: str, tensors: list[torch.Tensor], weights: list[float], density: float, seed: int,
            sign: str, module: str) -> torch.Tensor:
    if method == "ties":
        return _ties_direct([_trim(t, density) for t in tensors], weights, sign)
    if method == "magnitude_prune":
        return sum(w * _trim(t, density) for w, t in zip(weights, tensors))
    masks = _dare_masks(module, [t.shape for t in tensors], density, seed)
    dropped = [torch.where(m, t / density, 0.0) for m, t in zip(masks, tensors)]
    if method == "dare_linear":
        return sum(w * t for w, t in zip(weights, dropped))
    return _ties_direct(dropped, weights, sign)


@pytest.mark.parametrize(
    ("method", "sign"),
    [("ties", "total"), ("ties", "frequency"), ("dare_linear", "total"), ("dare_ties", "total"), ("magnitude_prune", "total")],
)
def test_sparse_methods_match_direct_definitions(world, tmp_path, method, sign):
    made = [world["a1"], world["a2"], world["a3"]]
    weights, density, seed = [0.7, 1.3, 0.9], 0.4, 7
    out = merge_adapters([m.path for m in made], weights=weights, method=method, density=density, seed=seed,
                         majority_sign_method=sign, target_rank=HIDDEN, output_dir=tmp_path / "s")
    got, _ = _merged_view(out, world["base"])
    want = {}
    for module in sorted(set().union(*(m.deltas for m in made))):
        tensors = [m.deltas.get(module, torch.zeros(HIDDEN, HIDDEN, dtype=torch.float64)) for m in made]
        want[module] = _direct(method, tensors, weights, density, seed, sign, module)
    assert _max_err(got, want) <= 1e-5  # full rank kept: the SVD factorisation is exact


def test_dare_deterministic_under_seed_and_truncation_reported(world, tmp_path):
    paths = [world["a1"].path, world["a2"].path]
    one = merge_adapters(paths, method="dare_ties", density=0.5, seed=3, output_dir=tmp_path / "one")
    two = merge_adapters(paths, method="dare_ties", density=0.5, seed=3, output_dir=tmp_path / "two")
    other = merge_adapters(paths, method="dare_ties", density=0.5, seed=4, output_dir=tmp_path / "other")
    weights = (one / "adapter_model.safetensors").read_bytes()
    assert weights == (two / "adapter_model.safetensors").read_bytes()
    assert weights != (other / "adapter_model.safetensors").read_bytes()
    # default target rank = sum of source ranks (12 < 32): truncated; the reported error is the real one
    layers = read_manifest(one)["lineage"]["layers"]
    module = "bert.encoder.layer.1.attention.self.value"
    assert layers[module]["rank"] == 12
    got, _ = _merged_view(one, world["base"])
    tensors = [world["a1"].deltas[module], world["a2"].deltas[module]]
    direct = _direct("dare_ties", tensors, [1.0, 1.0], 0.5, 3, "total", module)
    assert math.isclose(layers[module]["max_abs_error"], float((got[module] - direct).abs().max()), rel_tol=1e-3, abs_tol=1e-6)
    assert 0 < layers[module]["rel_fro_error"] < 1
    svd = merge_adapters(paths, method="svd", output_dir=tmp_path / "svd")
    assert read_manifest(svd)["lineage"]["layers"][module]["rank"] == 8  # svd default: largest source rank


# ------------------------------------------------------------------------------------------------ heads / multi-task


def test_heads_same_labels_follow_head_method(world, tmp_path):
    made = [world["a1"], world["a3"]]
    out = merge_adapters([m.path for m in made], weights=[1.0, 3.0], method="ties", head_method="linear",
                         output_dir=tmp_path / "h")
    _, model = _merged_view(out, world["base"])
    inner = model.base_model.model
    want = 0.25 * made[0].heads["classifier.weight"] + 0.75 * made[1].heads["classifier.weight"]
    assert torch.allclose(inner.classifier.modules_to_save["default"].weight.double(), want, atol=1e-6)
    out2 = merge_adapters([m.path for m in made], weights=[1.0, 3.0], method="ties", density=0.5, output_dir=tmp_path / "h2")
    _, model2 = _merged_view(out2, world["base"])
    # ties on heads: weights / mean(weights) = [0.5, 1.5], trim, elect, disjoint mean
    direct = _ties_direct([_trim(m.heads["classifier.weight"], 0.5) for m in made], [0.5, 1.5], "total")
    got = model2.base_model.model.classifier.modules_to_save["default"].weight.double()
    assert torch.allclose(got, direct, atol=1e-6)


def test_multitask_merge_and_predict(world, tmp_path):
    made = [world["a1"], world["p1"]]
    out = merge_adapters([m.path for m in made], method="linear", output_dir=tmp_path / "mt")
    manifest = verify_folder(out)
    assert manifest["default_task"] == "tweets"
    assert manifest["tasks"]["polarity"] == {"id2label": {"0": "neg", "1": "pos"}, "head_file": "heads/polarity.safetensors",
                                             "sources": ["p1"], "dataset": "polarity"}
    assert {"heads/tweets.safetensors", "heads/polarity.safetensors"} <= set(manifest["files"])
    # vanilla peft loads it as the default task
    deltas, peft_model = _merged_view(out, world["base"], num_labels=3)
    assert _max_err(deltas, _expected_sum(made, [0.5, 0.5])) <= 1e-5
    clf = MultiTaskClassifier.from_folder(out, str(world["base"]))
    assert clf.tasks == ["tweets", "polarity"]
    inputs = _inputs(world["base"])
    with torch.no_grad():
        want_default = peft_model(**inputs).logits
    assert torch.allclose(clf.predict_logits(TEXTS, task="tweets"), want_default, atol=1e-5)
    pol = clf.predict_logits(TEXTS, task="polarity")
    assert pol.shape == (len(TEXTS), 2)
    # reference: merged encoder output + polarity's own pooler and classifier, by hand
    with torch.no_grad():
        hidden = peft_model.base_model.model.bert(**inputs).last_hidden_state[:, 0].double()
        h = made[1].heads
        pooled = torch.tanh(hidden @ h["bert.pooler.dense.weight"].T + h["bert.pooler.dense.bias"])
        want_pol = pooled @ h["classifier.weight"].T + h["classifier.bias"]
    assert float((pol.double() - want_pol).abs().max()) <= 1e-5
    assert set(clf.predict(TEXTS, task="polarity")) <= {"neg", "pos"}
    assert set(clf.predict(TEXTS)) <= {"negative", "neutral", "positive"}
    assert torch.allclose(clf.predict_logits(TEXTS, task="tweets"), want_default, atol=1e-5)  # switch back
    with pytest.raises(MergeError, match="unknown task"):
        clf.predict(TEXTS, task="nope")


# ------------------------------------------------------------------------------------------------ merge into base


def test_merge_into_base_fp32(world, tmp_path):
    adapter = world["a2"]  # rsLoRA
    out = merge_into_base(adapter.path, str(world["base"]), tmp_path / "fp32")
    info = json.loads((out / "skewtune_merge.json").read_text())
    assert info["verified"]["max_abs_logit_diff"] <= 1e-4
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    assert merged.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    unmerged = PeftModel.from_pretrained(_load_base(world["base"]), str(adapter.path)).eval()
    inputs = _inputs(world["base"])
    with torch.no_grad():
        diff = float((merged(**inputs).logits - unmerged(**inputs).logits).abs().max())
    assert diff <= 1e-5


def test_merge_into_base_8bit(world, tmp_path):
    pytest.importorskip("bitsandbytes")
    from skewtune.backbones.registry import load_backbone, resolve_backbone

    adapter = world["a1"]
    out = merge_into_base(adapter.path, str(world["base"]), tmp_path / "int8", quant="8bit")
    merged = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    query = merged.bert.encoder.layer[0].attention.self.query
    assert type(query).__name__ == "Linear8bitLt" and query.weight.dtype == torch.int8
    base8 = load_backbone(resolve_backbone(str(world["base"])), num_labels=3, quant="8bit")
    unmerged = PeftModel.from_pretrained(base8, str(adapter.path)).eval()
    inputs = _inputs(world["base"])
    with torch.no_grad():
        want = unmerged(**inputs).logits
        diff = float((merged(**inputs).logits - want).abs().max())
    # measured 1.3e-3 at max |logit| 1.29 (int8 rounding of W + ΔW); stated tolerance 0.02 + 0.02·max|logit|
    assert diff <= 0.02 + 0.02 * float(want.abs().max())
    info = json.loads((out / "skewtune_merge.json").read_text())
    assert info["quant"] == "8bit" and info["verified"]["max_abs_logit_diff"] <= 0.02 + 0.02 * info["verified"]["max_abs_logit"]


# ------------------------------------------------------------------------------------------------ bad input


def _other_base_adapter(world, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "otherbase"
    shutil.copytree(world["a3"].path, folder)
    manifest = read_manifest(folder)
    manifest["base_fingerprint"] = {"config_sha256": "0" * 64, "weights_sha256": "1" * 64}
    write_manifest(folder, manifest)  # consistent (its own hash updated): only the base differs
    return folder


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("one", "at least two adapters"),
        ("weights", "weights for 2 adapters"),
        ("density0", "density must be in"),
        ("density2", "density must be in"),
        ("bases", "different base model"),
        ("ia3", "merging needs LoRA-family"),
        ("method", "unknown merge method"),
        ("rank_exact", "target_rank does not apply"),
        ("sign", "majority_sign_method"),
        ("missing", "does not exist"),
    ],
)
def test_bad_input_raises_merge_error_and_writes_nothing(world, tmp_path, case, match):
    a1, a3 = world["a1"].path, world["a3"].path
    kwargs = {"adapters": [a1, a3], "method": "svd", "output_dir": tmp_path / "out"}
    if case == "one":
        kwargs["adapters"] = [a1]
    elif case == "weights":
        kwargs["weights"] = [0.5, 0.3, 0.2]
    elif case == "density0":
        kwargs["density"] = 0.0
    elif case == "density2":
        kwargs["density"] = 1.5
    elif case == "bases":
        kwargs["adapters"] = [a1, _other_base_adapter(world, tmp_path)]
    elif case == "ia3":
        kwargs["adapters"] = [a1, world["ia3"]]
    elif case == "method":
        kwargs["method"] = "average"
    elif case == "rank_exact":
        kwargs.update(method="linear", target_rank=4)
    elif case == "sign":
        kwargs["majority_sign_method"] = "mode"
    elif case == "missing":
        kwargs["adapters"] = [a1, tmp_path / "nope"]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(MergeError, match=match) as info:
        merge_adapters(**kwargs)
    assert info.value.hint
    if case == "method":
        assert all(name in info.value.hint for name in MERGE_METHODS.names())
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp folder


def test_skewtune_merge_entry_point(world, tmp_path):
    import skewtune

    out = skewtune.merge([world["a1"].path, world["a3"].path], method="linear", output_dir=tmp_path / "e")
    assert (out / "adapter_model.safetensors").is_file()
    import skewtune.merge as merge_module

    assert callable(skewtune.merge) and skewtune.merge is merge_module
    out2 = skewtune.merge(adapters=[world["a1"].path, world["a3"].path], method="linear", output_dir=tmp_path / "e2")
    assert (out2 / "adapter_model.safetensors").read_bytes() == (out / "adapter_model.safetensors").read_bytes()


def test_merge_hub_refs(world, tmp_path, monkeypatch):
    hub = pytest.importorskip("skewtune.hub.api")
    monkeypatch.setenv("SKEWTUNE_CACHE", str(tmp_path / "cache"))
    hub_url = str(tmp_path / "hub")
    hub.push(world["a1"].path, hub_url, "sent-a")
    hub.push(world["a3"].path, hub_url, "sent-b")
    hub.push(world["a3"].path, hub_url, "sent-b")
    out = merge_adapters(["sent-a", "sent-b@v1"], method="linear", hub_url=hub_url, output_dir=tmp_path / "hubmerge")
    sources = read_manifest(out)["lineage"]["sources"]
    assert [s["hub"]["ref"] for s in sources] == ["sent-a@v1", "sent-b@v1"] and sources[1]["version"] == 1
    assert sources[0]["adapter_model_sha256"] == sha256_file(world["a1"].path / "adapter_model.safetensors")
    ref = hub.push(out, hub_url, "sent-merged")  # a merge is shared like any adapter
    assert ref == "sent-merged@v1"


# ------------------------------------------------------------------------------------------------ CLI


def test_cli(world, tmp_path, capsys, monkeypatch):
    from skewtune.cli import merge as cli_merge
    from skewtune.cli.main import main

    assert sorted(cli_merge.METHOD_NAMES) == MERGE_METHODS.names()
    a1, a3 = str(world["a1"].path), str(world["a3"].path)
    out = tmp_path / "cli"
    assert main(["merge", "--adapters", a1, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: merging needs at least two adapters") and "(fix:" in err[0]
    assert main(["merge", "--adapters", a1, a3, "--density", "2", "--output_dir", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    # --eval before the hook exists: one line, nothing written
    merge_package = sys.modules["skewtune.merge"]  # `import skewtune.merge` may bind the top-level function

    monkeypatch.delattr(merge_package, "evaluate_adapter", raising=False)
    assert main(["merge", "--adapters", a1, a3, "--eval", "tweets=tweets", "--output_dir", str(out)]) == 2
    assert "evaluate_adapter" in capsys.readouterr().err and not out.exists()
    calls = []

    def fake_evaluate(adapter_dir: str, dataset_name: str) -> dict:
        calls.append((Path(adapter_dir).name, dataset_name))
        return {"macro_f1": 0.5}

    monkeypatch.setattr(merge_package, "evaluate_adapter", fake_evaluate, raising=False)
    assert main(["merge", "--adapters", a1, a3, "--method", "linear", "--weights", "0.4", "0.6",
                 "--eval", "tweets=tweets", "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote linear merge of 2 adapters" in printed and "macro_f1=0.5000" in printed
    assert calls == [("a1", "tweets"), ("a3", "tweets"), ("cli", "tweets")]
    assert read_manifest(out)["lineage"]["parameters"]["weights"] == [0.4, 0.6]
    folded = tmp_path / "folded"
    assert main(["merge-into-base", "--adapter", str(out), "--base", str(world["base"]), "--output_dir", str(folded)]) == 0
    assert "max |Δlogit| vs unmerged" in capsys.readouterr().out and (folded / "config.json").is_file()
