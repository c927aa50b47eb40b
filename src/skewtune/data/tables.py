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
import json
import logging
import math
import unicodedata
from collections import Counter
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
    _non_scalar,
    check_boolean_spellings,
    check_data_file,
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


PROBLEM_TYPES = ("single_label", "multi_label", "regression")


@dataclass(frozen=True)
class Columns:
    """Which columns of the source hold what, and what the labels are.

    ``problem_type``: ``single_label`` (one class name per row), ``multi_label`` (several class names per row:
    a list, a JSON list, or a string split on ``label_delimiter``; an empty cell is "no label") or ``regression``
    (a number per row). ``text_pair``: the second text of a sentence pair.
    """

    text: str = "text"
    label: str = "label"
    text_pair: str | None = None
    problem_type: str = "single_label"
    label_delimiter: str = ";"

    @property
    def source(self) -> list[str]:
        return [c for c in (self.text, self.text_pair, self.label) if c is not None]

    @property
    def renamed(self) -> dict[str, str]:
        out = {self.text: "text", self.label: "label"}
        if self.text_pair is not None:
            out[self.text_pair] = "text_pair"
        return out


def _columns_error(path: object, columns: Sequence[str], text_column: str, label_column: str | None,
                   pair_column: str | None = None) -> None:
    if text_column not in columns:
        raise DataError(f"text column '{text_column}' not found in {path} (columns: {capped(map(str, columns))})",
                        "pass --text_column NAME")
    if pair_column is not None and pair_column not in columns:
        raise DataError(f"text pair column '{pair_column}' not found in {path} (columns: {capped(map(str, columns))})",
                        "pass --text_pair_column NAME")
    if label_column is not None and label_column not in columns:
        raise DataError(f"label column '{label_column}' not found in {path} (columns: {capped(map(str, columns))})",
                        "pass --label_column NAME")


def _check_names(columns: Columns) -> None:
    names = columns.source
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"the column '{repeated[0]}' is named for two roles (--text_column, --text_pair_column, "
                        "--label_column)", "name a different column for each")


def _from_rows(path: Path, columns: Columns, encoding: str) -> datasets.Dataset:
    """A file read (and checked row by row) by skewtune's row readers, as an in-memory table."""
    if columns.problem_type == "single_label" and columns.text_pair is None:
        texts, labels = read_table(path, columns.text, columns.label, encoding=encoding)
        return datasets.Dataset.from_dict({"text": texts, "label": labels},
                                          features=string_features(["text", "label"]))
    rows = read_rows(path, encoding=encoding)
    if not rows:
        raise DataError(f"{path} holds no rows", "add examples")
    _columns_error(path, list(rows[0]), columns.text, columns.label, columns.text_pair)
    data: dict[str, list[Any]] = {}
    for source, name in columns.renamed.items():
        values = []
        for number, row in enumerate(rows, start=1):
            value = row.get(source)
            kind = _non_scalar(value) if name != "label" or columns.problem_type != "multi_label" else ""
            if kind:
                raise DataError(f"{path} row {number}: {'text' if name != 'label' else 'label'} is {kind}",
                                f"store plain {'text' if name != 'label' else 'values'} in the '{source}' column")
            values.append(_cell_text(value))
        data[name] = values
    return datasets.Dataset.from_dict(data, features=string_features(list(data)))


