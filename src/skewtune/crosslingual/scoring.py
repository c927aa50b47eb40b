"""Scoring a trained task adapter in another language: zero-shot on a target test set, and after k-shot fine-tuning.

:func:`add_language_split` tokenizes a target language's test set into a prepared run (texts with labels for
sequence classification, tagged sentences for token classification); :func:`score` gives accuracy and macro-F1 of
a tokenized split; :func:`k_shot_score` fine-tunes the run's adapter and head on ``k`` target items
(:mod:`~skewtune.crosslingual.fewshot`; optionally with early stopping on a held-out part of the k items), scores
a split, and puts the adapter back as it was. :func:`item_scores` gives each item's right / scored count (a text:
0 or 1 of 1; a tagged sentence: words right of words), :func:`paired_sign_test` compares two configurations on the
same items (exact one-sided sign test on the items where they differ, i.e. exact McNemar for texts), and
:func:`true_class_probability` is the mean probability of the true class (a finer early-stopping score than the
accuracy of a few held-out texts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from scipy.stats import binomtest

from skewtune.crosslingual.fewshot import fine_tune, restore, sample_k, snapshot, split_folds, split_holdout
from skewtune.data.batching import tokenize_split
from skewtune.errors import ConfigError
from skewtune.tasks.token import predict_tags
from skewtune.training.pipeline import evaluate_split

K_SHOT_METRICS = ("accuracy", "macro_f1", "true_class_probability")

if TYPE_CHECKING:
    from skewtune.training.pipeline import Run


def add_language_split(run: Run, name: str, items: Sequence[Any], labels: Sequence[str] | None = None, *,
                       max_length: int | None = None) -> str:
    """Tokenize ``items`` into ``run.tokenized[name]`` and return ``name``.

    With ``labels`` (one string label per text) the items are texts, truncated at ``max_length`` subwords (default
    the run's ``max_length``); without, they are tagged sentences ``(words, tags)`` of a token-classification run.
    """
    run.tokenized[name] = _tokenize(run, name, items, labels, max_length)
    return name


def _tokenize(run: Run, name: str, items: Sequence[Any], labels: Sequence[str] | None, max_length: int | None) -> Any:
    if labels is None:
        return run.task.tokenize_sentences(run.cfg, run.tokenizer, list(items), run.splits.label2id, name)
    ids = [run.splits.label2id[label] for label in labels]
    return tokenize_split(run.tokenizer, list(items), ids, max_length or run.cfg.max_length, name)


def score(run: Run, split: str | Any) -> dict[str, Any]:
    """Accuracy, macro-F1, size and seconds of one tokenized split (a name or the split itself; ``words`` for
    tagging)."""
    start = time.perf_counter()
    report = evaluate_split(run, split)
    data = run.tokenized[split] if isinstance(split, str) else split
    out = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "size": len(data),
           "seconds": round(time.perf_counter() - start, 1)}
    if "num_tokens" in report:
        out["words"] = report["num_tokens"]
    return out


def true_class_probability(logits: torch.Tensor, labels: Sequence[int]) -> float:
    """Mean over items of softmax(logits)[true class]: ``(1/n) Σ_i p(y_i | x_i)`` (0 for no items)."""
    if len(labels) == 0:
        return 0.0
    probs = torch.softmax(logits.float(), dim=-1)
    return float(probs[torch.arange(len(labels)), torch.as_tensor(list(labels))].mean())


def item_scores(run: Run, split: str | Any) -> list[tuple[int, int]]:
    """Per item of a tokenized split: (right, scored) — a text (0 or 1, 1), a tagged sentence (words right, words;
    words cut off by truncation count as wrong)."""
    data = run.tokenized[split] if isinstance(split, str) else split
    if hasattr(data, "word_tags"):
        model = run.accelerator.unwrap_model(run.model)
        predicted = predict_tags(model, data, run.splits.id2label, run.collator, run.cfg.per_device_eval_batch_size,
                                 run.accelerator)
        return [(sum(p == g for p, g in zip(pred, gold)), len(gold)) for pred, gold in zip(predicted, data.word_tags)]
    report = evaluate_split(run, data)
    predicted = report["logits"].argmax(-1).tolist()
    return [(int(p == y), 1) for p, y in zip(predicted, data.labels)]


def paired_sign_test(base: Sequence[tuple[int, int]], other: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Is ``other`` better than ``base`` on the same items? Exact one-sided sign test on the discordant items.

    An item is a win when ``other`` gets more of it right, a loss when fewer; ties drop out. Under H0 (no
    difference) wins ~ Binomial(wins + losses, 1/2); ``p_value`` = P(X ≥ wins) (scipy's ``binomtest``,
    alternative "greater"; 1 when no item differs). For 0/1 items this is the exact McNemar test.
    """
    if len(base) != len(other):
        raise ConfigError(f"paired test of {len(base)} vs {len(other)} items", "score both on the same split")
    wins = sum(o[0] > b[0] for b, o in zip(base, other))
    losses = sum(o[0] < b[0] for b, o in zip(base, other))
    p_value = float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "ties": len(base) - wins - losses, "p_value": p_value}


