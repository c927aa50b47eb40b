"""The multi-label imbalance toolkit: losses against hand-computed values, ML-ROS, thresholds, the metric module."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

from skewtune.errors import ConfigError, DataError
from skewtune.evaluation.metrics_loader import load_metric, multilabel_report
from skewtune.imbalance.multilabel import (
    MULTILABEL_LOSSES,
    apply_thresholds,
    build_multilabel_loss,
    fit_thresholds,
    imbalance_measures,
    ml_ros,
    positive_weights,
)


def _sig(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def _loss(name: str, logits: list[list[float]], targets: list[list[float]], positives: list[int] | None = None,
          rows: int = 10, **options: object) -> float:
    width = len(logits[0])
    loss = build_multilabel_loss(name, positives or [1] * width, rows, **options)
    return float(loss(torch.tensor(logits), torch.tensor(targets)))


# ------------------------------------------------------------------------------------------------- losses


def test_bce_hand_computed() -> None:
    # -log σ(0) = log 2 for the positive; -log(1 - σ(2)) = log(1 + e^2) for the negative; mean of the two
    expected = (math.log(2.0) + math.log(1.0 + math.exp(2.0))) / 2
    assert _loss("bce", [[0.0, 2.0]], [[1.0, 0.0]]) == pytest.approx(expected, rel=1e-6)


def test_pos_weight_formula_and_cap() -> None:
    # label 0: 2 of 4 rows -> 2/2 = 1; label 1: 1 of 4 -> 3/1 = 3; label 2: 1 of 1000 -> 999, capped at 100
    assert positive_weights([2, 1, 1], 4).tolist() == [1.0, 3.0, 3.0]
    assert positive_weights([1, 500], 1000).tolist() == [100.0, 1.0]
    assert positive_weights([1], 1000, max_weight=7.5).tolist() == [7.5]
    # w · (-log σ(z)) on positives: (1 · log 2 + 3 · log(1 + e^-2)) / 2
    expected = (math.log(2.0) + 3.0 * math.log(1.0 + math.exp(-2.0))) / 2
    assert _loss("bce_pos_weight", [[0.0, 2.0]], [[1.0, 1.0]], positives=[2, 1], rows=4) == pytest.approx(expected,
                                                                                                         rel=1e-6)
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(16, 3, generator=g) * 3, (torch.rand(16, 3, generator=g) < 0.3).float()
    ours = build_multilabel_loss("bce_pos_weight", [5, 2, 1], 16)(z, y)
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([11 / 5, 14 / 2, 15.0]))(z, y)
    assert float(ours) == pytest.approx(float(ref), rel=1e-6)


def test_focal_hand_computed() -> None:
    # positive at z=0: p_t = 0.5 -> 0.5^2 · log 2; negative at z=1: p_t = 1 - σ(1) -> σ(1)^2 · -log(1 - σ(1))
    pos = 0.25 * math.log(2.0)
    neg = _sig(1.0) ** 2 * -math.log(1.0 - _sig(1.0))
    assert _loss("focal", [[0.0, 1.0]], [[1.0, 0.0]]) == pytest.approx((pos + neg) / 2, rel=1e-6)
    # alpha 0.25: α_t = 0.25 on positives, 0.75 on negatives
    assert _loss("focal", [[0.0, 1.0]], [[1.0, 0.0]], alpha=0.25) == pytest.approx((0.25 * pos + 0.75 * neg) / 2,
                                                                                   rel=1e-6)
    # γ = 0 is BCE
    assert _loss("focal", [[0.3, -1.2]], [[0.0, 1.0]], gamma=0.0) == pytest.approx(
        _loss("bce", [[0.3, -1.2]], [[0.0, 1.0]]), rel=1e-6)


def test_asl_hand_computed() -> None:
    # positive z=0 (γ+ 0): log 2. negative z=1: p_m = σ(1) - 0.05, weight p_m^4, -log(1 - p_m).
    # negative z=-3: σ(-3) = 0.047 < 0.05 -> p_m = 0: discarded (loss 0)
    p_m = _sig(1.0) - 0.05
    expected = (math.log(2.0) + p_m ** 4 * -math.log(1.0 - p_m) + 0.0) / 3
    assert _loss("asl", [[0.0, 1.0, -3.0]], [[1.0, 0.0, 0.0]]) == pytest.approx(expected, rel=1e-6)
    # γ+ 1 weights the positive by (1 - p): at z = 0 that is 0.5
    expected_pos = (0.5 * math.log(2.0) + p_m ** 4 * -math.log(1.0 - p_m)) / 3
    assert _loss("asl", [[0.0, 1.0, -3.0]], [[1.0, 0.0, 0.0]], gamma_pos=1.0) == pytest.approx(expected_pos, rel=1e-6)


def test_asl_without_focusing_or_margin_is_bce() -> None:
    g = torch.Generator().manual_seed(1)
    z = (torch.randn(32, 5, generator=g) * 4).requires_grad_()
    y = (torch.rand(32, 5, generator=g) < 0.2).float()
    asl = build_multilabel_loss("asl", [1] * 5, 32, gamma_pos=0.0, gamma_neg=0.0, clip=0.0)
    bce = build_multilabel_loss("bce", [1] * 5, 32)
    a = asl(z, y)
    (ga,) = torch.autograd.grad(a, z)
    b = bce(z, y)
    (gb,) = torch.autograd.grad(b, z)
    assert float(a) == pytest.approx(float(b), rel=1e-6)
    assert torch.allclose(ga, gb, atol=1e-7)
    assert float(b) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)), rel=1e-6)


@pytest.mark.parametrize("name", MULTILABEL_LOSSES.names())
def test_extreme_logits_give_finite_losses_and_gradients(name: str) -> None:
    z = torch.tensor([[100.0, -100.0, 0.0, 30.0], [-80.0, 80.0, 5.0, -5.0]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    loss = build_multilabel_loss(name, [1, 1, 1, 1], 2)(z.half().float(), y)  # also from half-precision logits
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and bool(torch.isfinite(grad).all())
    assert float(loss) > 0 and float(grad.abs().sum()) > 0


def test_errors_name_the_fix() -> None:
    with pytest.raises(ConfigError, match="unknown multi-label loss 'softmax'") as info:
        build_multilabel_loss("softmax", [1, 2], 4)
    assert "asl" in info.value.hint and "bce_pos_weight" in info.value.hint
    with pytest.raises(ConfigError, match="unknown option") as info:
        build_multilabel_loss("bce", [1, 2], 4, gamma=2.0)
    with pytest.raises(ConfigError, match="focal alpha"):
        build_multilabel_loss("focal", [1, 2], 4, alpha=1.5)
    with pytest.raises(DataError, match="positive counts"):
        build_multilabel_loss("bce_pos_weight", [1, 9], 4)
    with pytest.raises(ValueError, match="do not match"):
        build_multilabel_loss("bce", [1, 2], 4)(torch.zeros(3, 2), torch.zeros(3, 3))


# --------------------------------------------------------------------------------------------- resampling


def _skewed_labels() -> np.ndarray:
    rng = np.random.default_rng(0)
    freq = np.array([0.6, 0.3, 0.1, 0.03, 0.01])
    y = rng.random((1000, 5)) < freq
    y[:3, 4] = True  # at least a few rows of the rarest label
    return y


def test_imbalance_measures_hand_computed() -> None:
    y = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0], [0, 0, 0]])  # counts 4, 2, 1
    m = imbalance_measures(y)
    assert m["label_counts"] == [4, 2, 1]
    assert m["IRLbl"] == [1.0, 2.0, 4.0]
    assert m["MeanIR"] == pytest.approx(7 / 3) and m["MaxIR"] == 4.0
    assert imbalance_measures(np.array([[1, 0], [1, 0]]))["IRLbl"] == [1.0, math.inf]


def test_ml_ros_raises_minority_shares_deterministically() -> None:
    y = _skewed_labels()
    before = imbalance_measures(y)
    minority = [i for i, v in enumerate(before["IRLbl"]) if v > before["MeanIR"]]
    assert minority  # the construction has minority labels
    idx = ml_ros(y, percentage=0.25, seed=3)
    assert np.array_equal(idx, ml_ros(y, percentage=0.25, seed=3))
    assert not np.array_equal(idx, ml_ros(y, percentage=0.25, seed=4))
    n = len(y)
    assert np.array_equal(idx[:n], np.arange(n))  # every original row once, first
    assert idx.min() >= 0 and idx.max() < n
    clones = idx[n:]
    assert 0 < len(clones) <= round(0.25 * n)
    assert y[clones][:, minority].any(axis=1).all()  # every clone holds a minority label
    share_before = y.mean(axis=0)
    share_after = y[idx].mean(axis=0)
    for label in minority:
        assert share_after[label] > share_before[label]
    assert imbalance_measures(y[idx])["MeanIR"] < before["MeanIR"]


def test_ml_ros_stops_when_no_label_is_minority() -> None:
    # label 1 is minority (IRLbl 4 > MeanIR 2.5): 3 clones of its single row bring IRLbl to 1 (<= 2.5) sooner
    y = np.array([[1, 0], [1, 0], [1, 0], [1, 1]], dtype=bool)
    idx = ml_ros(y, percentage=10.0, seed=0)
    counts = y[idx].sum(axis=0)
    assert counts[0] / counts[1] <= 2.5 and len(idx) - len(y) < 40
    assert np.array_equal(ml_ros(np.zeros((0, 3)), 0.5), np.arange(0))
    with pytest.raises(ConfigError, match="percentage"):
        ml_ros(y, percentage=-1)


# --------------------------------------------------------------------------------------------- thresholds


def test_fit_thresholds_finds_the_f1_optimum_with_ties_toward_half() -> None:
    # label 0: positives 0.32, 0.36, 0.7; negatives 0.1, 0.2, 0.5. Any t in (0.2, 0.32] predicts 4 rows with the
    # 3 positives (F1 6/7): grid 0.25 and 0.30 tie, 0.30 is closer to 0.5. Label 1 has no positive: 0.5.
    # Label 2 separates perfectly between 0.6 and 0.8: 0.65, 0.7, 0.75, 0.8 tie -> 0.65.
    p = np.array([[0.32, 0.9, 0.8], [0.36, 0.1, 0.9], [0.7, 0.2, 0.6], [0.1, 0.3, 0.2], [0.2, 0.4, 0.1],
                  [0.5, 0.6, 0.3]])
    y = np.array([[1, 0, 1], [1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    t = fit_thresholds(p, y)
    assert t.tolist() == pytest.approx([0.30, 0.5, 0.65])
    # against a brute force with scikit-learn on the grid
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    for label in (0, 2):
        scores = [f1_score(y[:, label], p[:, label] >= g, zero_division=0) for g in grid]
        assert f1_score(y[:, label], p[:, label] >= t[label]) == pytest.approx(max(scores))
    pred = apply_thresholds(p, t)
    assert pred.dtype == bool and pred[:, 0].tolist() == [True, True, True, False, False, True]
    assert apply_thresholds(p, 0.5).sum() == (p >= 0.5).sum()
    with pytest.raises(DataError):
        apply_thresholds(p, np.array([0.5, 0.5]))


# ----------------------------------------------------------------------------------------------- metrics


def test_metric_module_matches_scikit_learn() -> None:
    rng = np.random.default_rng(5)
    ref = (rng.random((60, 4)) < [0.5, 0.2, 0.05, 0.0]).astype(int)
    pred = (rng.random((60, 4)) < [0.4, 0.3, 0.1, 0.02]).astype(int)
    ref[0] = pred[0] = 0  # a row with no gold and no predicted label
    got = load_metric("multilabel").compute(predictions=pred.tolist(), references=ref.tolist())
    for avg in ("micro", "macro", "weighted"):
        assert got[f"{avg}_f1"] == pytest.approx(f1_score(ref, pred, average=avg, zero_division=0), rel=1e-12)
    assert got["samples_f1"] == pytest.approx(f1_score(ref, pred, average="samples", zero_division=1), rel=1e-12)
    p, r, f, s = precision_recall_fscore_support(ref, pred, average=None, zero_division=0)
    assert got["per_class_precision"] == pytest.approx(p.tolist())
    assert got["per_class_recall"] == pytest.approx(r.tolist())
    assert got["per_class_f1"] == pytest.approx(f.tolist())
    assert got["support"] == s.tolist()
    assert got["subset_accuracy"] == pytest.approx(accuracy_score(ref, pred))
    assert got["hamming_loss"] == pytest.approx(hamming_loss(ref, pred))
    report = multilabel_report(pred.astype(bool), ref, ["a", "b", "c", "d"])
    assert report["macro_f1"] == got["macro_f1"] and report["samples_f1"] == got["samples_f1"]
    assert report["per_class_f1"] == dict(zip("abcd", got["per_class_f1"]))
    assert report["support"] == dict(zip("abcd", s.tolist()))
