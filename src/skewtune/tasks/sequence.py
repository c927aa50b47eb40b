"""Sequence classification: one label per text (sentiment, topic, …)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from skewtune.data.batching import tokenize_split, tokenize_table
from skewtune.data.datasets import Splits, load_dataset_splits
from skewtune.data.readers import read_table
from skewtune.data.streaming import check_streaming_config, streaming_splits
from skewtune.evaluation.metrics_loader import classification_report
from skewtune.imbalance.decision import apply_decision
from skewtune.imbalance.losses import build_loss
from skewtune.inference.logits import predict_logits
from skewtune.tasks.base import TASKS

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase


@TASKS.register("seq_cls")
class SequenceClassification:
    name = "seq_cls"
    baselines = True

    def check_config(self, cfg: Any) -> None:
        check_streaming_config(cfg)

    def load_splits(self, cfg: Any) -> Splits:
        if getattr(cfg, "streaming", False):
            return self._streaming_splits(cfg)
        return load_dataset_splits(
            cfg.dataset, seed=cfg.seed, text_column=cfg.text_column, label_column=cfg.label_column,
            validation_file=cfg.validation_file, test_file=cfg.test_file, max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples, skip_empty_texts=cfg.skip_empty_texts, encoding=cfg.encoding,
            dataset_config=getattr(cfg, "dataset_config", None),
        )

    @staticmethod
    def _streaming_splits(cfg: Any) -> Splits:
        """``--streaming``: one pass over the stream holds out validation and test rows (or reads the given
        files) and counts the classes; training reads the stream as it goes (:mod:`skewtune.data.streaming`)."""
        given = {}
        for split, path in (("validation", cfg.validation_file), ("test", cfg.test_file)):
            if path:
                texts, labels = read_table(path, cfg.text_column, cfg.label_column, encoding=cfg.encoding)
                given[split] = (texts, labels)
        train, info = streaming_splits(
            cfg.dataset, seed=cfg.seed, text_column=cfg.text_column, label_column=cfg.label_column,
            encoding=cfg.encoding, dataset_config=getattr(cfg, "dataset_config", None),
            eval_rows=cfg.max_eval_samples, skip_empty_texts=cfg.skip_empty_texts,
            validation=given.get("validation"), test=given.get("test"))
        parts = info.pop("parts")
        (va_x, va_y), (te_x, te_y) = parts["validation"], parts["test"]
        return Splits([], [], va_x, va_y, te_x, te_y, info.pop("classes"), name=Path(cfg.dataset).stem, info=info,
                      stream=train)

    def tokenize(self, cfg: Any, tokenizer: PreTrainedTokenizerBase, splits: Splits, split: str) -> Any:
        """The split's Arrow table through a cached ``map`` (:func:`tokenize_table`); splits built from lists
        (few-shot, long-tail) in one tokenizer call; a ``--streaming`` training split as the stream itself
        (tokenized while it is read)."""
        if split == "train" and splits.stream is not None:
            return splits.stream
        texts = getattr(splits, f"{split}_texts")
        table = (splits.tables or {}).get(split)
        if table is not None and table.num_rows == len(texts):
            return tokenize_table(tokenizer, table, splits.ids(split), cfg.max_length, split,
                                  num_proc=getattr(cfg, "num_proc", None))
        return tokenize_split(tokenizer, texts, splits.ids(split), cfg.max_length, split)

    def loss(self, cfg: Any, class_counts: Callable[[], list[int]]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``ce`` is plain cross-entropy; other names come from the imbalance registry (priors: ``class_counts``)."""
        if cfg.loss == "ce" and not cfg.loss_options:
            return torch.nn.CrossEntropyLoss()
        return build_loss(cfg.loss, class_counts(), **cfg.loss_kwargs())

    def evaluate(self, model: torch.nn.Module, data: Any, splits: Splits, collator: Any, batch_size: int,
                 accelerator: Accelerator, decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """The offline classification metric module's report; a post-hoc ``decision`` rule is applied first.
        ``logits`` (the decided logits, a CPU tensor in input order) is kept in the report for the run report."""
        logits = predict_logits(model, data, collator, batch_size, accelerator.device, accelerator=accelerator)
        if decision:
            logits = apply_decision(logits, decision)
        report = classification_report(logits.argmax(-1).tolist(), data.labels, splits.id2label)
        report["logits"] = logits
        return report

    def test_metrics(self, report: dict[str, Any]) -> dict[str, Any]:
        return {f"eval_{key}": report[key] for key in ("balanced_accuracy", "balanced_macro_f1") if key in report}
