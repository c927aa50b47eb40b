"""Regression: a number per text or text pair (similarity scores such as STS-B, ratings).

One linear output on the pooled representation, mean squared error (``--loss ce``, the single-label default, means
``mse``; ``huber`` is the Huber loss with δ = 1). Scores: the ``regression`` metric module — Pearson's r,
Spearman's ρ, MSE, MAE. Validation evaluations rank by Pearson's r unless ``--metric_for_best_model spearman``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from skewtune.errors import ConfigError
from skewtune.evaluation.metrics_loader import regression_report
from skewtune.inference.logits import predict_logits
from skewtune.tasks.sequence import SequenceClassification

if TYPE_CHECKING:
    from accelerate import Accelerator

REGRESSION_LOSSES = {"mse": torch.nn.MSELoss, "huber": torch.nn.HuberLoss}


class RegressionLoss(torch.nn.Module):
    """``loss(outputs [B, 1], targets [B])``: the base loss on the single output column."""

    def __init__(self, base: torch.nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.base(outputs.float().reshape(-1), targets.float().reshape(-1))


class Regression(SequenceClassification):
    problem_type = "regression"
    baselines = False
    summary_keys = ("pearson", "spearman")

    def check_config(self, cfg: Any) -> None:
        super().check_config(cfg)
        if getattr(cfg, "streaming", False):
            raise ConfigError("--streaming reads single-label data", "drop --streaming for regression")
        loss = "mse" if cfg.loss == "ce" else cfg.loss
        if loss not in REGRESSION_LOSSES:
            raise ConfigError(f"--loss {cfg.loss} is a classification loss",
                              f"use one of: {', '.join(REGRESSION_LOSSES)} for regression")
        if cfg.sampler not in (None, "random_over"):  # the default random_over has no classes to balance: unused
            raise ConfigError(f"--sampler {cfg.sampler} has no meaning for regression", "pass --sampler none")
        for option in ("augment", "post_hoc"):
            if getattr(cfg, option, None):
                raise ConfigError(f"--{option} has no meaning for regression", f"drop --{option}")
        if cfg.metric_for_best_model not in ("macro_f1", "pearson", "spearman"):
            raise ConfigError(f"--metric_for_best_model {cfg.metric_for_best_model} is a classification score",
                              "use pearson or spearman for regression")

    def best_metric(self, cfg: Any) -> str:
        """Pearson's r unless Spearman's ρ is asked for (the classification default means Pearson)."""
        return "spearman" if cfg.metric_for_best_model == "spearman" else "pearson"

    def loss(self, cfg: Any, class_counts: Callable[[], list[int]]) -> torch.nn.Module:
        if cfg.loss_options:
            raise ConfigError("--loss_options are not used by the regression losses", "drop --loss_options")
        return RegressionLoss(REGRESSION_LOSSES["mse" if cfg.loss == "ce" else cfg.loss]())

    def evaluate(self, model: torch.nn.Module, data: Any, splits: Any, collator: Any, batch_size: int,
                 accelerator: Accelerator, decision: dict[str, Any] | None = None) -> dict[str, Any]:
        outputs = predict_logits(model, data, collator, batch_size, accelerator.device, accelerator=accelerator)
        return regression_report(outputs.float().reshape(-1).tolist(), [float(v) for v in data.labels])

    def test_metrics(self, report: dict[str, Any]) -> dict[str, Any]:
        return {f"eval_{key}": report[key] for key in ("pearson", "spearman", "mse", "mae")}
