"""Datasets by name (offline), local files, deduplicated stratified splits, tokenisation and batching.

The names below load on first use (PEP 562): importing one data module (``skewtune.data.pattern3`` for the fetch
script, ``skewtune.data.readers`` for predict's inputs) must not import torch (batching) or scikit-learn (splits).
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = {
    "DATASETS": "datasets", "Splits": "datasets", "load_dataset_splits": "datasets", "read_table": "readers",
    "LengthGroupedBatchSampler": "batching", "PaddingCollator": "batching", "TokenizedSplit": "batching",
    "tokenize_split": "batching",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
