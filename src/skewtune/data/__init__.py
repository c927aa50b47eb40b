"""Datasets by name (offline), local files, deduplicated stratified splits, tokenisation and batching.

The names below load on first use (PEP 562): importing one data module (``skewtune.data.pattern3`` for the fetch
script, ``skewtune.data.readers`` for predict's inputs) must not import torch (batching) or scikit-learn (splits).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DATASETS": "datasets", "Splits": "datasets", "load_dataset_splits": "datasets", "read_table": "readers",
    "LengthGroupedBatchSampler": "batching", "PaddingCollator": "batching", "TokenizedSplit": "batching",
    "tokenize_split": "batching",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"skewtune.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'skewtune.data' has no attribute {name!r}")
