"""Token classification (POS tagging, NER) on the classification pipeline.

The steps are :mod:`skewtune.training.pipeline`'s, dispatched on ``Run.task == "token_cls"``:
``pipeline.prepare(cfg, task="token_cls", splits=...)`` loads :class:`~skewtune.data.tokens.TokenSplits`
(a CoNLL file or a registered token dataset, see :mod:`skewtune.data.tokens`), aligns word tags to subwords,
loads the backbone with ``load_backbone(task="token_cls")`` and wraps it with ``build_adapter(task="token_cls")``;
``pipeline.train`` runs ``loop.fit`` with :class:`TokenCrossEntropy` (positions labelled ``-100`` ignored) and
checkpoints as usual; ``pipeline.evaluate_split`` calls :func:`evaluate_token_split` (``loop.predict_logits``,
first-subword decoding, the ``token_classification`` metric module); ``pipeline.finish_metrics`` /
``save_outputs`` / ``print_summary`` write the same files with ``task_type: token_cls`` plus entity scores.

This module adds what differs: :class:`TokenTrainConfig` (``tagset``, ``text_prefix``,
``label_all_subwords``), :func:`prepare_token`, :func:`evaluate_token_split`, :func:`finish_token_metrics` and
:func:`run_token_training` (what ``skewtune train-tokens`` runs).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from skewtune.errors import ConfigError
from skewtune.training.config import TrainConfig

MISSING_TAG = "<none>"  # prediction placeholder for a word cut off by truncation


@dataclasses.dataclass
class TokenTrainConfig(TrainConfig):
    """TrainConfig plus the token-classification settings."""

    dataset: str = "upos_en"  # a registered token dataset (upos_en, en_wsj, de_tiger, ...) or a CoNLL file
    tagset: str | None = None  # map the file's tags to universal POS: en-ptb | de-stts | nl-wotan | es-parole | it-penn
    text_prefix: str = ""  # words prepended to every sentence, never labelled (e5: "query: ")
    label_all_subwords: bool = False  # label every subword (B-X continuations become I-X) instead of the first
    baselines: bool = False  # the TF-IDF / majority baselines are sequence-level


def check_token_config(cfg: Any) -> None:
    """Options of sequence classification that have no token-level meaning fail early."""
    for name in ("sampler", "augment", "post_hoc"):
        if getattr(cfg, name, None):
            raise ConfigError(f"--{name} is not supported for token classification", f"drop --{name}")
    if getattr(cfg, "loss", "ce") != "ce":
        raise ConfigError(f"--loss {cfg.loss} is not supported for token classification",
                          "token classification uses cross-entropy (--loss ce)")


def load_splits(cfg: Any):
    """TokenSplits of ``cfg.dataset`` (registered name or CoNLL file), optionally mapped to universal POS."""
    from skewtune.data.tokens import load_token_splits

    check_token_config(cfg)
    return load_token_splits(
        cfg.dataset, seed=cfg.seed, validation_file=cfg.validation_file, test_file=cfg.test_file,
        max_train_samples=cfg.max_train_samples, max_eval_samples=cfg.max_eval_samples,
        tagset=getattr(cfg, "tagset", None), encoding=cfg.encoding,
    )


def tokenize(cfg: Any, tokenizer: Any, sentences: list, label2id: dict[str, int], split_name: str):
    """``tokenize_token_split`` with the prefix / subword-labelling settings of ``cfg``."""
    from skewtune.data.tokens import tokenize_token_split

    return tokenize_token_split(tokenizer, sentences, label2id, cfg.max_length, split_name,
                                prefix=getattr(cfg, "text_prefix", "") or "",
                                label_all_subwords=bool(getattr(cfg, "label_all_subwords", False)))


class TokenCrossEntropy:
    """Cross-entropy over ``[B, T, C]`` logits and ``[B, T]`` labels, ignoring ``-100`` (mean over labelled positions)."""

    def __call__(self, logits: Any, labels: Any) -> Any:
        import torch

        labels = labels[:, : logits.shape[1]]
        if not bool((labels != -100).any()):  # nothing labelled in this batch: a zero loss, not 0/0
            return logits.sum() * 0.0
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 labels.reshape(-1), ignore_index=-100)


def prepare_token(cfg: TrainConfig, recipe: str = "train_tokens", splits: Any = None):
    """``pipeline.prepare`` for token classification (validates the token options first). Writes nothing."""
    from skewtune.training.pipeline import prepare

    check_token_config(cfg)
    return prepare(cfg, recipe=recipe, task="token_cls", splits=splits)


def token_report(predictions: list[list[str]], references: list[list[str]], labels: list[str]) -> dict[str, Any]:
    """The ``token_classification`` metric module's scores, per-tag lists keyed by tag (metrics.json layout)."""
    from skewtune.evaluation import load_metric

    result = load_metric("token_classification").compute(predictions=predictions, references=references,
                                                          labels=list(labels))
    names = result["labels"]
    out = {
        "accuracy": result["accuracy"],
        "macro_f1": result["macro_f1"],
        "weighted_f1": result["weighted_f1"],
        "per_class_f1": dict(zip(names, result["per_class_f1"])),
        "per_class_precision": dict(zip(names, result["per_class_precision"])),
        "per_class_recall": dict(zip(names, result["per_class_recall"])),
        "confusion_matrix": result["confusion_matrix"],
        "num_tokens": result["num_tokens"],
    }
    for key in ("entity_precision", "entity_recall", "entity_f1", "entity_per_type"):
        out[key] = result[key]
    return out


