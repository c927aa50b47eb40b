"""Read labelled text from CSV / TSV / JSONL / JSON / Parquet / TXT files with clear errors."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from skewtune.errors import DataError, capped

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")


# one text may be long (a whole review, a 1 MB paste): the csv module's default cap of 131,072 characters per
# field would reject it; such texts are read and later truncated to --max_length tokens with a warning
CSV_FIELD_LIMIT = 1 << 30


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except LookupError:
        raise DataError(f"unknown encoding '{encoding}'", "pass e.g. --encoding utf-8 or latin-1") from None
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid {encoding} (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})",
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or pass --encoding latin-1",
        ) from exc


def check_path(path: Path) -> None:
    """DataError for a path the OS refuses outright (name too long, a file used as a folder, a loop, …)."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        pass  # reported as "does not exist" by the callers
    except OSError as exc:
        raise DataError(f"cannot open {path}: {exc.strerror or exc}", "check the path") from None


def label_sort_key(label: str) -> tuple[int, float | str]:
    """Class names in id order: numbers by value first (``2`` before ``10``), then names alphabetically."""
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def check_data_file(path: Path) -> str:
    """DataError for a data file that is missing, a folder, of an unknown type or empty; its suffix otherwise."""
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
    return suffix


def read_rows(path: str | Path, encoding: str = "utf-8", keep_blank: bool = False) -> list[dict[str, object]]:
    """All rows of a table file as dicts (TXT: one ``text`` per non-empty line).

    ``keep_blank`` keeps blank TXT lines and blank CSV/TSV records (as empty values) before the last non-blank
    one, so row *i* of the result is row *i* of the file (``skewtune predict`` counts them instead of shifting).
    """
    path = Path(path)
    suffix = check_data_file(path)
    if suffix == ".parquet":
        import pandas as pd  # lazy: pandas + pyarrow are slow to import and only parquet files need them

        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataError(f"{path} is not a readable Parquet file ({type(exc).__name__})", "re-export the file") from exc
        return frame.to_dict(orient="records")
    text = _decode(path, encoding)
    if suffix == ".txt":
        lines = text.splitlines()
        if keep_blank:
            while lines and not lines[-1].strip():
                lines.pop()
            return [{"text": line} for line in lines]
        return [{"text": line} for line in lines if line.strip()]
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})", "fix the file or use JSONL") from exc
        except (ValueError, RecursionError) as exc:  # 5,000-digit numbers, nesting deeper than Python's stack
            raise DataError(f"{path} is not usable JSON ({str(exc).split(':')[0][:100]})", "fix the file or use JSONL") from exc
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path} must hold a JSON list of objects", "write one object per example")
        return data
    if suffix == ".jsonl":
        rows = []
        # only \n ends a record: str.splitlines() would also split inside strings at U+2028, U+0085, \x1c, …,
        # which JSON writers (ensure_ascii=False) leave unescaped
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {number} is not valid JSON ({exc.msg})", "fix or remove that line") from exc
            except (ValueError, RecursionError) as exc:
                raise DataError(f"{path} line {number} is not usable JSON ({str(exc).split(':')[0][:100]})",
                                "fix or remove that line") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path} line {number} is not a JSON object", "write one object per line")
            rows.append(row)
        return rows
    delimiter = "\t" if suffix == ".tsv" else ","
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path} has no header row", "add a header naming the text and label columns") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not valid CSV ({exc})", "fix the quoting of the file") from exc
    header = [h.strip().lstrip("\ufeff") for h in header]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataError(f"{path} has repeated column name(s): {capped(map(repr, repeated))}",
                        "give every column of the header a distinct name")
    rows = []
    try:
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                if keep_blank:
                    rows.append(dict.fromkeys(header, ""))
                continue
            if len(record) != len(header):
                raise DataError(
                    f"{path} line {reader.line_num} has {len(record)} fields but the header has {len(header)}",
                    "quote fields that contain the delimiter, or fix the ragged line",
                )
            rows.append(dict(zip(header, record)))
    except csv.Error as exc:
        raise DataError(f"{path} is not valid CSV at line {reader.line_num} ({exc})", "fix the quoting") from exc
    while keep_blank and rows and all(not str(v).strip() for v in rows[-1].values()):
        rows.pop()
    return rows


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def read_table(
    path: str | Path,
    text_column: str = "text",
    label_column: str | None = "label",
    encoding: str = "utf-8",
    rows: list[dict[str, object]] | None = None,
) -> tuple[list[str], list[str] | None]:
    """(texts, labels) from a file (or its ``rows``, already read); labels are strings (``1.0`` and ``1`` are the
    same class)."""
    rows = read_rows(path, encoding=encoding) if rows is None else rows
    if not rows:
        raise DataError(f"{path} holds no rows", "add examples")
    columns = list(rows[0].keys())
    if text_column not in columns:
        raise DataError(
            f"text column '{text_column}' not found in {path} (columns: {capped(map(str, columns))})",
            "pass --text_column NAME",
        )
    if label_column is not None and label_column not in columns:
        raise DataError(
            f"label column '{label_column}' not found in {path} (columns: {capped(map(str, columns))})",
            "pass --label_column NAME",
        )
    texts: list[str] = []
    labels: list[str] | None = [] if label_column is not None else None
    for number, row in enumerate(rows, start=1):
        text = row.get(text_column)
        kind = _non_scalar(text)
        if kind:
            raise DataError(f"{path} row {number}: text is {kind}, not a string",
                            f"store plain text in the '{text_column}' column")
        texts.append("" if _is_missing(text) else str(text))
        if labels is not None:
            label = row.get(label_column)
            if _is_missing(label):
                raise DataError(f"{path} row {number} has an empty or NaN label", "fill or drop rows without a label")
            try:
                labels.append(normalise_label(label))
            except DataError as exc:
                raise DataError(f"{path} row {number}: {exc.message}", exc.hint) from None
    if labels is not None:
        check_boolean_spellings(labels, str(path))
    return texts, labels


