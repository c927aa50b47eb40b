"""Labelled text as Arrow-backed ``datasets`` tables: local files, saved folders, Hub names and Python objects.

Every source becomes a :class:`datasets.Dataset` with a ``text`` and a ``label`` column of strings. Large formats
(csv, tsv, jsonl, parquet) go through :func:`datasets.load_dataset`: the file is converted once into Arrow files in
the ``datasets`` cache (reused while the file is unchanged) and memory-mapped, so millions of rows cost disk, not
memory. Checks run on Arrow columns, batch by batch (:func:`check_table`), with the same one-line messages as the
row readers of :mod:`skewtune.data.readers`; when ``datasets`` cannot read a file, those readers diagnose it (one
line naming the row or line) or, for files only they accept, read it into memory.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from skewtune.data.readers import (
    TEXT_SUFFIXES,
    check_boolean_spellings,
    check_path,
    normalise_label,
    read_rows,
    read_table,
)
from skewtune.errors import DataError, capped

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger("skewtune")

# file suffix → datasets' packaged builder (and its keywords); .json and .txt are read by skewtune's readers
BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {"keep_default_na": False, "na_filter": False}),
    ".tsv": ("csv", {"keep_default_na": False, "na_filter": False, "sep": "\t"}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
SCAN_BATCH = 50_000  # rows per Arrow batch when a check or the dedup keys scan a column


def normalise_for_dedup(text: str) -> str:
    """The dedup key of a text: NFKC, case-folded, whitespace runs collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def text_key(text: str) -> int:
    """A stable 64-bit hash of :func:`normalise_for_dedup` (BLAKE2b): equal for texts that are duplicates."""
    digest = hashlib.blake2b(normalise_for_dedup(text).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def is_hub_name(dataset: str) -> bool:
    """``owner/name`` (or a bare name) that is no local path and no file name: a Hugging Face Hub dataset."""
    if Path(dataset).expanduser().exists() or dataset.lower().endswith((*TEXT_SUFFIXES, ".arrow")):
        return False
    parts = dataset.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") and p.replace("-", "").replace("_", "").replace(
        ".", "").isalnum() for p in parts)


def string_features(columns: Sequence[str]) -> datasets.Features:
    return datasets.Features({name: datasets.Value("string") for name in columns})


def _csv_header(path: Path, encoding: str, delimiter: str) -> list[str]:
    """The header row of a CSV/TSV file (its first record), checked as the row reader checks it."""
    try:
        with open(path, encoding=encoding, newline="") as handle:
            first = handle.readline()
            while first and not first.strip():  # blank lines before the header
                first = handle.readline()
    except (UnicodeDecodeError, LookupError):
        read_rows(path, encoding=encoding)  # raises the row reader's message (the byte, the fix)
        raise
    try:
        header = next(csv.reader([first], delimiter=delimiter), [])
    except csv.Error:
        header = []
    header = [h.strip().lstrip("\ufeff") for h in header]
    if not header:
        raise DataError(f"{path} has no header row", "add a header naming the text and label columns")
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{path} has repeated column name(s): {capped(map(repr, repeated))}",
                        "give every column of the header a distinct name")
    return header


def _columns_error(path: object, columns: Sequence[str], text_column: str, label_column: str | None) -> None:
    if text_column not in columns:
        raise DataError(f"text column '{text_column}' not found in {path} (columns: {capped(map(str, columns))})",
                        "pass --text_column NAME")
    if label_column is not None and label_column not in columns:
        raise DataError(f"label column '{label_column}' not found in {path} (columns: {capped(map(str, columns))})",
                        "pass --label_column NAME")


def _from_rows(path: Path, text_column: str, label_column: str, encoding: str) -> datasets.Dataset:
    """A file read (and checked row by row) by skewtune's readers, as an in-memory table."""
    texts, labels = read_table(path, text_column, label_column, encoding=encoding)
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=string_features(["text", "label"]))