def k_shot_score(run: Run, items: Sequence[Any], k: int, *, split: str, labels: Sequence[str] | None = None,
                 seed: int = 0, epochs: int, learning_rate: float, batch_size: int = 8, max_length: int | None = None,
                 name: str | None = None, holdout: float = 0.0, patience: int | None = None,
                 metric: str = "accuracy", wise_alpha: float = 1.0, folds: int = 0,
                 balanced: bool = False) -> dict[str, Any]:
    """Fine-tune the run's trainable weights on ``k`` of ``items`` (a random draw with ``seed``, so the k items carry
    the target's class prior; ``balanced``: the same number per class of ``labels``; tokenized as ``name``), score
    ``split``, then restore the weights. Returns the scores plus ``k``,
    ``train_steps`` and ``train_seconds``. ``items`` / ``labels`` / ``max_length`` as in :func:`add_language_split`.

    ``holdout`` > 0: that fraction of the k items (stratified over ``labels``) is not trained on but scored
    (``metric``) before the first step and after every epoch; the best state is the one scored on ``split``
    (:func:`~skewtune.crosslingual.fewshot.fine_tune`: ties keep the earlier state, so with no gain on the held-out
    items the zero-shot adapter is scored). The result then adds ``best_epoch``, ``validation`` and ``holdout_size``.
    ``metric``: ``accuracy``, ``macro_f1`` or ``true_class_probability`` (:func:`true_class_probability`; texts
    only). ``wise_alpha`` < 1: WiSE-FT, the interpolation of the English and the fine-tuned weights is kept
    (:func:`~skewtune.crosslingual.fewshot.fine_tune`).

    ``folds`` ≥ 2 replaces the single held-out part by cross-validated early stopping
    (:func:`~skewtune.crosslingual.fewshot.split_folds`): each of ``folds`` stratified parts of the k items is held
    out once and scored (``metric``) before training and after every epoch of training on the others; the epoch
    count with the best item-weighted mean over the folds (ties: fewer; 0: the zero-shot adapter) is then trained on
    all k items. The result adds ``folds``, ``best_epoch`` and ``validation`` (the pooled score per epoch count).
    """
    if metric not in K_SHOT_METRICS:
        raise ConfigError(f"unknown k-shot early-stopping metric '{metric}'", f"use one of: {', '.join(K_SHOT_METRICS)}")
    if metric == "true_class_probability" and labels is None:
        raise ConfigError("true_class_probability needs labelled texts, not tagged sentences",
                          "use metric 'accuracy' (word accuracy) for tagging")
    name = name or f"{k}-shot"
    if labels is None:
        chosen, chosen_labels = sample_k(list(items), k, seed), None
    else:
        pairs = sample_k(list(zip(items, labels)), k, seed, labels=list(labels) if balanced else None)
        chosen, chosen_labels = [t for t, _ in pairs], [lab for _, lab in pairs]
    if folds >= 2:
        return _cross_validated(run, chosen, chosen_labels, k, split=split, seed=seed, epochs=epochs,
                                learning_rate=learning_rate, batch_size=batch_size, max_length=max_length, name=name,
                                metric=metric, wise_alpha=wise_alpha, folds=folds)
    train_idx, held_idx = split_holdout(len(chosen), holdout, seed, chosen_labels)
    if holdout > 0 and (not held_idx or not train_idx):
        raise ConfigError(f"k={k} is too small to hold out {holdout:.0%} of the shots",
                          "raise k or lower the held-out fraction")

    data = _tokenize(run, name, *_part(chosen, chosen_labels, train_idx), max_length)
    validate = None
    if held_idx:
        held = _tokenize(run, f"{name} held-out", *_part(chosen, chosen_labels, held_idx), max_length)
        validate = _validator(run, held, metric)

    model = run.accelerator.unwrap_model(run.model)
    saved = snapshot(model)
    try:
        stats = fine_tune(run, data, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                          validate=validate, patience=patience, wise_alpha=wise_alpha)
        result = score(run, split)
    finally:
        restore(model, saved)
    result.update(k=k, train_steps=stats["steps"], train_seconds=round(stats["seconds"], 1), wise_alpha=wise_alpha)
    if validate is not None:
        result.update(holdout_size=len(held_idx), best_epoch=stats["best_epoch"], validation=stats["validation"])
    return result


