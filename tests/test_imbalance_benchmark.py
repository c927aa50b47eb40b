"""``benchmarks/imbalance.py``'s plumbing: method names, aggregation, goal check, report (the long-tail subsample is
the library's ``skewtune.imbalance.long_tail_splits``: ``tests/test_imbalance_long_tail.py``).

The benchmark itself (MiniLM 8-bit, about an hour of CPU) is not run here; one training of the tiny random
backbone checks that reusing a training's logits for a post-hoc rule gives what ``--post_hoc`` gives.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from skewtune.imbalance import long_tail_splits
from tests.conftest import load_benchmark
from tests.test_imbalance_long_tail import NAMES, canonical_splits


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("imbalance.py", "imbalance_benchmark")


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
    splits = long_tail_splits(canonical_splits(), 10.0, 100, random_state=0, val_n_max=40, val_min=3, test_per_class=20)
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
    run = prepare(cfg, recipe="test", splits=long_tail_splits(canonical_splits(), 10.0, 100, random_state=0, val_n_max=40,
                                                              val_min=3, test_per_class=20))
    train(run)
    fit_decision_rule(run)
    assert reused["decision"] == run.decision
    test = evaluate_split(run, "test")
    assert reused["macro_f1"] == pytest.approx(test["macro_f1"])
    assert reused["minority_recall"] == pytest.approx(test["per_class_recall"]["positive"])
    plain = bench.score_method(bench.parse_method("weighted_ce", bench.registry_names()), trained)
    assert plain["decision"] is None and plain["wall_s"] >= trained["wall_s"]
