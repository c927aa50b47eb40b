"""One self-contained HTML page per training run (``report.html``).

Everything is inline: CSS in a ``<style>`` element, figures as ``data:image/png;base64`` images drawn with
matplotlib's Agg canvas (object API: no pyplot state, the caller's backend untouched); no script, font,
stylesheet or image is fetched, and a Content-Security-Policy (``default-src 'none'``) forbids the page to
load or run any. Every string that comes from user data (texts, labels, settings) is HTML-escaped.

Sections: headline metrics · settings · class counts per split · training curves · confusion matrix ·
per-class scores · calibration (reliability diagram, ECE) · the most confident mistakes · baselines · all
metrics.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skewtune.evaluation.plots import CELL_TEXT_MAX_CLASSES, plot_confusion_matrix
from skewtune.utils.io import atomic_write_text
from skewtune.version import __version__

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ECE_BINS = 10
DPI = 80  # modest: a run's page stays a few hundred kB
MISTAKE_TEXT_CHARS = 1000  # a longer text is cut in the mistakes table (its length is shown)
TABLE_MAX_CLASSES = CELL_TEXT_MAX_CLASSES  # more classes: the confusion matrix as a figure only, no table
HEADLINE_KEYS = (("eval_macro_f1", "macro-F1 (test)"), ("eval_accuracy", "accuracy (test)"),
                 ("eval_weighted_f1", "weighted F1 (test)"), ("validation_macro_f1", "macro-F1 (validation)"))
CURVE_FAMILIES = ("loss", "learning rate", "grad norm", "throughput", "eval metrics", "per-class F1 (eval)",
                  "other")

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
padding:1em 2em;color:#1f2328;background:#fff;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;
margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #d0d7de;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.own td{font-weight:600;background:#fff8c5}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em;
min-width:9em}.card .v{font-size:1.5em;font-weight:600}.card .k{color:#59636e;font-size:.85em}
.grid{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{color:#59636e;font-size:.85em}
img{max-width:100%;height:auto}.text{white-space:pre-wrap;word-break:break-word;max-width:40em}
.muted{color:#59636e}
"""


# ---------------------------------------------------------------------------------------------- calibration


