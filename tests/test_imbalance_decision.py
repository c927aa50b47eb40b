"""Post-hoc decision rules: logit adjustment and bias tuning on validation logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from skewtune.errors import ConfigError, DataError
from skewtune.imbalance.decision import POST_HOC, apply_decision, fit_post_hoc, macro_f1

COUNTS = [800, 150, 50]


def _skewed_validation(seed: int = 0, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Balanced validation labels; logits informative but biased towards the training majority class 0."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    z = rng.normal(size=(n, 3))
    z[np.arange(n), y] += 1.5
    z += np.log(np.asarray(COUNTS) / sum(COUNTS))  # what a model trained on the skewed prior does
    return z, y


def test_macro_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=200)
    y[y == 3] = 2  # class 3 absent from labels
    pred = rng.integers(0, 4, size=200)
    expected = f1_score(y, pred, labels=sorted(set(y)), average="macro", zero_division=0)
    assert macro_f1(y, pred, 4) == pytest.approx(expected)


def test_logit_adjustment_formula_and_gain() -> None:
    z, y = _skewed_validation()
    rule = fit_post_hoc("logit_adjustment", z, y, class_counts=COUNTS, tau=1.0)
    prior = np.asarray(COUNTS) / sum(COUNTS)
    assert rule["rule"] == "logit_adjustment"
    assert rule["logit_bias"] == pytest.approx(-np.log(prior), abs=1e-5)
    assert rule["val_macro_f1_after"] > rule["val_macro_f1_before"] + 0.05
    json.dumps(rule)  # JSON-serialisable as saved in the manifest


def test_logit_adjustment_auto_tau() -> None:
    z, y = _skewed_validation()
    rule = fit_post_hoc("logit_adjustment", z, y, class_counts=COUNTS, tau="auto")
    assert 0.0 <= rule["tau"] <= 2.0
    fixed = fit_post_hoc("logit_adjustment", z, y, class_counts=COUNTS, tau=rule["tau"])
    assert rule["val_macro_f1_after"] >= fixed["val_macro_f1_before"]
    assert rule["logit_bias"] == fixed["logit_bias"]


def test_bias_tuning_improves_and_is_centred() -> None:
    z, y = _skewed_validation()
    rule = fit_post_hoc("bias_tuning", z, y)
    assert rule["rule"] == "bias_tuning"
    assert sum(rule["logit_bias"]) == pytest.approx(0.0, abs=1e-5)
    assert rule["val_macro_f1_after"] >= rule["val_macro_f1_before"] + 0.05
    # the reported score is what applying the rule gives
    pred = np.argmax(apply_decision(z, rule), axis=1)
    assert macro_f1(y, pred, 3) == pytest.approx(rule["val_macro_f1_after"], abs=1e-5)
    assert fit_post_hoc("bias_tuning", z, y) == rule  # deterministic
    json.dumps(rule)


def test_bias_tuning_keeps_zero_when_nothing_to_gain() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    z = np.eye(3)[y] * 5.0
    rule = fit_post_hoc("bias_tuning", z, y)
    assert rule["logit_bias"] == pytest.approx([0.0, 0.0, 0.0])
    assert rule["val_macro_f1_after"] == 1.0


def test_apply_decision_types() -> None:
    rule = {"logit_bias": [1.0, -1.0]}
    t = torch.zeros(2, 3, 2, dtype=torch.float16)
    out = apply_decision(t, rule)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float16 and out[1, 2].tolist() == [1.0, -1.0]
    arr = apply_decision([[0.0, 0.0]], rule)
    assert arr.tolist() == [[1.0, -1.0]]
    assert apply_decision(t, None) is t


def test_token_labels_ignored_and_torch_input() -> None:
    z, y = _skewed_validation(n=90)
    y_tok = y.copy()
    y_tok[::3] = -100
    rule = fit_post_hoc("bias_tuning", torch.tensor(z), torch.tensor(y_tok))
    keep = y_tok != -100
    assert rule == fit_post_hoc("bias_tuning", z[keep], y[keep])


def test_bad_input() -> None:
    z, y = _skewed_validation(n=30)
    with pytest.raises(ConfigError) as err:
        fit_post_hoc("threshold", z, y)
    assert "bias_tuning" in err.value.hint and "logit_adjustment" in err.value.hint
    assert set(POST_HOC.names()) == {"bias_tuning", "logit_adjustment"}
    with pytest.raises(ConfigError, match="class counts"):
        fit_post_hoc("logit_adjustment", z, y)
    with pytest.raises(DataError, match="zero training examples"):
        fit_post_hoc("logit_adjustment", z, y, class_counts=[5, 0, 3])
    with pytest.raises(ConfigError):
        fit_post_hoc("logit_adjustment", z, y, class_counts=COUNTS, tau=-1)
    with pytest.raises(DataError):
        fit_post_hoc("bias_tuning", z, y[:-1])
    with pytest.raises(DataError):
        fit_post_hoc("bias_tuning", z, np.full_like(y, -100))
    with pytest.raises(DataError):
        fit_post_hoc("bias_tuning", z, y + 3)
    with pytest.raises(ConfigError, match="2 biases for 3 classes"):
        apply_decision(z, {"logit_bias": [0.0, 1.0]})
    with pytest.raises(ConfigError):
        apply_decision(z, {"bias": [0.0, 1.0, 2.0]})
