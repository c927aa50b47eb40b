"""``skewtune.imbalance.long_tail``: exponential-decay class sizes, ``make_long_tail``, ``long_tail_splits``.

The draws are pinned: ``benchmarks/results/imbalance.json`` was measured on these subsamples.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from skewtune.data import Splits
from skewtune.data.datasets import normalise_for_dedup
from skewtune.errors import ConfigError
from skewtune.imbalance import classes_by_frequency, long_tail_counts, long_tail_splits, make_long_tail
from tests.conftest import make_texts

COUNTS = {"train": (300, 240, 120), "validation": (60, 48, 24), "test": (50, 40, 20)}
NAMES = ("negative", "neutral", "positive")


def canonical_splits() -> Splits:
    """A skewed 3-class corpus with disjoint, unique texts per split (negative > neutral > positive)."""
    texts, labels = make_texts(3 * 450, seed=3, classes=3)
    pool: dict[str, list[str]] = {name: [t for t, y in zip(texts, labels) if y == name] for name in NAMES}
    parts: dict[str, tuple[list[str], list[str]]] = {}
    for split, counts in COUNTS.items():
        xs: list[str] = []
        ys: list[str] = []
        for name, n in zip(NAMES, counts):
            xs += pool[name][:n]
            ys += [name] * n
            pool[name] = pool[name][n:]
        parts[split] = (xs, ys)
    return Splits(*parts["train"], *parts["validation"], *parts["test"], labels=sorted(NAMES), name="toy")


def decay(n_max: int, ratio: float, i: int, classes: int = 3) -> int:
    return int(math.floor(n_max * ratio ** (-i / (classes - 1)) + 0.5))


@pytest.mark.parametrize("ratio", [10.0, 50.0, 100.0, 7.5])
@pytest.mark.parametrize("n_max", [100, 400, 1000])
def test_sizes_follow_exponential_decay(ratio: float, n_max: int) -> None:
    counts = {"negative": 12780, "neutral": 11550, "positive": 5432}
    sizes = long_tail_counts(counts, ratio, n_max)
    order = classes_by_frequency(counts)
    assert order == ["negative", "neutral", "positive"]
    assert [sizes[c] for c in order] == [decay(n_max, ratio, i) for i in range(3)]
    assert sizes["negative"] == n_max
    # ρ respected up to rounding the smallest class
    n_min = sizes["positive"]
    assert abs(n_max / n_min - ratio) <= ratio * 0.5 / n_min + 1e-9
    if (n_max / ratio).is_integer():
        assert n_max / n_min == ratio


def test_decay_for_more_classes_and_natural_proportions() -> None:
    counts = {"a": 50, "b": 400, "c": 1000, "d": 90}
    sizes = long_tail_counts(counts, 1000.0, 2000)
    assert [sizes[c] for c in ("c", "b", "d", "a")] == [2000, 200, 20, 2]  # 1000^(-i/3) = 10^(-i)
    natural = long_tail_counts(counts, None, 500)
    assert natural == {"c": 500, "b": 200, "d": 45, "a": 25}
    assert long_tail_counts({"x": 10, "y": 1}, 1e6, 10)["y"] == 1  # never an empty class
    assert long_tail_counts(counts, 100.0, 100, min_per_class=5)["a"] == 5
    for ratio, n_max, classes in ((0.5, 10, counts), (math.inf, 10, counts), (10.0, 0, counts), (10.0, 10, {"a": 3})):
        with pytest.raises(ConfigError):
            long_tail_counts(classes, ratio, n_max)


def test_make_long_tail_like_make_imbalance() -> None:
    texts, labels = make_texts(90, seed=1, classes=3)
    x, y = make_long_tail(texts, labels, sampling_strategy={"negative": 10, "positive": 3}, random_state=4)
    assert Counter(y) == {"negative": 10, "neutral": 30, "positive": 3}  # a class not named is kept whole
    assert [texts.index(t) for t in x] == sorted(texts.index(t) for t in x)  # input order
    assert all(labels[texts.index(t)] == lab for t, lab in zip(x, y))
    again = make_long_tail(texts, labels, sampling_strategy=lambda counts: long_tail_counts(counts, 10.0, 30),
                           random_state=4)
    assert Counter(again[1]) == {"negative": 30, "neutral": 9, "positive": 3}  # ties ranked by name
    smaller = make_long_tail(texts, labels, sampling_strategy={"negative": 5}, random_state=4)
    assert {t for t, lab in zip(*smaller) if lab == "negative"} <= set(x)  # nested for one random_state
    other = make_long_tail(texts, labels, sampling_strategy={"negative": 10}, random_state=5)
    assert {t for t, lab in zip(*other) if lab == "negative"} != {t for t, lab in zip(x, y) if lab == "negative"}
    with pytest.raises(ConfigError, match="the data has 30 'neutral' rows, the subsample needs 31"):
        make_long_tail(texts, labels, sampling_strategy={"neutral": 31})


def test_long_tail_splits() -> None:
    canonical = canonical_splits()
    kw: dict[str, Any] = {"val_n_max": 40, "val_min": 3, "test_per_class": 30}
    ten = long_tail_splits(canonical, 10.0, 100, random_state=0, **kw)
    hundred = long_tail_splits(canonical, 100.0, 100, random_state=0, **kw)
    assert Counter(ten.train_labels) == {"negative": 100, "neutral": 32, "positive": 10}
    assert Counter(hundred.train_labels) == {"negative": 100, "neutral": 10, "positive": 1}
    assert hundred.info["realized_ratio"] == 100.0 and hundred.info["imbalance_ratio"] == 100.0
    # validation: the same decay from val_n_max, with the floor
    assert Counter(ten.validation_labels) == {"negative": 40, "neutral": 13, "positive": 4}
    assert Counter(hundred.validation_labels) == {"negative": 40, "neutral": 4, "positive": 3}
    # deterministic per seed, different across seeds, nested across ratios (same majority rows)
    again = long_tail_splits(canonical, 10.0, 100, random_state=0, **kw)
    assert (again.train_texts, again.validation_texts) == (ten.train_texts, ten.validation_texts)
    other = long_tail_splits(canonical, 10.0, 100, random_state=1, **kw)
    assert set(other.train_texts) != set(ten.train_texts)
    assert Counter(other.train_labels) == Counter(ten.train_labels)
    assert set(hundred.train_texts) <= set(ten.train_texts)
    majority = {t for t, y in zip(hundred.train_texts, hundred.train_labels) if y == "negative"}
    assert majority == {t for t, y in zip(ten.train_texts, ten.train_labels) if y == "negative"}
    # natural: proportions of the canonical training split scaled to n_max
    natural = long_tail_splits(canonical, None, 100, random_state=0, **kw)
    assert Counter(natural.train_labels) == {"negative": 100, "neutral": 80, "positive": 40}
    # test: balanced, identical for every ratio and seed, disjoint from training and validation
    for splits in (ten, hundred, other, natural):
        assert Counter(splits.test_labels) == {"negative": 20, "neutral": 20, "positive": 20}  # min class count 20
        assert splits.test_texts == ten.test_texts
        seen = {normalise_for_dedup(t) for t in splits.train_texts + splits.validation_texts}
        assert not seen & {normalise_for_dedup(t) for t in splits.test_texts}
        assert set(splits.train_texts) <= set(canonical.train_texts)
        assert splits.labels == canonical.labels
    assert Counter(long_tail_splits(canonical, 10.0, 100, random_state=0, val_n_max=40, val_min=3,
                                    test_per_class=5).test_labels) == dict.fromkeys(NAMES, 5)
    defaults = long_tail_splits(canonical, 10.0, 100)  # val_n_max n_max // 2, no validation floor, all test rows
    assert Counter(defaults.validation_labels) == {"negative": 50, "neutral": 16, "positive": 5}
    assert Counter(defaults.test_labels) == dict.fromkeys(NAMES, 20)
    with pytest.raises(ConfigError, match="the training split has 300 'negative' rows, the subsample needs 301"):
        long_tail_splits(canonical, None, 301, random_state=0, **kw)


def test_tweets_default_subsample() -> None:
    """The benchmark's draw (seed 2, ρ 100): pinned rows, since the published results were measured on them."""
    import hashlib

    from skewtune.data import load_dataset_splits

    canonical = load_dataset_splits("tweets", seed=42)
    splits = long_tail_splits(canonical, 100.0, 400, random_state=2, val_n_max=200, val_min=5, test_per_class=150)
    assert splits.info["class_order"] == ["negative", "neutral", "positive"]
    assert Counter(splits.train_labels) == {"negative": 400, "neutral": 40, "positive": 4}
    assert Counter(splits.validation_labels) == {"negative": 200, "neutral": 20, "positive": 5}
    assert Counter(splits.test_labels) == dict.fromkeys(NAMES, 150)
    train = {normalise_for_dedup(t) for t in splits.train_texts}
    assert not train & {normalise_for_dedup(t) for t in splits.test_texts}
    digest = hashlib.sha256("\n".join(splits.train_texts + splits.validation_texts + splits.test_texts).encode())
    assert digest.hexdigest()[:16] == PINNED_TWEETS_DIGEST
    natural = long_tail_splits(canonical, None, 400, random_state=2, val_n_max=200, val_min=5, test_per_class=150)
    assert 2.3 < natural.info["realized_ratio"] < 2.4


PINNED_TWEETS_DIGEST = "307daf006f1483ac"  # the pre-library benchmark code gave these rows