def predict_tags(run: Any, split: Any) -> list[list[str]]:
    """Word-level predicted tags of a tokenized split (``MISSING_TAG`` for words cut off)."""
    from skewtune.data.tokens import decode_predictions
    from skewtune.training.loop import predict_logits

    logits = predict_logits(run.accelerator.unwrap_model(run.model), split, run.collator,
                            run.cfg.per_device_eval_batch_size, run.accelerator.device, accelerator=run.accelerator)
    if logits.dim() != 3:  # an empty split
        return [[] for _ in range(len(split))]
    return decode_predictions(logits, split, run.splits.id2label, missing=MISSING_TAG)


def evaluate_token_split(run: Any, split: str | Any) -> dict[str, Any]:
    """Score ``run.tokenized[split]`` (or a TokenizedTokens) word by word: accuracy, tag F1, entity P/R/F1."""
    data = run.tokenized[split] if isinstance(split, str) else split
    predictions = predict_tags(run, data)
    report = token_report(predictions, data.word_tags, run.splits.labels)
    report["missing_words"] = data.missing_words
    if isinstance(split, str):  # finish_token_metrics reads the entity scores of the test pass just made
        run.__dict__.setdefault("_token_reports", {})[split] = report
    return report


def finish_token_metrics(run: Any) -> dict[str, Any]:
    """``pipeline.finish_metrics`` (test scores, sizes, memory) plus the entity scores of the test split."""
    from skewtune.training.pipeline import finish_metrics

    run.__dict__.pop("_token_reports", None)
    metrics = finish_metrics(run)
    test = run.__dict__.pop("_token_reports", {}).get("test") or evaluate_token_split(run, "test")
    for key in ("entity_precision", "entity_recall", "entity_f1"):
        if test[key] is not None:
            metrics[f"eval_{key}"] = test[key]
    if test["entity_per_type"] is not None:
        metrics["eval_entity_per_type"] = test["entity_per_type"]
    metrics["eval_num_tokens"] = test["num_tokens"]
    metrics["eval_missing_words"] = test["missing_words"]
    metrics["task_type"] = "token_cls"
    return metrics


def run_token_training(cfg: TrainConfig, recipe: str = "train_tokens"):
    """prepare → train → test metrics (+ entities) → save → summary."""
    from skewtune.training.pipeline import print_summary, save_outputs, train

    run = prepare_token(cfg, recipe=recipe)
    train(run)
    finish_token_metrics(run)
    save_outputs(run)
    print_summary(run)
    return run


__all__ = [
    "MISSING_TAG", "TokenCrossEntropy", "TokenTrainConfig", "check_token_config", "evaluate_token_split",
    "finish_token_metrics", "load_splits", "predict_tags", "prepare_token", "run_token_training", "token_report",
    "tokenize",
]
