"""skewtune: adapters on quantized backbones for scarce, skewed and cross-lingual labels."""

from __future__ import annotations

from typing import Any

from skewtune.version import __version__

__all__ = ["__version__", "load_adapter", "merge"]


def load_adapter(path: str, **kwargs: Any):
    """Load a saved adapter folder for prediction: ``skewtune.load_adapter(p).predict(texts)``."""
    # lazy: importing any skewtune module runs this file; `skewtune.errors` and the CLI's --help must not pay for
    # torch/transformers/peft
    from skewtune.inference import load_adapter as _load

    return _load(path, **kwargs)


def merge(adapters: Any, **kwargs: Any):
    """Merge LoRA adapters into one adapter folder: ``skewtune.merge(adapters=[a, b], method="ties")`` → Path.

    See :func:`skewtune.merge.merge_adapters`. (Once ``skewtune.merge`` the subpackage is imported it replaces
    this function; the subpackage module is callable with the same signature.)
    """
    from skewtune.merge.api import merge_adapters  # lazy: as above, torch/peft only when called

    return merge_adapters(adapters, **kwargs)
