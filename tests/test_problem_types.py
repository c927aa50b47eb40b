"""Issue #20: sentence pairs, multi-label and regression end to end on small real data (SNLI pairs, WNUT-16 entity
types per tweet, VADER ratings; fetched at set-up): `skewtune train` and the recipe train each, the adapter is
pushed to a hub, pulled, predicted with, and reloaded by plain peft + transformers from its card's snippet; every
adapter kind and 8-bit/4-bit train a multi-label head; GLUE presets run offline on saved folders in GLUE's schema."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pytest
import torch
from conftest import REPO, TINY_MODEL_SETTINGS

import skewtune.hub as hub
from skewtune.cli.main import main as cli_main
from skewtune.data.datasets import load_dataset_splits

FAST = ("--max_train_samples", "300", "--max_eval_samples", "80", "--quant", "none", "--learning_rate", "5e-3",
        "--per_device_train_batch_size", "16", "--report_to", "none", *TINY_MODEL_SETTINGS)
CASES = {  # dataset → (problem type, headline test metric, a prediction key)
    "snli": ("single_label", "eval_macro_f1", "label"),
    "wnut16_types": ("multi_label", "eval_micro_f1", "labels"),
    "vader": ("regression", "eval_pearson", "score"),
}


def _train(tiny_bert: Path, out: Path, dataset: str, *extra: str) -> dict[str, Any]:
    code = cli_main(["train", "--dataset", dataset, "--backbone", str(tiny_bert), "--output_dir", str(out),
                     "--num_train_epochs", "2", *FAST, *extra])
    assert code in (0, None)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("problem-types")
    return {name: root / name for name in CASES if _train(tiny_bert, root / name, name) is not None}


@pytest.mark.parametrize("dataset", list(CASES))
def test_each_problem_type_trains_saves_and_records_itself(trained: dict[str, Path], dataset: str) -> None:
    problem_type, headline, _ = CASES[dataset]
    out = trained[dataset]
    metrics = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "adapter" / "skewtune.json").read_text())
    assert metrics["problem_type"] == manifest["problem_type"] == problem_type
    assert isinstance(metrics[headline], float) and math.isfinite(metrics[headline])
    assert metrics["train_steps"] > 0 and metrics["test_size"] == 80
    if dataset == "snli":
        assert manifest["text_pair_column"] == "text_pair" and "baseline_tfidf_macro_f1" in metrics
        assert set(manifest["id2label"].values()) == {"contradiction", "entailment", "neutral"}
    if dataset == "wnut16_types":
        assert manifest["decision"]["rule"] == "label_thresholds"  # tuned on validation, saved as logit biases
        thresholds = np.asarray(manifest["decision"]["thresholds"])
        bias = np.asarray(manifest["decision"]["logit_bias"])
        assert np.allclose(bias, -np.log(thresholds / (1 - thresholds)))
        assert {"eval_samples_f1", "eval_subset_accuracy", "eval_hamming_loss"} <= set(metrics)
        assert len(manifest["id2label"]) == 10
    if dataset == "vader":
        assert manifest["id2label"] == {"0": "score"} and {"eval_spearman", "eval_mse", "eval_mae"} <= set(metrics)


@pytest.mark.parametrize("dataset", list(CASES))
def test_hub_round_trip_predict_and_plain_peft(trained: dict[str, Path], dataset: str, tmp_path: Path,
                                               tiny_bert: Path) -> None:
    """Push → pull → `skewtune predict` gives the task's records; the card's plain-peft snippet gives the same
    outputs as skewtune's loader."""
    _, _, key = CASES[dataset]
    hub_dir = tmp_path / "hub"
    ref = hub.push(trained[dataset] / "adapter", str(hub_dir), name=f"tiny-{dataset.replace('_', '-')}")
    pulled = hub.pull(ref, str(hub_dir), dest=tmp_path / "pulled")
    assert json.loads((pulled / "skewtune.json").read_text())["problem_type"] == CASES[dataset][0]
    rows = [{"text": "Apple opens a new store in Paris", "text_pair": "A company opens a shop", "id": 1},
            {"text": "I hate waiting in the rain", "text_pair": "Someone is happy", "id": 2}]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out.jsonl"
    # predict on the trained folder (a pulled copy names its base by name only; the tiny base is a local folder)
    adapter = trained[dataset] / "adapter"
    assert cli_main(["predict", "--adapter", str(adapter), "--input", str(source), "--output", str(out)]) in (0, None)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [1, 2] and all(key in r for r in records)
    if key == "labels":
        assert all(set(r["labels"]) <= set(r["probabilities"]) for r in records)
        assert all((p >= 0.5) == (label in r["labels"]) for r in records for label, p in r["probabilities"].items())
    if key == "score":
        assert all(isinstance(r["score"], float) for r in records)

    # the card's snippet (the trained folder's: it names the local base folder) loads the pulled copy with plain
    # peft + transformers; its outputs equal skewtune's before the decision rule
    card = (adapter / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(code.replace("<this folder>", str(pulled)), scope)  # noqa: S102 - the card's own snippet
    model = scope["model"]
    from skewtune.inference.predictor import load_adapter

    ours = load_adapter(pulled, quant="none", backbone=str(tiny_bert))
    ours.decision = None  # compare raw outputs (the multi-label thresholds are skewtune's decision rule)
    texts = [r["text"] for r in rows]
    pairs = [r["text_pair"] for r in rows] if dataset == "snli" else None
    encoded = ours.tokenizer(texts, pairs, padding=True, return_tensors="pt")
    with torch.no_grad():
        plain = model(**encoded).logits
    torch.testing.assert_close(plain, ours.logits(texts, pairs=pairs), atol=1e-4, rtol=1e-4)
    if dataset == "wnut16_types":
        assert model.config.problem_type == "multi_label_classification"
    if dataset == "vader":
        assert model.config.problem_type == "regression" and plain.shape == (2, 1)


@pytest.mark.parametrize("dataset", list(CASES))
def test_the_recipe_trains_each_problem_type(tiny_bert: Path, tmp_path: Path, dataset: str) -> None:
    """`recipes/lora_sentiment.py` (what `accelerate launch` runs) picks the task from the data, as the CLI does."""
    out = tmp_path / "recipe"
    proc = subprocess.run([sys.executable, "recipes/lora_sentiment.py", "--dataset", dataset, "--backbone",
                           str(tiny_bert), "--output_dir", str(out), "--max_steps", "6", *FAST],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    problem_type, headline, _ = CASES[dataset]
    assert metrics["problem_type"] == problem_type and metrics["train_steps"] == 6 and headline in metrics
    assert ("eval_accuracy" in metrics) == (problem_type != "regression")
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("adapter,quant", [("lora", "8bit"), ("lora", "4bit"), ("dora", "none"), ("ia3", "none"),
                                           ("prefix", "none"), ("prompt", "none")])
def test_multi_label_with_every_adapter_kind_and_quantization(tiny_bert: Path, tmp_path: Path, adapter: str,
                                                              quant: str) -> None:
    metrics = _train(tiny_bert, tmp_path / "run", "wnut16_types", "--adapter", adapter, "--quant", quant,
                     "--max_steps", "4", "--loss", "asl")
    assert metrics["problem_type"] == "multi_label" and metrics["train_steps"] == 4
    assert math.isfinite(metrics["eval_micro_f1"]) and metrics["quant"] == quant


def test_multi_label_file_with_delimited_and_json_labels(tiny_bert: Path, tmp_path: Path) -> None:
    """A CSV whose label cells are `a;b` strings and a JSONL whose labels are lists give the same label sets."""
    from conftest import make_texts

    texts, _ = make_texts(200, seed=4)
    sets = [sorted({"sports", "music", "news"} - {["sports", "music", "news"][i % 3]}) if i % 4 else []
            for i in range(200)]
    csv_path = tmp_path / "ml.csv"
    import csv

    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "tags"])
        writer.writerows([t, ";".join(s)] for t, s in zip(texts, sets))
    jsonl = tmp_path / "ml.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "tags": s}) for t, s in zip(texts, sets)) + "\n")
    a = load_dataset_splits(str(csv_path), label_column="tags", problem_type="multi_label", seed=3)
    b = load_dataset_splits(str(jsonl), label_column="tags", problem_type="multi_label", seed=3)
    assert a.labels == b.labels == ["music", "news", "sports"]
    assert a.train_labels == b.train_labels and list(a.test_texts) == list(b.test_texts)
    assert [] in a.train_labels  # a row without labels is kept: "none of these"
    rows = a.ids("train")
    assert all(len(r) == 3 and set(r) <= {0.0, 1.0} for r in rows)


