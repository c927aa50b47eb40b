"""Post-hoc decision rules fitted on validation logits, saved with the adapter and applied by ``predict``.

A rule is a JSON-serialisable dict ``{"rule": name, "logit_bias": [b_0, ..., b_{C-1}], ...}``; the decision is
``argmax_c (z_c + b_c)``, applied by :func:`apply_decision`. For two classes an additive bias is the same as a
decision threshold on ``p_1``: predict 1 iff ``z_1 - z_0 > b_0 - b_1``.

* ``logit_adjustment`` (Menon et al. 2021, "Long-tail learning via logit adjustment", post-hoc form):
  ``b_c = -τ log π_c`` with the training prior ``π``; ``tau="auto"`` picks τ on a grid by validation macro-F1.
* ``bias_tuning``: per-class additive biases found by coordinate ascent on validation macro-F1 (one class at a
  time over a grid, repeated until no gain); biases are centred (``Σ b_c = 0``), which leaves argmax unchanged.

Macro-F1 is averaged over the classes present in the validation labels (``zero_division=0``); rows labelled
``-100`` (token-classification padding) are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from skewtune.errors import ConfigError, DataError
from skewtune.utils.registry import Registry, check_keywords

POST_HOC: Registry[Callable[..., dict[str, Any]]] = Registry("post-hoc rule")

IGNORE_INDEX = -100


def _as_numpy(logits: Any) -> np.ndarray:
    if hasattr(logits, "detach"):  # torch tensor
        logits = logits.detach().float().cpu().numpy()
    return np.asarray(logits, dtype=np.float64)


def _validation_arrays(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = _as_numpy(logits)
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels).astype(np.int64)
    if z.ndim < 2:
        raise DataError(f"validation logits must be [N, C], got shape {z.shape}", "pass the model's raw logits")
    z = z.reshape(-1, z.shape[-1])
    y = y.reshape(-1)
    if y.shape[0] != z.shape[0]:
        raise DataError(f"{z.shape[0]} logit rows but {y.shape[0]} labels", "pass one label per logit row")
    keep = y != IGNORE_INDEX
    z, y = z[keep], y[keep]
    if y.size == 0:
        raise DataError("no validation labels to fit a decision rule on", "fit on a non-empty validation split")
    if (y < 0).any() or (y >= z.shape[1]).any():
        raise DataError(f"validation labels must be in [0, {z.shape[1]})", "check the label map")
    if not np.isfinite(z).all():
        raise DataError("validation logits contain NaN or inf", "check the model outputs")
    return z, y


def macro_f1(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    """Macro-F1 over the classes present in ``labels`` (same as scikit-learn with ``labels=present``,
    ``zero_division=0``)."""
    cm = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes,
                                                                                               num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    return float(f1[present].mean())


def _score(z: np.ndarray, y: np.ndarray, bias: np.ndarray) -> float:
    return macro_f1(y, np.argmax(z + bias, axis=1), z.shape[1])


def _check_prior(class_counts: Sequence[int] | None, num_classes: int) -> np.ndarray:
    if class_counts is None:
        raise ConfigError("logit adjustment needs the training class counts", "pass class_counts=[n_0, n_1, ...]")
    counts = np.asarray([float(c) for c in class_counts])
    if counts.shape[0] != num_classes:
        raise ConfigError(f"{counts.shape[0]} class counts for {num_classes} logit columns",
                          "pass one training count per label id")
    empty = [i for i, c in enumerate(counts) if c <= 0]
    if empty:
        raise DataError(f"class(es) {empty} have zero training examples, so their prior is undefined",
                        "add examples for these labels or drop them from the label map")
    return counts / counts.sum()


def _rule(name: str, bias: np.ndarray, before: float, after: float, **extra: Any) -> dict[str, Any]:
    return {
        "rule": name,
        "logit_bias": [float(round(b, 6)) for b in bias],
        **extra,
        "val_macro_f1_before": float(round(before, 6)),
        "val_macro_f1_after": float(round(after, 6)),
    }


@POST_HOC.register("logit_adjustment")
def logit_adjustment(logits: Any, labels: Any, *, class_counts: Sequence[int] | None = None,
                     tau: float | str = 1.0, tau_grid: Sequence[float] | None = None) -> dict[str, Any]:
    """Post-hoc logit adjustment ``argmax_c z_c - τ log π_c`` (Menon et al. 2021).

    ``class_counts``: training rows per class (the prior ``π``). ``tau``: a number, or ``"auto"`` to choose it
    from ``tau_grid`` (default 0, 0.25, ..., 2) by validation macro-F1 (ties: the smaller τ).
    """
    z, y = _validation_arrays(logits, labels)
    log_prior = np.log(_check_prior(class_counts, z.shape[1]))
    before = _score(z, y, np.zeros(z.shape[1]))
    if tau == "auto":
        grid = [float(t) for t in (tau_grid if tau_grid is not None else np.linspace(0.0, 2.0, 9))]
        scores = [_score(z, y, -t * log_prior) for t in grid]
        best = int(np.argmax(scores))  # first maximum = smallest tau among ties (grid ascending)
        tau_value = grid[best]
    else:
        try:
            tau_value = float(tau)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"logit-adjustment tau must be a number or 'auto', got {tau!r}",
                              "use e.g. tau=1.0 or tau=auto") from exc
        if not math.isfinite(tau_value) or tau_value < 0:
            raise ConfigError(f"logit-adjustment tau must be >= 0, got {tau_value}", "use e.g. tau=1.0")
    bias = -tau_value * log_prior
    return _rule("logit_adjustment", bias, before, _score(z, y, bias), tau=tau_value)


@POST_HOC.register("bias_tuning")
def bias_tuning(logits: Any, labels: Any, *, class_counts: Sequence[int] | None = None, grid_size: int = 41,
                span: float | None = None, max_rounds: int = 5) -> dict[str, Any]:
    """Per-class additive logit biases maximising validation macro-F1 by coordinate ascent.

    Start at ``b = 0``; in each round, for each class ``c`` try ``b_c`` on ``grid_size`` evenly spaced values in
    ``[-span, span]`` (default ``span = max(1, 2·std(z))``) keeping the others fixed and keep the best (ties:
    the value closest to 0); stop after a round without gain or after ``max_rounds``. The result is centred
    (``Σ b_c = 0``). ``class_counts`` is accepted for a uniform interface and unused.
    """
    del class_counts
    z, y = _validation_arrays(logits, labels)
    if int(grid_size) < 3 or int(max_rounds) < 1:
        raise ConfigError("bias tuning needs grid_size >= 3 and max_rounds >= 1", "use e.g. grid_size=41")
    num_classes = z.shape[1]
    span_value = float(span) if span is not None else max(1.0, 2.0 * float(z.std()))
    if not math.isfinite(span_value) or span_value <= 0:
        raise ConfigError(f"bias tuning span must be > 0, got {span}", "leave span unset or use e.g. 4.0")
    grid = np.linspace(-span_value, span_value, int(grid_size))
    order = np.argsort(np.abs(grid), kind="stable")  # try values near 0 first so ties keep small biases
    bias = np.zeros(num_classes)
    before = best = _score(z, y, bias)
    rounds = 0
    for rounds in range(1, int(max_rounds) + 1):  # noqa: B007 - rounds is reported
        improved = False
        for c in range(num_classes):
            trial = bias.copy()
            for value in grid[order]:
                trial[c] = value
                score = _score(z, y, trial)
                if score > best + 1e-12:
                    best, bias, improved = score, trial.copy(), True
        if not improved:
            break
    bias = bias - bias.mean()
    return _rule("bias_tuning", bias, before, _score(z, y, bias), rounds=rounds, span=round(span_value, 6))


def fit_post_hoc(name: str, logits: Any, labels: Any, *, class_counts: Sequence[int] | None = None,
                 **kw: Any) -> dict[str, Any]:
    """Fit rule ``name`` from :data:`POST_HOC` on validation ``logits [N, C]`` and ``labels [N]``."""
    fit = POST_HOC.get(name)
    check_keywords("post-hoc rule", name, fit, kw, skip=("logits", "labels", "class_counts"))
    return fit(logits, labels, class_counts=class_counts, **kw)


def apply_decision(logits: Any, rule: dict[str, Any] | None) -> Any:
    """Add ``rule["logit_bias"]`` to the last axis of ``logits`` (torch tensor or array-like; same type back).

    ``rule=None`` returns ``logits`` unchanged. Predict with ``argmax`` of the result.
    """
    if rule is None:
        return logits
    if not isinstance(rule, dict) or "logit_bias" not in rule:
        raise ConfigError("a decision rule must be a dict with 'logit_bias'", "refit it with fit_post_hoc")
    bias = [float(b) for b in rule["logit_bias"]]
    width = logits.shape[-1] if hasattr(logits, "shape") else len(np.asarray(logits)[0])
    if len(bias) != width:
        raise ConfigError(f"decision rule has {len(bias)} biases for {width} classes",
                          "refit the rule for this adapter's label map")
    if hasattr(logits, "detach"):  # torch tensor, kept on its device and dtype
        return logits + torch.tensor(bias, dtype=logits.dtype, device=logits.device)
    return np.asarray(logits, dtype=np.float64) + np.asarray(bias)
