"""Long-tailed subsamples of a labelled dataset, in the manner of imbalanced-learn's ``make_imbalance``.

* :func:`long_tail_counts` — per-class sizes decaying exponentially from the largest class: class ``i`` (``i = 0``
  the most frequent of ``C`` classes) gets ``round(n_max · ρ^(−i/(C−1)))`` rows, ``ρ = n_max / n_min`` the
  imbalance ratio; ``ρ = None`` keeps the natural proportions scaled to ``n_max``. Never below ``min_per_class``.
* :func:`make_long_tail` — ``make_imbalance`` for texts: keeps ``sampling_strategy[c]`` rows of each class ``c``
  (a mapping, or a callable of the class counts returning one), the first ones of a seeded permutation of that
  class's rows, returned in their original order. For one ``random_state`` a smaller size is a prefix of a larger
  one, so a more skewed subsample is nested in a less skewed one.
* :func:`long_tail_splits` — both applied to a :class:`~skewtune.data.Splits`: training and validation splits
  decay alike (validation from its own ``val_n_max``, with a floor of ``val_min`` rows per class), the test split
  becomes one balanced subset that does not depend on ``random_state`` (the same test rows for every ratio and
  seed, so comparisons across them are paired).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from skewtune.data.datasets import Splits
from skewtune.errors import ConfigError

# the permutation streams of the three splits (part of the seed of every draw: changing one changes every subsample)
_TRAIN, _VALIDATION, _TEST = 1, 2, 3


def classes_by_frequency(counts: Mapping[str, int]) -> list[str]:
    """Classes from most to least frequent (ties: by name)."""
    return sorted(counts, key=lambda c: (-counts[c], c))


def long_tail_counts(class_counts: Mapping[str, int], imbalance_ratio: float | None, n_max: int, *,
                     min_per_class: int = 1) -> dict[str, int]:
    """Per-class sizes ``round(n_max · ρ^(−i/(C−1)))`` in natural-frequency order (``ρ`` = ``imbalance_ratio``), or
    the natural proportions of ``class_counts`` scaled to ``n_max`` when ``imbalance_ratio`` is None; never below
    ``min_per_class``. Rounding is half-up."""
    if n_max < 1:
        raise ConfigError(f"n_max must be ≥ 1, got {n_max}", "give the largest class at least one row")
    if imbalance_ratio is not None and not (math.isfinite(imbalance_ratio) and imbalance_ratio >= 1):
        raise ConfigError(f"imbalance ratio must be a finite number ≥ 1 (n_max / n_min), got {imbalance_ratio}",
                          "pass e.g. 10 or 100, or None for the natural proportions")
    order = classes_by_frequency(class_counts)
    if len(order) < 2:
        raise ConfigError("a long-tail subsample needs at least 2 classes", "use data with two or more labels")
    top = class_counts[order[0]]
    sizes: dict[str, int] = {}
    for i, label in enumerate(order):
        exact = (n_max * class_counts[label] / top if imbalance_ratio is None
                 else n_max * imbalance_ratio ** (-i / (len(order) - 1)))
        sizes[label] = max(int(min_per_class), int(math.floor(exact + 0.5)))
    return sizes


def make_long_tail(texts: Sequence[str], labels: Sequence[str], *,
                   sampling_strategy: Mapping[str, int] | Callable[[dict[str, int]], Mapping[str, int]],
                   random_state: int = 0, class_order: Sequence[str] | None = None,
                   stream: int = 0) -> tuple[list[str], list[str]]:
    """Keep ``sampling_strategy[c]`` rows of each class ``c``; classes it does not name are kept whole.

    ``sampling_strategy`` is a mapping ``{label: rows}`` or a callable taking the class counts ``{label: n}`` and
    returning one. Class ``i`` of ``class_order`` (default: the classes from most to least frequent) keeps the
    first rows of the permutation ``numpy.random.default_rng([random_state, i, stream]).permutation(n_i)``; rows of
    classes missing from ``class_order`` are dropped. Returns ``(texts, labels)`` in the input order. Raises
    :class:`~skewtune.errors.ConfigError` when a class has fewer rows than asked for.
    """
    counts = dict(Counter(labels))
    strategy = dict(sampling_strategy(counts) if callable(sampling_strategy) else sampling_strategy)
    order = list(class_order) if class_order is not None else classes_by_frequency(counts)
    sizes = {label: strategy.get(label, counts.get(label, 0)) for label in order}
    return _draw(texts, labels, sizes, order, random_state, stream, "the data")


def _draw(texts: Sequence[str], labels: Sequence[str], sizes: Mapping[str, int], order: Sequence[str], seed: int,
          stream: int, what: str) -> tuple[list[str], list[str]]:
    keep: list[int] = []
    for index, label in enumerate(order):
        rows = [i for i, y in enumerate(labels) if y == label]
        if sizes[label] > len(rows):
            raise ConfigError(f"{what} has {len(rows)} '{label}' rows, the subsample needs {sizes[label]}",
                              "ask for fewer rows (n_max, val_n_max, test_per_class)")
        permutation = np.random.default_rng([int(seed), int(index), int(stream)]).permutation(len(rows)).tolist()
        keep += [rows[j] for j in permutation[: sizes[label]]]
    keep.sort()
    return [texts[i] for i in keep], [labels[i] for i in keep]


def long_tail_splits(splits: Splits, imbalance_ratio: float | None, n_max: int, *, random_state: int = 0,
                     val_n_max: int | None = None, val_min: int = 1, test_per_class: int | None = None,
                     test_random_state: int = 0) -> Splits:
    """A long-tailed copy of ``splits``.

    Training: :func:`long_tail_counts` of the training class counts with ``imbalance_ratio`` and ``n_max``.
    Validation: the same decay from ``val_n_max`` (default ``n_max // 2``, at least 1), at least ``val_min`` rows
    per class. Test: ``test_per_class`` rows of every class (default and cap: the smallest test class), drawn with
    ``test_random_state``. Classes are ranked by the training counts for every split; ``random_state`` seeds the
    training and validation draws (:func:`make_long_tail`). ``info`` records the ratio, the seed, the class order,
    the sizes and the realised ratio ``n_max / n_min``.
    """
    natural = dict(Counter(splits.train_labels))
    order = classes_by_frequency(natural)
    val_n_max = max(1, n_max // 2) if val_n_max is None else val_n_max
    train_sizes = long_tail_counts(natural, imbalance_ratio, n_max)
    val_sizes = long_tail_counts(natural, imbalance_ratio, val_n_max, min_per_class=val_min)
    smallest_test = min(Counter(splits.test_labels).values(), default=0)
    per_class = smallest_test if test_per_class is None else min(int(test_per_class), smallest_test)
    train = _draw(splits.train_texts, splits.train_labels, train_sizes, order, random_state, _TRAIN,
                  "the training split")
    validation = _draw(splits.validation_texts, splits.validation_labels, val_sizes, order, random_state, _VALIDATION,
                       "the validation split")
    test = _draw(splits.test_texts, splits.test_labels, dict.fromkeys(order, per_class), order, test_random_state,
                 _TEST, "the test split")
    info = {"imbalance_ratio": imbalance_ratio, "random_state": random_state, "class_order": order,
            "train_sizes": train_sizes, "validation_sizes": val_sizes, "test_per_class": per_class,
            "realized_ratio": train_sizes[order[0]] / train_sizes[order[-1]]}
    return Splits(*train, *validation, *test, list(splits.labels), name=f"{splits.name}-longtail",
                  language=splits.language, info=info)


__all__ = ["classes_by_frequency", "long_tail_counts", "long_tail_splits", "make_long_tail"]
