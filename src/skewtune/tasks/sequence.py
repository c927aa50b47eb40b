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
from skewtune.errors import ConfigError
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
    """One class per text (or text pair)."""

    name = "seq_cls"
    problem_type = "single_label"
    baselines = True
    summary_keys: tuple[str, ...] = ("accuracy", "macro_f1")  # the validation scores the log lines show

    def check_config(self, cfg: Any) -> None:
        check_streaming_config(cfg)
        if getattr(cfg, "streaming", False) and getattr(cfg, "text_pair_column", None):
            raise ConfigError("--streaming reads single texts; sentence pairs (--text_pair_column) need the table "
                              "path", "drop --streaming")

    def best_metric(self, cfg: Any) -> str:
        """The validation score that ranks evaluations (``--metric_for_best_model``)."""
        return cfg.metric_for_best_model

    def load_splits(self, cfg: Any) -> Splits:
        if getattr(cfg, "streaming", False):
            return self._streaming_splits(cfg)
        return load_dataset_splits(
            cfg.dataset, seed=cfg.seed, text_column=cfg.text_column, label_column=cfg.label_column,
            validation_file=cfg.validation_file, test_file=cfg.test_file, max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples, skip_empty_texts=cfg.skip_empty_texts, encoding=cfg.encoding,
            dataset_config=getattr(cfg, "dataset_config", None),
            text_pair_column=getattr(cfg, "text_pair_column", None), problem_type=self.problem_type,
            label_delimiter=getattr(cfg, "label_delimiter", ";"),
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
        return tokenize_split(tokenizer, texts, splits.ids(split), cfg.max_length, split,
                              pairs=splits.pair_texts(split))

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
        # lazy: scikit-learn's import would delay the one-line report of a bad data file, read before this runs
        from sklearn.metrics import matthews_corrcoef

        predicted = logits.argmax(-1).tolist()
        report = classification_report(predicted, data.labels, splits.id2label)
        report["matthews_correlation"] = float(matthews_corrcoef(list(data.labels), predicted)) if predicted else 0.0
        report["logits"] = logits
        return report

    def test_metrics(self, report: dict[str, Any]) -> dict[str, Any]:
        return {f"eval_{key}": report[key] for key in ("balanced_accuracy", "balanced_macro_f1", "matthews_correlation")
                if key in report}
