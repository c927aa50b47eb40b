"""Token classification (POS tagging, NER): one label per word.

Data come from a CoNLL file or a registered tagged corpus (:mod:`skewtune.data.tokens`: first-subword label
alignment, ``-100`` elsewhere). The loss is cross-entropy over the labelled positions (``--loss weighted_ce`` /
``sqrt_weighted_ce``: class-weighted by tag counts; ``--o_weight``: the O tag down-weighted); a split is scored word by
word (predictions read back at each word's first subword) with the ``token_classification`` metric module:
token accuracy, tag macro-F1 and seqeval-style entity precision/recall/F1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from skewtune.data.tokens import (
    TokenizedTokens,
    TokenSplits,
    decode_predictions,
    load_token_splits,
    tokenize_token_split,
)
from skewtune.errors import ConfigError
from skewtune.evaluation.metrics_loader import keyed_report, load_metric
from skewtune.imbalance.losses import class_weights
from skewtune.inference.logits import predict_logits
from skewtune.tasks.base import TASKS

if TYPE_CHECKING:
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase

    from skewtune.data.tokens import Sentence

MISSING_TAG = "<none>"  # prediction placeholder for a word cut off by truncation


TOKEN_LOSSES = ("ce", "weighted_ce", "sqrt_weighted_ce")  # --loss values of token classification
CLASS_WEIGHT_SCHEMES = {"weighted_ce": "inverse", "sqrt_weighted_ce": "sqrt"}  # skewtune.imbalance.class_weights


class TokenCrossEntropy:
    """Cross-entropy over ``[B, T, C]`` logits and ``[B, T]`` labels, ignoring ``-100``.

    Without ``weights``: the mean over labelled positions. With per-class ``weights`` ``w``: the weighted mean
    ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over the labelled positions ``i`` (``torch.nn.CrossEntropyLoss(weight=w)``),
    so a common factor of ``w`` changes nothing and all-ones weights are plain cross-entropy.
    """

    def __init__(self, weights: torch.Tensor | None = None) -> None:
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels[:, : logits.shape[1]]
        if not bool((labels != -100).any()):  # nothing labelled in this batch: a zero loss, not 0/0
            return logits.sum() * 0.0
        weights = None if self.weights is None else self.weights.to(logits.device)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 labels.reshape(-1), weight=weights, ignore_index=-100)


def token_class_weights(loss: str, class_counts: list[int], labels: list[str], o_weight: float = 1.0) -> torch.Tensor | None:
    """Per-tag weights of the token loss (None: plain cross-entropy).

    ``weighted_ce``: ``w_c ∝ 1/n_c``; ``sqrt_weighted_ce``: ``w_c ∝ 1/sqrt(n_c)``, i.e. ``(N / (C n_c))^p`` with
    ``p = 1`` or ``0.5`` up to a common factor (:func:`skewtune.imbalance.class_weights`; ``n_c``: training words
    tagged ``c``). ``o_weight`` then multiplies the weight of the ``O`` tag (O-downweighting for entity tagging).
    """
    if loss not in TOKEN_LOSSES:
        raise ConfigError(f"--loss {loss} is not supported for token classification",
                          f"use one of: {', '.join(TOKEN_LOSSES)}")
    if not (math.isfinite(o_weight) and o_weight > 0):
        raise ConfigError(f"--o_weight must be a positive number, got {o_weight}", "use e.g. --o_weight 0.3")
    if loss == "ce" and o_weight == 1.0:
        return None
    weights = (class_weights(class_counts, CLASS_WEIGHT_SCHEMES[loss]) if loss in CLASS_WEIGHT_SCHEMES
               else torch.ones(len(labels)))
    if o_weight != 1.0:
        if "O" not in labels:
            raise ConfigError("--o_weight down-weights the O tag, but the tag set has no 'O'",
                              "use --o_weight with BIO/BIOES entity tags, or drop it")
        weights[labels.index("O")] *= o_weight
    return weights


def token_report(predictions: list[list[str]], references: list[list[str]], labels: list[str]) -> dict[str, Any]:
    """The ``token_classification`` metric module's scores, per-tag lists keyed by tag (metrics.json layout)."""
    result = load_metric("token_classification").compute(predictions=predictions, references=references,
                                                          labels=list(labels))
    return keyed_report(result, result["labels"], (
        "accuracy", "macro_f1", "weighted_f1", "confusion_matrix", "num_tokens", "entity_precision", "entity_recall",
        "entity_f1", "entity_per_type"))


