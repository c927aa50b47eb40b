"""Merge methods on dense per-layer updates ΔW (task vectors), and the ``MERGE_METHODS`` registry.

Every method combines the sources' updates ``ΔW_1 … ΔW_n`` of one layer (same shape) with weights ``w_i``;
the caller multiplies the result by the scale ``λ`` (task arithmetic, Ilharco et al. 2023, "Editing models
with task arithmetic", ICLR). The methods:

* ``linear`` / ``cat`` / ``svd`` / ``task_arithmetic``: ``Σ w_i ΔW_i`` (they differ in how the result is stored
  as LoRA factors and in their default weights, see :mod:`skewtune.merge.api`).
* ``ties`` (Yadav et al. 2023, "TIES-Merging: Resolving Interference When Merging Models", NeurIPS):
  trim every ``ΔW_i`` to its top-``density`` fraction of entries by magnitude, weight it (``τ_i = w_i·trim(ΔW_i)``),
  elect a sign per entry ``γ = sign(Σ_i τ_i)`` ("total", the paper's sign of total mass) or ``sign(Σ_i sign τ_i)``
  ("frequency"), and take the disjoint mean ``Σ_i τ_i·[sign τ_i = γ] / max(1, #{i: sign τ_i = γ})``.
* ``dare_linear`` / ``dare_ties`` (Yu et al. 2024, "Language Models are Super Mario: Absorbing Abilities from
  Homologous Models as a Free Lunch", ICML): drop every entry of ``ΔW_i`` with probability ``1 − density``
  (Bernoulli mask from a seeded generator) and rescale the kept ones by ``1/density``; then the weighted sum
  (``dare_linear``) or TIES' sign election and disjoint mean without the magnitude trim (``dare_ties``).
* ``magnitude_prune``: trim each ``ΔW_i`` to its top-``density`` magnitudes, then ``Σ w_i trim(ΔW_i)``.

Randomness (DARE only) comes from one ``torch.Generator`` per tensor, seeded by :func:`derive_seed`
``(seed, key)``; the masks are drawn source after source as ``torch.rand(shape, generator=g, dtype=float64) < density``.
So a merge is bit-for-bit reproducible under its seed, whatever the order of layers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from skewtune.utils.registry import Registry

SignMethod = Literal["total", "frequency"]
SIGN_METHODS: tuple[str, ...] = ("total", "frequency")


@dataclass(frozen=True)
class MethodParams:
    """Per-merge knobs shared by all methods (each method reads the ones it uses)."""

    density: float = 1.0
    seed: int = 0
    majority_sign_method: SignMethod = "total"


Combine = Callable[[Sequence[torch.Tensor], Sequence[float], MethodParams, str], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    """A merge method.

    ``combine(deltas, weights, params, key)`` returns the merged dense update of one tensor (``key`` names the
    tensor, for seeding). ``storage`` says how the merged LoRA is written: ``"concat"`` (sources' factors side by
    side, exact), ``"compact"`` (exact, re-factorised to its numerical rank) or ``"svd"`` (dense result,
    truncated SVD to the target rank). ``default_weight`` is ``"mean"`` (``w_i = 1/n``) or ``"one"`` (``w_i = 1``).
    """

    name: str
    combine: Combine
    storage: Literal["concat", "compact", "svd"]
    default_weight: Literal["mean", "one"]
    uses_density: bool = False
    uses_seed: bool = False
    sign_election: bool = False
    summary: str = ""


MERGE_METHODS: Registry[MergeMethod] = Registry("merge method")


def derive_seed(seed: int, key: str) -> int:
    """Seed of the generator for tensor ``key``: first 8 bytes of ``sha256(f"{seed}:{key}")``, 63 bits."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator_for(seed: int, key: str) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(derive_seed(seed, key))


def keep_count(numel: int, density: float) -> int:
    """Entries kept by a magnitude trim: ``max(1, round(density · numel))``, at most ``numel``."""
    return min(numel, max(1, round(density * numel)))


def magnitude_trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``keep_count`` entries of largest ``|ΔW|`` (TIES step 1), zero the others."""
    k = keep_count(delta.numel(), density)
    if k >= delta.numel():
        return delta.clone()
    flat = delta.reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat.abs(), k, largest=True, sorted=False).indices] = True
    return torch.where(keep, flat, torch.zeros_like(flat)).reshape(delta.shape)


def dare_drop(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each entry with probability ``density`` and rescale the kept ones by ``1/density``."""
    if density >= 1.0:
        return delta.clone()
    keep = torch.rand(delta.shape, generator=generator, dtype=torch.float64) < density
    return torch.where(keep, delta / density, torch.zeros_like(delta))


def elect_sign(weighted: torch.Tensor, method: SignMethod) -> torch.Tensor:
    """Per-entry elected sign (+1 where the vote is 0) over the stacked, weighted task tensors (dim 0)."""
    vote = weighted.sum(dim=0) if method == "total" else torch.sign(weighted).sum(dim=0)
    return torch.where(vote >= 0, torch.ones_like(vote), -torch.ones_like(vote))


