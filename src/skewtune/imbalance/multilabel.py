"""Multi-label imbalance toolkit: sigmoid losses, ML-ROS resampling, imbalance measures, per-label thresholds.

A multi-label problem has ``L`` independent binary labels per row: logits ``[B, L]`` and multi-hot targets
``[B, L]`` (float 0/1). ``build_multilabel_loss(name, positives, rows, **options)`` looks ``name`` up in
:data:`MULTILABEL_LOSSES`; ``positives[l]`` is the number of training rows holding label ``l`` and ``rows`` the
number of training rows. Every loss returns the mean of the per-element loss ``l_{il}`` over the ``B · L``
elements (a constant factor away from a sum, which the learning rate absorbs), computed in float32 from
``logsigmoid`` (``log σ(z)`` and ``log(1 - σ(z)) = log σ(-z)``) so that no logarithm of 0 is ever taken.

* ``bce``            ``l = -[y log σ(z) + (1 - y) log σ(-z)]``
* ``bce_pos_weight`` ``l = -[w_l y log σ(z) + (1 - y) log σ(-z)]``, ``w_l = min(n_neg_l / n_pos_l, max_weight)``
* ``focal``          ``l = -α_t (1 - p_t)^γ log p_t``, ``p_t = σ(z)`` if ``y = 1`` else ``1 - σ(z)`` (Lin et al.
  2017, sigmoid form; ``α_t = α y + (1 - α)(1 - y)`` when ``alpha`` is given, else 1)
* ``asl``            ``l = -[y (1 - p)^{γ+} log p + (1 - y) p_m^{γ-} log(1 - p_m)]``, ``p = σ(z)``,
  ``p_m = max(p - m, 0)`` (Ridnik et al., ICCV 2021, "Asymmetric Loss For Multi-Label Classification")

Resampling: :func:`ml_ros` (Charte et al. 2015), with the measures of :func:`imbalance_measures`. Decisions:
:func:`fit_thresholds` (one threshold per label, F1-optimal on validation) and :func:`apply_thresholds`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skewtune.errors import ConfigError, DataError
from skewtune.utils.registry import Registry, check_keywords

MULTILABEL_LOSSES: Registry[Callable[..., MultiLabelLoss]] = Registry("multi-label loss")
DEFAULT_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # 0.05, 0.10, …, 0.95


# --------------------------------------------------------------------------------------------- helpers


def _check_positives(positives: Sequence[int], rows: int) -> tuple[list[int], int]:
    """Validate label counts: at least one label, ``0 <= positives[l] <= rows``, ``rows >= 1``."""
    counts = [int(c) for c in positives]
    rows = int(rows)
    if not counts:
        raise DataError("a multi-label loss needs the positive count of at least 1 label, got none",
                        "pass one training count per label, in label-id order")
    if rows < 1:
        raise DataError(f"a multi-label loss needs at least 1 training row, got rows={rows}",
                        "pass the number of training rows")
    bad = [c for c in counts if c < 0 or c > rows]
    if bad:
        raise DataError(f"positive counts must be in [0, rows={rows}], got {bad[:5]}",
                        "pass, per label, the number of training rows that hold it")
    return counts, rows


def _check_range(name: str, value: float, low: float, high: float, hint: str) -> float:
    value = float(value)
    if math.isnan(value) or not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}], got {value}", hint)
    return value


def _as_bool_matrix(labels: np.ndarray, what: str = "labels") -> np.ndarray:
    """``labels`` as an ``(n, L)`` bool matrix (0/1 or bool input); DataError otherwise."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise DataError(f"{what} must be an (n rows, L labels) matrix, got shape {arr.shape}",
                        "pass multi-hot rows: one 0/1 column per label")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise DataError(f"{what} must hold only 0/1 values", "pass multi-hot rows: one 0/1 column per label")
        arr = arr.astype(bool)
    return arr


# ------------------------------------------------------------------------------------------------ losses


