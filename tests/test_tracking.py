"""Experiment tracking (Accelerate trackers), evaluation every N steps, best-model selection and early stopping:
real tiny runs through `skewtune train`, TensorBoard event files read back with TensorBoard's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skewtune.errors import ConfigError
from skewtune.training.tracking import RunLog, resolve_trackers
from tests.conftest import tiny_args


def trained_metrics(tiny_bert: Path, toy_csv: Path, out: Path, *flags: str) -> dict:
    """metrics.json of a tiny `skewtune train` run with ``flags`` (which must succeed)."""
    from skewtune.cli.main import main

    assert main(["train", *tiny_args(tiny_bert, toy_csv, out, *flags)]) == 0
    return json.loads((out / "metrics.json").read_text())


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_tensorboard_scalars_every_logged_step(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = trained_metrics(tiny_bert, toy_csv, out, "--num_train_epochs", "1", "--report_to", "tensorboard",
                              "--logging_steps", "2", "--eval_steps", "4")
    steps = metrics["train_steps"]
    logged = scalars(out / "tracking")
    assert [s for s, _ in logged["train/loss"]] == list(range(2, steps + 1, 2))  # every logged step
    assert all(v == v and v > 0 for _, v in logged["train/loss"])
    assert {"train/learning_rate", "train/grad_norm", "train/samples_per_second"} <= set(logged)
    assert [s for s, _ in logged["eval/macro_f1"]][: steps // 4] == list(range(4, steps + 1, 4))
    assert {"eval/f1_negative", "eval/f1_positive"} <= set(logged)  # per-class F1
    history = metrics["log_history"]
    assert [r["step"] for r in history if r["name"] == "train/loss"] == [s for s, _ in logged["train/loss"]]
    assert metrics["best_step"] in [s for s, _ in logged["eval/macro_f1"]]


def test_early_stopping_stops_after_patience_evaluations(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    # a zero learning rate: the validation score never improves after the first evaluation
    metrics = trained_metrics(tiny_bert, toy_csv, out, "--learning_rate", "1e-12", "--eval_steps", "1",
                              "--early_stopping_patience", "2", "--report_to", "none")
    assert metrics["stopped_early_at_step"] == 3 and metrics["train_steps"] == 3 and metrics["best_step"] == 1
    assert not (out / "tracking").exists()


def test_load_best_model_at_end_restores_the_best_evaluation() -> None:
    from accelerate import Accelerator

    model = torch.nn.Linear(2, 2)
    log = RunLog(Accelerator(cpu=True), logging_steps=1, batch_size=1, keep_best=True, model=model)

    from skewtune.training.state import FitState

    state = FitState()
    weights = []
    for step, score in enumerate([0.5, 0.9, 0.6], start=1):
        with torch.no_grad():
            model.weight.fill_(float(step))
        weights.append(model.weight.clone())
        state.global_step = step
        assert log.evaluation({"macro_f1": score, "accuracy": score}, state) is False
    assert log.best_step == 2 and log.restore_best(final_step=3)
    assert torch.equal(model.weight, weights[1])
    assert log.summary()["best_validation_macro_f1"] == 0.9


def test_trackers_resolve_or_refuse_in_one_line() -> None:
    assert resolve_trackers("auto") == ["tensorboard"] and resolve_trackers("none") == []
    assert "tensorboard" in resolve_trackers("all")
    with pytest.raises(ConfigError, match="unknown --report_to"):
        resolve_trackers("neptune")
    missing = next((name for name in ("wandb", "mlflow", "trackio") if not __import__("importlib").util.find_spec(name)),
                   None)
    if missing:
        with pytest.raises(ConfigError, match=f"needs the '{missing}' package") as info:
            resolve_trackers(missing)
        assert f"pip install {missing}" in info.value.hint
