"""Score a saved adapter (single-task, or one task of a merged multi-task adapter) on a dataset's test split.

``evaluate_adapter(adapter_dir, dataset)`` rebuilds the same deduplicated, stratified 80/10/10 split the training
pipeline uses (:func:`skewtune.data.load_dataset_splits`, same ``seed``), predicts the chosen split and scores it
with the offline metric module (:func:`skewtune.evaluation.classification_report`). Labels are matched **by name**
between the adapter's ``id2label`` and the dataset's labels, so an adapter whose class ids are ordered differently
is still scored correctly; different label sets are refused before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from skewtune.adapters.io import check_folder_safe, read_manifest, verify_folder
from skewtune.data import load_dataset_splits
from skewtune.errors import ConfigError, DataError
from skewtune.evaluation import classification_report
from skewtune.inference import load_adapter
from skewtune.merge.multitask import MultiTaskClassifier

SPLITS = ("test", "validation")


def _labels(id2label: dict[str, Any]) -> list[str]:
    return [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]


def _fmt(labels: list[str]) -> str:
    return ", ".join(sorted(labels))


def _choose_task(manifest: dict[str, Any], folder: Path, task: str | None, dataset: str,
                 split_name: str, dataset_labels: list[str]) -> str | None:
    """The task whose head is scored: ``task``, or the one task whose label set matches the dataset's."""
    tasks = manifest.get("tasks") or {}
    if not tasks:
        if task is not None and task not in {manifest.get("dataset"), manifest.get("default_task"), manifest.get("name")}:
            raise ConfigError(f"{folder} is a single-task adapter; task '{task}' does not apply to it",
                              "drop task= / the task name (it selects a head of a merged multi-task adapter)")
        return None
    if task is not None:
        if task not in tasks:
            raise ConfigError(f"{folder} has no task '{task}'", f"use one of: {', '.join(tasks)}")
        return task
    wanted = set(dataset_labels)
    candidates = [t for t, info in tasks.items() if set(_labels(info.get("id2label") or {})) == wanted]
    if len(candidates) > 1:
        named = [t for t in candidates if t in (dataset, split_name) or tasks[t].get("dataset") in (dataset, split_name)]
        if len(named) == 1:
            return named[0]
        if manifest.get("default_task") in candidates:
            return str(manifest["default_task"])
        raise ConfigError(f"several tasks of {folder} have the labels of dataset '{dataset}': {', '.join(candidates)}",
                          "pass task= to choose one")
    if candidates:
        return candidates[0]
    listing = "; ".join(f"{t}: {_fmt(_labels(info.get('id2label') or {}))}" for t, info in tasks.items())
    raise DataError(f"no task of {folder} has the labels of dataset '{dataset}' ({_fmt(dataset_labels)}); tasks: {listing}",
                    "evaluate on a dataset with one task's labels")


def _sorted_logits(predict: Callable[[list[str], int], torch.Tensor], texts: list[str],
                   batch_size: int) -> torch.Tensor:
    """``predict(texts)`` on texts sorted by length (little padding), returned in input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    logits = predict([texts[i] for i in order], batch_size)
    out = torch.empty_like(logits)
    out[torch.tensor(order, dtype=torch.long)] = logits
    return out


def evaluate_adapter(
    adapter_dir: str | Path,
    dataset: str,
    *,
    task: str | None = None,
    max_eval_samples: int | None = None,
    seed: int = 42,
    split: str = "test",
    text_column: str = "text",
    label_column: str = "label",
    backbone: str | None = None,
    quant: str | None = None,
    batch_size: int = 128,
) -> dict[str, Any]:
    """Score the adapter in ``adapter_dir`` on ``split`` of ``dataset`` (a registered name or a local file).

    ``task`` selects the head of a merged multi-task adapter (default: the task whose label set equals the
    dataset's); ``seed`` must be the training seed so the split is the one the adapter never saw (the
    recipes' default is 42); ``max_eval_samples`` takes a stratified subsample of the split; ``backbone`` /
    ``quant`` default to the adapter's own (``skewtune.json``). Files are hash-checked before loading.

    Returns the :func:`~skewtune.evaluation.classification_report` figures (``accuracy``, ``macro_f1``,
    ``weighted_f1``, per-class scores keyed by label, ``confusion_matrix`` in the dataset's label order) plus
    ``adapter``, ``dataset``, ``task``, ``split``, ``seed``, ``num_samples`` and ``labels``.
    Raises :class:`~skewtune.errors.DataError` when the adapter's labels differ from the dataset's.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'", f"use one of: {', '.join(SPLITS)}")
    folder = Path(adapter_dir).expanduser()
    check_folder_safe(folder)
    manifest = verify_folder(folder, read_manifest(folder))
    if manifest.get("task_type", "seq_cls") != "seq_cls":
        raise ConfigError(f"{folder} is a {manifest.get('task_type')} adapter; evaluate_adapter scores sequence "
                          "classification", "evaluate token classifiers with their own recipe")
    splits = load_dataset_splits(dataset, seed=seed, text_column=text_column, label_column=label_column,
                                 max_eval_samples=max_eval_samples)
    chosen = _choose_task(manifest, folder, task, dataset, splits.name, splits.labels)
    id2label = (manifest["tasks"][chosen]["id2label"] if chosen is not None else manifest.get("id2label")) or {}
    adapter_labels = _labels(id2label)
    if len(set(adapter_labels)) != len(adapter_labels) or set(adapter_labels) != set(splits.labels):
        which = f"task '{chosen}' of {folder}" if chosen is not None else str(folder)
        raise DataError(f"the labels of {which} ({_fmt(adapter_labels)}) do not match those of dataset "
                        f"'{dataset}' ({_fmt(splits.labels)})",
                        "evaluate on a dataset with the adapter's labels" + ("" if chosen is None else ", or pass task="))
    texts = getattr(splits, f"{split}_texts")
    references = splits.ids(split)
    max_length = int((manifest.get("training") or {}).get("max_length") or 128)
    mode = quant or manifest.get("quant") or "none"
    if chosen is None:
        classifier = load_adapter(folder, backbone=backbone, quant=mode, max_length=max_length, verify=False)
        logits = classifier.logits(list(texts), batch_size=batch_size)  # length-grouped; applies a decision rule
    else:
        base = backbone or manifest.get("backbone") or manifest.get("base_model")
        if not base:
            raise ConfigError(f"{folder} records no backbone", "pass backbone=")
        multi = MultiTaskClassifier.from_folder(folder, str(base), quant=mode, max_length=max_length)
        logits = _sorted_logits(lambda batch, bs: multi.predict_logits(batch, chosen, bs), list(texts), batch_size)
    to_dataset = splits.label2id
    predictions = [to_dataset[adapter_labels[int(i)]] for i in logits.argmax(dim=-1)]
    report = classification_report(predictions, references, splits.id2label)
    return {
        "adapter": str(folder),
        "dataset": dataset,
        "task": chosen,
        "split": split,
        "seed": seed,
        "num_samples": len(texts),
        "labels": list(splits.labels),
        **report,
    }


__all__ = ["evaluate_adapter"]
