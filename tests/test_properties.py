"""Property-based tests (hypothesis) for data loading and label mapping, and a bounded fuzz of the readers.

- arbitrary unicode texts and labels survive CSV and JSONL writers → skewtune's readers, and both formats agree;
- label normalisation: idempotent, integral numbers in any spelling are one class, only DataError escapes;
- stratified splits: deterministic per seed, disjoint, complete, deduplicated across splits;
- fuzz: random bytes / near-CSV / near-JSON files through every text reader: only SkewtuneError subclasses escape.

Examples are kept modest (the file runs in well under 30 s on 2 busy cores); no example database is written.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from skewtune.data.datasets import load_dataset_splits, normalise_for_dedup, stratified_split
from skewtune.data.readers import check_boolean_spellings, normalise_label, read_table
from skewtune.errors import DataError, SkewtuneError

FAST = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# any Unicode scalar value: no surrogates (not encodable as UTF-8); NUL, U+2028, U+0085, BOM, RTL marks included
CHARS = st.characters(blacklist_categories=("Cs",))
TEXTS = st.text(CHARS, min_size=1, max_size=40).filter(lambda t: t.strip())
LABEL_NAMES = st.one_of(
    st.text(CHARS, min_size=1, max_size=12).filter(lambda t: t.strip()),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["positive", "negative", "neutral", "1", "1.0", " 2 ", "01", "-0", "1e3", "True"]),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


def write_csv(path: Path, texts: list[str], labels: list[object], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def write_jsonl(path: Path, texts: list[str], labels: list[object], ascii_only: bool) -> Path:
    lines = [json.dumps({"text": t, "label": lab}, ensure_ascii=ascii_only) for t, lab in zip(texts, labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def normalisable(label: object) -> bool:
    try:
        normalise_label(label)
        return True
    except DataError:
        return False


def one_spelling_per_boolean(labels: list[str]) -> bool:
    try:
        check_boolean_spellings(labels, "x")
        return True
    except DataError:
        return False


rows = st.lists(st.tuples(TEXTS, LABEL_NAMES), min_size=1, max_size=25)


# ------------------------------------------------------------------------------------------------ round trips


@FAST
@given(rows=rows)
@example(rows=[("line\u2028separator", "a"), ("next\x85line", "b"), ("nul\x00byte", "c"), ("\ufeffbom", "d")])
@example(rows=[('quote " and , comma\r\nnewline', "x"), ("  padded  ", " y ")])
def test_csv_and_jsonl_round_trip_and_agree(folder: Path, rows: list[tuple[str, str]]) -> None:
    texts = [t for t, _ in rows]
    labels = [lab for _, lab in rows]
    assume(all(normalisable(lab) for lab in labels))
    expected_labels = [normalise_label(lab) for lab in labels]
    assume(one_spelling_per_boolean(expected_labels))  # else refused as a column (tests/test_redteam_inputs.py)
    results = []
    for path in (write_csv(folder / "rt.csv", texts, labels), write_csv(folder / "rt.tsv", texts, labels, "\t"),
                 write_jsonl(folder / "rt.jsonl", texts, labels, ascii_only=False),
                 write_jsonl(folder / "rt_ascii.jsonl", texts, labels, ascii_only=True)):
        got_texts, got_labels = read_table(path)
        assert got_texts == texts, path.name
        assert got_labels == expected_labels, path.name
        results.append((got_texts, got_labels))
    assert all(r == results[0] for r in results)


@FAST
@given(values=st.lists(st.integers(-(2**52), 2**52), min_size=1, max_size=20))
def test_numeric_labels_agree_across_formats(folder: Path, values: list[int]) -> None:
    """An integer class written as 3, 3.0 (JSON) or "3", "3.0" (CSV) is one class, spelled "3"."""
    texts = [f"text {i}" for i in range(len(values))]
    as_int = read_table(write_jsonl(folder / "i.jsonl", texts, values, True))[1]
    as_float = read_table(write_jsonl(folder / "f.jsonl", texts, [float(v) for v in values], True))[1]
    as_csv = read_table(write_csv(folder / "f.csv", texts, [f"{v}.0" for v in values]))[1]
    assert as_int == as_float == as_csv == [str(v) for v in values]


# ------------------------------------------------------------------------------------------------ label mapping


ANY_LABEL = st.one_of(st.text(CHARS, max_size=20), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                      st.booleans(), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))


@FAST
@given(label=ANY_LABEL)
@example(label="nan")
@example(label="-inf")
@example(label="1e400")
@example(label="\u0661")  # ARABIC-INDIC DIGIT ONE: float() reads it as 1
def test_normalise_label_is_idempotent_and_only_raises_data_error(label: object) -> None:
    try:
        once = normalise_label(label)
    except DataError:
        return
    assert isinstance(once, str) and once == once.strip()
    assert normalise_label(once) == once
    assert normalise_label(f"  {once}\t") == once


@FAST
@given(k=st.integers(-(2**53), 2**53))
def test_integral_numbers_are_one_class(k: int) -> None:
    assert normalise_label(k) == normalise_label(float(k)) == normalise_label(str(k)) == normalise_label(f"{k}.0") == str(k)


@FAST
@given(x=st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not float(v).is_integer()))
def test_fractional_labels_are_refused(x: float) -> None:
    with pytest.raises(DataError, match="fractional number"):
        normalise_label(x)
    with pytest.raises(DataError, match="fractional number"):
        normalise_label(repr(x))


@FAST
@given(labels=st.lists(st.sampled_from(["a", "b", "c", "1", "2"]), min_size=1, max_size=30), seed=st.integers(0, 2**32 - 1))
def test_label_ids_are_dense_and_stable(labels: list[str], seed: int) -> None:
    """Splits map labels to ids 0..n-1 in one sorted order; ids round-trip through id2label."""
    texts = [f"row {i}" for i in range(len(labels))]
    try:
        tr_x, tr_y, va_x, va_y, te_x, te_y = stratified_split(texts, labels, seed)
    except DataError:
        return
    from skewtune.data.datasets import Splits

    s = Splits(tr_x, tr_y, va_x, va_y, te_x, te_y, sorted(set(tr_y)))
    assert sorted(s.label2id.values()) == list(range(len(s.labels)))
    for split in ("train", "validation", "test"):
        assert [s.id2label[i] for i in s.ids(split)] == getattr(s, f"{split}_labels")


# ------------------------------------------------------------------------------------------------ splits


@FAST
@given(counts=st.lists(st.integers(10, 40), min_size=2, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_stratified_split_is_deterministic_disjoint_and_complete(counts: list[int], seed: int) -> None:
    labels = [f"class{c}" for c, n in enumerate(counts) for _ in range(n)]
    texts = [f"text number {i}" for i in range(len(labels))]
    first = stratified_split(texts, labels, seed)
    assert stratified_split(texts, labels, seed) == first
    tr_x, tr_y, va_x, va_y, te_x, te_y = first
    assert not (set(tr_x) & set(va_x) or set(tr_x) & set(te_x) or set(va_x) & set(te_x))
    assert sorted(tr_x + va_x + te_x) == sorted(texts)
    pairs = dict(zip(texts, labels))
    assert all(pairs[t] == y for t, y in zip(tr_x + va_x + te_x, tr_y + va_y + te_y))
    for split_y in (tr_y, va_y, te_y):
        assert set(split_y) == set(labels)  # ≥10 per class: every class lands in every split
    train_share = Counter(tr_y)
    for label, n in Counter(labels).items():
        assert abs(train_share[label] / n - 0.8) <= 0.15


@FAST
@given(labels=st.lists(st.sampled_from("xyz"), max_size=30), seed=st.integers(0, 10))
def test_stratified_split_small_data_only_raises_data_error(labels: list[str], seed: int) -> None:
    texts = [f"t{i}" for i in range(len(labels))]
    try:
        tr_x, _, va_x, _, te_x, _ = stratified_split(texts, labels, seed)
    except DataError:
        return
    assert len(tr_x) + len(va_x) + len(te_x) == len(texts)


@FAST
@given(base=st.lists(st.text(st.sampled_from("abcdé É"), min_size=1, max_size=6).filter(lambda t: t.strip()),
                     min_size=1, max_size=40),
       variants=st.lists(st.tuples(st.integers(0, 39), st.sampled_from(["upper", "spaces", "nfkd"])), max_size=20),
       seed=st.integers(0, 1000))
def test_deduplicated_splits_share_no_text(folder: Path, base: list[str], variants: list[tuple[int, str]],
                                           seed: int) -> None:
    """Case, spacing and Unicode-composition variants are duplicates: none lands in two splits."""
    import unicodedata

    texts = list(base)
    for index, kind in variants:
        original = base[index % len(base)]
        texts.append({"upper": original.upper(), "spaces": f"  {original}  ",
                      "nfkd": unicodedata.normalize("NFKD", original)}[kind])
    labels = ["pos" if i % 2 else "neg" for i in range(len(texts))]
    removed = len(texts) - len({normalise_for_dedup(t) for t in texts})
    path = write_csv(folder / "dedup.csv", texts, labels)
    try:
        splits = load_dataset_splits(str(path), seed=seed)
    except DataError:
        return  # too small or one class after deduplication: refused with a message, fine
    keys = [{normalise_for_dedup(t) for t in getattr(splits, f"{s}_texts")} for s in ("train", "validation", "test")]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert splits.info["duplicates_removed"] == removed


# ------------------------------------------------------------------------------------------------ fuzz


NEAR_CSV = st.text(st.sampled_from(list('text,label"\r\n\t \x00\ufeffaé1.5nan')), max_size=300)
NEAR_JSON = st.lists(st.sampled_from(['{', '}', '[', ']', '"text"', '"label"', ':', ',', '"a"', '1', '1e999', 'null',
                                      'true', '"\\ud800"', '\n', ' ', '9' * 30, 'NaN', '-Infinity']),
                     max_size=60).map("".join)


def _only_skewtune_errors(path: Path, encoding: str = "utf-8") -> None:
    try:
        texts, labels = read_table(path, encoding=encoding)
    except SkewtuneError as exc:
        assert exc.message and exc.one_line().startswith("error: ")
        return
    assert len(texts) == len(labels or []) and all(isinstance(t, str) for t in texts)
    assert all(isinstance(lab, str) and lab == lab.strip() for lab in labels or [])
    assert not any(isinstance(x, float) and math.isnan(x) for x in labels or [])


@FUZZ
@given(data=st.binary(max_size=600), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".txt"]),
       encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_fuzz_random_bytes(folder: Path, data: bytes, suffix: str, encoding: str) -> None:
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    _only_skewtune_errors(path, encoding)


@FUZZ
@given(text=NEAR_CSV, suffix=st.sampled_from([".csv", ".tsv"]))
@example(text='text,label\n"a\x00b",1\n', suffix=".csv")
@example(text="\ufefftext,label\na,nan\n", suffix=".csv")
def test_fuzz_near_csv(folder: Path, text: str, suffix: str) -> None:
    path = folder / f"near{suffix}"
    path.write_text(text, encoding="utf-8", newline="")
    _only_skewtune_errors(path)


@FUZZ
@given(text=NEAR_JSON, suffix=st.sampled_from([".jsonl", ".json"]))
@example(text='{"text": "a", "label": ' + "9" * 5000 + "}", suffix=".jsonl")
@example(text="[" * 50_000, suffix=".json")
@example(text='{"text": "a", "label": 1e999}', suffix=".jsonl")
def test_fuzz_near_json(folder: Path, text: str, suffix: str) -> None:
    path = folder / f"near{suffix}"
    path.write_text(text, encoding="utf-8")
    _only_skewtune_errors(path)


@settings(max_examples=40, deadline=None, database=None)
@given(text=NEAR_CSV, seed=st.integers(0, 5))
def test_fuzz_whole_loading_path(folder: Path, text: str, seed: int) -> None:
    """Reader + dedup + stratified split + label checks on near-CSV input: DataError or usable splits."""
    path = folder / "whole.csv"
    path.write_text("text,label\n" + text, encoding="utf-8", newline="")
    try:
        splits = load_dataset_splits(str(path), seed=seed, skip_empty_texts=bool(seed % 2))
    except SkewtuneError:
        return
    assert splits.train_texts and splits.validation_texts and splits.test_texts
    assert len(splits.labels) >= 2 and all(t.strip() for t in splits.train_texts)
