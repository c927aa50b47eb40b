"""k-shot target-language fine-tuning of a trained task adapter (k texts, or k sentences for tagging).

:func:`fine_tune` continues training the adapter (and head) of a prepared run on a small tokenized split through
the engine (:func:`skewtune.training.engine.train_module`) — no checkpoints, no per-epoch validation — and :func:`snapshot` /
:func:`restore` put the English adapter back between languages and values of k.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import torch

from skewtune.training.engine import Optimization, batch_loader, train_module
from skewtune.training.pipeline import Run, build_loss


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


def fine_tune(run: Run, split: Any, *, epochs: int, learning_rate: float, batch_size: int = 8,
              seed: int = 0, warmup_ratio: float = 0.0) -> dict[str, Any]:
    """Train ``run.model``'s trainable weights on ``split`` (a tokenized split) for ``epochs``; returns stats."""
    if len(split) == 0:
        return {"steps": 0, "seconds": 0.0}
    loader = batch_loader(split, split.lengths, batch_size, run.collator, seed=seed)
    opt = Optimization(learning_rate=learning_rate, num_epochs=epochs, weight_decay=0.0, warmup_ratio=warmup_ratio,
                       max_grad_norm=run.cfg.max_grad_norm)
    result = train_module(run.model, loader, build_loss(run), opt, run.accelerator)
    return {"steps": result.state.global_step, "seconds": result.seconds, "train_size": len(split)}


__all__ = ["fine_tune", "restore", "sample_k", "snapshot"]
