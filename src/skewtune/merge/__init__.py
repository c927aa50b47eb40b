"""Adapter merging: ``skewtune.merge(adapters=[...], method="ties", ...)`` → a standard PEFT LoRA folder.

* :func:`merge_adapters` (also reachable as ``skewtune.merge(...)``): linear, cat, svd, ties, dare_linear, dare_ties,
  magnitude_prune, task_arithmetic (:data:`MERGE_METHODS`), exact on the LoRA factors where the method is linear.
* :class:`MultiTaskClassifier`: ``from_folder(path, base).predict(texts, task=...)`` for merges of adapters with
  different label sets (one head per task, ``heads/<task>.safetensors``).
* :func:`merge_into_base`: fold an adapter into its fp32 or 8-bit backbone and save a transformers model folder.
* :func:`evaluate_adapter`: score a saved adapter (or one task of a multi-task merge) on a dataset's test split.

This module is callable (``skewtune.merge(...)`` is :func:`merge_adapters`), because importing the subpackage
replaces the ``skewtune.merge`` function of the top-level package with this module.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from skewtune.merge.api import merge_adapters, plan_merge
from skewtune.merge.base import merge_into_base
from skewtune.merge.methods import MERGE_METHODS, MergeMethod, MethodParams
from skewtune.merge.multitask import MultiTaskClassifier
from skewtune.merge.scoring import evaluate_adapter

__all__ = [
    "MERGE_METHODS",
    "MergeMethod",
    "MethodParams",
    "MultiTaskClassifier",
    "evaluate_adapter",
    "merge_adapters",
    "merge_into_base",
    "plan_merge",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return merge_adapters(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
