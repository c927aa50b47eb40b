"""Task presets: ``--task glue/mrpc`` and the like set the dataset, its columns, the problem type and the metric.

A preset fills only the settings the run does not set itself (flags and ``--config`` YAML win), so
``--task glue/mrpc --dataset ./mrpc_saved`` trains on a local copy in GLUE's schema (offline) with MRPC's columns
and metrics. Columns and official metrics follow the GLUE (Wang et al. 2018) and SuperGLUE (Wang et al. 2019)
papers and the ``nyu-mll/glue`` / ``aps/super_glue`` dataset cards: accuracy everywhere, F1 of the positive
class beside it for MRPC and QQP, Matthews' correlation for CoLA, Pearson/Spearman for STS-B. Pure data: importing
it loads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from skewtune.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class Preset:
    """The settings a task name stands for."""

    dataset: str
    dataset_config: str
    text_column: str
    text_pair_column: str | None = None
    label_column: str = "label"
    problem_type: str = "single_label"
    metrics: tuple[str, ...] = ("accuracy",)  # official metrics, metrics.json "official_metrics"
    positive_label: str | None = None  # the class whose F1 is the "f1" metric (MRPC, QQP)
    settings: dict[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        """The configuration fields this preset sets (``metric_for_best_model``: its first official metric)."""
        best = {"f1": "macro_f1", "accuracy": "accuracy"}.get(self.metrics[0], self.metrics[0])
        return {"dataset": self.dataset, "dataset_config": self.dataset_config, "text_column": self.text_column,
                "text_pair_column": self.text_pair_column, "label_column": self.label_column,
                "problem_type": self.problem_type, "metric_for_best_model": best, **self.settings}


GLUE, SUPERGLUE = "nyu-mll/glue", "aps/super_glue"
PRESETS: dict[str, Preset] = {
    "glue/cola": Preset(GLUE, "cola", "sentence", metrics=("matthews_correlation",)),
    "glue/sst2": Preset(GLUE, "sst2", "sentence"),
    "glue/mrpc": Preset(GLUE, "mrpc", "sentence1", "sentence2", metrics=("f1", "accuracy"), positive_label="equivalent"),
    "glue/qqp": Preset(GLUE, "qqp", "question1", "question2", metrics=("f1", "accuracy"), positive_label="duplicate"),
    "glue/stsb": Preset(GLUE, "stsb", "sentence1", "sentence2", problem_type="regression",
                        metrics=("pearson", "spearman")),
    "glue/mnli": Preset(GLUE, "mnli", "premise", "hypothesis"),
    "glue/qnli": Preset(GLUE, "qnli", "question", "sentence"),
    "glue/rte": Preset(GLUE, "rte", "sentence1", "sentence2"),
    "glue/wnli": Preset(GLUE, "wnli", "sentence1", "sentence2"),
    "superglue/boolq": Preset(SUPERGLUE, "boolq", "question", "passage"),
    "superglue/cb": Preset(SUPERGLUE, "cb", "premise", "hypothesis", metrics=("accuracy", "macro_f1")),
    "superglue/rte": Preset(SUPERGLUE, "rte", "premise", "hypothesis"),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ConfigError listing the known ones."""
    if name not in PRESETS:
        raise unknown_name("task preset", name, list(PRESETS))
    return PRESETS[name]


def official_metrics(preset: Preset, metrics: dict[str, Any]) -> dict[str, float]:
    """The preset's official metrics from a run's ``metrics.json`` values (test split)."""
    out: dict[str, float] = {}
    for name in preset.metrics:
        if name == "f1":
            per_class = metrics.get("eval_per_class_f1") or {}
            if preset.positive_label not in per_class:
                raise ConfigError(f"the positive class '{preset.positive_label}' is not among the labels "
                                  f"{sorted(per_class)}", "check --label_column and the dataset's label names")
            out["f1"] = float(per_class[preset.positive_label])
        elif f"eval_{name}" in metrics:
            out[name] = float(metrics[f"eval_{name}"])
    return out


__all__ = ["PRESETS", "Preset", "get_preset", "official_metrics"]
