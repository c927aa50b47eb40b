"""The ``datasets`` data path (issue #18): Arrow-backed splits, the cached tokenization ``map``, ``datasets`` objects
and saved folders as input, Hub names offline, and ``--streaming`` (scan, held-out rows, batches, a real run)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
from conftest import make_texts, tiny_args, write_csv
from transformers import AutoTokenizer

from skewtune.cli.main import main as cli_main
from skewtune.data import PaddingCollator
from skewtune.data.batching import tokenize_split, tokenize_table
from skewtune.data.datasets import TextColumn, load_dataset_splits
from skewtune.data.streaming import (
    StreamingBatches,
    oversampling_rates,
    streaming_splits,
)
from skewtune.data.tables import normalise_for_dedup
from skewtune.errors import DataError


@pytest.fixture()
def skewed_csv(tmp_path: Path) -> Path:
    """600 rows, 3 classes at 60/30/10%, 30 case/space variants of earlier texts (duplicates)."""
    texts, labels = make_texts(600, seed=3, classes=3)
    labels = ["negative" if i % 10 < 6 else "positive" if i % 10 < 9 else "neutral" for i in range(600)]
    texts += [f"  {t.upper()} " for t in texts[:30]]
    labels += labels[:30]
    return write_csv(tmp_path / "skewed.csv", texts, labels)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert: Path):
    return AutoTokenizer.from_pretrained(str(tiny_bert))


def _keys(texts) -> set[str]:
    return {normalise_for_dedup(t) for t in texts}


def test_file_splits_are_arrow_backed_deduplicated_and_stratified(skewed_csv: Path) -> None:
    splits = load_dataset_splits(str(skewed_csv), seed=7)
    assert isinstance(splits.train_texts, TextColumn) and splits.tables is not None
    assert splits.info["duplicates_removed"] == 30 and splits.info["rows"] == 600
    sizes = [len(splits.train_texts), len(splits.validation_texts), len(splits.test_texts)]
    assert sizes == [480, 60, 60]
    parts = [_keys(getattr(splits, f"{s}_texts")) for s in ("train", "validation", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    for split in ("validation", "test"):  # stratified: 60/30/10 in every split
        counts = Counter(getattr(splits, f"{split}_labels"))
        assert counts == {"negative": 36, "positive": 18, "neutral": 6}
    # the texts and labels of a split stay aligned with the file's rows
    rows = dict(zip(*_read(skewed_csv)))
    assert all(rows[t] == y for t, y in zip(splits.train_texts, splits.train_labels))
    # the same seed gives the same split; another seed another one
    again = load_dataset_splits(str(skewed_csv), seed=7)
    assert list(again.test_texts) == list(splits.test_texts)
    assert list(load_dataset_splits(str(skewed_csv), seed=8).test_texts) != list(splits.test_texts)


def _read(path: Path) -> tuple[list[str], list[str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def test_tokenization_is_a_cached_map_equal_to_one_tokenizer_call(skewed_csv: Path, tokenizer) -> None:
    splits = load_dataset_splits(str(skewed_csv), seed=7)
    first = tokenize_table(tokenizer, splits.tables["train"], splits.ids("train"), 8, "train")
    plain = tokenize_split(tokenizer, list(splits.train_texts), splits.ids("train"), 8, "train")
    assert not first.reused_cache
    assert [list(x) for x in first.input_ids] == plain.input_ids and first.lengths == plain.lengths
    assert first.truncated == plain.truncated > 0  # max_length 8 cuts some texts; [SEP] kept at the end
    assert all(ids[-1] == tokenizer.sep_token_id for ids in first.input_ids)
    batch = PaddingCollator(tokenizer.pad_token_id)(first.__getitems__([0, 5, 9]))
    assert batch["input_ids"].shape[0] == 3 and batch["labels"].tolist() == [first.labels[i] for i in (0, 5, 9)]
    # a re-run (a fresh load of the same file and seed) reads the tokenized rows from the cache
    again = load_dataset_splits(str(skewed_csv), seed=7)
    second = tokenize_table(tokenizer, again.tables["train"], again.ids("train"), 8, "train")
    assert second.reused_cache and second.lengths == first.lengths
    # another max_length is another cache entry
    assert not tokenize_table(tokenizer, again.tables["train"], again.ids("train"), 24, "train").reused_cache
    # two processes give the same ids
    two = tokenize_table(tokenizer, again.tables["validation"], again.ids("validation"), 16, "validation", num_proc=2)
    one = tokenize_split(tokenizer, list(again.validation_texts), again.ids("validation"), 16, "validation")
    assert [list(x) for x in two.input_ids] == one.input_ids


def test_datasets_objects_and_saved_folders(tmp_path: Path) -> None:
    texts, labels = make_texts(300, seed=5)
    names = ["negative", "positive"]
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=names)})
    ids = [names.index(y) for y in labels]
    whole = datasets.Dataset.from_dict({"sentence": texts, "label": ids}, features=features)
    # a Dataset is split; ClassLabel ids become their names
    splits = load_dataset_splits(whole, text_column="sentence", seed=1)
    assert splits.labels == names and len(splits.train_texts) == 240
    # a DatasetDict's own splits are used as given; validation texts seen in training are dropped
    given = datasets.DatasetDict({
        "train": whole.select(range(200)),
        "validation": whole.select(range(190, 250)),  # 10 rows overlap training
        "test": datasets.Dataset.from_dict({"sentence": texts[250:], "label": [-1] * 50}, features=features),
    })
    splits = load_dataset_splits(given, text_column="sentence", seed=1)
    assert len(splits.validation_texts) == 50 and not _keys(splits.validation_texts) & _keys(splits.train_texts)
    # GLUE-style unlabelled test split: carved from training instead (10% of 200)
    assert len(splits.test_texts) == 20 and len(splits.train_texts) == 180
    # a saved folder is memory-mapped and split as before
    folder = tmp_path / "saved"
    given.save_to_disk(str(folder))
    with pytest.raises(DataError, match="empty or NaN label"):  # the saved test split's -1 labels
        load_dataset_splits(str(folder), text_column="sentence")
    datasets.DatasetDict({"train": whole}).save_to_disk(str(tmp_path / "ok"))
    saved = load_dataset_splits(str(tmp_path / "ok"), text_column="sentence", seed=1)
    assert list(saved.test_texts) == list(load_dataset_splits(whole, text_column="sentence", seed=1).test_texts)


def test_hub_name_offline_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    with pytest.raises(DataError) as caught:
        load_dataset_splits("nyu-mll/glue", dataset_config="sst2")
    assert "could not load Hub dataset 'nyu-mll/glue' (sst2)" in caught.value.message
    assert "save_to_disk" in caught.value.hint


def test_stream_scan_holds_out_whole_texts_and_counts_classes(skewed_csv: Path) -> None:
    train, info = streaming_splits(str(skewed_csv), seed=3, text_column="text", label_column="label",
                                   encoding="utf-8", dataset_config=None, eval_rows=40, skip_empty_texts=False)
    va_x, te_x = info["parts"]["validation"][0], info["parts"]["test"][0]
    assert len(va_x) == len(te_x) == 40 and info["rows"] == 630
    held = _keys(va_x) | _keys(te_x)
    assert len(held) == 80  # distinct texts: a duplicate never takes a second held-out place
    trained = [t for t, _ in train.rows(epoch=0)]
    assert not _keys(trained) & held  # every copy of a held-out text stays out of training
    assert len(trained) == len(train) == 630 - info["held_out_rows"]
    labels = dict(zip(*_read(skewed_csv)))
    assert Counter(labels[t] for t in trained) == dict(zip(train.label2id, train.counts))
    # other seeds hold out other texts; the same seed the same ones
    again, info2 = streaming_splits(str(skewed_csv), seed=3, text_column="text", label_column="label",
                                    encoding="utf-8", dataset_config=None, eval_rows=40, skip_empty_texts=False)
    assert info2["parts"]["test"] == info["parts"]["test"]
    _, info3 = streaming_splits(str(skewed_csv), seed=4, text_column="text", label_column="label",
                                encoding="utf-8", dataset_config=None, eval_rows=40, skip_empty_texts=False)
    assert info3["parts"]["test"] != info["parts"]["test"]


def test_streaming_batches_exact_count_deterministic_and_oversampled(skewed_csv: Path, tokenizer) -> None:
    train, _ = streaming_splits(str(skewed_csv), seed=3, text_column="text", label_column="label",
                                encoding="utf-8", dataset_config=None, eval_rows=40, skip_empty_texts=False)
    rates = oversampling_rates(train.counts, "random_over")
    assert rates[int(np.argmax(train.counts))] == 1.0 and max(rates) > 5  # neutral (10%) repeated ≈ 6 times

    def draw(seed: int) -> list[dict]:
        batches = StreamingBatches(train, tokenizer, PaddingCollator(tokenizer.pad_token_id), batch_size=8,
                                   max_length=32, num_batches=300, seed=seed, rates=rates)
        return list(batches)

    out = draw(0)
    assert len(out) == 300  # more than one pass over the 550 training rows: passes continue until the count
    labels = Counter(int(y) for b in out for y in b["labels"])
    share = [labels[i] / sum(labels.values()) for i in range(3)]
    assert max(share) - min(share) < 0.08, share  # balanced in expectation
    lengths = [int(b["attention_mask"].sum(1).max()) - int(b["attention_mask"].sum(1).min()) for b in out]
    assert np.median(lengths) <= 2  # length-grouped: little padding inside a batch
    again = draw(0)
    assert all(a["input_ids"].equal(b["input_ids"]) for a, b in zip(out[:50], again[:50]))
    assert not all(a["input_ids"].shape == b["input_ids"].shape and a["input_ids"].equal(b["input_ids"])
                   for a, b in zip(out[:50], draw(1)[:50]))


def test_streaming_run_through_the_cli(tiny_bert: Path, skewed_csv: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code = cli_main(["train", *tiny_args(tiny_bert, skewed_csv, out, "--streaming", "true", "--max_steps", "12",
                                         "--max_eval_samples", "50", "--sampler", "random_over")])
    assert code in (0, None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 12 and metrics["validation_size"] == metrics["test_size"] == 50
    assert 500 <= metrics["train_size"] <= 530  # 630 rows less the 100 held-out texts and their copies
    assert set(metrics["sampler_rows"]["after"].values()) == {max(metrics["sampler_rows"]["before"].values())}
    assert "baselines_skipped" not in metrics or metrics["baselines_skipped"].startswith("streaming")
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # --streaming without --max_steps: one line, exit 2, nothing written
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert cli_main(["train", *tiny_args(tiny_bert, skewed_csv, bad, "--streaming", "true")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[-1]] and err[-1].startswith("error: --streaming needs --max_steps") and not bad.exists()


def test_python_api_trains_on_a_datasets_object(tiny_bert: Path, tmp_path: Path) -> None:
    """The README's Python example: a DatasetDict straight into load_dataset_splits, then run_training."""
    from skewtune.training import TrainConfig, run_training

    texts, labels = make_texts(240, seed=2)
    names = ["negative", "positive"]
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"sentence": texts, "label": [names.index(y) for y in labels]}, features=features)})
    folder = tmp_path / "my_ds"
    data.save_to_disk(str(folder))
    splits = load_dataset_splits(datasets.load_from_disk(str(folder)), text_column="sentence")
    cfg = TrainConfig(output_dir=str(tmp_path / "run"), backbone=str(tiny_bert), quant="none", num_train_epochs=3,
                      learning_rate="1e-2", per_device_train_batch_size=16, baselines=False, report_plots=False,
                      report_to="none")
    run = run_training(cfg, splits=splits)
    assert run.metrics["eval_macro_f1"] > 0.8 and run.metrics["labels"] == names
    assert (tmp_path / "run" / "adapter" / "skewtune.json").is_file()
