"""k-shot target-language fine-tuning of a trained task adapter (k texts, or k sentences for tagging).

:func:`fine_tune` continues training the adapter (and head) of a prepared run on a small tokenized split through
the engine (:func:`skewtune.training.engine.train_module`) — no checkpoints — and :func:`snapshot` /
:func:`restore` put the English adapter back between languages and values of k.

Early stopping on held-out shots (``fine_tune(..., validate=...)``): :func:`split_holdout` sets a stratified part
of the k shots aside; ``validate()`` scores it before the first step (the state fine-tuning starts from, i.e. the
zero-shot adapter) and after every epoch; the state with the highest score is kept — a later epoch replaces it only
when strictly better, so ties keep the earlier state — and training stops after ``patience`` epochs without
improvement. When no epoch beats the starting state, the adapter comes back unchanged (k-shot = zero-shot).

Cross-validated early stopping (:func:`split_folds`): with few shots one held-out part is a handful of items, too
few to tell an epoch that helps from one that hurts. The k shots are cut into ``F`` stratified folds; each fold is
held out once while the others train for every epoch, scored before the first step and after every epoch; the
score of ``e`` epochs is the item-weighted mean over the folds, ``s(e) = Σ_f n_f·s_f(e) / Σ_f n_f``, so every one of
the k items votes once. The epoch count kept is ``e* = argmax_e s(e)`` (ties: the smaller; ``e* = 0`` keeps the
starting adapter), and the adapter is then trained on all k items with the same schedule and stopped after ``e*``
epochs (``fine_tune(..., stop_after=e*)``) — the usual k-fold choice of a hyperparameter (Hastie, Tibshirani &
Friedman, *The Elements of Statistical Learning*, §7.10).

WiSE-FT (``fine_tune(..., wise_alpha=α)``; Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"): the
weights kept are the interpolation θ = (1 − α)·θ_start + α·θ_fine-tuned of the trainable weights
(:func:`interpolate`); with early stopping every epoch's *interpolated* state is the one scored (training itself
continues from the fine-tuned weights), so the state kept is the one that is used. α = 1 is plain fine-tuning,
α = 0 the starting adapter.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from skewtune.errors import ConfigError
from skewtune.training.engine import Optimization, batch_loader, train_module
from skewtune.training.pipeline import build_loss

if TYPE_CHECKING:
    from skewtune.training.pipeline import Run
    from skewtune.training.state import FitState


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


def _shuffled_classes(n: int, seed: int, labels: list[str] | None) -> list[list[int]]:
    """The indices of ``range(n)`` grouped by label (one group without labels), classes in sorted order, each
    shuffled by one ``random.Random(seed)`` in that order."""
    rng = random.Random(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for i in range(n):
        groups[labels[i] if labels is not None else ""].append(i)
    ordered = [groups[key] for key in sorted(groups)]
    for members in ordered:
        rng.shuffle(members)
    return ordered


def split_holdout(n: int, fraction: float, seed: int, labels: list[str] | None = None) -> tuple[list[int], list[int]]:
    """(train, held-out) indices of ``n`` items: ``round(fraction × n)`` held out, stratified over ``labels``.

    With labels every class of at least two items gives ``round(fraction × its count)`` items (at least one) to
    the held-out part, so a balanced draw stays balanced on both sides; without labels the held-out items are a
    seeded random ``round(fraction × n)`` (at least one when ``n ≥ 2``). ``fraction`` 0 holds nothing out.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"held-out fraction {fraction} is outside [0, 1)", "use e.g. 0.25 (a quarter of the shots)")
    if fraction == 0.0 or n < 2:
        return list(range(n)), []
    held: list[int] = []
    for members in _shuffled_classes(n, seed, labels):
        if len(members) >= 2:
            held += members[: max(1, round(fraction * len(members)))]
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held)


def split_folds(n: int, folds: int, seed: int, labels: list[str] | None = None) -> list[list[int]]:
    """``folds`` disjoint parts of ``range(n)`` covering it, stratified over ``labels``: each class's items, shuffled
    with ``seed``, are dealt round-robin (the next class starts at the fold after the last one dealt), so fold
    sizes differ by at most one and every class is spread evenly. Empty folds are dropped (``n < folds``)."""
    if folds < 2:
        raise ConfigError(f"{folds} fold(s) cannot cross-validate", "use at least 2 folds")
    parts: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for members in _shuffled_classes(n, seed, labels):
        for i in members:
            parts[position % folds].append(i)
            position += 1
    return [sorted(part) for part in parts if part]