def _cell_text(value: Any) -> str | None:
    """A cell as the string a table holds: lists as JSON, missing values as None."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, list | tuple) or getattr(value, "ndim", 0):
        return json.dumps(value.tolist() if hasattr(value, "tolist") else list(value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def load_file(path: Path, columns: Columns, encoding: str = "utf-8") -> datasets.Dataset:
    """A local data file as a ``text``(/``text_pair``)/``label`` table (see the module docstring); DataError for a
    bad file."""
    _check_names(columns)
    suffix = check_data_file(path)
    if suffix not in BUILDERS:
        return _from_rows(path, columns, encoding)
    builder, options = BUILDERS[suffix]
    features = None
    if builder == "csv":
        header = _csv_header(path, encoding, options.get("sep", ","))
        _columns_error(path, header, columns.text, columns.label, columns.text_pair)
        features = string_features(header)
        options = {**options, "encoding": encoding}
    try:
        table = datasets.load_dataset(builder, data_files=str(path.resolve()), split="train", features=features,
                                      **options)
    except Exception as exc:  # noqa: BLE001 - pandas, pyarrow and datasets raise many types for a bad file
        # the row readers name the bad line or row; a file only they accept is read into memory
        logger.debug("datasets could not read %s (%s: %s); reading it row by row", path, type(exc).__name__, exc)
        return _from_rows(path, columns, encoding)
    if builder == "csv":
        table = table.rename_columns({c: c.strip().lstrip("\ufeff") for c in table.column_names
                                      if c != c.strip().lstrip("\ufeff")})
    _columns_error(path, table.column_names, columns.text, columns.label, columns.text_pair)
    label_ok = _plain(table.features[columns.label]) or (
        columns.problem_type == "multi_label" and _plain_list(table.features[columns.label]))
    if not label_ok or not all(_plain(table.features[c]) for c in (columns.text, columns.text_pair) if c):
        # lists, objects, bytes or mixed types (datasets' Json feature): the row reader names the row, as before
        return _from_rows(path, columns, encoding)
    return _text_label_table(table, str(path), columns)


def _plain(feature: Any) -> bool:
    """A column of strings, numbers or booleans (cast to label and text strings as the row readers do)."""
    return isinstance(feature, datasets.Value) and (feature.dtype in ("string", "large_string", "bool") or
                                                    feature.dtype.startswith(("int", "uint", "float")))


def _plain_list(feature: Any) -> bool:
    """A list column of strings or numbers (a multi-label column of JSONL or Parquet)."""
    inner = getattr(feature, "feature", None)
    return isinstance(feature, datasets.List | datasets.Sequence) and _plain(inner)


def _text_label_table(table: datasets.Dataset, where: str, columns: Columns) -> datasets.Dataset:
    """``table`` reduced to its text(, text pair) and label columns, renamed ``text``(, ``text_pair``) and
    ``label``, all strings (a multi-label list column as JSON)."""
    _check_names(columns)
    _columns_error(where, table.column_names, columns.text, columns.label, columns.text_pair)
    if table.num_rows == 0:
        raise DataError(f"{where} holds no rows", "add examples")
    for column in columns.source:
        feature = table.features[column]
        role = columns.renamed[column]
        if isinstance(feature, datasets.ClassLabel) or (role == "label" and columns.problem_type == "multi_label"
                                                        and (_plain_list(feature) or _class_names(feature))):
            continue
        kind = _arrow_kind(table.data.schema.field(column).type)
        if kind:  # the first row holding one, as the row readers report it
            row = _first_non_null(table, column) + 1
            if role != "label":
                raise DataError(f"{where} row {row}: text is {kind}, not a string",
                                f"store plain text in the '{column}' column")
            raise DataError(f"{where} row {row}: label is {kind}; labels must be class names or integers",
                            "store one class name per row")
    table = table.select_columns(columns.source)
    label_feature = table.features[columns.label]
    names = _class_names(label_feature)
    if names is not None or _plain_list(label_feature):  # ids with names → names; lists → JSON strings
        label = columns.label
        kept = {c: table.features[c] for c in table.column_names if c != label}

        def relabel(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            def name(i: Any) -> Any:
                return names[i] if names is not None and isinstance(i, int) and 0 <= i < len(names) else (
                    None if names is not None else i)
            return {label: [json.dumps([name(i) for i in v]) if isinstance(v, list) else
                            (None if v is None else name(v)) for v in batch[label]]}

        table = table.map(relabel, batched=True, batch_size=SCAN_BATCH,
                          features=datasets.Features({**kept, label: datasets.Value("string")}), desc="label names")
    table = table.rename_columns({k: v for k, v in columns.renamed.items() if k != v and k in table.column_names})
    for column in table.column_names:
        if table.features[column] != datasets.Value("string"):
            table = table.cast_column(column, datasets.Value("string"))
    return table


def _class_names(feature: Any) -> list[str] | None:
    """The names behind integer class ids: a ClassLabel, or a list of ClassLabel (multi-label)."""
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if isinstance(feature, datasets.List | datasets.Sequence) and isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


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


def load_saved(path: Path, columns: Columns) -> datasets.Dataset:
    """A folder written by ``save_to_disk`` (every split concatenated; the caller re-splits), memory-mapped."""
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, FileNotFoundError) as exc:
        raise DataError(f"{path} is not a readable saved dataset ({type(exc).__name__})",
                        "save it again with Dataset.save_to_disk") from exc
    return from_python(loaded, columns, where=f"dataset {path}")


def from_python(data: datasets.Dataset | datasets.DatasetDict, columns: Columns,
                where: str = "the dataset") -> datasets.Dataset:
    """A ``datasets.Dataset`` or ``DatasetDict`` (splits concatenated) as a ``text``/``label`` table."""
    parts = list(data.values()) if isinstance(data, datasets.DatasetDict) else [data]
    tables = [_text_label_table(part, where, columns) for part in parts if part.num_rows]
    if not tables:
        raise DataError(f"{where} holds no rows", "add examples")
    return tables[0] if len(tables) == 1 else datasets.concatenate_datasets(tables)


def load_hub(name: str, config: str | None, split: str | None = None) -> datasets.DatasetDict | datasets.Dataset:
    """A Hugging Face Hub dataset by name (online; ``datasets`` caches it). DataError when it cannot be fetched."""
    try:
        loaded = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, missing config: one line each
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"could not load Hub dataset '{name}'{f' ({config})' if config else ''}: {cause}",
                        "check the name and --dataset_config; skewtune's CLI runs offline unless HF_HUB_OFFLINE=0 "
                        "HF_DATASETS_OFFLINE=0 are set; or save it where you are online (Dataset.save_to_disk) and "
                        "pass the folder") from None
    if isinstance(loaded, datasets.DatasetDict | datasets.Dataset):
        return loaded
    raise DataError(f"Hub dataset '{name}' is not a map-style dataset", "pass --streaming to read it as a stream")


@dataclass
class CheckedTable:
    """A table after :func:`check_table`: the rows kept (dedup, empty texts), their labels and split strata."""

    table: datasets.Dataset  # the text/label table as loaded
    keep: np.ndarray  # row indices of ``table`` kept (first occurrence of each text), ascending
    codes: np.ndarray  # per kept row: the class code (single-label), the rarest label's code + 1 or 0 for none
    # (multi-label), the decile of the value (regression): what a stratified split stratifies by
    keys: np.ndarray  # :func:`text_key` of each kept row
    classes: list[str]  # normalised class names, in order of first appearance ([] for regression)
    rows: int  # rows read
    empty_texts: int  # empty texts skipped (--skip_empty_texts)
    duplicates: int  # rows dropped as duplicates of an earlier text
    problem_type: str = "single_label"
    values: Any = None  # per kept row: a tuple of class codes (multi-label) or a float array (regression)

    def labels(self, positions: np.ndarray) -> list[Any]:
        """Labels of ``positions`` (indices into ``keep``): class names (single-label), lists of class names
        (multi-label) or numbers (regression)."""
        classes = self.classes
        if self.problem_type == "multi_label":
            return [[classes[c] for c in self.values[i]] for i in positions.tolist()]
        if self.problem_type == "regression":
            return self.values[positions].tolist()
        return [classes[c] for c in self.codes[positions].tolist()]


def iter_columns(table: datasets.Dataset, columns: Sequence[str],
                 batch_size: int = SCAN_BATCH) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    """``(offset, {column: values})`` batch by batch, only ``columns`` read."""
    offset = 0
    for batch in table.select_columns(list(columns)).iter(batch_size=batch_size):
        yield offset, batch
        offset += len(next(iter(batch.values())))


def parse_label_set(raw: str | None, delimiter: str) -> list[str]:
    """The class names of one multi-label cell: a JSON list (``["a", "b"]``), or a string split on ``delimiter``
    (``a;b``); empty → no label. Each name is normalised as a single label is; repeats collapse."""
    if raw is None or not raw.strip():
        return []
    text = raw.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except (ValueError, RecursionError):
            raise DataError(f"label {text[:60]!r} starts like a JSON list but is not one",
                            "write a JSON list of class names, or names separated by --label_delimiter") from None
        if not isinstance(values, list):
            raise DataError(f"label {text[:60]!r} is not a list", "write a JSON list of class names")
    else:
        values = [v for v in text.split(delimiter) if v.strip()]
    return list(dict.fromkeys(normalise_label(v) for v in values))


def parse_number(raw: str | None) -> float:
    """A regression target: a finite number."""
    try:
        value = float(str(raw).strip())
    except (TypeError, ValueError):
        raise DataError(f"label {str(raw)[:60]!r} is not a number",
                        "regression needs a number in every label cell") from None
    if not math.isfinite(value):
        raise DataError(f"label {str(raw)[:60]!r} is not finite", "regression needs a finite number in every row")
    return value


def check_table(table: datasets.Dataset, where: str, *, skip_empty_texts: bool = False,
                dedup: bool = True, rows_where: str | None = None, problem_type: str = "single_label",
                label_delimiter: str = ";") -> CheckedTable:
    """Check a ``text``(/``text_pair``)/``label`` table batch by batch and find the rows to keep; nothing is copied.

    Labels: each distinct raw value is parsed once — a class name normalised by
    :func:`~skewtune.data.readers.normalise_label` (``1.0`` and ``1`` are one class; one boolean spelt several
    ways is refused), a set of names (:func:`parse_label_set`), or a number (:func:`parse_number`) — and a bad
    one is refused naming its first row; a missing label is refused (for multi-label it means "none"). Texts: empty
    ones are refused (or skipped with ``skip_empty_texts``); with ``dedup`` the first occurrence of each
    :func:`text_key` (of both texts of a pair) is kept, so no text can land in two splits. ``where`` names the
    data in messages about the whole table, ``rows_where`` (default ``where``) in messages naming a row.
    """
    rows_where = rows_where or where
    multi, regression = problem_type == "multi_label", problem_type == "regression"
    pairs = "text_pair" in table.column_names
    n = table.num_rows
    raw_codes: dict[str | None, int] = {}
    codes = np.empty(n, dtype=np.int64)
    keys = np.zeros(n, dtype=np.uint64)
    empty = np.zeros(n, dtype=bool)
    first_empty = None
    for offset, batch in iter_columns(table, ("text", "text_pair", "label") if pairs else ("text", "label")):
        pair_column = batch["text_pair"] if pairs else None
        for i, (text, label) in enumerate(zip(batch["text"], batch["label"])):
            row = offset + i
            if not multi and (label is None or not label.strip()):
                raise DataError(f"{rows_where} row {row + 1} has an empty or NaN label",
                                "fill or drop rows without a label")
            code = raw_codes.get(label)
            if code is None:
                code = raw_codes[label] = len(raw_codes)
            codes[row] = code
            pair = pair_column[i] if pair_column is not None else ""
            if text is None or not text.strip() or (pairs and (pair is None or not pair.strip())):
                empty[row] = True
                if first_empty is None:
                    first_empty = row
                continue
            keys[row] = text_key(f"{text}\x1f{pair}" if pairs else text)
    # each distinct raw label parsed once; the first row of a bad one is named
    parsed: list[Any] = []
    for value, code in raw_codes.items():
        try:
            parsed.append(parse_number(value) if regression else parse_label_set(value, label_delimiter) if multi
                          else normalise_label(value))
        except DataError as exc:
            row = int(np.argmax(codes == code)) + 1
            raise DataError(f"{rows_where} row {row}: {exc.message}", exc.hint) from None
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
    kept_codes = codes[keep]
    classes: list[str] = []
    values: Any = None
    if regression:
        values = np.asarray(parsed, dtype=np.float64)[kept_codes] if parsed else np.zeros(0)
        strata = _deciles(values)
    elif multi:
        names = [name for label_set in parsed for name in label_set]
        check_boolean_spellings(names, rows_where)
        classes = list(dict.fromkeys(names))
        index = {name: i for i, name in enumerate(classes)}
        sets = [tuple(index[name] for name in label_set) for label_set in parsed]
        values = [sets[c] for c in kept_codes.tolist()]
        counts = Counter(c for label_set in values for c in label_set)
        strata = np.asarray([1 + min(s, key=lambda c: (counts[c], c)) if s else 0 for s in values], dtype=np.int64)
    else:
        check_boolean_spellings(parsed, rows_where)
        classes = list(dict.fromkeys(parsed))
        remap = np.asarray([classes.index(label) for label in parsed], dtype=np.int64)
        strata = remap[kept_codes] if len(parsed) else kept_codes
    return CheckedTable(table=table, keep=keep, codes=strata, keys=keys[keep], classes=classes, rows=n,
                        empty_texts=n_empty, duplicates=len(candidates) - len(keep), problem_type=problem_type,
                        values=values)


def _deciles(values: np.ndarray) -> np.ndarray:
    """Decile of each value (0–9): the strata of a regression target."""
    if not len(values):
        return np.zeros(0, dtype=np.int64)
    edges = np.quantile(values, np.linspace(0.1, 0.9, 9))
    return np.searchsorted(edges, values, side="right").astype(np.int64)


__all__ = ["BUILDERS", "PROBLEM_TYPES", "CheckedTable", "Columns", "parse_label_set", "parse_number", "check_table", "from_python", "is_hub_name", "iter_columns", "load_file",
           "load_hub", "load_saved", "normalise_for_dedup", "read_rows", "string_features", "text_key"]
