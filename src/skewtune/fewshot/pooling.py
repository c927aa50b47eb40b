"""Sentence embeddings out of a (peft-wrapped) sequence-classification backbone.

:class:`SentenceEncoder` runs the backbone's transformer (with its injected LoRA weights) and mean-pools the
last hidden states over real tokens (the pooling of the bundled all-MiniLM-L6-v2 sentence encoder), optionally
L2-normalised. It returns its embeddings as ``.logits``, so the training engine (:mod:`skewtune.training.engine`)
and ``predict_logits`` drive it unchanged.

:func:`install_pooling` (in :mod:`skewtune.adapters.pooling`, so ``skewtune.load_adapter`` can use it) makes a
``*ForSequenceClassification`` model classify those same embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from skewtune.adapters.pooling import POOLING_TYPES, check_pooling, install_pooling, mean_pool, transformer_of

__all__ = ["POOLING_TYPES", "EmbeddingOutput", "FrozenPrefixEncoder", "SentenceEncoder", "check_pooling",
           "install_pooling", "mean_pool", "transformer_of"]


@dataclass
class EmbeddingOutput:
    logits: torch.Tensor  # (B, D) sentence embeddings, named so the training loop can read them


class SentenceEncoder(nn.Module):
    """``forward(input_ids, attention_mask) -> EmbeddingOutput(logits=embeddings)`` over ``model``'s transformer."""

    def __init__(self, model: Any, normalize: bool = True, buckets: int = 1) -> None:
        super().__init__()
        self.model = model  # registered: parameters() lists the adapter's trainable weights
        self.normalize = normalize
        self.buckets = max(1, int(buckets))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        hidden = transformer_of(self.model)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = mean_pool(hidden.float(), attention_mask)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> EmbeddingOutput:
        groups = self._length_groups(attention_mask)
        if groups is None:
            return EmbeddingOutput(logits=self.encode(input_ids, attention_mask))
        parts, order = [], []
        for rows, length in groups:
            parts.append(self.encode(input_ids[rows, :length], attention_mask[rows, :length]))
            order.append(rows)
        out = torch.empty((input_ids.shape[0], parts[0].shape[-1]), dtype=parts[0].dtype, device=parts[0].device)
        for rows, emb in zip(order, parts):
            out[rows] = emb
        return EmbeddingOutput(logits=out)

    def _length_groups(self, mask: torch.Tensor | None) -> list[tuple[torch.Tensor, int]] | None:
        """Split a right-padded batch into ``buckets`` groups of similar length, each trimmed to its longest row
        (a batch mixing short label prompts with long texts then pays for far less padding)."""
        if self.buckets < 2 or mask is None or mask.shape[0] < 2 * self.buckets:
            return None
        lengths = mask.sum(dim=1)
        if not bool((mask.cumsum(dim=1).eq(lengths.unsqueeze(1)) | mask.bool()).all()):
            return None  # not right-padded
        ordered = torch.argsort(lengths)
        groups = []
        for rows in torch.chunk(ordered, self.buckets):
            if len(rows):
                groups.append((rows, int(lengths[rows].max())))
        return groups


class _Passthrough(nn.Module):
    """Stands in for the embeddings module: hands ``inputs_embeds`` (cached hidden states) to the encoder."""

    def forward(self, inputs_embeds: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
        return inputs_embeds


class FrozenPrefixEncoder(SentenceEncoder):
    """A :class:`SentenceEncoder` for adapters that live in the top layers only (``--lora_layers topN``).

    The embeddings and the layers below ``start`` hold no trainable weight, so their output for a given text
    never changes: it is computed once per distinct row (inference mode, no dropout) and cached, and every
    training step runs only layers ``start…L-1`` on it. Same result as the full forward pass, at the cost of
    the top layers. Falls back to the full pass for transformers without ``embeddings`` / ``encoder.layer``.
    """

    def __init__(self, model: Any, start: int, normalize: bool = True, buckets: int = 1) -> None:
        super().__init__(model, normalize=normalize, buckets=buckets)
        self.start = int(start)
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}
        inner = transformer_of(model)
        self.enabled = self.start > 0 and hasattr(inner, "embeddings") and hasattr(getattr(inner, "encoder", None), "layer")

    def _run(self, inner: nn.Module, layers: nn.ModuleList, passthrough: bool, **inputs: Any) -> torch.Tensor:
        encoder, embeddings = inner.encoder, inner.embeddings
        saved_layers = encoder.layer
        encoder.layer = layers
        if passthrough:
            inner.embeddings = _Passthrough()
        try:
            return inner(**inputs).last_hidden_state
        finally:
            encoder.layer = saved_layers
            inner.embeddings = embeddings

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if not self.enabled or attention_mask is None:
            return super().encode(input_ids, attention_mask)
        inner = transformer_of(self.model)
        lengths = attention_mask.sum(dim=1).tolist()
        keys = [tuple(row[:n].tolist()) for row, n in zip(input_ids, lengths)]
        new_keys = [key for key in dict.fromkeys(keys) if key not in self.cache]
        if new_keys:
            first: dict[tuple[int, ...], int] = {}
            for i, key in enumerate(keys):
                first.setdefault(key, i)
            rows = [first[key] for key in new_keys]
            was_training = inner.training
            inner.eval()
            with torch.no_grad():
                hidden = self._run(inner, inner.encoder.layer[: self.start], False,
                                   input_ids=input_ids[rows], attention_mask=attention_mask[rows])
            inner.train(was_training)
            for j, i in enumerate(rows):
                self.cache[keys[i]] = hidden[j, : lengths[i]].detach()
        states = torch.zeros((input_ids.shape[0], input_ids.shape[1], next(iter(self.cache.values())).shape[-1]),
                             dtype=next(iter(self.cache.values())).dtype, device=input_ids.device)
        for i, key in enumerate(keys):
            states[i, : lengths[i]] = self.cache[key]
        hidden = self._run(inner, inner.encoder.layer[self.start:], True, inputs_embeds=states,
                           attention_mask=attention_mask)
        pooled = mean_pool(hidden.float(), attention_mask)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled
