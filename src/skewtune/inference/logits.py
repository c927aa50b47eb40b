"""Logits of a model over a tokenized split: batched, sorted by length, in input order, sharded across processes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from skewtune.data.batching import LengthGroupedBatchSampler

if TYPE_CHECKING:
    from accelerate import Accelerator


def logits_of(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits


@torch.inference_mode()
def predict_logits(model: Any, split: Any, collator: Any, batch_size: int, device: torch.device,
                   accelerator: Accelerator | None = None, max_tokens: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """Logits for every example of ``split`` in input order.

    Batches are sorted by length (little padding) and, under several processes, each process scores every
    n-th batch and the results are gathered with ``gather_object`` (exact, no duplicated samples).
    """
    was_training = model.training
    model.eval()
    sampler = LengthGroupedBatchSampler(split.lengths, batch_size, shuffle=False, max_tokens=max_tokens)
    batches = list(sampler)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = batches[rank::world]
    outputs: list[tuple[list[int], torch.Tensor]] = []
    iterator = mine
    if progress and rank == 0:
        # on a terminal the bar is wiped at the end; in a log or pipe it stays, ending its line, so whatever is
        # written next (an error) starts a fresh line
        terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
        iterator = tqdm(mine, desc="predict", unit="batch", leave=not terminal)
    for indices in iterator:
        rows = split.__getitems__(indices) if hasattr(split, "__getitems__") else [split[i] for i in indices]
        batch = collator(rows)
        batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        outputs.append((indices, logits_of(model, batch).float().cpu()))
    if world > 1:
        outputs = gather_object(outputs)
    if was_training:
        model.train()
    if not outputs:
        return torch.empty(0)
    first = outputs[0][1]
    result = torch.empty((len(split), *first.shape[1:]), dtype=first.dtype) if first.dim() == 2 else None
    if result is None:  # token classification: variable lengths → list of tensors padded to max
        longest = max(t.shape[1] for _, t in outputs)
        result = torch.full((len(split), longest, first.shape[-1]), float("nan"))
        for indices, logits in outputs:
            result[indices, : logits.shape[1]] = logits
        return result
    for indices, logits in outputs:
        result[indices] = logits
    return result
