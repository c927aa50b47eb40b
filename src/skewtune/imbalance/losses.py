"""Imbalance-aware classification losses, each a ``torch.nn.Module`` built from the training class counts.

``build_loss(name, class_counts, **kw)`` looks ``name`` up in :data:`LOSSES`. Every loss takes
``forward(logits, labels)`` with logits ``[N, C]`` (or ``[N, T, C]`` with labels ``[N, T]`` for token
classification: flattened here) and returns a scalar. Positions whose label is ``ignore_index`` (-100) are
skipped.

Conventions shared by all losses (so that they can be compared fairly):

* class weights ``w`` are normalised so that ``sum_c w_c = C`` (mean weight 1, as in Cui et al. 2019);
* ``reduction="mean"`` is ``(1/M) sum_i l_i`` over the ``M`` non-ignored positions, where ``l_i`` already
  contains the weight ``w_{y_i}``: an unbiased estimate of the re-weighted risk. This differs from
  ``torch.nn.CrossEntropyLoss(weight=w)``, which divides by ``sum_i w_{y_i}`` instead of ``M``;
* ``reduction="sum"`` sums ``l_i``; ``reduction="none"`` returns ``l`` shaped like ``labels`` (0 where ignored);
* probabilities are computed in float32 whatever the logits' dtype.

Every loss has ``set_progress(fraction)`` (a no-op except for LDAM's deferred re-weighting) so that a training
loop can call it unconditionally before each optimizer step with the fraction of steps done.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from skewtune.errors import ConfigError, DataError
from skewtune.utils.registry import Registry, check_keywords

IGNORE_INDEX = -100

LOSSES: Registry[Callable[..., ImbalanceLoss]] = Registry("loss")

_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------- helpers


def _check_counts(class_counts: Sequence[int], *, need_positive: bool) -> list[int]:
    """Validate class counts: at least two classes, non-negative integers, positive where the loss needs it."""
    counts = [int(c) for c in class_counts]
    if len(counts) < 2:
        raise DataError(
            f"a classification loss needs counts for at least 2 classes, got {len(counts)}",
            "pass one training count per label, in label-id order",
        )
    if any(c < 0 for c in counts):
        raise DataError(f"class counts must be >= 0, got {counts}", "pass the number of training rows per label")
    if need_positive:
        empty = [i for i, c in enumerate(counts) if c == 0]
        if empty:
            raise DataError(
                f"class(es) {empty} have zero training examples, so their weight/prior is undefined",
                "add examples for these labels or drop them from the label map",
            )
    return counts


def class_weights(class_counts: Sequence[int], scheme: str = "inverse", beta: float = 0.9999) -> torch.Tensor:
    """Per-class weights normalised to ``sum_c w_c = C``.

    * ``inverse``:   ``w_c ∝ 1 / n_c``
    * ``sqrt``:      ``w_c ∝ 1 / sqrt(n_c)``
    * ``effective``: ``w_c ∝ (1 - β) / (1 - β^{n_c})``, the inverse effective number of samples
      ``E_n = (1 - β^n) / (1 - β)`` (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples").
    """
    counts = torch.tensor(_check_counts(class_counts, need_positive=True), dtype=torch.float64)
    if scheme == "inverse":
        w = 1.0 / counts
    elif scheme == "sqrt":
        w = counts.rsqrt()
    elif scheme == "effective":
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"class-balanced beta must be in [0, 1), got {beta}", "use e.g. beta=0.9999")
        w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    else:
        raise ConfigError(f"unknown weight scheme '{scheme}'", "use one of: effective, inverse, sqrt")
    w = w * (len(counts) / w.sum())
    return w.float()


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False, hint: str = "") -> float:
    value = float(value)
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    if bad_low or bad_high or math.isnan(value):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ConfigError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}", hint or f"pick {name} in range")
    return value


# ------------------------------------------------------------------------------------------------ base


class ImbalanceLoss(nn.Module):
    """Base: flattening, ``ignore_index`` and reduction. Subclasses implement :meth:`per_sample`."""

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ConfigError(f"unknown reduction '{reduction}'", f"use one of: {', '.join(_REDUCTIONS)}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.reduction = reduction
        self.progress = 0.0

    def set_progress(self, fraction: float) -> None:
        """Tell the loss the fraction of optimizer steps done (0 … 1); schedules such as LDAM-DRW use it."""
        self.progress = float(fraction)

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of each row: float32 logits ``[M, C]`` and valid labels ``[M]`` -> ``[M]``."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"logits have {logits.shape[-1]} classes, the loss was built for {self.num_classes}")
        if logits.shape[:-1] != labels.shape:
            raise ValueError(f"logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
        z = logits.reshape(-1, self.num_classes).float()
        y = labels.reshape(-1).long()
        valid = y != self.ignore_index
        if bool(((y[valid] < 0) | (y[valid] >= self.num_classes)).any()):
            raise ValueError(f"labels must be in [0, {self.num_classes}) or {self.ignore_index}")
        per = self.per_sample(z[valid], y[valid])
        if self.reduction == "none":
            out = z.new_zeros(y.shape[0])
            out[valid] = per
            return out.view(labels.shape)
        if self.reduction == "sum":
            return per.sum()
        if per.numel() == 0:  # every position ignored: zero loss that still depends on the graph
            return z.sum() * 0.0
        return per.mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, ignore_index={self.ignore_index}, reduction={self.reduction}"


def _gather(t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return t.gather(1, labels.unsqueeze(1)).squeeze(1)


def _focal_term(logp_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """``-(1 - p_t)^γ log p_t`` with ``p_t = exp(log p_t)``."""
    if gamma == 0.0:
        return -logp_t
    one_minus = (1.0 - logp_t.exp()).clamp(min=0.0)
    return -one_minus.pow(gamma) * logp_t


# ---------------------------------------------------------------------------------------------- losses


class CrossEntropy(ImbalanceLoss):
    """Cross-entropy, optionally class-weighted: ``l_i = -w_{y_i} log softmax(z_i)_{y_i}``.

    ``weights=None`` is plain cross-entropy (``w_c = 1``). Weighted variants: inverse frequency
    ``w_c ∝ 1/n_c`` and square-root inverse frequency ``w_c ∝ 1/sqrt(n_c)`` (e.g. Mikolov et al. 2013 for
    the square-root form; Mahajan et al. 2018), normalised to ``sum_c w_c = C``.
    """

    def __init__(self, num_classes: int, weights: torch.Tensor | None = None, **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        self.register_buffer("weights", None if weights is None else weights.float())

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = -_gather(F.log_softmax(logits, dim=-1), labels)
        if self.weights is not None:
            loss = loss * self.weights[labels]
        return loss


class FocalLoss(ImbalanceLoss):
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection"), softmax form.

    ``l_i = -α_{y_i} (1 - p_{i,y_i})^γ log p_{i,y_i}``, ``p = softmax(z)``. ``γ = 0`` and no ``α`` is
    cross-entropy. ``alpha``: ``None`` (all 1), a list of ``C`` per-class factors used as given, or
    ``"inverse"`` / ``"sqrt"`` for normalised inverse / square-root-inverse frequency weights.
    """

    def __init__(self, num_classes: int, gamma: float = 2.0, alpha: torch.Tensor | None = None, **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        self.gamma = _check_range("focal gamma", gamma, 0.0, 100.0, hint="use gamma >= 0, e.g. 2.0")
        self.register_buffer("alpha", None if alpha is None else alpha.float())

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = _focal_term(_gather(F.log_softmax(logits, dim=-1), labels), self.gamma)
        if self.alpha is not None:
            loss = loss * self.alpha[labels]
        return loss


class ClassBalancedLoss(ImbalanceLoss):
    """Class-balanced loss (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number of Samples").

    ``l_i = w_{y_i} · L_base(z_i, y_i)`` with ``w_c ∝ (1 - β) / (1 - β^{n_c})`` (the inverse of the effective
    number ``E_{n_c} = (1 - β^{n_c}) / (1 - β)``), normalised to ``sum_c w_c = C``. ``base``: ``"ce"``
    (softmax cross-entropy) or ``"focal"`` (``-(1 - p_t)^γ log p_t``). ``β = 0`` gives unweighted
    ``L_base``; ``β -> 1`` approaches inverse-frequency weights.
    """

    def __init__(self, num_classes: int, weights: torch.Tensor, base: str = "ce", gamma: float = 2.0,
                 **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        if base not in ("ce", "focal"):
            raise ConfigError(f"unknown class-balanced base loss '{base}'", "use one of: ce, focal")
        self.base = base
        self.gamma = _check_range("focal gamma", gamma, 0.0, 100.0, hint="use gamma >= 0, e.g. 2.0")
        self.register_buffer("weights", weights.float())

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp_t = _gather(F.log_softmax(logits, dim=-1), labels)
        base = _focal_term(logp_t, self.gamma if self.base == "focal" else 0.0)
        return base * self.weights[labels]


class LDAMLoss(ImbalanceLoss):
    """LDAM with deferred re-weighting (Cao et al. 2019, "Learning Imbalanced Datasets with Label-Distribution-
    Aware Margin Loss").

    ``l_i = -w_{y_i} log( e^{s(z_{y_i} - Δ_{y_i})} / (e^{s(z_{y_i} - Δ_{y_i})} + Σ_{j≠y_i} e^{s z_j}) )`` with
    margins ``Δ_c = K / n_c^{1/4}``, ``K`` chosen so that ``max_c Δ_c = max_m``. Deferred re-weighting (DRW):
    ``w_c = 1`` until the fraction ``drw_start`` of the optimizer steps is done, then the class-balanced weights
    ``∝ (1 - β)/(1 - β^{n_c})`` (normalised to ``sum = C``); the training loop calls :meth:`set_progress` before
    every step, so DRW also switches on inside a one-epoch run. ``drw_start=None`` disables DRW. Cao et al. defer
    to epoch 160 of 200 (0.8); the default 2/3 leaves more re-weighted steps in short fine-tuning runs and is the
    setting measured by ``benchmarks/imbalance.py``. They use ``s = 30`` with a cosine (normalised) classifier
    head; with an ordinary linear head keep ``s = 1`` so that the margins act on the raw logits.
    """

    def __init__(self, num_classes: int, margins: torch.Tensor, drw_weights: torch.Tensor, s: float = 1.0,
                 drw_start: float | None = 2 / 3, **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        self.s = _check_range("LDAM scale s", s, 0.0, 1e6, low_open=True, hint="use s > 0 (1 for a linear head)")
        self.drw_start = None if drw_start is None else _check_range(
            "LDAM drw_start", drw_start, 0.0, 1.0, hint="pass the fraction of training steps after which DRW starts")
        self.register_buffer("margins", margins.float())
        self.register_buffer("drw_weights", drw_weights.float())

    @property
    def reweighting(self) -> bool:
        """Whether the class-balanced DRW weights are active at the current training progress."""
        return self.drw_start is not None and self.progress >= self.drw_start

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        shifted = logits - F.one_hot(labels, self.num_classes).float() * self.margins[labels].unsqueeze(1)
        loss = -_gather(F.log_softmax(self.s * shifted, dim=-1), labels)
        if self.reweighting:
            loss = loss * self.drw_weights[labels]
        return loss


class LogitAdjustedLoss(ImbalanceLoss):
    """Logit-adjusted softmax cross-entropy (Menon et al. 2021, "Long-tail learning via logit adjustment").

    ``l_i = -log softmax(z_i + τ log π)_{y_i}`` with the training prior ``π_c = n_c / Σ n``. Predict with the raw
    logits ``z`` (argmax): the adjustment only acts during training.
    """

    def __init__(self, num_classes: int, log_prior: torch.Tensor, tau: float = 1.0, **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        self.tau = _check_range("logit-adjustment tau", tau, 0.0, 100.0, hint="use tau >= 0, e.g. 1.0")
        self.register_buffer("log_prior", log_prior.float())

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return -_gather(F.log_softmax(logits + self.tau * self.log_prior, dim=-1), labels)


class SelfAdjustingDiceLoss(ImbalanceLoss):
    """Self-adjusting dice loss (Li et al. 2020, "Dice Loss for Data-imbalanced NLP Tasks"), one-vs-rest.

    With ``p = softmax(z)``, ``q_{ic} = (1 - p_{ic})^α p_{ic}`` and one-hot ``y_{ic}``:
    ``l_i = (1/C) Σ_c [ 1 - (2 q_{ic} y_{ic} + γ) / (q_{ic} + y_{ic} + γ) ]``.
    ``α`` down-weights easy examples (``(1-p)^α``), ``γ`` smooths the ratio (paper's eq. for DSC per example).
    """

    def __init__(self, num_classes: int, alpha: float = 1.0, gamma: float = 1.0, **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        self.alpha = _check_range("dice alpha", alpha, 0.0, 100.0, hint="use alpha >= 0, e.g. 1.0")
        self.gamma = _check_range("dice gamma", gamma, 0.0, 1e6, low_open=True, hint="use gamma > 0, e.g. 1.0")

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits, dim=-1)
        q = (1.0 - p).clamp(min=0.0).pow(self.alpha) * p
        y = F.one_hot(labels, self.num_classes).float()
        dsc = (2.0 * q * y + self.gamma) / (q + y + self.gamma)
        return (1.0 - dsc).mean(dim=-1)


class LabelSmoothingLoss(ImbalanceLoss):
    """Label-smoothed cross-entropy (Szegedy et al. 2016, "Rethinking the Inception Architecture").

    ``l_i = -(1 - ε) log p_{i,y_i} - (ε / C) Σ_c log p_{ic}``, ``p = softmax(z)`` (same as PyTorch's
    ``label_smoothing=ε``).
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1, **kw: Any) -> None:
        super().__init__(num_classes, **kw)
        self.epsilon = _check_range("label smoothing epsilon", epsilon, 0.0, 1.0, high_open=True,
                                    hint="use epsilon in [0, 1), e.g. 0.1")

    def per_sample(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=-1)
        return -(1.0 - self.epsilon) * _gather(logp, labels) - self.epsilon * logp.mean(dim=-1)


# ------------------------------------------------------------------------------------------- builders


@LOSSES.register("ce")
def _ce(class_counts: Sequence[int], **kw: Any) -> ImbalanceLoss:
    """Plain softmax cross-entropy."""
    counts = _check_counts(class_counts, need_positive=False)
    return CrossEntropy(len(counts), None, **kw)


@LOSSES.register("weighted_ce")
def _weighted_ce(class_counts: Sequence[int], **kw: Any) -> ImbalanceLoss:
    """Cross-entropy with inverse-frequency weights ``w_c ∝ 1/n_c``."""
    return CrossEntropy(len(class_counts), class_weights(class_counts, "inverse"), **kw)


@LOSSES.register("sqrt_weighted_ce")
def _sqrt_weighted_ce(class_counts: Sequence[int], **kw: Any) -> ImbalanceLoss:
    """Cross-entropy with square-root inverse-frequency weights ``w_c ∝ 1/sqrt(n_c)``."""
    return CrossEntropy(len(class_counts), class_weights(class_counts, "sqrt"), **kw)


@LOSSES.register("focal")
def _focal(class_counts: Sequence[int], gamma: float = 2.0, alpha: str | Sequence[float] | None = None,
           **kw: Any) -> ImbalanceLoss:
    """Focal loss; ``alpha`` None, ``"inverse"``, ``"sqrt"`` or a list of C factors."""
    counts = _check_counts(class_counts, need_positive=alpha in ("inverse", "sqrt"))
    alpha_t: torch.Tensor | None
    if alpha is None:
        alpha_t = None
    elif isinstance(alpha, str):
        if alpha not in ("inverse", "sqrt"):
            raise ConfigError(f"unknown focal alpha '{alpha}'", "use inverse, sqrt, a list of C floats, or none")
        alpha_t = class_weights(counts, alpha)
    else:
        alpha_t = torch.tensor([float(a) for a in alpha])
        if alpha_t.numel() != len(counts) or bool((alpha_t < 0).any()):
            raise ConfigError(f"focal alpha needs {len(counts)} non-negative values, got {list(alpha)}",
                              "pass one factor per class, or alpha=inverse")
    return FocalLoss(len(counts), gamma=gamma, alpha=alpha_t, **kw)


@LOSSES.register("class_balanced")
def _class_balanced(class_counts: Sequence[int], beta: float = 0.9999, base: str = "ce", gamma: float = 2.0,
                    **kw: Any) -> ImbalanceLoss:
    """Class-balanced (effective-number) weights over ``ce`` or ``focal``."""
    return ClassBalancedLoss(len(class_counts), class_weights(class_counts, "effective", beta), base=base,
                             gamma=gamma, **kw)


@LOSSES.register("ldam")
def _ldam(class_counts: Sequence[int], max_m: float = 0.5, s: float = 1.0, drw_start: float | None = 2 / 3,
          beta: float = 0.9999, **kw: Any) -> ImbalanceLoss:
    """LDAM margins ``Δ_c ∝ n_c^{-1/4}`` (largest = ``max_m``) with DRW after the fraction ``drw_start`` of steps."""
    counts = torch.tensor(_check_counts(class_counts, need_positive=True), dtype=torch.float64)
    max_m = _check_range("LDAM max_m", max_m, 0.0, 1e6, low_open=True, hint="use max_m > 0, e.g. 0.5")
    m = counts.pow(-0.25)
    margins = m * (max_m / m.max())
    return LDAMLoss(len(counts), margins.float(), class_weights(class_counts, "effective", beta), s=s,
                    drw_start=drw_start, **kw)


@LOSSES.register("logit_adjusted")
def _logit_adjusted(class_counts: Sequence[int], tau: float = 1.0, **kw: Any) -> ImbalanceLoss:
    """Logit-adjusted cross-entropy with ``τ log π`` added to the logits."""
    counts = torch.tensor(_check_counts(class_counts, need_positive=True), dtype=torch.float64)
    return LogitAdjustedLoss(len(counts), (counts / counts.sum()).log().float(), tau=tau, **kw)


@LOSSES.register("dice")
def _dice(class_counts: Sequence[int], alpha: float = 1.0, gamma: float = 1.0, **kw: Any) -> ImbalanceLoss:
    """Self-adjusting dice loss."""
    counts = _check_counts(class_counts, need_positive=False)
    return SelfAdjustingDiceLoss(len(counts), alpha=alpha, gamma=gamma, **kw)


@LOSSES.register("label_smoothing")
def _label_smoothing(class_counts: Sequence[int], epsilon: float = 0.1, **kw: Any) -> ImbalanceLoss:
    """Label-smoothed cross-entropy."""
    counts = _check_counts(class_counts, need_positive=False)
    return LabelSmoothingLoss(len(counts), epsilon=epsilon, **kw)


def build_loss(name: str, class_counts: Sequence[int], **kw: Any) -> ImbalanceLoss:
    """Build loss ``name`` for ``class_counts`` (training rows per label id, in label-id order).

    Common keywords: ``ignore_index`` (-100), ``reduction`` (``mean``/``sum``/``none``); the others are
    per loss (see each class). Unknown names or keywords raise :class:`~skewtune.errors.ConfigError`.
    """
    factory = LOSSES.get(name)
    check_keywords("loss", name, factory, kw, skip=("class_counts",), extra=("ignore_index", "reduction"))
    return factory(class_counts, **kw)
