"""Offline evaluation: local ``evaluate`` metric modules, baselines, plots, and scoring saved adapters."""

from skewtune.evaluation.metrics_loader import METRICS, classification_report, load_metric
from skewtune.evaluation.scoring import evaluate_adapter

__all__ = ["METRICS", "classification_report", "evaluate_adapter", "load_metric"]
