"""Tokenise once, then batch by length: dynamic padding and length-grouped batches with a token budget."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger("skewtune")


@dataclass
class TokenizedSplit:
    """Token ids per example (no padding), labels as class ids, and how many texts were truncated."""

    input_ids: list[list[int]]
    labels: list[int] | None
    truncated: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"input_ids": self.input_ids[index]}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def truncate_ids(seq: list[int], max_length: int, sep_token_id: int | None) -> list[int]:
    """``seq`` cut to ``max_length`` tokens, keeping a final separator token (BERT's [SEP]) when it ends one."""
    if len(seq) <= max_length:
        return seq
    last = seq[-1] if sep_token_id is not None and seq[-1] == sep_token_id else None
    return seq[: max_length - 1] + [last] if last is not None else seq[:max_length]


def tokenize_split(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | None = None, max_length: int = 128,
    split_name: str = "data",
) -> TokenizedSplit:
    """Tokenise all texts in one fast-tokenizer call; truncation is counted and reported once."""
    encoded = tokenizer(list(texts), truncation=False, add_special_tokens=True)["input_ids"]
    ids = [truncate_ids(seq, max_length, tokenizer.sep_token_id) for seq in encoded]
    truncated = sum(len(seq) > max_length for seq in encoded)
    if truncated:
        logger.warning("%d of %d %s texts are longer than %d tokens and were truncated", truncated, len(ids), split_name, max_length)
    return TokenizedSplit(ids, list(labels) if labels is not None else None, truncated)


class PaddingCollator:
    """Pad a list of examples to the longest one in the batch (optionally to a multiple of ``pad_to_multiple_of``)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None, padding_side: str = "right") -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.padding_side = padding_side

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in batch)
        if self.pad_to_multiple_of:
            longest = int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        input_ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            seq = torch.as_tensor(item["input_ids"], dtype=torch.long)
            if self.padding_side == "left":
                input_ids[row, longest - len(seq):] = seq
                attention[row, longest - len(seq):] = 1
            else:
                input_ids[row, : len(seq)] = seq
                attention[row, : len(seq)] = 1
        out = {"input_ids": input_ids, "attention_mask": attention}
        if "labels" in batch[0]:
            first = batch[0]["labels"]
            if isinstance(first, list):  # token classification: pad labels with -100
                labels = torch.full((len(batch), longest), -100, dtype=torch.long)
                for row, item in enumerate(batch):
                    lab = torch.as_tensor(item["labels"], dtype=torch.long)
                    if self.padding_side == "left":
                        labels[row, longest - len(lab):] = lab
                    else:
                        labels[row, : len(lab)] = lab
                out["labels"] = labels
            else:
                out["labels"] = torch.as_tensor([item["labels"] for item in batch], dtype=torch.long)
        return out


class LengthGroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length: shuffle, sort inside mega-batches of ``mega`` batches, shuffle the batches.

    With ``max_tokens`` a batch closes when ``batch_len × longest`` would exceed the budget, so short texts
    travel in large batches and long ones in small ones (padding waste stays low). Deterministic per
    ``seed`` and epoch (call :meth:`set_epoch`). Under DDP, Accelerate shards the batch list across processes.
    ``shuffle=False`` gives sorted-by-length batches for evaluation (order restored by the caller via indices).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        mega: int = 50,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.mega = mega
        self.epoch = 0
        self.indices = list(indices) if indices is not None else None
        self._batches = self._build()

    resample: Any = None  # optional callable(epoch) -> indices, e.g. a class-balanced draw per epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            if self.resample is not None:
                self.indices = list(self.resample(epoch))
            self._batches = self._build()

    def set_indices(self, indices: Sequence[int]) -> None:
        """Replace the pool of example indices (e.g. a resampled training set) and rebuild."""
        self.indices = list(indices)
        self._batches = self._build()

    def _pack(self, ordered: list[int]) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for index in ordered:
            length = self.lengths[index]
            new_longest = max(longest, length)
            over_budget = self.max_tokens is not None and current and new_longest * (len(current) + 1) > self.max_tokens
            if len(current) >= self.batch_size or over_budget:
                batches.append(current)
                current, new_longest = [], length
            current.append(index)
            longest = new_longest
        if current:
            batches.append(current)
        return batches

    def _build(self) -> list[list[int]]:
        pool = list(self.indices) if self.indices is not None else list(range(len(self.lengths)))
        if not self.shuffle:
            return self._pack(sorted(pool, key=lambda i: self.lengths[i]))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(pool)
        span = self.batch_size * self.mega
        batches: list[list[int]] = []
        for start in range(0, len(pool), span):
            chunk = sorted(pool[start : start + span], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(self._pack(chunk))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)
