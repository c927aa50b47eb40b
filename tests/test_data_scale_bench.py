"""``benchmarks/data_scale.py``: its synthetic tweets-like CSV generator, size labels and acceptance (the
benchmark's training runs, minutes to hours of CPU, are not run here)."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_benchmark

ROWS = 2000


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("data_scale.py", "data_scale_bench")


@pytest.fixture(scope="module")
def generated(bench: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bench.write_synthetic_csv(tmp_path_factory.mktemp("data_scale") / "a.csv", ROWS, seed=7)


def read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_header_rows_and_determinism(bench: ModuleType, generated: Path, tmp_path: Path) -> None:
    table = read(generated)
    assert table[0] == ["text", "label"]
    assert len(table) == ROWS + 1 and all(len(row) == 2 and row[0].strip() for row in table[1:])
    again = bench.write_synthetic_csv(tmp_path / "b.csv", ROWS, seed=7)
    assert again.read_bytes() == generated.read_bytes()
    other = bench.write_synthetic_csv(tmp_path / "c.csv", ROWS, seed=8)
    assert other.read_bytes() != generated.read_bytes()
    assert not list(tmp_path.glob("*.part"))  # written to a temporary name, then renamed


def test_duplicates_labels_and_size(bench: ModuleType, generated: Path) -> None:
    rows = read(generated)[1:]
    texts = [text for text, _ in rows]
    repeats = len(texts) - len(set(texts))
    assert 0.01 * ROWS <= repeats <= 0.035 * ROWS  # about 2% exact repeats (binomial sd ≈ 0.3 points)
    first_label = {}
    for text, label in rows:
        assert first_label.setdefault(text, label) == label  # a repeat is the whole row: same label
    # mostly perturbed: few texts are a corpus tweet unchanged
    corpus_texts, corpus_labels = bench.corpus()
    assert len(set(texts) & set(corpus_texts)) < 0.02 * ROWS
    # labels follow the corpus's class proportions (sd of a proportion at 2,000 rows ≤ 1.1 points)
    expected = {k: v / len(corpus_labels) for k, v in Counter(corpus_labels).items()}
    got = {k: v / ROWS for k, v in Counter(label for _, label in rows).items()}
    assert set(got) == set(expected)
    assert all(abs(got[k] - expected[k]) < 0.04 for k in expected), (got, expected)
    # tweet-length rows: the 1M-row file is 128 MB
    per_row = generated.stat().st_size / ROWS
    assert 105 <= per_row <= 145, per_row
    assert max(len(text) for text in texts) < 400


def test_cached_file_is_reused(bench: ModuleType, tmp_path: Path) -> None:
    path, seconds = bench.cached_csv(tmp_path, 300, seed=1)
    assert seconds is not None and path.name == f"tweets_like_300_s1_v{bench.GENERATOR_VERSION}.csv"
    stamp = path.stat().st_mtime_ns
    again, seconds = bench.cached_csv(tmp_path, 300, seed=1)
    assert again == path and seconds is None and path.stat().st_mtime_ns == stamp


def test_sizes_labels_and_acceptance(bench: ModuleType) -> None:
    assert bench.parse_sizes("3e6,10000,1000000") == [10_000, 1_000_000, 3_000_000]
    assert [bench.label_of(n) for n in (2000, 10_000, 1_000_000, 3_000_000, 1234)] == [
        "2k", "10k", "1M", "3M", "1234"]

    def row(rows: int, rss: float, steps: int | None = 20, code: int = 0, extra: tuple = ()) -> dict:
        return {"rows": rows, "label": bench.label_of(rows), "peak_rss_mb": rss, "exit_code": code,
                "extra_args": list(extra), "finished_steps": code == 0 and steps == 20}

    after = {"rows": [row(10_000, 900), row(100_000, 1000), row(3_000_000, 1900),
                      row(3_000_000, 1200, extra=("--streaming", "true"))]}
    acc = bench.acceptance(after, 20)
    assert acc["issue_sizes"] and acc["peak_rss_ratio"] == 1.9 and acc["passed"]
    after["rows"][2] = row(3_000_000, 2100)
    assert not bench.acceptance(after, 20)["peak_rss_ratio_ok"]
    after["rows"][2] = row(3_000_000, 0, steps=None, code=1)
    acc = bench.acceptance(after, 20)
    assert acc["peak_rss_ratio"] is None and not acc["largest_finished_steps"] and not acc["passed"]
