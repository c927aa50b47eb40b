"""k-shot target-language fine-tuning of a trained task adapter (k texts, or k sentences for tagging).

:func:`fine_tune` continues training the adapter (and head) of a prepared run on a small tokenized split with
:func:`skewtune.training.loop.fit` — no checkpoints, no per-epoch validation — and :func:`snapshot` /
:func:`restore` put the English adapter back between languages and values of k.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import torch


def sample_k(items: list[Any], k: int, seed: int, labels: list[str] | None = None) -> list[Any]:
    """``k`` items drawn with ``seed``; balanced over ``labels`` when given (round-robin over the classes)."""
    if k <= 0:
        return []
    rng = random.Random(seed)
    if labels is None:
        return [items[i] for i in sorted(rng.sample(range(len(items)), min(k, len(items))))]
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    for pool in by_label.values():
        rng.shuffle(pool)
    chosen: list[int] = []
    classes = sorted(by_label)
    while len(chosen) < min(k, len(items)):
        for label in classes:
            if by_label[label] and len(chosen) < k:
                chosen.append(by_label[label].pop())
    return [items[i] for i in sorted(chosen)]


def snapshot(model: Any) -> dict[str, torch.Tensor]:
    """Copies of the trainable parameters (adapter + head)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore(model: Any, saved: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def fine_tune(run: Any, split: Any, *, epochs: int, learning_rate: float, batch_size: int = 8,
              seed: int = 0, warmup_ratio: float = 0.0) -> dict[str, Any]:
    """Train ``run.model``'s trainable weights on ``split`` (a tokenized split) for ``epochs``; returns stats."""
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    from skewtune.data.batching import LengthGroupedBatchSampler
    from skewtune.training.loop import FitState, Timer, fit
    from skewtune.training.pipeline import build_loss

    if len(split) == 0:
        return {"steps": 0, "seconds": 0.0}
    accelerator = run.accelerator
    sampler = LengthGroupedBatchSampler(split.lengths, batch_size, seed=seed)
    loader = DataLoader(split, batch_sampler=sampler, collate_fn=run.collator, num_workers=0,
                        generator=torch.Generator().manual_seed(seed))
    params = [p for p in run.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    total = max(1, math.ceil(len(loader) * epochs))
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=int(warmup_ratio * total), num_training_steps=total)
    optimizer, loader, scheduler = accelerator.prepare(optimizer, loader, scheduler)
    loss_fn = build_loss(run)
    if hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(accelerator.device)
    with Timer() as timer:
        state = fit(model=run.model, optimizer=optimizer, scheduler=scheduler, train_loader=loader,
                    batch_sampler=sampler, accelerator=accelerator, loss_fn=loss_fn, num_epochs=epochs,
                    max_steps=None, max_grad_norm=run.cfg.max_grad_norm, state=FitState(), progress=False)
    _forget(accelerator, optimizer, loader, scheduler)
    return {"steps": state.global_step, "seconds": timer.seconds, "train_size": len(split)}


def _forget(accelerator: Any, *objects: Any) -> None:
    """Drop the objects Accelerate keeps references to after ``prepare`` (many k-shot runs in one process)."""
    for attr in ("_optimizers", "_dataloaders", "_schedulers"):
        items = getattr(accelerator, attr, None)
        if isinstance(items, list):
            items[:] = [o for o in items if all(o is not x for x in objects)]


__all__ = ["fine_tune", "restore", "sample_k", "snapshot"]
