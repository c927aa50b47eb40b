"""Adapter registry over peft: ``lora``, ``dora``, ``rslora``, ``ia3`` (+ ``prefix``, ``prompt``).

Each builder module registers itself in :data:`skewtune.adapters.base.ADAPTERS` (``registry.py`` imports the
prefix and prompt builders, so the registry is full once it is imported). The names below load on first use
(PEP 562): adapter-folder I/O (``skewtune.adapters.io``, used by the hub commands) and ``--lora_layers`` parsing
must not import torch, transformers and peft.
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = {
    "ADAPTERS": "registry", "AdapterSettings": "base", "default_target_modules": "base",
    "resolve_target_modules": "base", "build_adapter": "registry", "load_trained_adapter": "compat",
    "merge_and_unload": "compat",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