def disjoint_mean(weighted: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Mean over the sources whose entry is non-zero and agrees with the elected sign (TIES step 3)."""
    agree = torch.sign(weighted) == sign.unsqueeze(0)
    total = torch.where(agree, weighted, torch.zeros_like(weighted)).sum(dim=0)
    return total / agree.sum(dim=0).clamp(min=1).to(weighted.dtype)


def _stack_weighted(deltas: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    w = torch.tensor(list(weights), dtype=deltas[0].dtype).reshape(-1, *([1] * deltas[0].dim()))
    return torch.stack(list(deltas)) * w


def weighted_sum(deltas: Sequence[torch.Tensor], weights: Sequence[float], params: MethodParams, key: str) -> torch.Tensor:
    """``Σ w_i ΔW_i``."""
    return _stack_weighted(deltas, weights).sum(dim=0)


def ties(deltas: Sequence[torch.Tensor], weights: Sequence[float], params: MethodParams, key: str) -> torch.Tensor:
    """TIES: trim to top-density magnitude, elect sign, disjoint mean of agreeing entries (Yadav et al. 2023)."""
    trimmed = [magnitude_trim(d, params.density) for d in deltas]
    weighted = _stack_weighted(trimmed, weights)
    return disjoint_mean(weighted, elect_sign(weighted, params.majority_sign_method))


def dare_linear(deltas: Sequence[torch.Tensor], weights: Sequence[float], params: MethodParams, key: str) -> torch.Tensor:
    """DARE drop-and-rescale of each ΔW_i, then ``Σ w_i ΔW_i`` (Yu et al. 2024)."""
    gen = generator_for(params.seed, key)
    dropped = [dare_drop(d, params.density, gen) for d in deltas]
    return _stack_weighted(dropped, weights).sum(dim=0)


def dare_ties(deltas: Sequence[torch.Tensor], weights: Sequence[float], params: MethodParams, key: str) -> torch.Tensor:
    """DARE drop-and-rescale, then TIES sign election and disjoint mean (no magnitude trim)."""
    gen = generator_for(params.seed, key)
    dropped = [dare_drop(d, params.density, gen) for d in deltas]
    weighted = _stack_weighted(dropped, weights)
    return disjoint_mean(weighted, elect_sign(weighted, params.majority_sign_method))


def magnitude_prune(deltas: Sequence[torch.Tensor], weights: Sequence[float], params: MethodParams, key: str) -> torch.Tensor:
    """Trim each ΔW_i to its top-density magnitudes, then ``Σ w_i trim(ΔW_i)``."""
    return _stack_weighted([magnitude_trim(d, params.density) for d in deltas], weights).sum(dim=0)


for _method in (
    MergeMethod("linear", weighted_sum, "compact", "mean",
                summary="exact Σ w_i ΔW_i (default w_i = 1/n), re-factorised losslessly to its numerical rank"),
    MergeMethod("cat", weighted_sum, "concat", "mean",
                summary="exact Σ w_i ΔW_i (default w_i = 1/n), the sources' factors concatenated (rank Σ r_i)"),
    MergeMethod("task_arithmetic", weighted_sum, "compact", "one",
                summary="exact λ Σ w_i ΔW_i (default w_i = 1), re-factorised losslessly (Ilharco et al. 2023)"),
    MergeMethod("svd", weighted_sum, "svd", "mean",
                summary="Σ w_i ΔW_i (default w_i = 1/n) truncated to target_rank by SVD"),
    MergeMethod("ties", ties, "svd", "one", uses_density=True, sign_election=True,
                summary="trim, elect sign, disjoint mean (Yadav et al. 2023)"),
    MergeMethod("dare_linear", dare_linear, "svd", "mean", uses_density=True, uses_seed=True,
                summary="random drop + 1/density rescale, weighted sum (Yu et al. 2024)"),
    MergeMethod("dare_ties", dare_ties, "svd", "one", uses_density=True, uses_seed=True, sign_election=True,
                summary="random drop + rescale, then TIES sign election and disjoint mean"),
    MergeMethod("magnitude_prune", magnitude_prune, "svd", "mean", uses_density=True,
                summary="top-density magnitudes of each ΔW_i, weighted sum"),
):
    MERGE_METHODS.add(_method.name, _method)


def low_rank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated SVD ``ΔW ≈ B A`` with ``B = U_r S_r^{1/2}``, ``A = S_r^{1/2} V_r^T`` (balanced factors).

    Returns ``(B, A, S)`` with ``S`` all singular values (for the truncation error
    ``‖ΔW − BA‖_F = sqrt(Σ_{j>r} σ_j²)``, Eckart–Young).
    """
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    r = max(1, min(rank, s.numel()))
    root = s[:r].sqrt()
    return u[:, :r] * root, root.unsqueeze(1) * vh[:r], s


def compact_factors(b: torch.Tensor, a: torch.Tensor, rtol: float = 1e-9) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-factorise ``B A`` (``B``: d_out×k, ``A``: k×d_in) without forming it: QR of both factors and an SVD of
    the small core ``R_B R_A^T``; singular values ``≤ rtol·σ_max`` (numerically zero) are dropped.

    ``B A = Q_B (U S V^T) Q_A^T`` so the result ``(Q_B U S^{1/2}, S^{1/2} V^T Q_A^T)`` is exact up to float64 rounding.
    Returns ``(B', A', S)``.
    """
    qb, rb = torch.linalg.qr(b, mode="reduced")
    qa, ra = torch.linalg.qr(a.T, mode="reduced")
    u, s, vh = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    keep = int((s > rtol * s.max()).sum().item()) if s.numel() and s.max() > 0 else 0
    keep = max(1, keep)
    root = s[:keep].sqrt()
    return qb @ (u[:, :keep] * root), (root.unsqueeze(1) * vh[:keep]) @ qa.T, s
