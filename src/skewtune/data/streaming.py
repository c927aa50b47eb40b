"""``--streaming``: train on a file read as a stream (a ``datasets`` iterable dataset), never held or converted whole.

One pass over the stream (:func:`scan_stream`) checks every row as the table path does, counts the classes and
holds out the validation and test rows: the rows whose seeded :func:`~skewtune.data.tables.text_key` is among the
``n`` smallest (a bottom-``n`` sample by hash: uniform, deterministic per seed, and every copy of a text falls on
the same side, so no text is in two splits). Training then reads the stream again, pass after pass
(:class:`StreamingBatches`): rows shuffled in a buffer, held-out texts skipped, classes oversampled by repetition
(``random_over``: class ``c`` repeated ``r_c = target_c / n_c`` times in expectation), texts tokenized a buffer at
a time and cut into length-grouped batches, batch order shuffled. Its length is the run's ``--max_steps`` batches.
Duplicates inside the training stream are kept (finding them needs every key in memory).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import torch

from skewtune.data.batching import pack_by_length, truncate_ids
from skewtune.data.readers import (
    TEXT_SUFFIXES,
    check_boolean_spellings,
    check_path,
    label_sort_key,
    normalise_label,
)
from skewtune.data.tables import (
    BUILDERS,
    _columns_error,
    _csv_header,
    is_hub_name,
    string_features,
    text_key,
)
from skewtune.errors import ConfigError, DataError, capped

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger("skewtune")

SCAN_BATCH = 10_000  # rows per batch read from the stream
SHUFFLE_BUFFER = 10_000  # rows in datasets' shuffle buffer
MEGA = 50  # batches' worth of rows tokenized, sorted by length and packed together
DEFAULT_EVAL_ROWS = 2_000  # validation and test rows held out each when --max_eval_samples is not given


def open_stream(dataset: str, text_column: str, label_column: str, encoding: str = "utf-8",
                dataset_config: str | None = None) -> datasets.IterableDataset:
    """A local csv/tsv/jsonl/parquet file (or a Hub dataset's train split) as an iterable ``text``/``label``
    dataset; nothing is read yet beyond a CSV header."""
    if is_hub_name(dataset):
        try:
            stream = datasets.load_dataset(dataset, dataset_config, split="train", streaming=True)
        except Exception as exc:  # noqa: BLE001 - offline, unknown name: one line
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise DataError(f"could not stream Hub dataset '{dataset}': {cause}",
                            "check the name; skewtune's CLI runs offline unless HF_HUB_OFFLINE=0 "
                            "HF_DATASETS_OFFLINE=0 are set") from None
    else:
        path = Path(dataset)
        check_path(path)
        if not path.is_file():
            raise DataError(f"--streaming reads a data file; {dataset} is {'a folder' if path.is_dir() else 'missing'}",
                            "pass a local csv/tsv/jsonl/parquet file, or drop --streaming")
        suffix = path.suffix.lower()
        if suffix not in BUILDERS:
            raise DataError(f"--streaming reads {', '.join(BUILDERS)} files, not '{suffix or path.name}'",
                            f"convert the file, or drop --streaming (it reads {', '.join(TEXT_SUFFIXES)})")
        builder, options = BUILDERS[suffix]
        features = None
        if builder == "csv":
            header = _csv_header(path, encoding, options.get("sep", ","))
            _columns_error(path, header, text_column, label_column)
            features = string_features(header)
            options = {**options, "encoding": encoding}
        stream = datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", streaming=True,
                                       features=features, **options)
    columns = list(stream.features or {}) if stream.features else None
    if columns is not None:
        _columns_error(dataset, columns, text_column, label_column)
    stream = stream.select_columns([text_column, label_column])
    renames = {k: v for k, v in ((text_column, "text"), (label_column, "label")) if k != v}
    return stream.rename_columns(renames) if renames else stream


def seed_mask(seed: int) -> int:
    """A 64-bit mask from ``seed``: ``text_key(t) ^ mask`` orders texts differently per seed."""
    return int.from_bytes(hashlib.blake2b(str(seed).encode(), digest_size=8).digest(), "little")


@dataclass
class StreamScan:
    """What one pass over the stream found."""

    rows: int  # rows read
    empty_texts: int
    class_rows: dict[str, int]  # rows per (normalised) class, held-out rows included
    held_out: list[tuple[int, str, str]]  # (seeded key, text, label) of the held-out texts, smallest key first
    held_out_rows: dict[str, int]  # rows per class whose text is held out (every copy)
    threshold: int  # rows with a seeded key ≤ this are held out (-1: none)
    raw_labels: dict[str, str] = field(default_factory=dict)  # raw label value → normalised class name


def scan_stream(stream: datasets.IterableDataset, where: str, *, seed: int, held_out: int,
                skip_empty_texts: bool = False) -> StreamScan:
    """One pass: check labels and texts (one-line errors naming the row), count classes, and keep the
    ``held_out`` texts of smallest seeded key (every copy of a text counted with it)."""
    mask = seed_mask(seed)
    heap: list[tuple[int, int]] = []  # (-key, key) max-heap of the smallest keys kept
    kept: dict[int, tuple[str, str, dict[str, int]]] = {}  # key → (text, label, rows per class with this text)
    raw_labels: dict[str, str] = {}
    class_rows: dict[str, int] = {}
    rows = empty = 0
    first_empty = None
    try:
        for batch in stream.iter(batch_size=SCAN_BATCH):
            for text, raw in zip(batch["text"], batch["label"]):
                rows += 1
                label = raw_labels.get(raw) if isinstance(raw, str) else None
                if label is None:
                    label = _normalised(raw, where, rows)
                    if isinstance(raw, str):
                        raw_labels[raw] = label
                if text is None or not str(text).strip():
                    empty += 1
                    first_empty = first_empty or rows
                    continue
                class_rows[label] = class_rows.get(label, 0) + 1
                key = text_key(str(text)) ^ mask
                if key in kept:
                    per_class = kept[key][2]
                    per_class[label] = per_class.get(label, 0) + 1
                elif len(heap) < held_out:
                    heapq.heappush(heap, (-key, key))
                    kept[key] = (str(text), label, {label: 1})
                elif held_out and key < heap[0][1]:
                    _, evicted = heapq.heapreplace(heap, (-key, key))
                    del kept[evicted]
                    kept[key] = (str(text), label, {label: 1})
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - pandas / pyarrow errors of a bad row deep in the file
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"{where}: reading the stream failed after {rows:,} rows ({cause})",
                        "fix that row (without --streaming the row reader names it), or drop --streaming") from None
    if not rows:
        raise DataError(f"{where} holds no rows", "add examples")
    if empty and not skip_empty_texts:
        raise DataError(f"{empty} empty text(s) in {where} (first at row {first_empty})",
                        "remove them or pass --skip_empty_texts")
    check_boolean_spellings(list(class_rows), where)
    held = sorted((key, text, label) for key, (text, label, _) in kept.items())
    held_rows: dict[str, int] = {}
    for _, _, per_class in kept.values():
        for label, n in per_class.items():
            held_rows[label] = held_rows.get(label, 0) + n
    threshold = held[-1][0] if held else -1
    return StreamScan(rows=rows, empty_texts=empty, class_rows=class_rows, held_out=held, held_out_rows=held_rows,
                      threshold=threshold, raw_labels=raw_labels)


def _normalised(raw: Any, where: str, row: int) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise DataError(f"{where} row {row} has an empty or NaN label", "fill or drop rows without a label")
    try:
        return normalise_label(raw)
    except DataError as exc:
        raise DataError(f"{where} row {row}: {exc.message}", exc.hint) from None


def oversampling_rates(counts: Sequence[int], sampler: str | None, ratio: float | None = None) -> list[float]:
    """Expected copies of a row per class: ``none`` → 1; ``random_over`` → ``max(1, ratio·n_max / n_c)`` (classes
    raised to ``ratio`` times the largest one, imbalanced-learn's ``RandomOverSampler`` in expectation)."""
    if not sampler:
        return [1.0] * len(counts)
    if sampler != "random_over":
        raise ConfigError(f"--streaming resamples with random_over or none, not '{sampler}'",
                          "pass --sampler random_over or --sampler none, or drop --streaming")
    largest = max(counts)
    target = (ratio if ratio is not None else 1.0) * largest
    return [max(1.0, target / n) if n else 1.0 for n in counts]


@dataclass
class StreamingTrain:
    """The training split of a ``--streaming`` run: the stream, the held-out threshold and the class counts.

    Stands where a tokenized split stands (``len`` is the number of training rows; texts are tokenized as
    they are read).
    """

    stream: datasets.IterableDataset
    label2id: dict[str, int]
    counts: list[int]  # training rows per class id (held-out texts excluded)
    threshold: int
    seed: int
    raw_labels: dict[str, str] = field(default_factory=dict)
    truncated: int = 0  # texts cut to max_length so far (counted as they are read)
    labels: list[int] | None = None  # no per-row labels in memory

    def __len__(self) -> int:
        return sum(self.counts)

    def rows(self, epoch: int) -> Iterator[tuple[str, int]]:
        """``(text, class id)`` of the training rows, pass ``epoch``'s order (datasets' shuffle buffer)."""
        mask = seed_mask(self.seed)
        stream = self.stream.shuffle(seed=self.seed + epoch, buffer_size=SHUFFLE_BUFFER)
        raw_labels, label2id = self.raw_labels, self.label2id
        for batch in stream.iter(batch_size=SCAN_BATCH):
            for text, raw in zip(batch["text"], batch["label"]):
                if text is None or not str(text).strip():
                    continue
                text = str(text)
                if text_key(text) ^ mask <= self.threshold:
                    continue
                label = raw_labels.get(raw) if isinstance(raw, str) else None
                if label is None:
                    label = normalise_label(raw)
                yield text, label2id[label]


class StreamingBatches(torch.utils.data.IterableDataset):
    """Exactly ``num_batches`` collated training batches from a :class:`StreamingTrain`, read pass after pass.

    Per pass ``p``: rows in datasets' shuffle order (seed + p); each row repeated ``floor(r) + Bernoulli(r -
    floor(r))`` times (``rates``); every ``MEGA × batch_size`` rows are tokenized in one call, sorted by length,
    packed (:func:`~skewtune.data.batching.pack_by_length`) and the batches shuffled. Deterministic per seed, so
    a resumed run skipping its first batches sees the same ones.
    """

    def __init__(self, train: StreamingTrain, tokenizer: PreTrainedTokenizerBase, collate: Callable[[list[Any]], Any],
                 *, batch_size: int, max_length: int, num_batches: int, seed: int, rates: Sequence[float],
                 max_tokens: int | None = None) -> None:
        self.train = train
        self.tokenizer = tokenizer
        self.collate = collate
        self.batch_size = batch_size
        self.max_length = max_length
        self.num_batches = num_batches
        self.seed = seed
        self.rates = list(rates)
        self.max_tokens = max_tokens

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:  # one "epoch" is the whole run: passes advance by themselves
        return None

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(texts, truncation=False, add_special_tokens=True)["input_ids"]
        self.train.truncated += sum(len(seq) > self.max_length for seq in encoded)
        return [truncate_ids(seq, self.max_length, self.tokenizer.sep_token_id) for seq in encoded]

    def _batches(self, rows: list[tuple[str, int]], rng: random.Random) -> list[list[dict[str, Any]]]:
        ids = self._tokenize([text for text, _ in rows])
        lengths = [len(x) for x in ids]
        order = sorted(range(len(rows)), key=lambda i: lengths[i], reverse=True)
        batches = [[{"input_ids": ids[i], "labels": rows[i][1]} for i in batch]
                   for batch in pack_by_length(order, lengths, self.batch_size, self.max_tokens)]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        produced, epoch = 0, 0
        chunk = self.batch_size * MEGA
        while produced < self.num_batches:
            rng = random.Random(self.seed * 1_000_003 + epoch)
            buffer: list[tuple[str, int]] = []
            seen = 0
            for text, label in self.train.rows(epoch):
                seen += 1
                rate = self.rates[label]
                copies = int(rate) + (rng.random() < rate - math.floor(rate))
                buffer.extend([(text, label)] * copies)
                if len(buffer) >= chunk:
                    for batch in self._batches(buffer, rng):
                        yield self.collate(batch)
                        produced += 1
                        if produced >= self.num_batches:
                            return
                    buffer = []
            if buffer:
                for batch in self._batches(buffer, rng):
                    yield self.collate(batch)
                    produced += 1
                    if produced >= self.num_batches:
                        return
            if not seen:
                raise DataError("the training stream holds no rows", "check --dataset")
            epoch += 1


def streaming_splits(dataset: str, *, seed: int, text_column: str, label_column: str, encoding: str,
                     dataset_config: str | None, eval_rows: int | None, skip_empty_texts: bool,
                     validation: tuple[list[str], list[str]] | None = None,
                     test: tuple[list[str], list[str]] | None = None) -> tuple[StreamingTrain, dict[str, Any]]:
    """Scan the stream once; return the training stream and the held-out ``validation`` / ``test`` (texts,
    labels) — given ones kept — with the scan's figures."""
    clock = time.perf_counter()
    stream = open_stream(dataset, text_column, label_column, encoding, dataset_config)
    per_split = eval_rows or DEFAULT_EVAL_ROWS
    needed = per_split * ((validation is None) + (test is None))
    scan = scan_stream(stream, f"{dataset}", seed=seed, held_out=needed, skip_empty_texts=skip_empty_texts)
    held = scan.held_out
    parts: dict[str, tuple[list[str], list[str]]] = {}
    start = 0
    for name, given in (("validation", validation), ("test", test)):
        if given is not None:
            parts[name] = given
            continue
        chunk = held[start:start + per_split]
        start += per_split
        parts[name] = ([text for _, text, _ in chunk], [label for _, _, label in chunk])
    train_rows = {label: n - scan.held_out_rows.get(label, 0) for label, n in scan.class_rows.items()}
    classes = sorted((label for label, n in train_rows.items() if n > 0), key=label_sort_key)
    if len(classes) < 2:
        raise DataError(f"the training stream holds {len(classes)} class(es) after holding out evaluation rows",
                        "give more data or a smaller --max_eval_samples")
    unseen = sorted({label for _, labels in parts.values() for label in labels} - set(classes))
    if unseen:
        raise DataError(f"label(s) {capped(map(repr, unseen))} appear in validation/test but never in training",
                        "add training examples of those labels or drop them from the evaluation files")
    label2id = {label: i for i, label in enumerate(classes)}
    train = StreamingTrain(stream=stream, label2id=label2id, counts=[train_rows[c] for c in classes],
                           threshold=scan.threshold, seed=seed, raw_labels=scan.raw_labels)
    info = {"rows": scan.rows, "empty_texts_skipped": scan.empty_texts, "duplicates_removed": None,
            "streaming": True, "held_out_rows": sum(scan.held_out_rows.values()), "classes": classes,
            "parts": parts, "timings_s": {"scan": time.perf_counter() - clock}}
    return train, info


def check_streaming_config(cfg: Any) -> None:
    """Options ``--streaming`` cannot honour fail before anything loads."""
    if not getattr(cfg, "streaming", False):
        return
    if not cfg.max_steps:
        raise ConfigError("--streaming needs --max_steps (a stream has no length to count epochs by)",
                          "pass e.g. --max_steps 2000")
    if cfg.augment:
        raise ConfigError("--augment needs the training texts in memory; it does not work with --streaming",
                          "drop --augment or --streaming")
    if cfg.max_train_samples:
        raise ConfigError("--max_train_samples does not apply to --streaming (training reads the whole stream)",
                          "drop one of them")
    if cfg.sampler and cfg.sampler != "random_over":
        oversampling_rates([1], cfg.sampler)
    if cfg.learning_rate_value() is None:
        raise ConfigError("--learning_rate auto replays batches, which a stream does not keep",
                          "pass a number, e.g. --learning_rate 1e-3")


def expected_counts(counts: Sequence[int], rates: Sequence[float]) -> list[int]:
    """Rows per class the model sees per pass, in expectation (the loss priors under oversampling)."""
    return [int(round(n * r)) for n, r in zip(counts, rates)]


__all__ = ["StreamingBatches", "StreamingTrain", "check_streaming_config", "expected_counts", "open_stream",
           "oversampling_rates", "scan_stream", "streaming_splits"]
