"""Mean pooling for sequence classifiers: the sentence embedding few-shot adapters classify.

:func:`install_pooling` makes a ``*ForSequenceClassification`` model classify mean-pooled embeddings: a forward
hook on its transformer replaces ``pooler_output`` (which the model feeds to ``dropout`` + ``classifier``) with
the mean-pooled embedding. The adapter folder records ``{"pooling": {"type": "mean", "normalize": true}}`` in
``skewtune.json``; ``skewtune.load_adapter`` installs the hook again, so prediction matches training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from skewtune.errors import AdapterError

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

POOLING_TYPES = ("mean",)


def transformer_of(model: nn.Module) -> nn.Module:
    """The encoder inside a (peft-wrapped) ``*ForSequenceClassification`` model, e.g. its ``bert``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = getattr(base, "base_model_prefix", "")
    inner = getattr(base, prefix, None) if prefix else None
    if inner is None:
        raise AdapterError(f"cannot find the transformer inside {type(base).__name__}",
                           "sentence pooling supports encoder classifiers such as BERT")
    return inner


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Average of ``hidden`` (B, T, D) over positions where ``mask`` (B, T) is 1."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def check_pooling(pooling: dict[str, Any] | None) -> dict[str, Any] | None:
    if pooling is None:
        return None
    if not isinstance(pooling, dict) or pooling.get("type") not in POOLING_TYPES:
        raise AdapterError(f"unknown pooling {pooling!r} in skewtune.json",
                           f"pooling type must be one of: {', '.join(POOLING_TYPES)}")
    return {"type": pooling["type"], "normalize": bool(pooling.get("normalize", True))}


def install_pooling(model: nn.Module, pooling: dict[str, Any] | None) -> RemovableHandle | None:
    """Feed the classifier mean-pooled (normalised) embeddings instead of the [CLS] pooler; returns the hook."""
    pooling = check_pooling(pooling)
    if pooling is None:
        return None
    inner = transformer_of(model)
    previous = getattr(inner, "_skewtune_pooling_hook", None)
    if previous is not None:
        previous.remove()
    normalize = pooling["normalize"]

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:
            mask = args[1]
        pooled = mean_pool(output.last_hidden_state.float(), mask)
        if normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        output["pooler_output"] = pooled
        return output

    handle = inner.register_forward_hook(hook, with_kwargs=True)
    inner._skewtune_pooling_hook = handle
    return handle