def test_bad_regression_label_is_one_line(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.csv"
    path.write_text("text,score\n" + "".join(f"text number {i},{i / 10}\n" for i in range(40)) + "odd one,high\n")
    code = cli_main(["train", "--dataset", str(path), "--label_column", "score", "--problem_type", "regression",
                     "--backbone", str(tiny_bert), "--output_dir", str(tmp_path / "out"), *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "row 41: label 'high' is not a number" in err[-1]
    assert not (tmp_path / "out").exists()


def _glue_folder(root: Path, task: str) -> Path:
    """A saved DatasetDict in GLUE's schema (column names, ClassLabel names, unlabelled test split)."""
    from conftest import make_texts

    texts, labels = make_texts(160, seed=7)
    other, _ = make_texts(160, seed=8)
    if task == "mrpc":
        names = ["not_equivalent", "equivalent"]
        feats = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                   "label": datasets.ClassLabel(names=names), "idx": datasets.Value("int32")})
        make = lambda rows, lab: {"sentence1": [texts[i] for i in rows], "sentence2": [other[i] for i in rows],  # noqa: E731
                                  "label": lab, "idx": list(rows)}
        ys = [int(y == "positive") for y in labels]
    elif task == "stsb":
        feats = datasets.Features({"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"),
                                   "label": datasets.Value("float32"), "idx": datasets.Value("int32")})
        make = lambda rows, lab: {"sentence1": [texts[i] for i in rows], "sentence2": [other[i] for i in rows],  # noqa: E731
                                  "label": lab, "idx": list(rows)}
        ys = [5.0 * (y == "positive") for y in labels]
    else:  # cola
        names = ["unacceptable", "acceptable"]
        feats = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names),
                                   "idx": datasets.Value("int32")})
        make = lambda rows, lab: {"sentence": [texts[i] for i in rows], "label": lab, "idx": list(rows)}  # noqa: E731
        ys = [int(y == "positive") for y in labels]
    parts = {"train": range(0, 120), "validation": range(120, 140), "test": range(140, 160)}
    data = datasets.DatasetDict({
        split: datasets.Dataset.from_dict(make(rows, [ys[i] for i in rows] if split != "test" else [-1] * len(rows)),
                                          features=feats)
        for split, rows in parts.items()})
    folder = root / task
    data.save_to_disk(str(folder))
    return folder


