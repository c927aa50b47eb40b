"""``--learning_rate auto`` (LR range test) and the warmup schedulers, on the tiny backbone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from skewtune.cli.main import main as cli_main
from skewtune.training import lr_finder
from tests.conftest import tiny_args


def test_ramp_smoothing_and_rule() -> None:
    lrs = lr_finder.exponential_ramp(1e-6, 1.0, 61)
    assert lrs[0] == pytest.approx(1e-6) and lrs[-1] == pytest.approx(1.0)
    assert all(b / a == pytest.approx(10 ** 0.1) for a, b in zip(lrs, lrs[1:], strict=False))
    assert lr_finder.smooth([2.0, 2.0, 2.0], 5) == pytest.approx([2.0, 2.0, 2.0])  # bias-corrected EMA
    # flat, then a logistic drop centred at 1e-3, then divergence: the steepest descent is the drop's centre
    log_lr = [math.log10(x) for x in lrs]
    curve = [1.0 - 0.8 / (1 + math.exp(-4 * (x + 3))) + (5.0 if x > -0.5 else 0.0) for x in log_lr]
    chosen, rule = lr_finder.choose_learning_rate(lrs, curve, skip=3)
    assert rule == "steepest_descent" and chosen == pytest.approx(1e-3, rel=0.3)
    # flat and noisy, then a cliff right before divergence (recorded on the toy task, 24-step ramp 1e-6 → 1):
    # the steepest point (0.050) sits one step below the minimum (0.090), where training diverged; capped at
    # (lr at the minimum) / 10
    cliff = [0.6938, 0.7003, 0.6980, 0.6920, 0.6889, 0.6923, 0.6946, 0.7000, 0.6996, 0.6920, 0.6886, 0.6891,
             0.6899, 0.6952, 0.6960, 0.6941, 0.6928, 0.6924, 0.6850, 0.5539, 0.9971, 0.7526, 0.6779, 0.8137]
    ramp = lr_finder.exponential_ramp(1e-6, 1.0, 24)
    chosen, rule = lr_finder.choose_learning_rate(ramp, cliff, skip=2)
    assert rule == "min_loss_div_10" and chosen == pytest.approx(ramp[19] / 10) and chosen < ramp[18]
    # a curve that only rises: fall back to (lr at the minimum) / 10
    chosen, rule = lr_finder.choose_learning_rate(lrs[:20], [1.0 + i for i in range(20)], skip=3)
    assert rule == "min_loss_div_10" and chosen == pytest.approx(1e-7)


def test_range_test_restores_weights_rng_and_mode(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    from skewtune.cli.main import build_parser
    from skewtune.data import LengthGroupedBatchSampler
    from skewtune.training import config_from_args, prepare

    out = tmp_path / "out"
    args = build_parser().parse_args(["train", *tiny_args(tiny_bert, toy_csv, out), "--num_train_epochs", "1"])
    run = prepare(config_from_args(args), recipe="test")
    split = run.tokenized["train"]
    loader = DataLoader(split, batch_sampler=LengthGroupedBatchSampler(split.lengths, 16, seed=0),
                        collate_fn=run.collator, generator=torch.Generator().manual_seed(3))
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.model.eval()
    torch.manual_seed(123)
    rng, gen = torch.get_rng_state(), loader.generator.get_state()
    from skewtune.training.engine import Optimization
    from skewtune.training.pipeline import build_loss

    lr, record = lr_finder.find_learning_rate(run.model, loader, build_loss(run), run.accelerator,
                                              Optimization.from_config(run.cfg, 1.0),
                                              plot_path=run.output_dir / lr_finder.PLOT_NAME)
    after = run.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights must be restored exactly"
    assert all(p.grad is None for p in run.model.parameters())
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(loader.generator.get_state(), gen)
    assert not run.model.training
    assert lr == record["learning_rate"]
    assert record["steps"] == len(record["losses"]) == len(record["learning_rates"]) <= record["planned_steps"] == 12
    assert record["stopped"] in ("completed", "diverged", "non_finite_loss")
    assert (out / "lr_finder.png").read_bytes()[:4] == b"\x89PNG"


def test_learning_rate_auto_end_to_end(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """CLI ``--learning_rate auto``: sane value in metrics.json, plot written, then training equals a run with
    ``--learning_rate <that value>`` (the range test leaves weights and RNG exactly as they were)."""
    from safetensors.torch import load_file

    flags = ("--num_train_epochs", "2", "--eval_every_epoch", "false")
    auto = tmp_path / "auto"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, auto, *flags), "--learning_rate", "auto"]) == 0
    metrics = json.loads((auto / "metrics.json").read_text())
    lr = metrics["learning_rate_auto"]
    assert 1e-5 < lr < 0.5 and metrics["learning_rate"] == lr
    assert metrics["lr_finder"]["rule"] in ("steepest_descent", "min_loss_div_10")
    assert metrics["eval_macro_f1"] > 0.6  # toy task, short run: clearly above the 0.33 of a constant guess
    assert (auto / "lr_finder.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(auto.rglob("*.tmp"))
    fixed = tmp_path / "fixed"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, fixed, *flags), "--learning_rate", repr(lr)]) == 0
    a = load_file(str(auto / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(fixed / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learning_rate_auto_refuses_too_short_runs(capsys, tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out), "--learning_rate", "auto", "--max_steps", "3"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: --learning_rate auto needs at least 8") and "(fix: " in line
    assert not (out / "lr_finder.png").exists()


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_schedulers_with_warmup(kind: str, monkeypatch, tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """Each scheduler runs; its multiplier ramps 0 → 1 over the warmup steps, then decays (or stays) as named."""
    from skewtune.training import engine

    made = []
    original = engine.get_scheduler

    def spy(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(engine, "get_scheduler", spy)
    out = tmp_path / kind
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out), "--lr_scheduler_type", kind, "--max_steps", "8",
                     "--warmup_ratio", "0.25", "--eval_every_epoch", "false"]) == 0
    assert json.loads((out / "metrics.json").read_text())["train_steps"] == 8
    factor = made[0].lr_lambdas[0]
    assert [factor(s) for s in (0, 1, 2)] == pytest.approx([0.0, 0.5, 1.0])
    tail = [factor(s) for s in (2, 5, 8)]
    expected = {"linear": [1.0, 0.5, 0.0], "cosine": [1.0, 0.5, 0.0], "constant": [1.0, 1.0, 1.0]}[kind]
    assert tail == pytest.approx(expected, abs=1e-6)
    if kind == "cosine":
        assert factor(3.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 1.5 / 6)))