# spellings of one truth value: a label column holding two of them (``true`` and ``True``, ``1`` and ``yes``)
# would train them as separate classes
_BOOLEAN_SPELLINGS = {
    "true": frozenset({"true", "t", "yes", "y", "on", "1"}),
    "false": frozenset({"false", "f", "no", "n", "off", "0"}),
}


def check_boolean_spellings(labels: list[str], where: str) -> None:
    """DataError when a label column spells one boolean value in several ways (``true``, ``True``, ``1``, ``yes``):
    they are refused rather than trained as separate classes or merged by guesswork. One spelling per value
    (``yes``/``no``, ``0``/``1``, ``true``/``false``) is kept as written."""
    distinct = set(labels)
    for value, spellings in _BOOLEAN_SPELLINGS.items():
        found = sorted(label for label in distinct if label.strip().lower() in spellings)
        if len(found) > 1:
            shown = ", ".join(repr(label) for label in found[:6])
            raise DataError(
                f"{where}: the labels {shown} all mean {value}; they would become {len(found)} separate classes",
                "write each class one way in the label column (e.g. only true/false, or only 1/0)")


def _non_scalar(value: object) -> str:
    """What a cell is when it is no text or number: ``a JSON list``, ``bytes``, ``an array``, …; '' otherwise."""
    if isinstance(value, dict | list):
        return f"a JSON {type(value).__name__}"
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes (a binary column)"
    if isinstance(value, tuple | set | frozenset):
        return f"a {type(value).__name__}"
    if getattr(value, "ndim", 0):  # numpy arrays: Parquet list columns
        return "an array (a list column)"
    return ""


def normalise_label(label: object) -> str:
    """Labels are class names; integral floats (``1.0``) become ``1`` so CSV and JSON agree."""
    if isinstance(label, bool):
        return str(label).lower()
    if isinstance(label, dict | list | tuple) or _non_scalar(label):
        kind = _non_scalar(label) or f"a {type(label).__name__}"
        shown = repr(label.tolist() if hasattr(label, "tolist") else label)[:60]
        raise DataError(f"label {shown} is {kind}; labels must be class names or integers",
                        "store one class name per row")
    if isinstance(label, float):
        if math.isnan(label):
            raise DataError("a label is NaN", "fill or drop rows without a label")
        if math.isinf(label):
            raise DataError(f"label {label!r} is infinite; labels must be class names or integers",
                            "fix or drop that row")
        if not label.is_integer():
            raise DataError(f"label {label!r} is a fractional number; labels must be class names or integers",
                            "this looks like a regression target: bin it into classes first")
        return str(int(label))
    text = str(label).strip()
    try:
        as_float = float(text)
    except ValueError:
        return text
    if math.isnan(as_float):
        raise DataError(f"label '{text}' is NaN", "fill or drop rows without a label")
    if math.isinf(as_float):
        raise DataError(f"label '{text}' is infinite; labels must be class names or integers", "fix or drop that row")
    if not as_float.is_integer():
        raise DataError(f"label '{text}' is a fractional number; labels must be class names or integers",
                        "this looks like a regression target: bin it into classes first")
    return str(int(as_float))
