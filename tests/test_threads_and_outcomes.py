"""Issue 24 items 1, 7 and 11: the thread count from the CPUs actually free, one error line under `accelerate launch`,
no bitsandbytes chatter, and the outcomes a run used to keep silent (auto learning rate, sampler, baselines)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from skewtune.cli.main import main as cli_main
from skewtune.training import config as config_module
from skewtune.training.engine import busy_cpus, cgroup_cpu_quota, choose_threads, configure_threads
from skewtune.training.pipeline import below_baseline_warnings, majority_accuracy
from skewtune.utils.console import end_accelerate_launcher, launched_by_accelerate
from tests.conftest import make_texts, tiny_args, write_csv

REPO = Path(__file__).resolve().parents[1]
BNB_CHATTER = ("Skipping publisher trust check", "gemm_4bit_forward", "kernels-community")


# ---- 1. threads ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("affinity,quota,busy,processes,threads", [
    (2, None, 0.0, 1, 2),    # idle 2-core machine: both cores
    (2, None, 0.3, 1, 2),    # a little background noise does not cost a thread
    (2, None, 1.0, 1, 1),    # another job holds a core
    (2, None, 2.0, 1, 1),    # fully busy machine: one thread, never zero
    (2, None, 0.0, 2, 1),    # two DDP processes share the 2 cores
    (16, 4.0, 0.0, 1, 4),    # container: the cgroup quota, not the 16 visible CPUs
    (16, 4.0, 0.0, 2, 2),
    (16, 2.5, 0.0, 1, 2),    # a fractional quota rounds down
    (8, None, 3.0, 2, 2),    # 5 free cores over 2 processes
    (8, 16.0, 0.0, 1, 8),    # a quota above the affinity mask changes nothing
])
def test_choose_threads(affinity, quota, busy, processes, threads) -> None:
    choice = choose_threads(affinity, quota, busy, processes)
    assert choice.threads == threads
    assert choice.reason.startswith("auto: ") and f"{affinity} CPU" in choice.reason
    if quota is not None and quota < affinity:
        assert "cgroup quota" in choice.reason
    if busy >= 0.5:
        assert "busy with other jobs" in choice.reason
    if processes > 1:
        assert f"{processes} local processes" in choice.reason


def test_cgroup_quota_v2_v1_and_none(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1) is None
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_busy_cpus_is_a_share_of_the_sampled_cpus() -> None:
    cpus = os.sched_getaffinity(0)
    assert 0.0 <= busy_cpus(cpus, interval=0.05) <= len(cpus) + 1e-9


def test_launcher_is_left_alone_outside_accelerate_launch() -> None:
    assert not launched_by_accelerate()  # pytest's parent is a shell or the harness
    assert end_accelerate_launcher(2) is False and end_accelerate_launcher(0) is False


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_configure_threads_precedence_and_log_line(monkeypatch, caplog, restore_threads) -> None:
    accelerator = SimpleNamespace(device=torch.device("cpu"), num_processes=1, is_main_process=True)
    monkeypatch.setenv("SKEWTUNE_NUM_THREADS", "1")
    with caplog.at_level(logging.INFO, logger="skewtune"):
        assert configure_threads(accelerator, 2).threads == 2  # --num_threads wins over the environment
        assert torch.get_num_threads() == 2
        assert configure_threads(accelerator, "auto").reason == "SKEWTUNE_NUM_THREADS=1"
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("SKEWTUNE_NUM_THREADS")
        monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # as under accelerate launch (OMP_NUM_THREADS=1)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        auto = configure_threads(accelerator, None)
    assert auto.reason.startswith("auto: ") and 1 <= auto.threads <= len(os.sched_getaffinity(0))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("threads: ")]
    assert len(lines) == 3 and "--num_threads 2" in lines[0] and "auto: " in lines[2]
    assert configure_threads(SimpleNamespace(device=torch.device("cuda")), 3) is None


@pytest.mark.parametrize("value,ok", [("auto", True), (None, True), ("1", True), ("4", True), ("0", False),
                                      ("-1", False), ("two", False), ("1.5", False)])
def test_num_threads_flag_validation(value, ok) -> None:
    cfg = config_module.TrainConfig(num_threads=value)
    if ok:
        cfg.validate()
    else:
        with pytest.raises(config_module.ConfigError, match="--num_threads"):
            cfg.validate()


# ---- 11. outcomes --------------------------------------------------------------------------------------------

def test_below_baseline_warnings() -> None:
    good = {"eval_macro_f1": 0.77, "baseline_tfidf_macro_f1": 0.71, "eval_accuracy": 0.78,
            "baseline_majority_accuracy": 0.45}
    assert below_baseline_warnings(good) == []
    bad = {**good, "eval_macro_f1": 0.60, "eval_accuracy": 0.40}
    lines = below_baseline_warnings(bad)
    assert len(lines) == 2 and all(line.startswith("warning: ") and "\n" not in line for line in lines)
    assert "TF-IDF" in lines[0] and "0.6000" in lines[0] and "majority class" in lines[1]
    assert below_baseline_warnings({"eval_macro_f1": 0.1}) == []  # no baselines computed: nothing to compare
    assert majority_accuracy(["a", "a", "b"], ["a", "b", "b", "b"]) == 0.25


def test_run_log_names_threads_auto_lr_and_sampler(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    """A CLI run says which thread count it took, which learning rate auto chose, and what the default
    oversampling did (rows per class before → after) plus what --sampler none would change."""
    texts, labels = make_texts(240, seed=3)
    first = labels[0]
    others = [i for i, label in enumerate(labels) if label != first]
    keep = [i for i, label in enumerate(labels) if label == first] + others[::3]  # about 3:1
    data = write_csv(tmp_path / "skewed.csv", [texts[i] for i in keep], [labels[i] for i in keep])
    out = tmp_path / "run"
    argv = ["train", *tiny_args(tiny_bert, data, out, "--sampler", "random_over", "--learning_rate", "auto",
                                "--num_train_epochs", "2", "--baselines", "true", "--num_threads", "1")]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert "threads: 1 torch thread per process (--num_threads 1" in captured.err
    assert "learning rate: auto chose " in captured.err
    summary = " ".join(captured.out.split())
    assert "sampler random_over: training rows per class" in summary and " → " in summary
    assert "--sampler none would train on the" in summary
    assert "learning rate (auto)" in summary
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["sampler_rows"]
    assert sum(rows["before"].values()) < sum(rows["after"].values())
    assert len(set(rows["after"].values())) == 1  # balanced after random oversampling
    assert "baseline_majority_accuracy" in metrics


# ---- 7 + 11. through accelerate launch: one error line, no bitsandbytes chatter -------------------------------

def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "SKEWTUNE_"))}
    env.pop("HF_HUB_OFFLINE", None)  # as a user's shell: quiet_libraries must set it before bitsandbytes loads
    return env


def _last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate's CLI is not installed")
@pytest.mark.parametrize("recipe", ["lora_sentiment", "few_shot", "cross_lingual"])
def test_accelerate_launch_error_ends_with_the_one_line(recipe: str, tmp_path: Path) -> None:
    """`accelerate launch recipes/<recipe>.py --lora_dropout 1.5`: the last line is the error, no traceback
    (accelerate's CalledProcessError), no bitsandbytes kernel lines; accelerate exits 143 (its SIGTERM path)."""
    proc = subprocess.run(["accelerate", "launch", str(REPO / "recipes" / f"{recipe}.py"), "--lora_dropout", "1.5"],
                          capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=300)
    assert _last_line(proc.stderr) == "error: --lora_dropout must be in [0, 1), got 1.5 (fix: pass e.g. 0.1)"
    assert "Traceback" not in proc.stderr and "CalledProcessError" not in proc.stderr
    assert not any(s in proc.stderr for s in BNB_CHATTER), proc.stderr
    assert proc.returncode == 143


def test_recipe_and_cli_errors_print_no_bitsandbytes_lines(tiny_bert: Path, tmp_path: Path) -> None:
    """Plain `python recipes/lora_sentiment.py` (imports peft → bitsandbytes at the top) and `skewtune train`
    reaching the 8-bit backbone load: one error line, exit 2, nothing from bitsandbytes / kernels."""
    recipe = subprocess.run([sys.executable, str(REPO / "recipes" / "lora_sentiment.py"), "--lora_dropout", "1.5"],
                            capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=300)
    assert recipe.returncode == 2 and recipe.stderr.strip().startswith("error: --lora_dropout")
    assert len(recipe.stderr.strip().splitlines()) == 1, recipe.stderr
    data = write_csv(tmp_path / "d.csv", *make_texts(60, seed=2))
    cli = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "train", "--dataset", str(data), "--backbone",
                          str(tiny_bert), "--quant", "8bit", "--max_length", "100000", "--output_dir", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=300)
    assert cli.returncode == 2 and "error: --max_length 100000" in _last_line(cli.stderr), cli.stderr
    assert not any(s in cli.stderr for s in BNB_CHATTER), cli.stderr
