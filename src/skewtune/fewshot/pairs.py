"""SetFit-style contrastive pairs from a labelled k-shot set.

:func:`generate_pairs` follows SetFit's ``ContrastiveDataset`` (``setfit/sampler.py``): positive pairs join two
examples of one class (label 1.0), negative pairs two examples of different classes (label 0.0); the
``sampling_strategy`` sizes both lists: ``oversampling`` repeats the shorter list up to the longer one (SetFit's
default), ``undersampling`` cuts the longer one, ``unique`` keeps each pair once; ``num_iterations`` instead asks
``num_iterations × n`` pairs of each kind. Differences: pairs of an example with itself are left out (they carry
no gradient for a cosine loss), and the shuffle is seeded by the run seed.

:func:`all_pairs` is the in-batch variant: every pair inside a batch of single examples, computed from one
forward pass per example instead of one per pair side.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch

from skewtune.errors import ConfigError

STRATEGIES = ("oversampling", "undersampling", "unique")


def generate_pairs(
    labels: Sequence[int],
    seed: int,
    *,
    strategy: str = "oversampling",
    num_iterations: int | None = None,
) -> list[tuple[int, int, float]]:
    """``(i, j, similarity)`` rows over indices of ``labels``: 1.0 same class, 0.0 different classes."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown pair sampling strategy '{strategy}'", f"use one of: {', '.join(STRATEGIES)}")
    if num_iterations is not None and num_iterations < 1:
        raise ConfigError(f"--num_iterations must be ≥ 1, got {num_iterations}", "pass e.g. 20, or leave it unset")
    labels = list(labels)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 104729]))
    positives: list[tuple[int, int]] = []
    negatives: list[tuple[int, int]] = []
    for i, j in itertools.combinations(range(len(labels)), 2):
        (positives if labels[i] == labels[j] else negatives).append((i, j))
    if not positives:
        raise ConfigError("no positive pair: every class has a single example",
                          "contrastive methods need k ≥ 2 examples of at least one class")
    if not negatives:
        raise ConfigError("no negative pair: the k-shot set holds one class only", "sample at least two classes")
    positives = [positives[p] for p in rng.permutation(len(positives))]
    negatives = [negatives[p] for p in rng.permutation(len(negatives))]
    if num_iterations is not None:
        n_pos = n_neg = num_iterations * len(labels)
    elif strategy == "oversampling":
        n_pos = n_neg = max(len(positives), len(negatives))
    elif strategy == "undersampling":
        n_pos = n_neg = min(len(positives), len(negatives))
    else:
        n_pos, n_neg = len(positives), len(negatives)
    rows = [(*positives[t % len(positives)], 1.0) for t in range(n_pos)]
    rows += [(*negatives[t % len(negatives)], 0.0) for t in range(n_neg)]
    return [rows[p] for p in rng.permutation(len(rows))]


def all_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ``i < j`` pair of a batch: ``(left, right, similarity)`` with similarity 1.0 for equal labels."""
    n = labels.shape[0]
    left, right = torch.triu_indices(n, n, offset=1, device=labels.device)
    return left, right, (labels[left] == labels[right]).float()


def setfit_pair_count(labels: Sequence[int]) -> int:
    """Pairs in one epoch of SetFit's default sampling (``oversampling``): ``2 · max(positives, negatives)``,
    positives counted as SetFit does (with replacement: an example paired with itself included)."""
    counts: dict[int, int] = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    n = len(labels)
    positives = sum(c * (c + 1) // 2 for c in counts.values())
    negatives = (n * n - sum(c * c for c in counts.values())) // 2
    return 2 * max(positives, negatives)


def auto_allpairs_steps(labels: Sequence[int], minimum: int = 4) -> int:
    """Steps of the all-pairs stage: a quarter of the encoder passes of SetFit's default contrastive epoch.

    SetFit encodes both sides of each of its ``P`` pairs (``2P`` passes); an all-pairs step encodes the ``n``
    rows once, so ``ceil(P / 2n)`` steps make ``P / 2`` passes. k = 8: 5 steps for 2 classes, 8 for 3.
    """
    n = max(1, len(labels))
    return max(minimum, -(-setfit_pair_count(labels) // (2 * n)))
