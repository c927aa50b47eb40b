"""Load skewtune's bundled ``evaluate`` metric modules by name, with no network access."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from skewtune.utils.registry import Registry

METRICS_DIR = Path(__file__).parent / "metrics"
METRICS: Registry[Path] = Registry("metric")
for _folder in sorted(METRICS_DIR.iterdir()) if METRICS_DIR.is_dir() else []:
    if (_folder / f"{_folder.name}.py").is_file():
        METRICS.add(_folder.name.removeprefix("skewtune_"), _folder)


@cache
def load_metric(name: str = "classification") -> Any:
    """``evaluate.load`` on the bundled module folder: a local script, so evaluate makes no Hub lookup."""
    import evaluate  # lazy: evaluate imports HF datasets + pyarrow (~3 s); only computing a metric needs it

    folder = METRICS.get(name)
    return evaluate.load(str(folder))


def classification_report(predictions: list[int], references: list[int], id2label: dict[int, str]) -> dict[str, Any]:
    """Metrics named for metrics.json: accuracy, macro/weighted F1 and per-class scores keyed by label."""
    result = load_metric("classification").compute(
        predictions=predictions, references=references, num_labels=len(id2label)
    )
    return keyed_report(result, [id2label[i] for i in range(len(id2label))],
                        ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "balanced_macro_f1",
                         "confusion_matrix"))


def keyed_report(result: dict[str, Any], names: list[str], keys: tuple[str, ...]) -> dict[str, Any]:
    """``keys`` of a metric module's result as they are, and its per-class lists as ``{label: value}`` dicts."""
    out = {key: result[key] for key in keys}
    for key in ("per_class_f1", "per_class_precision", "per_class_recall"):
        out[key] = dict(zip(names, result[key]))
    return out


def multilabel_report(predictions: Any, references: Any, names: list[str]) -> dict[str, Any]:
    """Multi-label metrics from ``(n, L)`` 0/1 (or bool) arrays: micro/macro/weighted/samples F1, subset accuracy,
    Hamming loss, and per-label precision/recall/F1/support keyed by ``names`` (the bundled ``multilabel`` module)."""
    result = load_metric("multilabel").compute(predictions=[[int(v) for v in row] for row in predictions],
                                               references=[[int(v) for v in row] for row in references])
    if result["num_labels"] != len(names):
        raise ValueError(f"{len(names)} label names for {result['num_labels']} label columns")
    out = keyed_report(result, names, ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "subset_accuracy",
                                       "hamming_loss", "num_rows"))
    out["support"] = dict(zip(names, result["support"]))
    return out


def regression_report(predictions: list[float], references: list[float]) -> dict[str, Any]:
    """Pearson's r, Spearman's ρ, MSE and MAE (the bundled ``regression`` module)."""
    return dict(load_metric("regression").compute(predictions=predictions, references=references))