class MultiLabelLoss(nn.Module):
    """Base: shape checks, float32 math, mean over rows and labels. Subclasses implement :meth:`elementwise`."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = int(num_labels)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of every element: float32 logits and targets ``[B, L]`` -> ``[B, L]``."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[-1] != self.num_labels:
            raise ValueError(f"logits must be [batch, {self.num_labels}], got {tuple(logits.shape)}")
        if targets.shape != logits.shape:
            raise ValueError(f"targets {tuple(targets.shape)} do not match logits {tuple(logits.shape)}")
        if logits.shape[0] == 0:  # empty batch: zero loss that still depends on the graph
            return logits.sum() * 0.0
        return self.elementwise(logits.float(), targets.float()).mean()

    def extra_repr(self) -> str:
        return f"num_labels={self.num_labels}"


class BCELoss(MultiLabelLoss):
    """Binary cross-entropy with logits: ``l = -[w_l y log σ(z) + (1 - y) log σ(-z)]``.

    ``pos_weight=None`` is plain BCE (``w_l = 1``); else ``w_l`` multiplies the positive term of label ``l``
    (``torch.nn.BCEWithLogitsLoss(pos_weight=w)``).
    """

    def __init__(self, num_labels: int, pos_weight: torch.Tensor | None = None) -> None:
        super().__init__(num_labels)
        self.register_buffer("pos_weight", None if pos_weight is None else pos_weight.float())

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pos = F.logsigmoid(logits)
        neg = F.logsigmoid(-logits)
        if self.pos_weight is not None:
            return -(self.pos_weight * targets * pos + (1.0 - targets) * neg)
        return -(targets * pos + (1.0 - targets) * neg)


class SigmoidFocalLoss(MultiLabelLoss):
    """Sigmoid focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"; torchvision's
    ``sigmoid_focal_loss``): ``l = -α_t (1 - p_t)^γ log p_t`` with ``p_t = σ(z)`` for ``y = 1`` and ``1 - σ(z)``
    for ``y = 0``; ``α_t = α y + (1 - α)(1 - y)`` when ``alpha`` is set, else 1. ``γ = 0``, no ``α``: BCE.
    """

    def __init__(self, num_labels: int, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__(num_labels)
        self.gamma = _check_range("focal gamma", gamma, 0.0, 100.0, "use gamma >= 0, e.g. 2.0")
        self.alpha = None if alpha is None else _check_range("focal alpha", alpha, 0.0, 1.0,
                                                              "use alpha in [0, 1] (0.25 in Lin et al.) or none")

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p, log_q = F.logsigmoid(logits), F.logsigmoid(-logits)  # log σ(z), log(1 - σ(z))
        log_pt = targets * log_p + (1.0 - targets) * log_q
        loss = -log_pt
        if self.gamma > 0.0:
            one_minus_pt = targets * log_q.exp() + (1.0 - targets) * log_p.exp()
            loss = loss * one_minus_pt.pow(self.gamma)
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1.0 - self.alpha) * (1.0 - targets))
        return loss


class AsymmetricLoss(MultiLabelLoss):
    """Asymmetric loss (Ridnik et al., ICCV 2021, "Asymmetric Loss For Multi-Label Classification").

    ``l = -[y (1 - p)^{γ+} log p + (1 - y) p_m^{γ-} log(1 - p_m)]`` with ``p = σ(z)`` and the shifted
    probability ``p_m = max(p - m, 0)`` on negatives (``m`` = ``clip``: easy negatives with ``p <= m`` are
    discarded). Defaults ``γ+ = 0``, ``γ- = 4``, ``m = 0.05``, the paper's setting. As in the reference
    implementation (Alibaba-MIIL/ASL, ``disable_torch_grad_focal_loss=True``) the focusing weights
    ``(1 - p)^{γ+}`` and ``p_m^{γ-}`` are constants for the gradient (``detach_weights``); unlike it, the
    logarithms come from ``logsigmoid`` (no ``eps`` clamp) and the result is a mean, not a sum. ``γ± = 0``,
    ``m = 0``: BCE.
    """

    def __init__(self, num_labels: int, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
                 detach_weights: bool = True) -> None:
        super().__init__(num_labels)
        self.gamma_pos = _check_range("asl gamma_pos", gamma_pos, 0.0, 100.0, "use gamma_pos >= 0, e.g. 0")
        self.gamma_neg = _check_range("asl gamma_neg", gamma_neg, 0.0, 100.0, "use gamma_neg >= 0, e.g. 4")
        self.clip = _check_range("asl clip", clip, 0.0, 1.0, "use a probability margin in [0, 1), e.g. 0.05")
        if self.clip >= 1.0:
            raise ConfigError("asl clip must be < 1 (every negative would be discarded)", "use e.g. clip=0.05")
        self.detach_weights = bool(detach_weights)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.logsigmoid(logits)
        if self.clip > 0.0:
            # log(1 - p_m) = log(min(1 - p + m, 1)) >= log(m): finite
            log_neg = (torch.sigmoid(-logits) + self.clip).clamp(max=1.0).log()
            p_m = (torch.sigmoid(logits) - self.clip).clamp(min=0.0)
        else:
            log_neg = F.logsigmoid(-logits)
            p_m = torch.sigmoid(logits)
        pos = targets * log_p
        neg = (1.0 - targets) * log_neg
        if self.gamma_pos > 0.0:
            w_pos = torch.sigmoid(-logits).pow(self.gamma_pos)
            pos = pos * (w_pos.detach() if self.detach_weights else w_pos)
        if self.gamma_neg > 0.0:
            w_neg = p_m.pow(self.gamma_neg)
            neg = neg * (w_neg.detach() if self.detach_weights else w_neg)
        return -(pos + neg)

    def extra_repr(self) -> str:
        return (f"num_labels={self.num_labels}, gamma_pos={self.gamma_pos}, gamma_neg={self.gamma_neg}, "
                f"clip={self.clip}")


def positive_weights(positives: Sequence[int], rows: int, max_weight: float = 100.0) -> torch.Tensor:
    """``w_l = min(n_neg_l / n_pos_l, max_weight)`` with ``n_neg_l = rows - n_pos_l``; ``max_weight`` for a label
    without positives (its positive term never occurs in training anyway)."""
    counts, rows = _check_positives(positives, rows)
    cap = float(max_weight)
    if math.isnan(cap) or cap <= 0.0:
        raise ConfigError(f"max_weight must be > 0, got {max_weight}", "use e.g. max_weight=100")
    w = [min((rows - c) / c, cap) if c > 0 else cap for c in counts]
    return torch.tensor(w, dtype=torch.float32)


# ------------------------------------------------------------------------------------------- builders


@MULTILABEL_LOSSES.register("bce")
def _bce(positives: Sequence[int], rows: int) -> MultiLabelLoss:
    """Plain binary cross-entropy with logits."""
    counts, _ = _check_positives(positives, rows)
    return BCELoss(len(counts))


@MULTILABEL_LOSSES.register("bce_pos_weight")
def _bce_pos_weight(positives: Sequence[int], rows: int, max_weight: float = 100.0) -> MultiLabelLoss:
    """BCE with per-label positive weights ``min(n_neg / n_pos, max_weight)``."""
    return BCELoss(len(positives), positive_weights(positives, rows, max_weight))


@MULTILABEL_LOSSES.register("focal")
def _focal(positives: Sequence[int], rows: int, gamma: float = 2.0, alpha: float | None = None) -> MultiLabelLoss:
    """Sigmoid focal loss."""
    counts, _ = _check_positives(positives, rows)
    return SigmoidFocalLoss(len(counts), gamma=gamma, alpha=alpha)


@MULTILABEL_LOSSES.register("asl")
def _asl(positives: Sequence[int], rows: int, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05,
         detach_weights: bool = True) -> MultiLabelLoss:
    """Asymmetric loss (γ+ 0, γ- 4, margin 0.05 by default)."""
    counts, _ = _check_positives(positives, rows)
    return AsymmetricLoss(len(counts), gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip,
                          detach_weights=detach_weights)


def build_multilabel_loss(name: str, positives: Sequence[int], rows: int, **options: Any) -> MultiLabelLoss:
    """Build multi-label loss ``name`` from ``positives`` (training rows per label, label-id order) and ``rows``.

    Unknown names or options raise :class:`~skewtune.errors.ConfigError` naming the valid ones.
    """
    factory = MULTILABEL_LOSSES.get(name)
    check_keywords("multi-label loss", name, factory, options, skip=("positives", "rows"))
    return factory(positives, rows, **options)


# ------------------------------------------------------------------------------------------- resampling


def _irlbl(counts: np.ndarray) -> np.ndarray:
    """``IRLbl(l) = max_k n_k / n_l``; ``inf`` for a label without positives."""
    counts = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, counts.max(initial=0.0) / counts, np.inf)


def imbalance_measures(labels: np.ndarray) -> dict[str, Any]:
    """Charte et al.'s multi-label imbalance measures of an ``(n, L)`` 0/1 matrix.

    ``IRLbl(l) = max_k n_k / n_l`` (``n_l``: rows holding label ``l``; ``inf`` for an absent label),
    ``MeanIR`` = mean of ``IRLbl`` and ``MaxIR`` = its maximum, both over the labels present. SCUMBLE (label
    concurrence) is not computed.
    """
    y = _as_bool_matrix(labels)
    counts = y.sum(axis=0)
    ir = _irlbl(counts)
    present = np.isfinite(ir)
    return {
        "label_counts": [int(c) for c in counts],
        "IRLbl": [float(v) for v in ir],
        "MeanIR": float(ir[present].mean()) if present.any() else math.nan,
        "MaxIR": float(ir[present].max()) if present.any() else math.nan,
        "absent_labels": [int(i) for i in np.flatnonzero(~present)],
    }


def ml_ros(labels: np.ndarray, percentage: float = 0.25, seed: int = 0) -> np.ndarray:
    """ML-ROS: label-based random oversampling (Charte, Rivera, del Jesus, Herrera, Neurocomputing 163 (2015),
    "Addressing imbalance in multilabel classification: Measures and random resampling algorithms").

    ``MeanIR`` is computed once on ``labels``. The minority labels are those with ``IRLbl(l) > MeanIR``; each
    has a bag, the rows holding it. Round robin over the bags, one random row of the bag is cloned (the clone's
    labels count in every ``IRLbl`` from then on) and that bag leaves once its label's ``IRLbl <= MeanIR``, until
    ``round(percentage · n)`` clones are made or no bag is left. Returns the row indices of the resampled set:
    ``0 … n-1`` once each, then the clones (indices into ``labels``), deterministic for a given ``seed``.
    """
    y = _as_bool_matrix(labels)
    frac = float(percentage)
    if math.isnan(frac) or frac < 0.0:
        raise ConfigError(f"ml_ros percentage must be >= 0, got {percentage}",
                          "pass the fraction of rows to clone, e.g. 0.25")
    n = y.shape[0]
    budget = int(round(frac * n))
    counts = y.sum(axis=0).astype(np.int64)
    ir = _irlbl(counts)
    present = np.isfinite(ir)
    if n == 0 or budget == 0 or not present.any():
        return np.arange(n, dtype=np.int64)
    mean_ir = float(ir[present].mean())
    bags = {int(label): np.flatnonzero(y[:, label]) for label in np.flatnonzero(present & (ir > mean_ir))}
    rng = np.random.default_rng(seed)
    clones: list[int] = []
    while budget > 0 and bags:
        for label in list(bags):
            if budget == 0:
                break
            row = int(bags[label][rng.integers(len(bags[label]))])
            clones.append(row)
            counts += y[row]
            budget -= 1
            if counts.max() / counts[label] <= mean_ir:  # only the cloned bag is checked, as in the paper
                del bags[label]
    return np.concatenate([np.arange(n, dtype=np.int64), np.asarray(clones, dtype=np.int64)])


# ----------------------------------------------------------------------------------------------- thresholds


def fit_thresholds(probabilities: np.ndarray, targets: np.ndarray, grid: np.ndarray | None = None) -> np.ndarray:
    """One threshold per label: the grid value maximising that label's F1 on validation (predict ``p >= t``).

    ``grid`` defaults to 0.05, 0.10, …, 0.95. A label without validation positives keeps 0.5 (F1 is 0 for every
    threshold there); ties go to the threshold closest to 0.5, then to the lower one.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = _as_bool_matrix(targets, "targets")
    if p.shape != y.shape:
        raise DataError(f"probabilities {p.shape} and targets {y.shape} differ in shape",
                        "pass one probability per row and label")
    grid_arr = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64).ravel()
    if grid_arr.size == 0 or np.isnan(grid_arr).any():
        raise ConfigError("the threshold grid is empty or holds NaN", "pass thresholds in (0, 1), e.g. 0.05..0.95")
    pred = p[:, :, None] >= grid_arr[None, None, :]  # [n, L, G]
    tp = (pred & y[:, :, None]).sum(axis=0)
    fp = (pred & ~y[:, :, None]).sum(axis=0)
    fn = y.sum(axis=0)[:, None] - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)  # [L, G]
    # order the grid by (distance to 0.5, value): argmax keeps the first maximum
    order = np.lexsort((grid_arr, np.abs(grid_arr - 0.5)))
    best = order[np.argmax(f1[:, order], axis=1)]
    thresholds = grid_arr[best]
    thresholds[y.sum(axis=0) == 0] = 0.5
    return thresholds


def apply_thresholds(probabilities: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Multi-hot predictions ``p >= t_l`` (bool ``(n, L)``); ``thresholds`` one per label or a scalar."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim > 1 or (t.ndim == 1 and (p.ndim != 2 or t.shape[0] != p.shape[1])):
        raise DataError(f"{t.shape} thresholds do not fit probabilities {p.shape}",
                        "pass one threshold per label (fit_thresholds) or one number")
    return p >= t


__all__ = ["DEFAULT_GRID", "MULTILABEL_LOSSES", "AsymmetricLoss", "BCELoss", "MultiLabelLoss", "SigmoidFocalLoss",
           "apply_thresholds", "build_multilabel_loss", "fit_thresholds", "imbalance_measures", "ml_ros",
           "positive_weights"]