def _part(items: list[Any], labels: list[str] | None, indices: list[int]) -> tuple[list[Any], list[str] | None]:
    return [items[i] for i in indices], None if labels is None else [labels[i] for i in indices]


def _validator(run: Run, held: Any, metric: str) -> Callable[[], float]:
    """``metric`` of the run's model on the tokenized split ``held`` (higher is better)."""
    def validate() -> float:
        report = evaluate_split(run, held)
        if metric == "true_class_probability":
            return true_class_probability(report["logits"], held.labels)
        return float(report[metric])
    return validate


def _cross_validated(run: Run, chosen: list[Any], chosen_labels: list[str] | None, k: int, *, split: str, seed: int,
                     epochs: int, learning_rate: float, batch_size: int, max_length: int | None, name: str,
                     metric: str, wise_alpha: float, folds: int) -> dict[str, Any]:
    """:func:`k_shot_score` with ``folds``-fold cross-validated early stopping (its docstring)."""
    parts = split_folds(len(chosen), folds, seed, chosen_labels)
    if len(parts) < 2:
        raise ConfigError(f"k={k} is too small for {folds}-fold cross-validation", "raise k or use fewer folds")
    model = run.accelerator.unwrap_model(run.model)
    saved = snapshot(model)
    pooled = [0.0] * (epochs + 1)
    seconds, steps = 0.0, 0
    try:
        for number, held_idx in enumerate(parts):
            held_set = set(held_idx)
            train_idx = [i for i in range(len(chosen)) if i not in held_set]
            data = _tokenize(run, f"{name} fold {number}", *_part(chosen, chosen_labels, train_idx), max_length)
            held = _tokenize(run, f"{name} fold {number} held-out", *_part(chosen, chosen_labels, held_idx),
                             max_length)
            stats = fine_tune(run, data, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                              validate=_validator(run, held, metric), patience=None, wise_alpha=wise_alpha)
            seconds, steps = seconds + stats["seconds"], steps + stats["steps"]
            for epoch, value in enumerate(stats["validation"]):
                pooled[epoch] += value * len(held_idx) / len(chosen)
            restore(model, saved)
        best_epoch = max(range(epochs + 1), key=lambda e: (pooled[e], -e))  # ties: fewer epochs
        data = _tokenize(run, name, chosen, chosen_labels, max_length)
        stats = fine_tune(run, data, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                          wise_alpha=wise_alpha, stop_after=best_epoch)
        result = score(run, split)
    finally:
        restore(model, saved)
    result.update(k=k, train_steps=stats["steps"], train_seconds=round(seconds + stats["seconds"], 1),
                  cv_train_steps=steps, wise_alpha=wise_alpha, folds=len(parts), best_epoch=best_epoch,
                  validation=[round(v, 6) for v in pooled])
    return result


__all__ = ["K_SHOT_METRICS", "add_language_split", "item_scores", "k_shot_score", "paired_sign_test", "score",
           "true_class_probability"]
