"""Plots written atomically as PNG (matplotlib's object API: no pyplot state, the caller's backend untouched)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from skewtune.utils.io import atomic_write_bytes

PLOT_MAX_CLASSES = 500  # more classes: no plot (the metric leaves the matrix out too)
CELL_TEXT_MAX_CLASSES = 30  # more: cells without their counts
TICK_LABELS_MAX_CLASSES = 60  # more: axes without class names
MAX_FIGURE_INCHES = 30.0


def plot_confusion_matrix(matrix: list[list[int]] | None, labels: list[str], path: str | Path,
                          title: str = "") -> Path | None:
    """Write the row-normalised confusion matrix as a PNG; None (nothing written) without a matrix or above
    :data:`PLOT_MAX_CLASSES` classes. The figure's size is bounded; many classes drop cell counts and names."""
    if matrix is None or len(labels) > PLOT_MAX_CLASSES:
        return None
    from matplotlib.figure import Figure  # lazy: matplotlib is only needed when a plot is written

    data = np.asarray(matrix, dtype=float)
    row_sums = data.sum(axis=1, keepdims=True)
    normalised = np.divide(data, row_sums, out=np.zeros_like(data), where=row_sums > 0)
    size = min(MAX_FIGURE_INCHES, max(4.0, 0.6 * len(labels) + 2))
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= TICK_LABELS_MAX_CLASSES:
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(labels) <= CELL_TEXT_MAX_CLASSES:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(data[i, j])}\n{normalised[i, j]:.2f}", ha="center", va="center",
                        color="white" if normalised[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title or "confusion matrix (rows: gold)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return atomic_write_bytes(path, buffer.getvalue())
