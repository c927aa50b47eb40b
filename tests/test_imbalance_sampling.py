"""Row resamplers, SMOTE on embeddings and DDP-aware class-balanced batch samplers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from skewtune.errors import ConfigError, DataError
from skewtune.imbalance.sampling import (
    SAMPLERS,
    ClassBalancedBatchSampler,
    EmbeddingSMOTE,
    TextResampler,
    WeightedClassSampler,
    build_sampler,
    ratio_strategy,
)

POS = ["great flight crew", "loved the service", "awesome friendly staff", "great seats and food"]
NEG = ["terrible delay again", "lost my bag", "rude staff and delay", "worst airline ever", "cancelled flight",
       "delay delay delay", "no food terrible service", "bag lost again terrible"]
NEU = ["flight at noon", "which gate", "boarding now", "seat map", "landing soon", "check in online",
       "flight number", "gate change", "arrival time", "terminal two", "bag drop", "window seat"]


@pytest.fixture()
def text_data() -> tuple[list[str], np.ndarray]:
    texts = [f"{t} {i}" for i, t in enumerate(POS + NEG + NEU)]
    labels = np.array([2] * len(POS) + [0] * len(NEG) + [1] * len(NEU))
    return texts, labels


def _aligned(X, y, X_res, y_res, idx) -> None:
    assert len(X_res) == len(y_res) == len(idx)
    for i, x, lab in zip(idx, X_res, y_res):
        assert x == X[i] and lab == y[i]


def test_random_over_balances_texts(text_data) -> None:
    X, y = text_data
    rs = TextResampler("random_over", seed=3)
    X_res, y_res = rs.fit_resample(X, y)
    assert isinstance(X_res, list)
    assert Counter(y_res.tolist()) == {0: 12, 1: 12, 2: 12}
    _aligned(X, y, X_res, y_res, rs.sample_indices_)
    assert rs.fit_resample(X, y)[0] == X_res  # deterministic by seed


def test_ratio_over_and_under(text_data) -> None:
    X, y = text_data
    _, y_over = TextResampler("random_over", ratio=0.5).fit_resample(X, y)
    assert Counter(y_over.tolist()) == {0: 8, 1: 12, 2: 6}
    _, y_under = TextResampler("random_under", ratio=0.5).fit_resample(X, y)
    assert Counter(y_under.tolist()) == {0: 8, 1: 8, 2: 4}
    assert ratio_strategy(y, 1.0, "under") == {0: 4, 1: 4, 2: 4}


def test_index_rows(text_data) -> None:
    _, y = text_data
    rows = np.arange(100, 100 + len(y))
    X_res, y_res = TextResampler("random_under").fit_resample(rows, y)
    assert isinstance(X_res, np.ndarray) and Counter(y_res.tolist()) == {0: 4, 1: 4, 2: 4}
    assert all(y[r - 100] == lab for r, lab in zip(X_res, y_res))


@pytest.mark.parametrize("method", ["tomek", "enn", "near_miss", "one_sided_selection", "neighbourhood_cleaning"])
def test_neighbour_methods_on_tfidf_and_embeddings(text_data, method: str) -> None:
    X, y = text_data
    kw = {"n_neighbors": 1} if method in ("enn", "neighbourhood_cleaning") else {}
    rs = TextResampler(method, **kw)
    X_res, y_res = rs.fit_resample(X, y)  # TF-IDF of the texts
    _aligned(X, y, X_res, y_res, rs.sample_indices_)
    assert len(set(rs.sample_indices_.tolist())) == len(rs.sample_indices_)  # rows only removed
    assert Counter(y_res.tolist())[2] == 4  # minority untouched
    emb = np.random.default_rng(0).normal(size=(len(y), 8)) + y[:, None] * 2.0
    X_res2, y_res2 = TextResampler(method, **kw).fit_resample(np.arange(len(y)), y, features=emb)
    assert len(X_res2) == len(y_res2) <= len(y)


def test_smote_family_on_embeddings() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 40 + [1] * 12 + [2] * 8)
    E = rng.normal(size=(60, 6)).astype(np.float32) + y[:, None].astype(np.float32) * 0.8
    for kind in ("smote", "adasyn", "borderline"):
        sm = EmbeddingSMOTE(kind, k_neighbors=3, seed=1)
        E_res, y_res = sm.fit_resample(E, y)
        np.testing.assert_allclose(E_res[:60], E)
        assert (y_res[:60] == y).all() and sm.synthetic_mask_[60:].all() and not sm.synthetic_mask_[:60].any()
        counts = Counter(y_res.tolist())
        assert counts[0] == 40 and counts[1] > 12 and counts[2] > 8
        if kind == "smote":
            assert counts == {0: 40, 1: 40, 2: 40}
            for c in (1, 2):  # interpolations stay inside the class's bounding box
                new = E_res[sm.synthetic_mask_ & (y_res == c)]
                assert (new >= E[y == c].min(0) - 1e-5).all() and (new <= E[y == c].max(0) + 1e-5).all()
        E_again, _ = EmbeddingSMOTE(kind, k_neighbors=3, seed=1).fit_resample(E, y)
        np.testing.assert_array_equal(E_again, E_res)
    _, y_half = EmbeddingSMOTE("smote", ratio=0.5, k_neighbors=3).fit_resample(E, y)
    assert Counter(y_half.tolist()) == {0: 40, 1: 20, 2: 20}


def test_smote_bad_input() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 3)
    E = rng.normal(size=(23, 4))
    with pytest.raises(DataError, match=r"k_neighbors=5 <= \(rows of class 1\) - 1 = 2") as err:
        EmbeddingSMOTE("smote").fit_resample(E, y)
    assert "k_neighbors <= 2" in err.value.hint
    with pytest.raises(DataError, match="k_neighbors"):
        EmbeddingSMOTE("adasyn", k_neighbors=3).fit_resample(E, y)
    with pytest.raises(ConfigError, match="token ids"):
        EmbeddingSMOTE("smote", k_neighbors=2).fit_resample(rng.integers(0, 100, size=(23, 4)), y)
    with pytest.raises(ConfigError, match="texts"):
        EmbeddingSMOTE("smote").fit_resample(["a", "b"], [0, 1])
    with pytest.raises(ConfigError) as err2:
        EmbeddingSMOTE("svmsmote")
    assert "borderline" in err2.value.hint


def test_resampler_bad_input(text_data) -> None:
    X, y = text_data
    with pytest.raises(ConfigError) as err:
        build_sampler("smotetomek")
    assert "random_over" in err.value.hint and "class_balanced" in err.value.hint
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            TextResampler("random_over", ratio=bad)
    with pytest.raises(ConfigError, match="no target ratio"):
        TextResampler("tomek", ratio=0.5)
    with pytest.raises(ConfigError, match="feature space"):
        TextResampler("tomek").fit_resample(np.arange(len(y)), y)
    with pytest.raises(DataError, match=r"class\(es\) \[3\] have zero"):
        TextResampler("random_over", num_classes=4).fit_resample(X, y)
    with pytest.raises(DataError, match="at least 2 classes"):
        TextResampler("random_over").fit_resample(X[:3], [0, 0, 0])
    with pytest.raises(DataError):
        TextResampler("random_over").fit_resample(X, y[:-1])
    with pytest.raises(DataError):
        TextResampler("enn", n_neighbors=50).fit_resample(X, y)


def test_weighted_class_sampler_frequencies() -> None:
    labels = np.array([0] * 900 + [1] * 90 + [2] * 10)
    drawn = labels[list(WeightedClassSampler(labels, "balanced", num_samples=30000, seed=0))]
    freq = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(freq, [1 / 3] * 3, atol=0.02)
    drawn = labels[list(WeightedClassSampler(labels, "sqrt", num_samples=30000, seed=0))]
    freq = np.bincount(drawn, minlength=3) / len(drawn)
    expected = np.sqrt([900, 90, 10]) / np.sqrt([900, 90, 10]).sum()
    np.testing.assert_allclose(freq, expected, atol=0.02)


def test_weighted_class_sampler_ddp_shards() -> None:
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    ranks = [WeightedClassSampler(labels, seed=7, num_replicas=3, rank=r) for r in range(3)]
    for s in ranks:
        s.set_epoch(4)
    shards = [list(s) for s in ranks]
    assert all(len(sh) == len(s) == 34 for sh, s in zip(shards, ranks))  # ceil(100 / 3)
    glob = ranks[0].global_indices().tolist()
    assert sorted(sum(shards, [])) == sorted(glob)  # the shards split one shared draw
    assert shards[1] == glob[1::3]
    again = WeightedClassSampler(labels, seed=7, num_replicas=3, rank=1)
    again.set_epoch(4)
    assert list(again) == shards[1]  # deterministic per seed + epoch
    again.set_epoch(5)
    assert list(again) != shards[1]
    distinct = [WeightedClassSampler(labels, num_samples=30, seed=1, num_replicas=3, rank=r, replacement=False)
                for r in range(3)]
    rows = [set(s) for s in distinct]
    assert all(len(r) == 30 for r in rows) and not (rows[0] & rows[1]) and not (rows[1] & rows[2])


def test_batch_sampler_and_registry() -> None:
    labels = [0] * 50 + [1] * 5
    bs = ClassBalancedBatchSampler(labels, batch_size=8, seed=0)
    batches = list(bs)
    assert len(batches) == len(bs) == 7 and [len(b) for b in batches][-1] == 55 - 48
    assert len(list(ClassBalancedBatchSampler(labels, batch_size=8, drop_last=True))) == 6
    bs.set_epoch(1)
    assert list(bs) != batches
    s = build_sampler("sqrt_frequency", labels=labels, num_samples=10)
    assert s.stage == "batches" and s.mode == "sqrt" and len(list(s)) == 10
    assert build_sampler("random_over").stage == "rows" and build_sampler("smote").stage == "embeddings"
    assert {"random_over", "tomek", "smote", "adasyn", "borderline_smote", "class_balanced"} <= set(SAMPLERS.names())
    with pytest.raises(ConfigError, match="needs the training labels"):
        build_sampler("class_balanced")
    with pytest.raises(ConfigError, match="unknown option"):
        build_sampler("class_balanced", labels=labels, batchsize=3)
    with pytest.raises(ConfigError, match="rank"):
        WeightedClassSampler(labels, num_replicas=2, rank=2)
    with pytest.raises(ConfigError, match="without replacement"):
        WeightedClassSampler(labels, num_samples=60, replacement=False)
    with pytest.raises(DataError, match="zero"):
        WeightedClassSampler(labels, num_classes=3)