@pytest.mark.parametrize("task,expect", [("mrpc", {"f1", "accuracy"}), ("stsb", {"pearson", "spearman"}),
                                         ("cola", {"matthews_correlation"})])
def test_glue_presets_offline(tiny_bert: Path, tmp_path: Path, task: str, expect: set[str]) -> None:
    """`--task glue/<name>` sets the columns, problem type and official metrics; the dataset is a local folder in
    GLUE's schema (saved folders are concatenated and re-split, so the unlabelled test split must be dropped)."""
    folder = _glue_folder(tmp_path, task)
    data = datasets.load_from_disk(str(folder))
    local = tmp_path / f"{task}-labelled"
    datasets.DatasetDict({"train": data["train"], "validation": data["validation"]}).save_to_disk(str(local))
    out = tmp_path / "run"
    code = cli_main(["train", "--task", f"glue/{task}", "--dataset", str(local), "--backbone", str(tiny_bert),
                     "--output_dir", str(out), "--max_steps", "6", "--quant", "none", "--report_to", "none",
                     "--max_eval_samples", "40", *TINY_MODEL_SETTINGS])
    assert code in (0, None)
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert set(metrics["official_metrics"]) == expect
    assert config["task"] == f"glue/{task}" and config["dataset_config"] == task
    assert config["problem_type"] == ("regression" if task == "stsb" else "single_label")
    if task != "cola":
        assert (config["text_column"], config["text_pair_column"]) == ("sentence1", "sentence2")


def test_glue_dataset_dict_keeps_its_validation_split_and_drops_the_unlabelled_test(tmp_path: Path) -> None:
    data = datasets.load_from_disk(str(_glue_folder(tmp_path, "mrpc")))
    splits = load_dataset_splits(data, text_column="sentence1", text_pair_column="sentence2", seed=1)
    assert len(splits.validation_texts) == 20  # GLUE's validation split, as given
    assert len(splits.test_texts) == 12 and len(splits.train_texts) == 108  # test carved from train (10%)
    assert splits.labels == ["equivalent", "not_equivalent"] and splits.pair_texts("train") is not None


def test_unknown_preset_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["train", "--task", "glue/nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: unknown task preset 'glue/nope'") and "glue/mrpc" in err[-1]


@pytest.mark.parametrize("dataset", ["snli", "wnut16_types", "vader"])
def test_serve_refuses_pair_multilabel_and_regression_adapters(trained: dict[str, Path], dataset: str) -> None:
    """Refused in one line before any backbone loads (the server answers single-text single-label adapters)."""
    from skewtune.errors import ConfigError
    from skewtune.serve.pool import AdapterPool

    with pytest.raises(ConfigError, match="not yet pairs, multi-label or regression"):
        AdapterPool().add(trained[dataset] / "adapter")