def load_file(path: Path, text_column: str, label_column: str, encoding: str = "utf-8") -> datasets.Dataset:
    """A local data file as a ``text``/``label`` table (see the module docstring); DataError for a bad file."""
    check_path(path)
    if not path.exists():
        raise DataError(f"dataset file {path} does not exist", "check the path, or use --dataset tweets")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file", f"point at a {'/'.join(TEXT_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(f"unsupported data file type '{suffix or path.name}'", f"use one of {', '.join(TEXT_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty", "give a file with a header row and at least one example per class")
    if suffix not in BUILDERS:
        return _from_rows(path, text_column, label_column, encoding)
    builder, options = BUILDERS[suffix]
    features = None
    if builder == "csv":
        header = _csv_header(path, encoding, options.get("sep", ","))
        _columns_error(path, header, text_column, label_column)
        features = string_features(header)
        options = {**options, "encoding": encoding}
    try:
        table = datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", features=features,
                                      **options)
    except Exception as exc:  # noqa: BLE001 - pandas, pyarrow and datasets raise many types for a bad file
        # the row readers name the bad line or row; a file only they accept is read into memory
        logger.debug("datasets could not read %s (%s: %s); reading it row by row", path, type(exc).__name__, exc)
        return _from_rows(path, text_column, label_column, encoding)
    if builder == "csv":
        table = table.rename_columns({c: c.strip().lstrip("\ufeff") for c in table.column_names
                                      if c != c.strip().lstrip("\ufeff")})
    _columns_error(path, table.column_names, text_column, label_column)
    if not all(_plain(table.features[c]) for c in (text_column, label_column)):
        # lists, objects, bytes or mixed types (datasets' Json feature): the row reader names the row, as before
        return _from_rows(path, text_column, label_column, encoding)
    return _text_label_table(table, str(path), text_column, label_column)


def _plain(feature: Any) -> bool:
    """A column of strings, numbers or booleans (cast to label and text strings as the row readers do)."""
    return isinstance(feature, datasets.Value) and (feature.dtype in ("string", "large_string", "bool") or
                                                    feature.dtype.startswith(("int", "uint", "float")))


def _text_label_table(table: datasets.Dataset, where: str, text_column: str, label_column: str) -> datasets.Dataset:
    """``table`` reduced to its text and label columns, renamed ``text`` and ``label``, both strings."""
    _columns_error(where, table.column_names, text_column, label_column)
    if table.num_rows == 0:
        raise DataError(f"{where} holds no rows", "add examples")
    for column, role in ((text_column, "text"), (label_column, "label")):
        feature = table.features[column]
        if isinstance(feature, datasets.ClassLabel):
            continue
        kind = _arrow_kind(table.data.schema.field(column).type)
        if kind:  # the first row holding one, as the row readers report it
            row = _first_non_null(table, column) + 1
            if role == "text":
                raise DataError(f"{where} row {row}: text is {kind}, not a string",
                                f"store plain text in the '{column}' column")
            raise DataError(f"{where} row {row}: label is {kind}; labels must be class names or integers",
                            "store one class name per row")
    table = table.select_columns([text_column, label_column])
    label_feature = table.features[label_column]
    if isinstance(label_feature, datasets.ClassLabel):  # integer ids with names: the names are the labels
        names = label_feature.names
        table = table.cast_column(label_column, datasets.Value("int64"))
        table = table.map(lambda batch: {label_column: [names[i] if i is not None and 0 <= i < len(names) else None
                                                        for i in batch[label_column]]},
                          batched=True, batch_size=SCAN_BATCH, features=datasets.Features(
                              {text_column: table.features[text_column], label_column: datasets.Value("string")}),
                          desc="label names")
    mapping = {text_column: "text", label_column: "label"}
    if text_column == label_column:
        raise DataError(f"--text_column and --label_column are both '{text_column}'", "name two different columns")
    table = table.rename_columns({k: v for k, v in mapping.items() if k != v and k in table.column_names})
    for column in ("text", "label"):
        if table.features[column] != datasets.Value("string"):
            table = table.cast_column(column, datasets.Value("string"))
    return table


def _arrow_kind(kind: pa.DataType) -> str:
    """What an Arrow column type holds when it is no text or number (the row readers' words); '' otherwise."""
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return "bytes (a binary column)"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return "an array (a list column)"
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return "a JSON dict"
    return ""


def _first_non_null(table: datasets.Dataset, column: str) -> int:
    offset = 0
    for batch in table.data.column(column).chunks:
        valid = pc.is_valid(batch)
        if pc.any(valid).as_py():
            return offset + int(pc.index(valid, True).as_py())
        offset += len(batch)
    return 0


def load_saved(path: Path, text_column: str, label_column: str) -> datasets.Dataset:
    """A folder written by ``save_to_disk`` (every split concatenated; the caller re-splits), memory-mapped."""
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise DataError(f"{path} is not a readable saved dataset ({type(exc).__name__})",
                        "save it again with Dataset.save_to_disk") from exc
    return from_python(loaded, text_column, label_column, where=f"dataset {path}")


def from_python(data: datasets.Dataset | datasets.DatasetDict, text_column: str, label_column: str,
                where: str = "the dataset") -> datasets.Dataset:
    """A ``datasets.Dataset`` or ``DatasetDict`` (splits concatenated) as a ``text``/``label`` table."""
    parts = list(data.values()) if isinstance(data, datasets.DatasetDict) else [data]
    tables = [_text_label_table(part, where, text_column, label_column) for part in parts if part.num_rows]
    if not tables:
        raise DataError(f"{where} holds no rows", "add examples")
    return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)


