"""Offline evaluation: local ``evaluate`` metric modules, baselines and plots.

(Scoring a saved adapter on a dataset, ``evaluate_adapter``, lives in :mod:`skewtune.merge.scoring`: it loads
adapters, which this low layer does not.)"""

from skewtune.evaluation.metrics_loader import METRICS, classification_report, load_metric

__all__ = ["METRICS", "classification_report", "load_metric"]