def snapshot(model: Any) -> dict[str, torch.Tensor]:
    """Copies of the trainable parameters (adapter + head)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore(model: Any, saved: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def interpolate(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """WiSE-FT's weight-space ensemble: ``(1 − alpha)·start + alpha·end`` per tensor (the names of ``start``)."""
    return {name: torch.lerp(value, end[name].to(value.dtype), alpha) for name, value in start.items()}


def fine_tune(run: Run, split: Any, *, epochs: int, learning_rate: float, batch_size: int = 8,
              seed: int = 0, warmup_ratio: float = 0.0, validate: Callable[[], float] | None = None,
              patience: int | None = None, wise_alpha: float = 1.0,
              stop_after: int | None = None) -> dict[str, Any]:
    """Train ``run.model``'s trainable weights on ``split`` (a tokenized split) for up to ``epochs``; returns stats.

    ``validate`` (higher is better) turns on early stopping (module docstring): the stats then hold ``best_epoch``
    (0: the starting state was kept) and ``validation`` (the score before training, then after each epoch).
    ``wise_alpha`` < 1 keeps the WiSE-FT interpolation of the starting and the fine-tuned weights (module docstring).
    ``stop_after``: end training after that many epochs, the learning-rate schedule still built for ``epochs`` (the
    schedule the cross-validation folds ran; 0 trains nothing).
    """
    if not 0.0 <= wise_alpha <= 1.0:
        raise ConfigError(f"WiSE-FT alpha {wise_alpha} is outside [0, 1]",
                          "use e.g. 0.5 (halfway between the starting and the fine-tuned weights), 1 for none")
    if len(split) == 0 or stop_after == 0:
        return {"steps": 0, "seconds": 0.0, "train_size": len(split), "epochs_run": 0, "wise_alpha": wise_alpha}
    model = run.accelerator.unwrap_model(run.model)
    start = snapshot(model)
    loader = batch_loader(split, split.lengths, batch_size, run.collator, seed=seed)
    opt = Optimization(learning_rate=learning_rate, num_epochs=epochs, weight_decay=0.0, warmup_ratio=warmup_ratio,
                       max_grad_norm=run.cfg.max_grad_norm)
    history: list[float] = []
    best: dict[str, Any] = {}
    if validate is not None:
        history.append(float(validate()))
        best.update(score=history[0], epoch=0, state=snapshot(model))

    def stop_at_epoch(state: FitState) -> None:
        if stop_after is not None and state.epoch >= stop_after:
            state.should_stop = True

    def on_epoch_end(state: FitState) -> None:
        stop_at_epoch(state)
        trained = snapshot(model) if wise_alpha < 1.0 else None
        if trained is not None:  # score the interpolated state; training goes on from the fine-tuned one
            restore(model, interpolate(start, trained, wise_alpha))
        value = float(validate())  # type: ignore[misc]
        history.append(value)
        if value > best["score"]:  # strictly better: a tie keeps the earlier state
            best.update(score=value, epoch=state.epoch, state=snapshot(model))
        elif patience and state.epoch - best["epoch"] >= patience:
            state.should_stop = True
        if trained is not None:
            restore(model, trained)
        model.train()  # scoring switched the model to eval mode; the next epoch trains

    result = train_module(run.model, loader, build_loss(run), opt, run.accelerator,
                          on_epoch_end=on_epoch_end if validate is not None else stop_at_epoch)
    stats: dict[str, Any] = {"steps": result.state.global_step, "seconds": result.seconds, "train_size": len(split),
                             "epochs_run": result.state.epoch}
    if validate is not None:
        restore(model, best["state"])  # interpolated already when wise_alpha < 1
        stats.update(best_epoch=best["epoch"], validation=history)
    elif wise_alpha < 1.0:
        restore(model, interpolate(start, snapshot(model), wise_alpha))
    stats["wise_alpha"] = wise_alpha
    return stats


__all__ = ["fine_tune", "interpolate", "restore", "sample_k", "snapshot", "split_folds", "split_holdout"]
