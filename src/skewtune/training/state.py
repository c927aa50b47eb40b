"""The counters a training run carries and a checkpoint restores."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FitState:
    """Counters that a checkpoint restores."""

    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    best_metric: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    # position and running loss inside the current epoch, so a resumed run skips exactly the batches already
    # consumed (including ones skipped under --on_nan skip) and reports the same epoch train_loss
    batches_in_epoch: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    skipped_batches: int = 0  # non-finite batches dropped under --on_nan skip (whole run)
    train_seconds: float = 0.0  # time spent in the training loop, summed over the segments of a resumed run
    best_step: int | None = None  # step of the best validation evaluation so far (skewtune.training.tracking)
    evaluations_without_improvement: int = 0  # early stopping's count since the best evaluation
    # the last optimizer step, for the hooks (trackers); not checkpointed
    last_loss: float = math.nan  # mean loss of the batches of the last optimizer step
    last_grad_norm: float | None = None  # gradient norm before clipping (None when --max_grad_norm 0)
    last_learning_rate: float = math.nan  # learning rate the last step used
    should_stop: bool = False  # a hook asks the loop to stop after this step (early stopping)

    def counters(self) -> dict[str, Any]:
        """What a checkpoint records."""
        return {
            "epoch": self.epoch, "global_step": self.global_step, "step_in_epoch": self.step_in_epoch,
            "history": self.history, "batches_in_epoch": self.batches_in_epoch, "loss_sum": self.loss_sum,
            "loss_count": self.loss_count, "skipped_batches": self.skipped_batches,
            "train_seconds": self.train_seconds,
            "best_metric": self.best_metric if math.isfinite(self.best_metric) else None,
            "best_step": self.best_step, "evaluations_without_improvement": self.evaluations_without_improvement,
        }

    @classmethod
    def from_counters(cls, saved: dict[str, Any]) -> FitState:
        return cls(epoch=saved["epoch"], global_step=saved["global_step"], step_in_epoch=saved["step_in_epoch"],
                   history=saved.get("history", []), batches_in_epoch=saved.get("batches_in_epoch", 0),
                   loss_sum=saved.get("loss_sum", 0.0), loss_count=saved.get("loss_count", 0),
                   skipped_batches=saved.get("skipped_batches", 0), train_seconds=saved.get("train_seconds", 0.0),
                   best_metric=-math.inf if saved.get("best_metric") is None else float(saved["best_metric"]),
                   best_step=saved.get("best_step"),
                   evaluations_without_improvement=saved.get("evaluations_without_improvement", 0))
