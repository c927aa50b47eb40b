"""skewtune: adapters on quantized backbones for scarce, skewed and cross-lingual labels."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_adapter"]


def load_adapter(path: str, **kwargs: Any):
    """Load a saved adapter folder for prediction: ``skewtune.load_adapter(p).predict(texts)``."""
    from skewtune.inference import load_adapter as _load

    return _load(path, **kwargs)
