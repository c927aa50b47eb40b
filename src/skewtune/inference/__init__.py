"""Prediction with a saved adapter folder: ``load_adapter(path).predict(texts)``.

The names below load on first use (PEP 562): the training tasks import :mod:`skewtune.inference.logits` only, and
must not pull in peft through the predictor (a data error should surface before the training stack imports).
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = {"AdapterClassifier": "predictor", "load_adapter": "predictor", "read_inputs": "predictor"}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