def load_hub(name: str, config: str | None, text_column: str, label_column: str,
             split: str | None = None) -> datasets.DatasetDict | datasets.Dataset:
    """A Hugging Face Hub dataset by name (online; ``datasets`` caches it). DataError when it cannot be fetched."""
    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, missing config: one line each
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"could not load Hub dataset '{name}'{f' ({config})' if config else ''}: {cause}",
                        "check the name and --dataset_config; offline, save it where you are online "
                        "(Dataset.save_to_disk) and pass the folder") from None
    if isinstance(loaded, datasets.DatasetDict | datasets.Dataset):
        return loaded
    raise DataError(f"Hub dataset '{name}' is not a map-style dataset", "pass --streaming to read it as a stream")


@dataclass
class CheckedTable:
    """A table after :func:`check_table`: rows kept (dedup, empty texts), class code per row, class names."""

    table: datasets.Dataset  # the text/label table as loaded
    keep: np.ndarray  # row indices of ``table`` kept (first occurrence of each text), ascending
    codes: np.ndarray  # class code of each kept row (index into ``classes``)
    keys: np.ndarray  # :func:`text_key` of each kept row
    classes: list[str]  # normalised class names, in order of first appearance
    rows: int  # rows read
    empty_texts: int  # empty texts skipped (--skip_empty_texts)
    duplicates: int  # rows dropped as duplicates of an earlier text

    def labels(self, positions: np.ndarray) -> list[str]:
        """Class names of ``positions`` (indices into ``keep``)."""
        classes = self.classes
        return [classes[c] for c in self.codes[positions].tolist()]


def iter_columns(table: datasets.Dataset, columns: Sequence[str],
                 batch_size: int = SCAN_BATCH) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """``(offset, {column: values})`` batch by batch, only ``columns`` read."""
    offset = 0
    for batch in table.select_columns(list(columns)).iter(batch_size=batch_size):
        yield offset, batch
        offset += len(next(iter(batch.values())))


def check_table(table: datasets.Dataset, where: str, *, skip_empty_texts: bool = False,
                dedup: bool = True, rows_where: str | None = None) -> CheckedTable:
    """Check a ``text``/``label`` table batch by batch and find the rows to keep; nothing is copied.

    Labels: missing ones are refused with their row, each distinct raw value is normalised once
    (:func:`~skewtune.data.readers.normalise_label`: ``1.0`` and ``1`` are one class) and one boolean spelt
    several ways is refused. Texts: empty ones are refused (or skipped with ``skip_empty_texts``); with ``dedup``
    the first occurrence of each :func:`text_key` is kept, so no text can land in two splits. ``where`` names
    the data in messages about the whole table, ``rows_where`` (default ``where``) in messages naming a row.
    """
    rows_where = rows_where or where
    n = table.num_rows
    raw_codes: dict[str, int] = {}
    codes = np.empty(n, dtype=np.int32)
    keys = np.zeros(n, dtype=np.uint64)
    empty = np.zeros(n, dtype=bool)
    first_empty = None
    for offset, batch in iter_columns(table, ("text", "label")):
        for i, (text, label) in enumerate(zip(batch["text"], batch["label"])):
            row = offset + i
            if label is None or not label.strip():
                raise DataError(f"{rows_where} row {row + 1} has an empty or NaN label",
                                "fill or drop rows without a label")
            code = raw_codes.get(label)
            if code is None:
                code = raw_codes[label] = len(raw_codes)
            codes[row] = code
            if text is None or not text.strip():
                empty[row] = True
                if first_empty is None:
                    first_empty = row
                continue
            keys[row] = text_key(text)
    # each distinct raw label normalised once; the first row of a bad one is named
    raw = list(raw_codes)
    normalised: list[str] = []
    for value in raw:
        try:
            normalised.append(normalise_label(value))
        except DataError as exc:
            row = int(np.argmax(codes == raw_codes[value])) + 1
            raise DataError(f"{rows_where} row {row}: {exc.message}", exc.hint) from None
    check_boolean_spellings(normalised, rows_where)
    classes = list(dict.fromkeys(normalised))
    remap = np.asarray([classes.index(label) for label in normalised], dtype=np.int32)
    codes = remap[codes] if len(raw) else codes
    n_empty = int(empty.sum())
    if n_empty and not skip_empty_texts:
        raise DataError(f"{n_empty} empty text(s) in {where} (first at row {first_empty + 1})",
                        "remove them or pass --skip_empty_texts")
    if n_empty:
        logger.warning("skipped %d empty text(s) in %s (--skip_empty_texts)", n_empty, where)
    candidates = np.flatnonzero(~empty)
    if dedup and len(candidates):
        _, first = np.unique(keys[candidates], return_index=True)
        keep = candidates[np.sort(first)]
    else:
        keep = candidates
    return CheckedTable(table=table, keep=keep, codes=codes[keep], keys=keys[keep], classes=classes, rows=n,
                        empty_texts=n_empty,
                        duplicates=len(candidates) - len(keep))


__all__ = ["BUILDERS", "CheckedTable", "check_table", "from_python", "is_hub_name", "iter_columns", "load_file",
           "load_hub", "load_saved", "normalise_for_dedup", "read_rows", "string_features", "text_key"]
