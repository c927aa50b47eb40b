"""Adapter registry over peft: ``lora``, ``dora``, ``rslora``, ``ia3`` (+ ``prefix``, ``prompt``)."""

from skewtune.adapters.compat import load_trained_adapter
from skewtune.adapters.registry import ADAPTERS, AdapterSettings, build_adapter, default_target_modules

__all__ = ["ADAPTERS", "AdapterSettings", "build_adapter", "default_target_modules", "load_trained_adapter"]
