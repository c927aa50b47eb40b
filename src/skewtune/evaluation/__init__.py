"""Offline evaluation: local ``evaluate`` metric modules, baselines, plots, and scoring saved adapters."""

from skewtune.evaluation.evaluate_adapter import evaluate_adapter
from skewtune.evaluation.metrics_loader import METRICS, classification_report, load_metric

__all__ = ["METRICS", "classification_report", "evaluate_adapter", "load_metric"]
