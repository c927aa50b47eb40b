"""Scoring a trained task adapter in another language: zero-shot on a target test set, and after k-shot fine-tuning.

:func:`add_language_split` tokenizes a target language's test set into a prepared run (texts with labels for
sequence classification, tagged sentences for token classification); :func:`score` gives accuracy and macro-F1 of
a tokenized split; :func:`k_shot_score` fine-tunes the run's adapter and head on ``k`` target items
(:mod:`~skewtune.crosslingual.fewshot`), scores a split, and puts the adapter back as it was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from skewtune.crosslingual.fewshot import fine_tune, restore, sample_k, snapshot
from skewtune.data.batching import tokenize_split
from skewtune.training.pipeline import Run, evaluate_split


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


def score(run: Run, split: str) -> dict[str, Any]:
    """Accuracy, macro-F1, size and seconds of one tokenized split (and ``words`` for tagging)."""
    start = time.perf_counter()
    report = evaluate_split(run, split)
    out = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "size": len(run.tokenized[split]),
           "seconds": round(time.perf_counter() - start, 1)}
    if "num_tokens" in report:
        out["words"] = report["num_tokens"]
    return out


def k_shot_score(run: Run, items: Sequence[Any], k: int, *, split: str, labels: Sequence[str] | None = None,
                 seed: int = 0, epochs: int, learning_rate: float, batch_size: int = 8, max_length: int | None = None,
                 name: str | None = None) -> dict[str, Any]:
    """Fine-tune the run's trainable weights on ``k`` of ``items`` (drawn with ``seed``, balanced over ``labels``
    when given; tokenized as ``name``), score ``split``, then restore the weights. Returns the scores plus ``k``,
    ``train_steps`` and ``train_seconds``. ``items`` / ``labels`` / ``max_length`` as in :func:`add_language_split`."""
    name = name or f"{k}-shot"
    if labels is None:
        chosen, chosen_labels = sample_k(list(items), k, seed), None
    else:
        pairs = sample_k(list(zip(items, labels)), k, seed, labels=list(labels))
        chosen, chosen_labels = [t for t, _ in pairs], [lab for _, lab in pairs]
    data = _tokenize(run, name, chosen, chosen_labels, max_length)
    model = run.accelerator.unwrap_model(run.model)
    saved = snapshot(model)
    try:
        stats = fine_tune(run, data, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed)
        result = score(run, split)
    finally:
        restore(model, saved)
    result.update(k=k, train_steps=stats["steps"], train_seconds=round(stats["seconds"], 1))
    return result


__all__ = ["add_language_split", "k_shot_score", "score"]