def calibration_bins(probabilities: Sequence[Sequence[float]], y_true: Sequence[int],
                     n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per confidence bin: ``count``, mean ``confidence`` and ``accuracy`` (0 for an empty bin), ``lower`` and
    ``upper`` edges.

    Confidence is the top softmax probability, the prediction its argmax; bin ``m`` (1-based) holds the
    confidences in ``((m-1)/M, m/M]`` (a confidence of exactly 0 joins the first bin), as in Guo et al. 2017,
    "On Calibration of Modern Neural Networks".
    """
    probs = np.asarray(probabilities, dtype=float).reshape(len(probabilities), -1)
    truth = np.asarray(y_true, dtype=int)
    confidence = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == truth) if len(probs) else np.zeros(0, dtype=bool)
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        count = int(members.sum())
        bins.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": count,
                     "confidence": float(confidence[members].mean()) if count else 0.0,
                     "accuracy": float(correct[members].mean()) if count else 0.0})
    return bins


def expected_calibration_error(probabilities: Sequence[Sequence[float]], y_true: Sequence[int],
                               n_bins: int = ECE_BINS) -> float:
    """ECE = Σ_b (n_b / N) · |acc_b − conf_b| over ``n_bins`` equal-width confidence bins (Guo et al. 2017);
    NaN without examples. See :func:`calibration_bins` for the bins."""
    total = len(y_true)
    if total == 0:
        return math.nan
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in calibration_bins(probabilities, y_true, n_bins)))


def confident_mistakes(probabilities: Sequence[Sequence[float]], y_true: Sequence[int],
                       limit: int) -> list[tuple[int, int, int, float]]:
    """The ``limit`` wrong argmax predictions with the highest confidence, most confident first:
    ``(row, true index, predicted index, confidence)``; ties keep row order."""
    probs = np.asarray(probabilities, dtype=float).reshape(len(probabilities), -1)
    if not len(probs) or limit <= 0:
        return []
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    wrong = [i for i in range(len(probs)) if predicted[i] != y_true[i]]
    wrong.sort(key=lambda i: -confidence[i])
    return [(i, int(y_true[i]), int(predicted[i]), float(confidence[i])) for i in wrong[:limit]]


# ---------------------------------------------------------------------------------------------- figures


def _new_figure(width: float, height: float) -> Figure:
    # lazy: matplotlib is only needed when a report is written
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes; the figure is cleared afterwards (no pyplot: nothing else holds it)."""
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        fig.clear()
    return buffer.getvalue()


def _img(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _class_counts_png(class_counts: dict[str, dict[str, int]], classes: list[str]) -> bytes:
    fig = _new_figure(min(14.0, max(6.0, 0.5 * len(classes) * max(1, len(class_counts)) / 2 + 3)), 3.2)
    ax = fig.subplots()
    width = 0.8 / max(1, len(class_counts))
    x = np.arange(len(classes))
    for k, (split, counts) in enumerate(class_counts.items()):
        offset = (k - (len(class_counts) - 1) / 2) * width
        ax.bar(x + offset, [counts.get(c, 0) for c in classes], width, label=split)
    many = len(classes) > 6
    ax.set_xticks(x, classes, rotation=30 if many else 0, ha="right" if many else "center")
    ax.set_ylabel("examples")
    ax.set_title("examples per class and split")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def curve_family(name: str) -> str:
    """The training-curve plot a logged scalar belongs to (one of :data:`CURVE_FAMILIES`)."""
    short = name.rsplit("/", 1)[-1]
    if "loss" in short:
        return "loss"
    if short in ("learning_rate", "lr") or short.startswith("lr_"):
        return "learning rate"
    if "grad_norm" in short:
        return "grad norm"
    if short.endswith(("per_second", "_per_sec", "throughput")):
        return "throughput"
    if name.startswith(("eval/", "eval_", "validation/")):
        return "per-class F1 (eval)" if short.startswith("f1_") else "eval metrics"
    return "other"


def _curves_pngs(scalars: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in scalars:
        name = str(row["name"])
        points = series.setdefault(curve_family(name), {}).setdefault(name, [])
        points.append((int(row["step"]), float(row["value"])))
    out = []
    for family in CURVE_FAMILIES:
        if family not in series:
            continue
        fig = _new_figure(4.6, 2.9)
        ax = fig.subplots()
        for name, points in sorted(series[family].items()):
            points.sort()
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) <= 20 else None, markersize=3, linewidth=1.2,
                    label=name)
        ax.set_xlabel("step")
        ax.set_title(family)
        ax.grid(alpha=0.3)
        if family == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        if len(series[family]) > 1 or family != "loss":
            ax.legend(fontsize=7)
        out.append((family, _png(fig)))
    return out


def _reliability_png(bins: list[dict[str, float]], ece: float) -> bytes:
    fig = _new_figure(4.6, 4.2)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    width = bins[0]["upper"] - bins[0]["lower"]
    centres = [b["lower"] + width / 2 for b in bins]
    filled = [(c, b) for c, b in zip(centres, bins) if b["count"]]
    x = [c for c, _ in filled]
    accuracy = [b["accuracy"] for _, b in filled]
    ax.bar(x, accuracy, width, edgecolor="#0b3d91", color="#4c8bf5", label="accuracy")
    ax.bar(x, [b["confidence"] - b["accuracy"] for _, b in filled], width, bottom=accuracy, color="#f28b82",
           alpha=0.6, label="gap to mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram (ECE {ece:.3f})")
    ax.legend(fontsize=7, loc="upper left")
    hist.bar(centres, [b["count"] for b in bins], width, color="#8c959f", edgecolor="white")
    hist.set_xlabel("confidence (top probability)")
    hist.set_ylabel("texts")
    return _png(fig)


def _confusion_png(matrix: list[list[int]], labels: list[str]) -> bytes | None:
    """The project's confusion-matrix plot (:func:`plot_confusion_matrix`), read back as PNG bytes."""
    with tempfile.TemporaryDirectory(prefix="skewtune-report-") as tmp:
        path = plot_confusion_matrix(matrix, labels, Path(tmp) / "confusion_matrix.png")
        return path.read_bytes() if path is not None else None


# ---------------------------------------------------------------------------------------------- HTML pieces


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return _e(value)


def _value(value: Any) -> str:
    """A setting or metric of any type; floats to 6 significant digits (a learning rate of 2e-05 stays
    readable)."""
    if isinstance(value, (dict, list, tuple)):
        return _e(json.dumps(value, default=str, ensure_ascii=False))
    if isinstance(value, float):
        return f"{value:.6g}"
    return _num(value) if isinstance(value, int) and not isinstance(value, bool) else _e(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1,
           row_class: Sequence[str] | None = None) -> str:
    """A table of already-escaped cells (``header`` is escaped here); columns from ``numeric_from`` align
    right."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        cells = "".join(f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _check(labels: list[str], confusion_matrix: list[list[int]], probabilities: list[list[float]],
           y_true: list[int], texts: list[str]) -> None:
    k = len(labels)
    if len(confusion_matrix) != k or any(len(row) != k for row in confusion_matrix):
        raise ValueError(f"confusion_matrix must be {k}×{k} (one row and column per label)")
    if not (len(probabilities) == len(y_true) == len(texts)):
        raise ValueError(f"probabilities ({len(probabilities)}), y_true ({len(y_true)}) and texts "
                         f"({len(texts)}) must have one entry per test text")
    if any(len(row) != k for row in probabilities):
        raise ValueError(f"every probabilities row needs {k} values (one per label)")
    if any(not 0 <= y < k for y in y_true):
        raise ValueError(f"y_true holds label indices 0…{k - 1}")


# ---------------------------------------------------------------------------------------------- sections


def _headline(metrics: dict[str, Any], baselines: dict[str, dict[str, float]], ece: float,
              n_test: int) -> str:
    cards = [(label, metrics[key]) for key, label in HEADLINE_KEYS
             if isinstance(metrics.get(key), (int, float))]
    cards += [(f"ECE ({ECE_BINS} bins, test)", ece), ("test texts", n_test)]
    scored = [(name, b["macro_f1"]) for name, b in baselines.items() if b.get("macro_f1") is not None]
    if scored and isinstance(metrics.get("eval_macro_f1"), (int, float)):
        name, best = max(scored, key=lambda item: item[1])
        cards.append((f"macro-F1 − best baseline ({name})", metrics["eval_macro_f1"] - best))
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_num(v, 3)}</div><div class="k">{_e(k)}</div></div>'
        for k, v in cards) + "</div>"


def _class_counts(class_counts: dict[str, dict[str, int]], labels: list[str]) -> str:
    if not class_counts:
        return '<p class="muted">No class counts were recorded.</p>'
    classes = list(labels) + sorted({c for counts in class_counts.values() for c in counts} - set(labels))
    totals = {split: sum(counts.values()) for split, counts in class_counts.items()}

    def cell(split: str, n: int) -> str:
        return f"{n:,} ({100 * n / totals[split]:.1f}%)" if totals[split] else f"{n:,}"

    rows = [[_e(c)] + [cell(s, counts.get(c, 0)) for s, counts in class_counts.items()] for c in classes]
    rows.append(["<b>total</b>"] + [f"<b>{totals[s]:,}</b>" for s in class_counts])
    return (_img(_class_counts_png(class_counts, classes), "bar chart of examples per class and split")
            + _table(["class", *class_counts], rows))


def _curves(scalars: list[dict[str, Any]]) -> str:
    if not scalars:
        return '<p class="muted">No training curves were logged.</p>'
    return '<div class="grid">' + "".join(_img(png, f"training curve: {family}")
                                          for family, png in _curves_pngs(scalars)) + "</div>"


def _confusion(confusion_matrix: list[list[int]], labels: list[str]) -> str:
    png = _confusion_png(confusion_matrix, labels)
    body = (_img(png, "confusion matrix", "colour: row share; cells: count and row share") if png is not None
            else '<p class="muted">Too many classes to plot.</p>')
    if len(labels) > TABLE_MAX_CLASSES:
        return body
    matrix = np.asarray(confusion_matrix, dtype=float).reshape(len(labels), len(labels))
    sums = matrix.sum(axis=1)
    header = ["gold \\ predicted", *labels]
    counts = [[_e(g)] + [f"{int(v):,}" for v in matrix[i]] for i, g in enumerate(labels)]
    shares = [[_e(g)] + [f"{v / sums[i]:.3f}" if sums[i] else "—" for v in matrix[i]]
              for i, g in enumerate(labels)]
    return (body + '<div class="grid"><div><h3>counts</h3>' + _table(header, counts)
            + '</div><div><h3>row-normalised</h3>' + _table(header, shares) + "</div></div>")


def _per_class(per_class: dict[str, dict[str, float]]) -> str:
    rows = [[_e(name), _num(s.get("precision")), _num(s.get("recall")), _num(s.get("f1")),
             _num(int(s.get("support", 0)))] for name, s in per_class.items()]
    return _table(["class", "precision", "recall", "F1", "support"], rows)


def _calibration(bins: list[dict[str, float]], ece: float, n_test: int) -> str:
    body = (f"<p>Expected calibration error <b>ECE = {_num(ece, 4)}</b> = Σ<sub>b</sub> (n<sub>b</sub>/N)·"
            f"|acc<sub>b</sub> − conf<sub>b</sub>| over {ECE_BINS} equal-width bins of the top softmax "
            f"probability (Guo et al. 2017), N = {n_test:,} test texts.</p>")
    if n_test:
        body += _img(_reliability_png(bins, ece), "reliability diagram")
    rows = [[f"({b['lower']:.1f}, {b['upper']:.1f}]", f"{b['count']:,}",
             _num(b["confidence"], 3) if b["count"] else "—", _num(b["accuracy"], 3) if b["count"] else "—"]
            for b in bins]
    return body + _table(["confidence bin", "texts", "mean confidence", "accuracy"], rows)


def _mistakes(probabilities: list[list[float]], y_true: list[int], texts: list[str], labels: list[str],
              limit: int) -> str:
    mistakes = confident_mistakes(probabilities, y_true, limit)
    if not mistakes:
        return '<p class="muted">No mistakes on the test texts.</p>'
    rows = []
    for i, gold, pred, conf in mistakes:
        shown = _e(texts[i][:MISTAKE_TEXT_CHARS])
        if len(texts[i]) > MISTAKE_TEXT_CHARS:
            shown += f'<span class="muted"> … ({len(texts[i]):,} characters, cut)</span>'
        rows.append([f'<div class="text">{shown}</div>', _e(labels[gold]), _e(labels[pred]), f"{conf:.3f}"])
    predicted = np.asarray(probabilities, dtype=float).argmax(axis=1)
    wrong = int((predicted != np.asarray(y_true)).sum())
    return (f"<p>{len(mistakes)} of {wrong:,} wrong predictions (argmax of the probabilities), most "
            "confident first.</p>"
            + _table(["text", "true", "predicted", "confidence"], rows, numeric_from=3))


def _baselines(baselines: dict[str, dict[str, float]], metrics: dict[str, Any]) -> str:
    own = {"macro_f1": metrics.get("eval_macro_f1"), "accuracy": metrics.get("eval_accuracy")}

    def score(value: Any) -> str:
        return "—" if value is None else _num(value)

    rows = [[_e(name), score(s.get("macro_f1")), score(s.get("accuracy"))]
            for name, s in [("this run", own), *baselines.items()]]
    return _table(["model", "macro-F1", "accuracy"], rows, row_class=["own"] + [""] * len(baselines))


# ---------------------------------------------------------------------------------------------- the page


def render_report(*, title: str, settings: dict[str, Any], class_counts: dict[str, dict[str, int]],
                  scalars: list[dict[str, Any]], labels: list[str], confusion_matrix: list[list[int]],
                  per_class: dict[str, dict[str, float]], probabilities: list[list[float]], y_true: list[int],
                  texts: list[str], baselines: dict[str, dict[str, float]], metrics: dict[str, Any],
                  max_mistakes: int = 20) -> str:
    """The report page as one HTML string (see :func:`write_report` for the arguments)."""
    _check(labels, confusion_matrix, probabilities, y_true, texts)
    bins = calibration_bins(probabilities, y_true)
    ece = expected_calibration_error(probabilities, y_true)
    setting_rows = [[_e(k), _value(v)] for k, v in settings.items()]
    settings_body = (_table(["setting", "value"], setting_rows, numeric_from=2) if settings
                     else '<p class="muted">No settings were recorded.</p>')
    metric_rows = [[_e(k), _value(v)] for k, v in metrics.items() if not isinstance(v, (dict, list, tuple))]
    parts = [
        _section("headline", "Headline metrics", _headline(metrics, baselines, ece, len(y_true))),
        _section("settings", "Settings", settings_body),
        _section("class-counts", "Class counts", _class_counts(class_counts, labels)),
        _section("curves", "Training curves", _curves(scalars)),
        _section("confusion", "Confusion matrix (test)", _confusion(confusion_matrix, labels)),
        _section("per-class", "Per-class scores (test)", _per_class(per_class)),
        _section("calibration", "Calibration", _calibration(bins, ece, len(y_true))),
        _section("mistakes", "Most confident mistakes", _mistakes(probabilities, y_true, texts, labels,
                                                                  max_mistakes)),
        _section("baselines", "Baselines (test)", _baselines(baselines, metrics)),
        _section("metrics", "All metrics", _table(["metric", "value"], metric_rows)),
    ]
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            f'<h1>{_e(title)}</h1><p class="muted">skewtune {_e(__version__)} run report</p>'
            + "\n".join(parts) + "</body></html>\n")


def write_report(path: str | Path, *, title: str, settings: dict[str, Any],
                 class_counts: dict[str, dict[str, int]], scalars: list[dict[str, Any]], labels: list[str],
                 confusion_matrix: list[list[int]], per_class: dict[str, dict[str, float]],
                 probabilities: list[list[float]], y_true: list[int], texts: list[str],
                 baselines: dict[str, dict[str, float]], metrics: dict[str, Any],
                 max_mistakes: int = 20) -> Path:
    """Write the run's self-contained ``report.html`` atomically (temp file + rename); returns its path.

    ``class_counts``: split name → label → count. ``scalars``: ``{"step", "name", "value"}`` rows as logged
    (``train/loss``, ``train/learning_rate``, ``eval/macro_f1``, ``eval/f1_<label>``, …), one plot per
    :func:`curve_family`. ``probabilities``: one softmax row per test text (columns in ``labels`` order; pass
    the probabilities the predictions came from, after any decision rule), ``y_true`` its gold label index,
    ``texts`` its text. ``per_class``: label → precision/recall/f1/support. ``baselines``: name →
    ``macro_f1`` (and ``accuracy`` when known), shown beside the run's ``eval_macro_f1`` / ``eval_accuracy``
    from ``metrics``. Inconsistent shapes raise ``ValueError`` before anything is written.
    """
    page = render_report(title=title, settings=settings, class_counts=class_counts, scalars=scalars,
                         labels=labels, confusion_matrix=confusion_matrix, per_class=per_class,
                         probabilities=probabilities, y_true=y_true, texts=texts, baselines=baselines,
                         metrics=metrics, max_mistakes=max_mistakes)
    return atomic_write_text(path, page)


__all__ = ["calibration_bins", "confident_mistakes", "curve_family", "expected_calibration_error",
           "render_report", "write_report"]
