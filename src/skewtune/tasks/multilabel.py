"""Multi-label classification: several classes per text (topic tags, emotions, entity types mentioned).

A sigmoid per class; the loss comes from :data:`skewtune.imbalance.multilabel.MULTILABEL_LOSSES` (``bce``,
``bce_pos_weight``, ``focal``, ``asl``; ``--loss ce``, the single-label default, means ``bce``), its priors the
training rows holding each label. Predictions are the labels whose probability reaches a threshold: per label,
fitted on validation to maximise that label's F1 (``--multilabel_thresholds tuned``, the default) or 0.5
(``fixed``). A threshold ``t`` is saved as the logit bias ``-log(t / (1 - t))`` of the adapter's decision rule
(:func:`skewtune.imbalance.decision.apply_decision`): ``σ(z) ≥ t ⟺ σ(z + b) ≥ 0.5``, so predict applies it as it
applies any rule. Scores: the ``multilabel`` metric module (micro/macro/samples F1,
per-label F1, subset accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from skewtune.errors import ConfigError
from skewtune.evaluation.metrics_loader import multilabel_report
from skewtune.imbalance.decision import apply_decision
from skewtune.imbalance.multilabel import (
    MULTILABEL_LOSSES,
    apply_thresholds,
    build_multilabel_loss,
    fit_thresholds,
)
from skewtune.inference.logits import predict_logits
from skewtune.tasks.sequence import SequenceClassification

if TYPE_CHECKING:
    from accelerate import Accelerator

DECISION_RULE = "label_thresholds"


def threshold_rule(thresholds: Any) -> dict[str, Any]:
    """The decision rule of per-label probability thresholds: logit biases ``-log(t / (1 - t))``."""
    t = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-6, 1 - 1e-6)
    return {"rule": DECISION_RULE, "thresholds": [float(v) for v in t],
            "logit_bias": [float(v) for v in -np.log(t / (1 - t))]}


class MultiLabelClassification(SequenceClassification):
    problem_type = "multi_label"
    baselines = False  # the majority and TF-IDF baselines are single-label
    summary_keys = ("micro_f1", "macro_f1")

    def check_config(self, cfg: Any) -> None:
        super().check_config(cfg)
        if getattr(cfg, "streaming", False):
            raise ConfigError("--streaming reads single-label data", "drop --streaming for multi-label data")
        loss = "bce" if cfg.loss == "ce" else cfg.loss
        if loss not in MULTILABEL_LOSSES:
            raise ConfigError(f"--loss {cfg.loss} is a single-label loss",
                              f"use one of: {', '.join(MULTILABEL_LOSSES.names())} for multi-label data")
        if cfg.sampler not in (None, "ml_ros", "random_over"):
            raise ConfigError(f"--sampler {cfg.sampler} resamples single-label rows",
                              "use --sampler ml_ros (multi-label random oversampling) or none")
        for option in ("augment", "post_hoc"):
            if getattr(cfg, option, None):
                raise ConfigError(f"--{option} is single-label only", f"drop --{option} for multi-label data")

    def best_metric(self, cfg: Any) -> str:
        return cfg.metric_for_best_model if cfg.metric_for_best_model != "accuracy" else "subset_accuracy"

    def loss(self, cfg: Any, class_counts: Callable[[], list[int]]) -> torch.nn.Module:
        """``class_counts()``: training rows holding each label (after resampling); the rows: its ``rows``."""
        positives = class_counts()
        rows = getattr(class_counts, "rows", None)  # pos_weight needs the negatives: rows − positives
        if not isinstance(rows, int):
            raise TypeError("class_counts must carry .rows, the training rows (skewtune.training.pipeline.TrainingCounts)")
        return build_multilabel_loss("bce" if cfg.loss == "ce" else cfg.loss, positives, rows, **cfg.loss_kwargs())

    def probabilities(self, model: torch.nn.Module, data: Any, collator: Any, batch_size: int,
                      accelerator: Accelerator) -> np.ndarray:
        logits = predict_logits(model, data, collator, batch_size, accelerator.device, accelerator=accelerator)
        return torch.sigmoid(logits.float()).numpy()

    def fit_decision(self, probabilities: np.ndarray, targets: Any) -> dict[str, Any]:
        """Per-label thresholds maximising each label's validation F1."""
        return threshold_rule(fit_thresholds(probabilities, np.asarray(targets, dtype=np.float64) > 0.5))

    def evaluate(self, model: torch.nn.Module, data: Any, splits: Any, collator: Any, batch_size: int,
                 accelerator: Accelerator, decision: dict[str, Any] | None = None) -> dict[str, Any]:
        logits = predict_logits(model, data, collator, batch_size, accelerator.device, accelerator=accelerator)
        probabilities = torch.sigmoid(apply_decision(logits, decision).float()).numpy()
        predicted = apply_thresholds(probabilities, 0.5)
        references = np.asarray(data.labels, dtype=np.float64) > 0.5
        report = multilabel_report(predicted, references, list(splits.labels))
        report["accuracy"] = report["subset_accuracy"]
        return report

    def test_metrics(self, report: dict[str, Any]) -> dict[str, Any]:
        out = {f"eval_{key}": report[key] for key in ("micro_f1", "samples_f1", "subset_accuracy", "hamming_loss")}
        out["eval_label_support"] = report["support"]
        return out
