"""Offline evaluation: local ``evaluate`` metric modules, baselines and plots."""

from skewtune.evaluation.metrics_loader import METRICS, classification_report, load_metric

__all__ = ["METRICS", "classification_report", "load_metric"]
