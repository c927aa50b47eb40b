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
