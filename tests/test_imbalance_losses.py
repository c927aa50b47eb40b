"""Each imbalance loss against a direct numpy computation of its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skewtune.errors import ConfigError, DataError
from skewtune.imbalance.losses import LOSSES, build_loss, class_weights

COUNTS = [100, 30, 10, 3]
C = len(COUNTS)


@pytest.fixture()
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(40, C, generator=g) * 2.0
    labels = torch.randint(0, C, (40,), generator=g)
    labels[[3, 17, 25]] = -100
    return logits, labels


def _np(logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    z = logits.double().numpy()
    y = labels.numpy()
    keep = y != -100
    return z[keep], y[keep]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _norm(w: np.ndarray) -> np.ndarray:
    return w * len(w) / w.sum()


def _nll(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -_log_softmax(z)[np.arange(len(y)), y]


def _check(name: str, batch, expected: float, **kw) -> None:
    loss = build_loss(name, COUNTS, **kw)
    got = loss(*batch)
    assert got.dim() == 0
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_registry_names() -> None:
    assert set(LOSSES.names()) == {"ce", "weighted_ce", "sqrt_weighted_ce", "focal", "class_balanced", "ldam",
                                   "logit_adjusted", "dice", "label_smoothing"}


def test_ce_matches_formula_and_torch(batch) -> None:
    z, y = _np(*batch)
    _check("ce", batch, _nll(z, y).mean())
    assert build_loss("ce", COUNTS)(*batch).item() == pytest.approx(F.cross_entropy(*batch).item(), rel=1e-6)


@pytest.mark.parametrize(("name", "power"), [("weighted_ce", 1.0), ("sqrt_weighted_ce", 0.5)])
def test_weighted_ce(batch, name: str, power: float) -> None:
    z, y = _np(*batch)
    w = _norm(1.0 / np.power(np.asarray(COUNTS, float), power))
    _check(name, batch, (w[y] * _nll(z, y)).mean())
    # sum reduction is PyTorch's weighted cross-entropy sum
    torch_sum = F.cross_entropy(*batch, weight=torch.tensor(w, dtype=torch.float32), reduction="sum")
    assert build_loss(name, COUNTS, reduction="sum")(*batch).item() == pytest.approx(torch_sum.item(), rel=1e-5)


@pytest.mark.parametrize("alpha", [None, "inverse", [0.1, 0.2, 0.3, 0.4]])
def test_focal(batch, alpha) -> None:
    z, y = _np(*batch)
    logp = _log_softmax(z)[np.arange(len(y)), y]
    if alpha is None:
        a = np.ones(C)
    elif alpha == "inverse":
        a = _norm(1.0 / np.asarray(COUNTS, float))
    else:
        a = np.asarray(alpha)
    expected = (-a[y] * (1 - np.exp(logp)) ** 2.0 * logp).mean()
    _check("focal", batch, expected, gamma=2.0, alpha=alpha)


def test_focal_gamma_zero_is_ce(batch) -> None:
    assert build_loss("focal", COUNTS, gamma=0.0)(*batch).item() == pytest.approx(
        build_loss("ce", COUNTS)(*batch).item(), rel=1e-6)


@pytest.mark.parametrize("base", ["ce", "focal"])
def test_class_balanced(batch, base: str) -> None:
    z, y = _np(*batch)
    beta = 0.99
    n = np.asarray(COUNTS, float)
    w = _norm((1 - beta) / (1 - beta**n))
    logp = _log_softmax(z)[np.arange(len(y)), y]
    base_loss = -logp if base == "ce" else -((1 - np.exp(logp)) ** 1.5) * logp
    _check("class_balanced", batch, (w[y] * base_loss).mean(), beta=beta, base=base, gamma=1.5)


def test_class_balanced_beta_zero_is_ce(batch) -> None:
    assert build_loss("class_balanced", COUNTS, beta=0.0)(*batch).item() == pytest.approx(
        build_loss("ce", COUNTS)(*batch).item(), rel=1e-6)


def test_ldam_margins_and_drw(batch) -> None:
    z, y = _np(*batch)
    n = np.asarray(COUNTS, float)
    delta = n**-0.25
    delta = delta * 0.5 / delta.max()
    s = 5.0
    shifted = z.copy()
    shifted[np.arange(len(y)), y] -= delta[y]
    plain = _nll(s * shifted, y)
    w = _norm((1 - 0.9999) / (1 - 0.9999**n))
    loss = build_loss("ldam", COUNTS, max_m=0.5, s=s, drw_start=0.5)
    assert loss.margins.numpy() == pytest.approx(delta, rel=1e-6)
    loss.set_progress(0.49)
    assert not loss.reweighting
    assert loss(*batch).item() == pytest.approx(plain.mean(), rel=1e-5)
    loss.set_progress(0.5)
    assert loss.reweighting
    assert loss(*batch).item() == pytest.approx((w[y] * plain).mean(), rel=1e-5)
    never = build_loss("ldam", COUNTS, s=s, drw_start=None)
    never.set_progress(1.0)
    assert not never.reweighting
    with pytest.raises(ConfigError, match="drw_start"):
        build_loss("ldam", COUNTS, drw_start=1.5)


def test_logit_adjusted(batch) -> None:
    z, y = _np(*batch)
    prior = np.asarray(COUNTS, float) / sum(COUNTS)
    _check("logit_adjusted", batch, _nll(z + 1.5 * np.log(prior), y).mean(), tau=1.5)


def test_dice(batch) -> None:
    z, y = _np(*batch)
    p = np.exp(_log_softmax(z))
    q = (1 - p) ** 0.7 * p
    onehot = np.eye(C)[y]
    g = 0.5
    expected = (1 - (2 * q * onehot + g) / (q + onehot + g)).mean(axis=1).mean()
    _check("dice", batch, expected, alpha=0.7, gamma=g)


def test_label_smoothing(batch) -> None:
    z, y = _np(*batch)
    logp = _log_softmax(z)
    eps = 0.2
    expected = (-(1 - eps) * logp[np.arange(len(y)), y] - eps * logp.mean(axis=1)).mean()
    _check("label_smoothing", batch, expected, epsilon=eps)
    torch_ls = F.cross_entropy(*batch, label_smoothing=eps)
    assert build_loss("label_smoothing", COUNTS, epsilon=eps)(*batch).item() == pytest.approx(torch_ls.item(),
                                                                                           rel=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES.names()))
def test_token_shape_ignore_and_grad(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, C, generator=g, requires_grad=True)
    labels = torch.randint(0, C, (2, 5), generator=g)
    labels[0, 3:] = -100
    loss = build_loss(name, COUNTS)
    flat = loss(logits.reshape(-1, C), labels.reshape(-1))
    out = loss(logits, labels)
    assert out.item() == pytest.approx(flat.item(), rel=1e-6)
    out.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad[0, 3:].abs().sum() == 0  # ignored positions get no gradient
    none = build_loss(name, COUNTS, reduction="none")(logits.detach(), labels)
    assert none.shape == labels.shape and (none[0, 3:] == 0).all()
    all_ignored = loss(logits, torch.full_like(labels, -100))
    assert all_ignored.item() == 0.0 and all_ignored.requires_grad


def test_half_precision_logits(batch) -> None:
    logits, labels = batch
    loss = build_loss("focal", COUNTS)
    assert loss(logits.half(), labels).item() == pytest.approx(loss(logits, labels).item(), rel=1e-2)


def test_class_weights_normalised() -> None:
    for scheme in ("inverse", "sqrt", "effective"):
        w = class_weights(COUNTS, scheme)
        assert w.sum().item() == pytest.approx(C, rel=1e-6)
        assert (w[:-1] <= w[1:]).all()  # rarer class, larger weight


def test_bad_input() -> None:
    with pytest.raises(ConfigError) as err:
        build_loss("focall", COUNTS)
    assert "focal" in err.value.hint and "ldam" in err.value.hint
    with pytest.raises(DataError, match="zero training examples"):
        build_loss("weighted_ce", [10, 0, 5])
    build_loss("ce", [10, 0, 5])  # plain CE does not use counts
    with pytest.raises(ConfigError, match="unknown option"):
        build_loss("focal", COUNTS, gama=2.0)
    with pytest.raises(ConfigError):
        build_loss("focal", COUNTS, gamma=-1.0)
    with pytest.raises(ConfigError):
        build_loss("class_balanced", COUNTS, beta=1.0)
    with pytest.raises(ConfigError):
        build_loss("class_balanced", COUNTS, base="dice")
    with pytest.raises(ConfigError):
        build_loss("focal", COUNTS, alpha=[1.0, 2.0])
    with pytest.raises(ConfigError):
        build_loss("label_smoothing", COUNTS, epsilon=1.0)
    with pytest.raises(DataError):
        build_loss("ce", [5])
    with pytest.raises(ValueError, match="classes"):
        build_loss("ce", COUNTS)(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must be"):
        build_loss("ce", COUNTS)(torch.zeros(2, C), torch.tensor([0, 7]))