def predict_tags(model: torch.nn.Module, data: TokenizedTokens, id2label: dict[int, str], collator: Any,
                 batch_size: int, accelerator: Accelerator) -> list[list[str]]:
    """Word-level predicted tags of a tokenized split (``MISSING_TAG`` for words cut off)."""
    logits = predict_logits(model, data, collator, batch_size, accelerator.device, accelerator=accelerator)
    if logits.dim() != 3:  # an empty split
        return [[] for _ in range(len(data))]
    return decode_predictions(logits, data, id2label, missing=MISSING_TAG)


@TASKS.register("token_cls")
class TokenClassification:
    name = "token_cls"
    baselines = False  # the TF-IDF / majority baselines are sequence-level
    labels: list[str] = []  # the tag order of the last tokenized splits (set by tokenize)

    def check_config(self, cfg: Any) -> None:
        """Options of sequence classification that have no token-level meaning fail early."""
        for option in ("sampler", "augment", "post_hoc"):
            if getattr(cfg, option, None):
                raise ConfigError(f"--{option} is not supported for token classification", f"drop --{option}")
        if getattr(cfg, "loss", "ce") not in TOKEN_LOSSES:
            raise ConfigError(f"--loss {cfg.loss} is not supported for token classification",
                              f"use one of: {', '.join(TOKEN_LOSSES)} (and --o_weight to down-weight the O tag)")
        if getattr(cfg, "loss_options", None):
            raise ConfigError("--loss_options is not supported for token classification",
                              "drop it; --o_weight sets the weight of the O tag")
        o_weight = float(getattr(cfg, "o_weight", 1.0))
        if not (math.isfinite(o_weight) and o_weight > 0):
            raise ConfigError(f"--o_weight must be a positive number, got {o_weight}", "use e.g. --o_weight 0.3")

    def load_splits(self, cfg: Any) -> TokenSplits:
        """TokenSplits of ``cfg.dataset`` (registered name or CoNLL file), optionally mapped to universal POS."""
        self.check_config(cfg)
        return load_token_splits(
            cfg.dataset, seed=cfg.seed, validation_file=cfg.validation_file, test_file=cfg.test_file,
            max_train_samples=cfg.max_train_samples, max_eval_samples=cfg.max_eval_samples,
            tagset=getattr(cfg, "tagset", None), encoding=cfg.encoding,
        )

    def tokenize(self, cfg: Any, tokenizer: PreTrainedTokenizerBase, splits: TokenSplits, split: str) -> TokenizedTokens:
        self.labels = list(splits.labels)  # the tag order the loss weights follow
        return self.tokenize_sentences(cfg, tokenizer, getattr(splits, split), splits.label2id, split)

    def tokenize_sentences(self, cfg: Any, tokenizer: PreTrainedTokenizerBase, sentences: list[Sentence],
                           label2id: dict[str, int], name: str) -> TokenizedTokens:
        """``tokenize_token_split`` with the prefix / subword-labelling settings of ``cfg``."""
        return tokenize_token_split(tokenizer, sentences, label2id, cfg.max_length, name,
                                    prefix=getattr(cfg, "text_prefix", "") or "",
                                    label_all_subwords=bool(getattr(cfg, "label_all_subwords", False)))

    def loss(self, cfg: Any, class_counts: Callable[[], list[int]]) -> TokenCrossEntropy:
        """Cross-entropy, class-weighted by ``--loss`` and ``--o_weight`` (:func:`token_class_weights`)."""
        loss, o_weight = getattr(cfg, "loss", "ce"), float(getattr(cfg, "o_weight", 1.0))
        if loss == "ce" and o_weight == 1.0:
            return TokenCrossEntropy()
        return TokenCrossEntropy(token_class_weights(loss, class_counts(), self.labels, o_weight))

    def evaluate(self, model: torch.nn.Module, data: TokenizedTokens, splits: TokenSplits, collator: Any,
                 batch_size: int, accelerator: Accelerator, decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """Word by word: accuracy, tag F1, entity P/R/F1 (``missing_words``: words cut off by truncation)."""
        predictions = predict_tags(model, data, splits.id2label, collator, batch_size, accelerator)
        report = token_report(predictions, data.word_tags, splits.labels)
        report["missing_words"] = data.missing_words
        return report

    def test_metrics(self, report: dict[str, Any]) -> dict[str, Any]:
        out = {f"eval_{key}": report[key] for key in ("entity_precision", "entity_recall", "entity_f1")
               if report[key] is not None}
        if report["entity_per_type"] is not None:
            out["eval_entity_per_type"] = report["entity_per_type"]
        out.update(eval_num_tokens=report["num_tokens"], eval_missing_words=report["missing_words"],
                   task_type=self.name)
        return out
