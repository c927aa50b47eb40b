"""``benchmarks/imbalance.py``'s plumbing: the long-tail subsample, method names, aggregation, goal check, report.

The benchmark itself (MiniLM 8-bit, about an hour of CPU) is not run here; one training of the tiny random
backbone checks that reusing a training's logits for a post-hoc rule gives what ``--post_hoc`` gives.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from skewtune.data import Splits
from skewtune.data.datasets import normalise_for_dedup
from skewtune.errors import ConfigError
from tests.conftest import REPO, make_texts


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imbalance_benchmark", REPO / "benchmarks" / "imbalance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


COUNTS = {"train": (300, 240, 120), "validation": (60, 48, 24), "test": (50, 40, 20)}
NAMES = ("negative", "neutral", "positive")


def canonical_splits() -> Splits:
    """A skewed 3-class corpus with disjoint, unique texts per split (negative > neutral > positive)."""
    texts, labels = make_texts(3 * 450, seed=3, classes=3)
    pool: dict[str, list[str]] = {name: [t for t, y in zip(texts, labels) if y == name] for name in NAMES}
    parts: dict[str, tuple[list[str], list[str]]] = {}
    for split, counts in COUNTS.items():
        xs: list[str] = []
        ys: list[str] = []
        for name, n in zip(NAMES, counts):
            xs += pool[name][:n]
            ys += [name] * n
            pool[name] = pool[name][n:]
        parts[split] = (xs, ys)
    return Splits(*parts["train"], *parts["validation"], *parts["test"], labels=sorted(NAMES), name="toy")


def decay(n_max: int, ratio: float, i: int, classes: int = 3) -> int:
    return int(math.floor(n_max * ratio ** (-i / (classes - 1)) + 0.5))


# ------------------------------------------------------------------------------------------- subsampling


@pytest.mark.parametrize("ratio", [10.0, 50.0, 100.0, 7.5])
@pytest.mark.parametrize("n_max", [100, 400, 1000])
def test_sizes_follow_exponential_decay(bench: ModuleType, ratio: float, n_max: int) -> None:
    counts = {"negative": 12780, "neutral": 11550, "positive": 5432}
    sizes = bench.target_sizes(counts, ratio, n_max)
    order = bench.class_order(counts)
    assert order == ["negative", "neutral", "positive"]
    assert [sizes[c] for c in order] == [decay(n_max, ratio, i) for i in range(3)]
    assert sizes["negative"] == n_max
    # ρ respected up to rounding the smallest class
    n_min = sizes["positive"]
    assert abs(n_max / n_min - ratio) <= ratio * 0.5 / n_min + 1e-9
    if (n_max / ratio).is_integer():
        assert n_max / n_min == ratio


def test_decay_for_more_classes_and_natural_proportions(bench: ModuleType) -> None:
    counts = {"a": 50, "b": 400, "c": 1000, "d": 90}
    sizes = bench.target_sizes(counts, 1000.0, 2000)
    assert [sizes[c] for c in ("c", "b", "d", "a")] == [2000, 200, 20, 2]  # 1000^(-i/3) = 10^(-i)
    natural = bench.target_sizes(counts, None, 500)
    assert natural == {"c": 500, "b": 200, "d": 45, "a": 25}
    assert bench.target_sizes({"x": 10, "y": 1}, 1e6, 10)["y"] == 1  # never an empty class
    assert bench.target_sizes(counts, 100.0, 100, min_per_class=5)["a"] == 5


def test_long_tail_splits(bench: ModuleType) -> None:
    canonical = canonical_splits()
    kw: dict[str, Any] = {"val_n_max": 40, "val_min": 3, "test_per_class": 30}
    ten = bench.long_tail_splits(canonical, 10.0, 100, 0, **kw)
    hundred = bench.long_tail_splits(canonical, 100.0, 100, 0, **kw)
    assert Counter(ten.train_labels) == {"negative": 100, "neutral": 32, "positive": 10}
    assert Counter(hundred.train_labels) == {"negative": 100, "neutral": 10, "positive": 1}
    assert hundred.info["realized_ratio"] == 100.0
    # validation: the same decay from val_n_max, with the floor
    assert Counter(ten.validation_labels) == {"negative": 40, "neutral": 13, "positive": 4}
    assert Counter(hundred.validation_labels) == {"negative": 40, "neutral": 4, "positive": 3}
    # deterministic per seed, different across seeds, nested across ratios (same majority rows)
    again = bench.long_tail_splits(canonical, 10.0, 100, 0, **kw)
    assert (again.train_texts, again.validation_texts) == (ten.train_texts, ten.validation_texts)
    other = bench.long_tail_splits(canonical, 10.0, 100, 1, **kw)
    assert set(other.train_texts) != set(ten.train_texts)
    assert Counter(other.train_labels) == Counter(ten.train_labels)
    assert set(hundred.train_texts) <= set(ten.train_texts)
    majority = {t for t, y in zip(hundred.train_texts, hundred.train_labels) if y == "negative"}
    assert majority == {t for t, y in zip(ten.train_texts, ten.train_labels) if y == "negative"}
    # natural: proportions of the canonical training split scaled to n_max
    natural = bench.long_tail_splits(canonical, None, 100, 0, **kw)
    assert Counter(natural.train_labels) == {"negative": 100, "neutral": 80, "positive": 40}
    # test: balanced, identical for every ratio and seed, disjoint from training and validation
    for splits in (ten, hundred, other, natural):
        assert Counter(splits.test_labels) == {"negative": 20, "neutral": 20, "positive": 20}  # min class count 20
        assert splits.test_texts == ten.test_texts
        seen = {normalise_for_dedup(t) for t in splits.train_texts + splits.validation_texts}
        assert not seen & {normalise_for_dedup(t) for t in splits.test_texts}
        assert set(splits.train_texts) <= set(canonical.train_texts)
        assert splits.labels == canonical.labels
    assert Counter(bench.long_tail_splits(canonical, 10.0, 100, 0, val_n_max=40, val_min=3,
                                          test_per_class=5).test_labels) == dict.fromkeys(NAMES, 5)
    with pytest.raises(ConfigError, match="has 300 'negative' rows, the subsample needs 301"):
        bench.long_tail_splits(canonical, None, 301, 0, **kw)


def test_tweets_default_subsample(bench: ModuleType) -> None:
    from skewtune.data import load_dataset_splits

    canonical = load_dataset_splits("tweets", seed=bench.SPLIT_SEED)
    splits = bench.long_tail_splits(canonical, 100.0, 400, 2, val_n_max=200, val_min=5, test_per_class=150)
    assert splits.info["class_order"] == ["negative", "neutral", "positive"]
    assert Counter(splits.train_labels) == {"negative": 400, "neutral": 40, "positive": 4}
    assert Counter(splits.validation_labels) == {"negative": 200, "neutral": 20, "positive": 5}
    assert Counter(splits.test_labels) == dict.fromkeys(NAMES, 150)
    train = {normalise_for_dedup(t) for t in splits.train_texts}
    assert not train & {normalise_for_dedup(t) for t in splits.test_texts}
    natural = bench.long_tail_splits(canonical, None, 400, 2, val_n_max=200, val_min=5, test_per_class=150)
    assert 2.3 < natural.info["realized_ratio"] < 2.4


# ------------------------------------------------------------------------------------------- names and flags


def test_method_names(bench: ModuleType) -> None:
    names = bench.registry_names()
    m = bench.parse_method("ldam+sqrt_frequency+bias_tuning", names)
    assert (m.loss, m.sampler, m.augment, m.post_hoc) == ("ldam", "sqrt_frequency", None, "bias_tuning")
    assert m.base == ("ldam", "sqrt_frequency", None) and m.family == "combination" and m.techniques == 3
    assert bench.parse_method("class_balanced", names).loss == "class_balanced"
    sampler = bench.parse_method("sampler:class_balanced", names)
    assert (sampler.loss, sampler.sampler, sampler.family) == ("ce", "class_balanced", "sampler")
    assert bench.parse_method("ce", names).family == "baseline"
    assert bench.parse_method("ce+bias_tuning", names).family == "post_hoc"
    assert bench.parse_method("eda", names).family == "augment"
    for bad in ("nope", "focal+ldam", "smote", "contextual", "loss:random_over", "kind:ce", ""):
        with pytest.raises(ValueError):
            bench.parse_method(bad, names)
    methods = [bench.parse_method(s, names) for s in ("ce", "ce+bias_tuning", "focal", "ce+logit_adjustment")]
    assert bench.training_order(methods) == [("ce", None, None), ("focal", None, None)]
    assert bench.base_label(("ce", "class_balanced", "eda")) == "ce+sampler:class_balanced+eda"
    for spec in bench.FULL_METHODS + bench.QUICK_METHODS:
        bench.parse_method(spec, names)


def test_ratio_and_seed_parsing(bench: ModuleType) -> None:
    assert bench.parse_ratio("natural") is None and bench.parse_ratio(" 100 ") == 100.0
    for bad in ("1", "0.5", "-3", "inf", "nan", "ten"):
        with pytest.raises(ValueError):
            bench.parse_ratio(bad)
    assert [bench.ratio_key(r) for r in (None, 10.0, 12.5)] == ["natural", "10", "12.5"]
    assert bench.parse_seeds("3") == [0, 1, 2] and bench.parse_seeds("4,7") == [4, 7]
    for bad in ("0", "1,1", "-1,2"):
        with pytest.raises(ValueError):
            bench.parse_seeds(bad)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--ratios", "natural,1"], "ratio must be > 1"),
    (["--ratios", "0.5"], "ratio must be > 1"),
    (["--methods", "ce", "fancy_loss"], "valid names"),
    (["--seeds", "0"], "--seeds"),
    (["--n_max", "0"], "--n_max must be"),
])
def test_bad_flags_exit_2(bench: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    with pytest.raises(SystemExit) as info:
        bench.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err
    if needle == "valid names":
        assert "focal" in err and "sqrt_frequency" in err and "bias_tuning" in err


def test_train_rows_and_estimate(bench: ModuleType) -> None:
    sizes = {"negative": 400, "neutral": 40, "positive": 4}
    assert bench._train_rows(sizes, ("ce", None, None), 0.5) == 444
    assert bench._train_rows(sizes, ("ce", "random_over", None), 0.5) == 1200
    assert bench._train_rows(sizes, ("ce", "random_under", None), 0.5) == 12
    assert bench._train_rows(sizes, ("ce", None, "eda"), 0.5) == 800
    plan = [{"train_rows": 580, "epochs": 1.0, "eval_rows": 130}]
    expected = bench.OVERHEAD_PER_TRAINING_S + 580 / bench.TRAIN_PER_S + 130 / bench.PREDICT_PER_S
    assert bench.estimate_seconds(plan) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------- aggregation


def records(values: dict[tuple[str, str], list[float]], recall: float = 0.5) -> list[dict[str, Any]]:
    out = []
    for (ratio, method), per_seed in values.items():
        for seed, f1 in reversed(list(enumerate(per_seed))):  # out of seed order on purpose
            out.append({"ratio": ratio, "method": method, "seed": seed, "macro_f1": f1, "minority_recall": recall,
                        "validation_macro_f1": f1, "wall_s": 10.0 + seed})
    return out


def methods_of(bench: ModuleType, *specs: str) -> list[Any]:
    return [bench.parse_method(s, bench.registry_names()) for s in specs]


def test_aggregate(bench: ModuleType) -> None:
    results = bench.aggregate(records({("100", "ce"): [0.30, 0.33, 0.36], ("100", "focal"): [0.5]}))
    ce = results["100"]["ce"]
    assert ce["seeds"] == [0, 1, 2] and ce["macro_f1"] == [0.30, 0.33, 0.36]
    assert ce["macro_f1_mean"] == pytest.approx(0.33) and ce["macro_f1_std"] == pytest.approx(0.03)  # sample std
    assert ce["minority_recall_mean"] == 0.5 and ce["minority_recall_std"] == 0.0
    assert ce["wall_s"] == [10.0, 11.0, 12.0]
    assert results["100"]["focal"]["macro_f1_std"] == 0.0  # one seed
    assert math.isnan(bench.mean_std([])[0])


def test_goal_check(bench: ModuleType) -> None:
    methods = methods_of(bench, "ce", "ce+bias_tuning", "logit_adjusted+bias_tuning", "ldam+sqrt_frequency")
    values = {
        ("100", "ce"): [0.20, 0.22, 0.24],
        ("100", "ce+bias_tuning"): [0.40, 0.40, 0.40],  # best single technique, not a combination
        ("100", "logit_adjusted+bias_tuning"): [0.31, 0.33, 0.35],  # +11 points
        ("100", "ldam+sqrt_frequency"): [0.30, 0.30, 0.30],
        ("natural", "ce"): [0.60, 0.60, 0.60],
        ("natural", "logit_adjusted+bias_tuning"): [0.61, 0.61, 0.61],  # +1 point: not enough
        ("natural", "ldam+sqrt_frequency"): [0.605, 0.605, 0.605],
    }
    goal = bench.goal_check(bench.aggregate(records(values)), methods)
    rho = goal["per_ratio"]["100"]
    assert rho["best_combination"]["method"] == "logit_adjusted+bias_tuning"
    assert rho["best_combination"]["delta_points"] == pytest.approx(11.0)
    assert rho["best_combination"]["paired_delta_points"] == pytest.approx([11.0, 11.0, 11.0])
    assert rho["best_method"]["method"] == "ce+bias_tuning" and rho["met"] is True
    natural = goal["per_ratio"]["natural"]
    assert natural["best_combination"]["delta_points"] == pytest.approx(1.0)
    assert natural["met"] is False and goal["met"] is False
    values[("natural", "logit_adjusted+bias_tuning")] = [0.62, 0.615, 0.62]
    goal = bench.goal_check(bench.aggregate(records(values)), methods)
    assert goal["per_ratio"]["natural"]["best_combination"]["delta_points"] == pytest.approx(1.83333, abs=1e-4)
    assert goal["met"] is True
    only_rho = {k: v for k, v in values.items() if k[0] == "100"}  # natural not run: not evaluable
    partial = bench.goal_check(bench.aggregate(records(only_rho)), methods)
    assert partial["met"] is None and partial["per_ratio"]["natural"]["met"] is None
    no_combo = bench.goal_check(bench.aggregate(records({("100", "ce"): [0.2], ("natural", "ce"): [0.5]})), methods)
    assert no_combo["met"] is None and no_combo["per_ratio"]["100"]["best_combination"] is None


def test_markdown_and_plot(bench: ModuleType, tmp_path: Path) -> None:
    methods = methods_of(bench, "ce", "focal", "logit_adjusted+bias_tuning")
    offset = {"ce": 0.0, "focal": 0.1, "logit_adjusted+bias_tuning": 0.05}  # combination: +5 points
    values = {(r, m.name): [0.3 + 0.01 * i + offset[m.name], 0.31 + 0.01 * i + offset[m.name]]
              for i, r in enumerate(("natural", "100")) for m in methods}
    results = bench.aggregate(records(values))
    sizes = {"natural": {"train": {"negative": 400, "neutral": 362, "positive": 170},
                         "validation": {"negative": 200, "neutral": 181, "positive": 85}, "realized_ratio": 2.35},
             "100": {"train": {"negative": 400, "neutral": 40, "positive": 4},
                     "validation": {"negative": 200, "neutral": 20, "positive": 5}, "realized_ratio": 100.0}}
    settings = {"ratios": ["natural", "100"], "class_order": list(NAMES), "n_max": 400, "seeds": [0, 1],
                "val_n_max": 200, "val_min": 5, "test_per_class": 150, "lora_r": 8, "learning_rate": "1e-3",
                "per_device_train_batch_size": 32, "epochs": 1.5, "max_length": 64, "methods": [m.name for m in methods],
                "method_parts": {m.name: {"family": m.family} for m in methods}}
    result = {"command": "python benchmarks/imbalance.py", "preset": "full", "complete": True, "settings": settings,
              "sizes": sizes, "results": results, "goal": bench.goal_check(results, methods),
              "plot": str(tmp_path / "imbalance.png"), "total_wall_s": 120.0,
              "runs": [{"training": "ce", "ratio": "100", "seed": 0, "wall_s": 20.0, "torch_threads": 2},
                       {"training": "focal", "ratio": "100", "seed": 1, "error": "TrainingError: boom", "wall_s": 1.0}],
              "machine": {"cpu_count": 2, "load_average_at_start": [0.1, 0.2, 0.3]}}
    text = bench.markdown(result)
    assert "| ce | 30.5 ± 0.7 | 31.5 ± 0.7 |" in text
    assert "| focal | **40.5 ± 0.7** |" in text
    assert "natural (2.35)" in text and "![macro-F1 vs ρ](imbalance.png)" in text
    assert "Failed trainings: focal ρ 100 seed 1: TrainingError: boom" in text
    assert "NOT met" in text
    png = bench.plot(result, tmp_path / "imbalance.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------- post-hoc reuse


def test_reused_logits_match_the_pipeline_post_hoc(bench: ModuleType, tiny_bert: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``X+bias_tuning`` from X's logits == a training with ``--post_hoc bias_tuning`` (same rule, same test F1)."""
    from skewtune.training import TrainConfig, fit_decision_rule, prepare, train
    from skewtune.training.pipeline import evaluate_split

    monkeypatch.setenv("SKEWTUNE_NUM_THREADS", "1")  # train_one sets it too; restored after the test
    splits = bench.long_tail_splits(canonical_splits(), 10.0, 100, 0, val_n_max=40, val_min=3, test_per_class=20)
    settings = {**bench.SHARED, "backbone": str(tiny_bert), "quant": "none", "learning_rate": "1e-2",
                "num_train_epochs": 2.0, "max_length": 32, "per_device_train_batch_size": 16}
    config = bench.training_config(settings, ("weighted_ce", None, None), seed=3)
    trained = bench.train_one({"config": config, "splits": splits, "threads": 1})
    assert "error" not in trained, trained
    assert trained["train_size"] == 142 and trained["class_counts"] == [100, 32, 10]
    trained["minority"] = "positive"
    method = bench.parse_method("weighted_ce+bias_tuning", bench.registry_names())
    reused = bench.score_method(method, trained)

    cfg = TrainConfig(**{**config, "post_hoc": "bias_tuning"}, output_dir=str(tmp_path / "pipeline"))
    run = prepare(cfg, recipe="test", splits=bench.long_tail_splits(canonical_splits(), 10.0, 100, 0, val_n_max=40,
                                                                    val_min=3, test_per_class=20))
    train(run)
    fit_decision_rule(run)
    assert reused["decision"] == run.decision
    test = evaluate_split(run, "test")
    assert reused["macro_f1"] == pytest.approx(test["macro_f1"])
    assert reused["minority_recall"] == pytest.approx(test["per_class_recall"]["positive"])
    plain = bench.score_method(bench.parse_method("weighted_ce", bench.registry_names()), trained)
    assert plain["decision"] is None and plain["wall_s"] >= trained["wall_s"]
