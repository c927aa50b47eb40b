"""k-shot training sets: deterministic per seed, identical for every method (paired comparisons).

``per_class`` draws ``k`` examples of every class; ``natural`` draws ``k·C`` examples whose class counts follow
the training distribution (largest-remainder allocation, at least one example per class). Inside a class the
draw is a seeded permutation of that class's rows in split order, keyed by ``(seed, class position)`` only: the
sample of one class does not depend on the others, and the ``k = 8`` set is a subset of the ``k = 16`` set of
the same seed. The draw never looks at the method, so every method of a seed trains on the same rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skewtune.errors import ConfigError, DataError, capped
from skewtune.utils.stats import mean_std  # noqa: F401  (re-exported: runner, benchmarks)

DISTRIBUTIONS = ("per_class", "natural")
MAX_SEEDS = 1000


@dataclass(frozen=True)
class KShotSample:
    """Row indices into the training split, and the class counts they hold."""

    indices: list[int]
    counts: dict[Any, int]
    seed: int
    shots: int
    distribution: str

    def take(self, values: Sequence[Any]) -> list[Any]:
        return [values[i] for i in self.indices]


def parse_seeds(value: Any) -> list[int]:
    """``5`` → ``[0, 1, 2, 3, 4]``; ``"3,7,11"``, ``"7,"``, ``"[7]"`` (or a list) → those seeds. Zero seeds is an error."""
    hint = "pass --seeds N (N ≥ 1 runs, seeds 0..N-1) or an explicit list such as --seeds 0,1,2"
    if isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        raw = str(value).strip()
        text = raw.strip("[]()")
        explicit = raw.startswith(("[", "(")) or "," in text or " " in text
        items = [t for t in text.replace(" ", ",").split(",") if t] if explicit else None
        if items is None:
            try:
                count = int(text)
            except ValueError:
                raise ConfigError(f"--seeds '{value}' is neither a count nor a comma list of integers", hint) from None
            if count < 1:
                raise ConfigError(f"--seeds {count}: at least one seed is needed", hint)
            if count > MAX_SEEDS:
                raise ConfigError(f"--seeds {count} is more than {MAX_SEEDS} runs", hint)
            return list(range(count))
    try:
        seeds = [int(t) for t in items]
    except ValueError:
        raise ConfigError(f"--seeds '{value}' holds a non-integer", hint) from None
    if not seeds:
        raise ConfigError("--seeds is empty: at least one seed is needed", hint)
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds '{value}' holds a negative seed", hint)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds '{value}' repeats a seed", "list each seed once")
    return seeds


def check_shots(shots: int, *, contrastive: bool = False) -> int:
    if not isinstance(shots, int) or isinstance(shots, bool):
        raise ConfigError(f"--shots must be an integer, got {shots!r}", "pass e.g. --shots 8")
    if shots < 1:
        raise ConfigError(f"--shots must be ≥ 1, got {shots}", "pass e.g. --shots 8")
    if contrastive and shots < 2:
        raise ConfigError(f"--shots {shots}: contrastive methods need k ≥ 2 (a positive pair needs two examples of a class)",
                          "pass --shots 2 or more, or pick a head method (lora_head, prefix_head)")
    return shots


def natural_allocation(class_sizes: Sequence[int], total: int, minimum: int = 1) -> list[int]:
    """Split ``total`` draws over classes proportionally to ``class_sizes`` (largest remainder), each ≥ ``minimum``."""
    sizes = np.asarray(class_sizes, dtype=float)
    if total < minimum * len(sizes):
        raise ConfigError(f"{total} examples cannot give every one of {len(sizes)} classes {minimum}",
                          "raise --shots")
    quota = sizes / sizes.sum() * total
    counts = np.maximum(np.floor(quota).astype(int), minimum)
    # remove overflow (from the minimum) from the classes furthest above their quota, then hand out the rest
    while counts.sum() > total:
        over = np.where(counts > minimum, counts - quota, -np.inf)
        counts[int(np.argmax(over))] -= 1
    while counts.sum() < total:
        counts[int(np.argmax(quota - counts))] += 1
    return counts.tolist()


def sample_k_shot(
    labels: Sequence[Any],
    shots: int,
    seed: int,
    *,
    distribution: str = "per_class",
    classes: Sequence[Any] | None = None,
) -> KShotSample:
    """Draw the k-shot training set of ``seed`` from the training ``labels`` (one per row, split order)."""
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"unknown --shots_distribution '{distribution}'", f"use one of: {', '.join(DISTRIBUTIONS)}")
    check_shots(shots)
    labels = list(labels)
    order = list(classes) if classes is not None else sorted(set(labels), key=str)
    rows: dict[Any, list[int]] = {c: [] for c in order}
    for i, y in enumerate(labels):
        if y in rows:
            rows[y].append(i)
    sizes = [len(rows[c]) for c in order]
    if distribution == "per_class":
        wanted = [shots] * len(order)
    else:
        wanted = natural_allocation(sizes, shots * len(order))
    short = [(c, n, w) for c, n, w in zip(order, sizes, wanted) if n < w]
    if short:
        listing = capped(f"'{c}' has {n}" for c, n, _ in short)
        most = min(sizes) if distribution == "per_class" else None
        hint = (f"use --shots {most} or less" if most else "use a smaller --shots") + \
            f" (training examples per class: {capped(f'{c}={n}' for c, n in zip(order, sizes))})"
        what = f"{short[0][2]} per class" if distribution == "per_class" else "its natural share"
        raise DataError(f"--shots {shots} asks for {what} but the training split is too small: {listing}", hint)
    picked: list[int] = []
    for position, (c, want) in enumerate(zip(order, wanted)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), position]))
        perm = rng.permutation(len(rows[c]))[:want]
        picked.extend(rows[c][j] for j in perm)
    picked.sort()
    counts = Counter(labels[i] for i in picked)
    return KShotSample(indices=picked, counts={c: counts[c] for c in order}, seed=int(seed), shots=shots,
                       distribution=distribution)


def sample_subset(size: int, limit: int | None, seed: int = 0) -> list[int]:
    """A fixed evaluation subset (the same for every method and seed): ``limit`` of ``size`` rows, seeded."""
    if limit is None or limit >= size:
        return list(range(size))
    if limit < 1:
        raise ConfigError(f"evaluation subset size must be ≥ 1, got {limit}", "pass a positive --test_samples")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))
    return sorted(rng.choice(size, size=limit, replace=False).tolist())


