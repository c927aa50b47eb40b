"""Prediction with a saved adapter folder: ``load_adapter(path).predict(texts)``.

The names below load on first use (PEP 562): the training tasks import :mod:`skewtune.inference.logits` only, and
must not pull in peft through the predictor (a data error should surface before the training stack imports).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"AdapterClassifier": "predictor", "load_adapter": "predictor", "read_inputs": "predictor"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"skewtune.inference.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'skewtune.inference' has no attribute {name!r}")
