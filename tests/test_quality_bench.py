"""``benchmarks/quality.py``: its summaries, flag parsing and table (fast), and one end-to-end smoke run of every
model row on 300 real Pang & Lee sentences (slow: real Trainer, SetFit and skewtune trainings in child processes)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark("quality.py", "quality_bench")


def run(f1: float, seconds: float) -> dict:
    return {"test": {"macro_f1": f1, "balanced_macro_f1": f1, "accuracy": f1}, "train_seconds": seconds,
            "train_cpu_seconds": 2 * seconds, "trainable_params": 10}


def test_summaries_are_mean_and_sample_std(bench: ModuleType) -> None:
    s = bench.summarize([run(0.70, 10), run(0.80, 30)])
    assert s["seeds"] == 2 and abs(s["macro_f1"] - 0.75) < 1e-12 and abs(s["macro_f1_std"] - 0.0707107) < 1e-6
    assert s["train_seconds"] == 20 and s["train_cpu_seconds"] == 40
    assert bench.summarize([run(0.7, 1)])["macro_f1_std"] == 0.0


def test_flags_parse_as_the_cli_parses_them(bench: ModuleType) -> None:
    args = bench.parse_args(["--skewtune", "wide=target_modules=all,lora_r=16,sampler=none",
                             "--skewtune", "pang_lee:long=num_train_epochs=3", "--grid", "tweets:full_ft_lrs=5e-5"])
    configs = bench.skewtune_configs(args, "tweets")
    assert configs == {"default": {}, "wide": {"target_modules": "all", "lora_r": 16, "sampler": None}}
    assert bench.skewtune_configs(args, "pang_lee")["long"] == {"num_train_epochs": 3.0}  # that dataset's own
    assert bench.grid_value(args, "tweets", "full_ft_lrs") == [5e-5]
    assert bench.grid_value(args, "pang_lee", "full_ft_lrs") == [3e-5, 5e-5, 1e-4]
    assert bench.grid_value(args, "tweets", "full_ft_lrs_2ep", "full_ft_lrs") == [5e-5]  # falls back to the dataset's
    two = bench.parse_args(["--grid", "tweets:full_ft_lrs_2ep=1e-4"])
    assert bench.grid_value(two, "tweets", "full_ft_lrs_2ep", "full_ft_lrs") == [1e-4]
    assert bench.grid_value(two, "tweets", "full_ft_lrs_1ep", "full_ft_lrs") == [3e-5, 5e-5, 1e-4]
    with pytest.raises(SystemExit, match="not a skewtune train flag"):
        bench.skewtune_configs(bench.parse_args(["--skewtune", "x=no_such_flag=1"]), "tweets")


@pytest.mark.slow
def test_every_model_row_runs_on_real_data(bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "PARTIAL", tmp_path / "quality_partial.json")
    monkeypatch.setattr(bench.harness, "QUICK_RESULTS", tmp_path)
    assert bench.main(["--quick", "--datasets", "pang_lee", "--name", "q", "--threads", "1"]) == 0
    result = json.loads((tmp_path / "q.json").read_text())
    table = result["rows"]["pang_lee"]
    assert set(table) == {"majority", "tfidf", "peft", "full_ft_1ep", "setfit", "skewtune_default"}
    for name, entry in table.items():
        run_ = entry["runs"][0]
        assert run_["sizes"] == {"train": 300, "validation": 200, "test": 200}  # the same split for every row
        assert 0.0 < run_["test"]["macro_f1"] <= 1.0, name
    assert table["majority"]["summary"]["accuracy"] == 0.5  # Pang & Lee: balanced, two classes
    assert table["full_ft_1ep"]["summary"]["trainable_params"] > 100 * table["peft"]["summary"]["trainable_params"]
    assert "| **skewtune default** |" in (tmp_path / "q.md").read_text()
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the plot
