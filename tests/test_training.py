"""The training pipeline end to end on a tiny random backbone: outputs contract, vanilla peft reload, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skewtune.cli.main import main as cli_main
from tests.conftest import make_texts, tiny_args, write_csv


@pytest.fixture(scope="module")
def trained(tiny_bert: Path, toy_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    code = cli_main(["train", *tiny_args(tiny_bert, toy_csv, out), "--report_plots", "true", "--baselines", "true"])
    assert code == 0
    return out


def test_outputs_contract(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("eval_accuracy", "eval_macro_f1", "eval_per_class_f1", "train_runtime_s", "train_samples_per_second",
                "trainable_params", "all_params", "backbone_bytes", "peak_rss_mb", "baseline_majority_macro_f1",
                "baseline_tfidf_macro_f1"):
        assert key in metrics, key
    assert set(metrics["eval_per_class_f1"]) == {"negative", "positive"}
    assert 0 < metrics["trainable_params"] < metrics["all_params"]
    # the toy task is separable by one cue word: the adapter must learn it
    assert metrics["eval_macro_f1"] > 0.9
    adapter = trained / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "skewtune.json"):
        assert (adapter / name).is_file(), name
    card = (adapter / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: peft" in card and "base_model:" in card
    manifest = json.loads((adapter / "skewtune.json").read_text())
    assert manifest["id2label"] == {"0": "negative", "1": "positive"}
    assert (trained / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(trained.rglob("*.tmp")), "no temporary leftovers"


def test_vanilla_peft_reproduces_logits(trained: Path, tiny_bert: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import skewtune

    texts = ["the movie was great", "awful service today", "so happy with the phone"]
    ours = skewtune.load_adapter(trained / "adapter")
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=2)
    vanilla = PeftModel.from_pretrained(base, str(trained / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    with torch.inference_mode():
        expected = vanilla(**tok(texts, return_tensors="pt", padding=True)).logits
    got = ours.logits(texts)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    preds = ours.predict(texts)
    assert [p["label"] for p in preds] == [ours.labels[i] for i in expected.argmax(-1).tolist()]
    assert abs(sum(preds[0]["probabilities"].values()) - 1) < 1e-5


def test_predict_cli_writes_jsonl(trained: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("what a great day\nterrible weather\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    assert cli_main(["predict", "--adapter", str(trained / "adapter"), "--input", str(inputs), "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["what a great day", "terrible weather"]
    assert all(r["label"] in ("negative", "positive") and len(r["probabilities"]) == 2 for r in rows)


def test_predict_precision_merged_and_unmerged(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dtype``: auto keeps unmerged fp32; merged fp32 equals unmerged; bf16 casts weights and stays close."""
    import skewtune
    from skewtune.inference import precision

    texts, _ = make_texts(40, seed=11)
    unmerged = skewtune.load_adapter(trained / "adapter")
    assert unmerged.dtype == torch.float32 and not unmerged.autocast
    reference = unmerged.logits(texts)
    merged = skewtune.load_adapter(trained / "adapter", merge=True, dtype="fp32")
    assert not hasattr(merged.model, "peft_config")  # a plain dense model: LoRA folded into the weights
    assert torch.allclose(merged.logits(texts), reference, atol=1e-5)
    bf16 = skewtune.load_adapter(trained / "adapter", merge=True, dtype="bf16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    low = bf16.logits(texts)
    assert low.dtype == torch.float32 and (low - reference).abs().max() < 0.05 * reference.abs().max() + 0.02
    assert (low.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    # auto: merged runs in bf16 only where the CPU multiplies bf16 natively (AMX-BF16 or AVX512-BF16)
    for native, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert precision.resolve_dtype("auto", merged=True, device=torch.device("cpu")) == expected
        assert precision.resolve_dtype("auto", merged=False, device=torch.device("cpu")) == torch.float32


@pytest.mark.parametrize(("capabilities", "native"), [
    ({"amx_bf16": True, "avx512_bf16": True}, True),  # Intel Sapphire Rapids and later
    ({"amx_bf16": False, "avx512_bf16": True}, True),  # AMD Zen 4, Intel Cooper Lake
    ({"amx_bf16": False, "avx512_bf16": False, "avx2": True}, False),  # bf16 emulated: slower than fp32
    ({}, False),
])
def test_native_bf16_detection(capabilities: dict, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from skewtune.inference import precision

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert precision.cpu_has_native_bf16() is native
    expected = torch.bfloat16 if native else torch.float32
    assert precision.resolve_dtype("auto", merged=True, device=torch.device("cpu")) == expected


def test_native_bf16_detection_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from skewtune.inference import precision

    def broken() -> dict:
        raise RuntimeError("cpuinfo unavailable")

    monkeypatch.setattr(torch.cpu, "get_capabilities", broken)
    assert precision.cpu_has_native_bf16() is False


@pytest.mark.parametrize("kind", ["ia3", "dora", "prefix", "prompt"])
def test_every_adapter_kind_predicts_merged(kind: str, tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """``merge=True`` folds what can be folded (LoRA family, IA³: no peft wrapper left), keeps prompt learning
    as is, and predicts the unmerged logits. IA³ needs skewtune's shim (peft #3114: the trained pooler)."""
    import skewtune

    out = tmp_path / kind
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--adapter", kind, "--num_train_epochs", "1")]) == 0
    texts, _ = make_texts(20, seed=1)
    reference = skewtune.load_adapter(out / "adapter").logits(texts)
    merged = skewtune.load_adapter(out / "adapter", merge=True, dtype="fp32")
    assert hasattr(merged.model, "peft_config") == (kind in ("prefix", "prompt"))
    assert torch.allclose(merged.logits(texts), reference, atol=1e-5)


def test_int8_training_and_reload(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """8-bit backbone: heads stay fp32 and trainable; reloaded in 8-bit, predictions match vanilla fp32 peft."""
    out = tmp_path / "int8"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--quant", "8bit")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quant"] == "8bit" and metrics["eval_macro_f1"] > 0.8
    import skewtune

    texts, _ = make_texts(40, seed=5)
    int8 = skewtune.load_adapter(out / "adapter")
    fp32 = skewtune.load_adapter(out / "adapter", quant="none")
    agree = (int8.logits(texts).argmax(-1) == fp32.logits(texts).argmax(-1)).float().mean().item()
    assert agree >= 0.95
    # int8 layers cannot be cast: bf16 runs them under autocast (bitsandbytes dequantizes to bf16)
    int8_bf16 = skewtune.load_adapter(out / "adapter", dtype="bf16")
    assert int8_bf16.autocast and int8_bf16.dtype == torch.bfloat16
    agree = (int8_bf16.logits(texts).argmax(-1) == int8.logits(texts).argmax(-1)).float().mean().item()
    assert agree >= 0.9


def test_resume_matches_uninterrupted(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """Cut a run back to its step-3 checkpoint (as if killed there), rerun: the same adapter as uninterrupted."""
    import shutil

    from safetensors.torch import load_file

    flags = ("--checkpoint_every_steps", "3", "--keep_checkpoints", "50")
    full = tmp_path / "full"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, full, *flags)]) == 0
    part = tmp_path / "part"
    shutil.copytree(full / "checkpoints" / "step-3", part / "checkpoints" / "step-3")
    # the rerun finds the checkpoint of a run with the same settings and resumes it automatically
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, part, *flags)]) == 0
    a = load_file(str(full / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(part / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    ma = json.loads((full / "metrics.json").read_text())
    mb = json.loads((part / "metrics.json").read_text())
    assert ma["eval_macro_f1"] == mb["eval_macro_f1"] and ma["train_steps"] == mb["train_steps"]
    # the resumed run's training time counts the segment before the cut (recorded in the checkpoint) too
    before_cut = json.loads((part / "checkpoints" / "step-3" / "skewtune_state.json").read_text())["train_seconds"]
    assert 0 < before_cut < mb["train_runtime_s"]
    assert mb["train_samples_per_second"] < 10 * ma["train_samples_per_second"]


def test_rerunning_a_finished_run_is_refused_and_changes_nothing(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The same command again on a complete run: one line, exit 2, metrics.json and the adapter untouched."""
    out = tmp_path / "done"
    args = ["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1")]
    assert cli_main(args) == 0
    before = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    capsys.readouterr()
    assert cli_main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].startswith("error: the run in") and "already complete" in err[-1] and "--overwrite_output_dir" in err[-1]
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == before
    assert cli_main([*args, "--resume_from_checkpoint", "latest"]) == 2  # resuming a finished run is refused too
    assert cli_main([*args, "--overwrite_output_dir"]) == 0  # training it again is one flag away


def test_labels_as_integers_and_tsv(tiny_bert: Path, tmp_path: Path) -> None:
    texts, labels = make_texts(120, seed=3)
    data = write_csv(tmp_path / "ints.csv", texts, ["1" if lab == "positive" else "0" for lab in labels])
    out = tmp_path / "o"
    assert cli_main(["train", *tiny_args(tiny_bert, data, out, "--num_train_epochs", "1")]) == 0
    manifest = json.loads((out / "adapter" / "skewtune.json").read_text())
    assert manifest["id2label"] == {"0": "0", "1": "1"}


@pytest.mark.parametrize("flags", [
    ("--loss", "focal", "--sampler", "class_balanced"),
    ("--loss", "ldam", "--sampler", "random_over", "--post_hoc", "bias_tuning"),
    ("--augment", "eda", "--augment_ratio", "1.0", "--loss", "weighted_ce"),
    ("--loss", "logit_adjusted", "--loss_options", "tau=0.5", "--post_hoc", "logit_adjustment",
     "--post_hoc_options", "tau=auto"),
])
def test_imbalance_flags_compose(tiny_bert: Path, tmp_path: Path, flags: tuple[str, ...]) -> None:
    texts, labels = make_texts(200, seed=7)
    # skew it: keep 1 positive for every 4 negatives
    keep = [i for i, lab in enumerate(labels) if lab == "negative" or i % 8 == 1]
    data = write_csv(tmp_path / "skew.csv", [texts[i] for i in keep], [labels[i] for i in keep])
    out = tmp_path / "o"
    assert cli_main(["train", *tiny_args(tiny_bert, data, out, *flags)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "adapter" / "skewtune.json").read_text())
    assert manifest["imbalance"]["loss"] == flags[flags.index("--loss") + 1]
    if "--loss_options" in flags:
        assert manifest["imbalance"]["loss_options"] == {"tau": 0.5}
    if "--post_hoc_options" in flags:  # tau chosen on the validation grid, recorded with the rule
        assert metrics["post_hoc"]["rule"] == "logit_adjustment" and 0.0 <= metrics["post_hoc"]["tau"] <= 2.0
    elif "--post_hoc" in flags:
        assert manifest["decision"]["logit_bias"] and metrics["post_hoc"]["rule"] == "bias_tuning"
        import skewtune

        classifier = skewtune.load_adapter(out / "adapter")
        assert classifier.decision == manifest["decision"]
    assert metrics["eval_macro_f1"] > 0.5
