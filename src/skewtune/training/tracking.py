"""Experiment tracking through Accelerate's trackers, evaluation every N steps, best-checkpoint selection and
early stopping — the training run's log, in one object the pipeline's hooks call.

* trackers: ``--report_to`` names Accelerate trackers (``tensorboard``, ``wandb``, ``mlflow``, ``trackio``),
  ``all`` (every installed one) or ``none``; ``auto`` is TensorBoard when it is installed (event files under
  ``<output_dir>/tracking``, offline), else none. Accelerate's ``log`` writes on the main process only.
* scalars: every ``--logging_steps`` optimizer steps ``train/loss`` (mean over the window), ``train/learning_rate``,
  ``train/grad_norm`` (before clipping), ``train/samples_per_second``, ``train/epoch``; every evaluation
  ``eval/<metric>`` and ``eval/f1_<label>`` per class. The same rows are kept in ``log_history`` (metrics.json) for
  the run report.
* best checkpoint: each evaluation's ``--metric_for_best_model`` is compared with the best so far; with
  ``--load_best_model_at_end`` the trainable tensors of the best evaluation are kept (a CPU copy: adapters are
  small) and put back when training ends. ``--early_stopping_patience P`` stops after P evaluations in a row
  without improvement (as ``transformers.EarlyStoppingCallback``).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from skewtune.errors import ConfigError
from skewtune.training.config import TRACKERS

if TYPE_CHECKING:
    from accelerate import Accelerator

    from skewtune.training.state import FitState

TRACKING_DIR = "tracking"  # under the run folder: the trackers' files (TensorBoard event files)
TRACKING_PROJECT = "skewtune"  # the trackers' project / run name

_AVAILABLE = {"tensorboard": "is_tensorboard_available", "wandb": "is_wandb_available",
              "mlflow": "is_mlflow_available", "trackio": "is_trackio_available"}
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def tracker_available(name: str) -> bool:
    """Whether Accelerate can use tracker ``name`` here (its package is installed)."""
    import accelerate.utils as utils

    check = getattr(utils, _AVAILABLE[name], None)
    return bool(check and check())


def resolve_trackers(report_to: str | None) -> list[str]:
    """The Accelerate trackers ``--report_to`` asks for; a named tracker that is not installed is a ConfigError."""
    value = (report_to or "none").lower()
    if value not in TRACKERS:
        raise ConfigError(f"unknown --report_to '{report_to}'", f"use one of: {', '.join(TRACKERS)}")
    if value == "none":
        return []
    if value == "auto":
        return ["tensorboard"] if tracker_available("tensorboard") else []
    if value == "all":
        return [name for name in _AVAILABLE if tracker_available(name)]
    if not tracker_available(value):
        raise ConfigError(f"--report_to {value} needs the '{_PACKAGES[value]}' package, which is not installed",
                          f"pip install {_PACKAGES[value]}, or pass --report_to tensorboard / none")
    return [value]


def tracker_config(cfg: Any, learning_rate: float) -> dict[str, Any]:
    """The run's settings as tracker hyper-parameters: scalars and strings only (TensorBoard's ``add_hparams``
    refuses None and lists)."""
    out: dict[str, Any] = {}
    for key, value in {**cfg.to_dict(), "learning_rate": learning_rate}.items():
        out[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


class RunLog:
    """Scalars to the trackers and ``history``, evaluation scores, best-model bookkeeping, early stopping."""

    def __init__(self, accelerator: Accelerator, *, logging_steps: int, batch_size: int, metric: str = "macro_f1",
                 patience: int = 0, keep_best: bool = False, model: torch.nn.Module | None = None) -> None:
        self.accelerator, self.logging_steps, self.batch_size = accelerator, max(1, logging_steps), batch_size
        self.metric, self.patience, self.keep_best, self.model = metric, patience, keep_best, model
        self.history: list[dict[str, Any]] = []
        self.best_metric, self.best_step = -math.inf, None  # mirrored into FitState, which checkpoints them
        self.best_state: dict[str, torch.Tensor] | None = None
        self.evaluations_without_improvement = 0
        self.stopped_early_at: int | None = None
        self._window: list[float] = []
        self._window_start = (time.perf_counter(), 0)
        self.tracking = bool(getattr(accelerator, "log_with", None))  # trackers asked for (init_trackers follows)

    def log(self, values: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
        self.history.extend({"step": step, "name": k, "value": v} for k, v in finite.items())
        if self.tracking:
            self.accelerator.log(finite, step=step)

    def step(self, state: FitState) -> None:
        """After every optimizer step: accumulate; every ``logging_steps`` steps log the window's scalars."""
        self._window.append(state.last_loss)
        if state.global_step % self.logging_steps:
            return
        now, steps = time.perf_counter(), state.global_step - self._window_start[1]
        seconds = max(now - self._window_start[0], 1e-9)
        samples = steps * self.batch_size * self.accelerator.num_processes * self.accelerator.gradient_accumulation_steps
        values = {"train/loss": sum(self._window) / len(self._window), "train/learning_rate": state.last_learning_rate,
                  "train/samples_per_second": samples / seconds, "train/epoch": float(state.epoch)}
        if state.last_grad_norm is not None:
            values["train/grad_norm"] = state.last_grad_norm
        self.log(values, state.global_step)
        self._window.clear()
        self._window_start = (now, state.global_step)

    def evaluation(self, scores: dict[str, Any], state: FitState) -> bool:
        """Log one validation scoring; track the best; return True when early stopping should stop the run."""
        values = {f"eval/{k}": v for k, v in scores.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for label, f1 in (scores.get("per_class_f1") or {}).items():
            values[f"eval/f1_{label}"] = f1
        self.log(values, state.global_step)
        self.best_metric, self.best_step = state.best_metric, state.best_step  # a resumed run continues its count
        self.evaluations_without_improvement = state.evaluations_without_improvement
        value = scores.get(self.metric)
        if not isinstance(value, int | float):
            raise ConfigError(f"--metric_for_best_model {self.metric} is not a validation score of this task",
                              f"use one of: {', '.join(k for k, v in scores.items() if isinstance(v, int | float))}")
        stop = False
        if value > self.best_metric:
            self.best_metric, self.best_step = float(value), state.global_step
            self.evaluations_without_improvement = 0
            if self.keep_best and self.model is not None:
                model = self.accelerator.unwrap_model(self.model)
                self.best_state = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()
                                   if p.requires_grad}
        else:
            self.evaluations_without_improvement += 1
            if self.patience and self.evaluations_without_improvement >= self.patience:
                self.stopped_early_at, stop = state.global_step, True
        state.best_metric, state.best_step = self.best_metric, self.best_step
        state.evaluations_without_improvement = self.evaluations_without_improvement
        return stop

    def restore_best(self, final_step: int) -> bool:
        """Put the best evaluation's trainable tensors back (when kept and not already the last); True if done."""
        if self.best_state is None or self.best_step == final_step:
            return False
        model = self.accelerator.unwrap_model(self.model)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self.best_state:
                    param.copy_(self.best_state[name].to(param.device))
        return True

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"log_history": self.history}
        if self.best_step is not None:
            out.update(best_step=self.best_step, **{f"best_validation_{self.metric}": self.best_metric})
        if self.stopped_early_at is not None:
            out["stopped_early_at_step"] = self.stopped_early_at
        return out
