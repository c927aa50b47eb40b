"""Offline ``evaluate`` metric for token classification: token accuracy, tag macro-F1, BIO entity P/R/F1.

Loaded with ``evaluate.load(<path to this folder>)`` (no Hub access). Inputs are word-level tag strings, one
list per sentence. Token scores are scikit-learn's over the flattened words; macro-F1 averages the per-tag F1
over the tags that occur in the references or the predictions (restricted to ``labels`` when given; a
prediction outside ``labels``, such as the placeholder of a word cut off by truncation, is simply wrong).

Entity scores follow seqeval's default (conlleval-compatible, non-strict) semantics, reimplemented in
:mod:`skewtune.evaluation.spans` (the chunker prediction spans use too; equal to seqeval in
tests/test_entity_spans.py): chunks are read from IOB1/IOB2/IOBES tags (``B-``, ``I-``, ``E-``, ``S-`` prefixes;
an ``I-`` after ``O`` or after another type opens a chunk), sentences are separated so no chunk spans two, and an
entity counts as correct only when type, start and end all match; precision, recall and F1 are micro-averaged
over types, and 0 when undefined. ``entity_mode="strict"`` with ``entity_scheme`` ``IOB2``/``IOBES`` is seqeval's
strict mode. They are reported (not None) only when every tag is ``O`` or carries such a prefix.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from skewtune.evaluation.spans import entity_scores, get_entities, is_entity_tagset  # noqa: F401 (re-exported)

CONFUSION_MATRIX_MAX_TAGS = 500  # a larger confusion matrix is None (n x n cells)
_DESCRIPTION = "Token accuracy, macro/weighted F1 over tags, per-tag scores, and entity-level P/R/F1 for BIO tags."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted tags, a list of strings per sentence.
    references: gold tags, a list of strings per sentence (same lengths).
    labels: optional tag order for the per-tag lists and the confusion matrix.
    entity_mode: None (seqeval's default, lenient) or "strict"; entity_scheme: "IOB2" or "IOBES" with "strict".
Returns:
    accuracy, macro_f1, weighted_f1, labels, per_class_precision, per_class_recall, per_class_f1, support,
    confusion_matrix (rows = gold), num_tokens, num_sentences, and, for BIO-style tags, entity_precision,
    entity_recall, entity_f1, entity_per_type ({type: {precision, recall, f1, support}}); else those are None.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SkewtuneTokenClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references, labels=None, entity_mode=None, entity_scheme=None):
        for i, (pred, gold) in enumerate(zip(predictions, references)):
            if len(pred) != len(gold):
                raise ValueError(f"sentence {i}: {len(pred)} predicted tags for {len(gold)} reference tags")
        flat_pred = [t for sentence in predictions for t in sentence]
        flat_gold = [t for sentence in references for t in sentence]
        order = list(labels) if labels else sorted(set(flat_gold) | set(flat_pred))
        present = [t for t in order if t in set(flat_gold) | set(flat_pred)]
        if flat_gold:
            precision, recall, f1, support = precision_recall_fscore_support(
                flat_gold, flat_pred, labels=order, zero_division=0)
            macro = f1_score(flat_gold, flat_pred, labels=present, average="macro", zero_division=0) if present else 0.0
            weighted = f1_score(flat_gold, flat_pred, labels=order, average="weighted", zero_division=0)
            accuracy = accuracy_score(flat_gold, flat_pred)
            matrix = (confusion_matrix(flat_gold, flat_pred, labels=order).tolist()
                      if len(order) <= CONFUSION_MATRIX_MAX_TAGS else None)
        else:
            precision = recall = f1 = support = [0.0] * len(order)
            macro = weighted = accuracy = 0.0
            matrix = [[0] * len(order) for _ in order] if len(order) <= CONFUSION_MATRIX_MAX_TAGS else None
        out = {
            "accuracy": float(accuracy),
            "macro_f1": float(macro),
            "weighted_f1": float(weighted),
            "labels": order,
            "per_class_precision": [float(x) for x in precision],
            "per_class_recall": [float(x) for x in recall],
            "per_class_f1": [float(x) for x in f1],
            "support": [int(x) for x in support],
            "confusion_matrix": matrix,
            "num_tokens": len(flat_gold),
            "num_sentences": len(references),
        }
        if is_entity_tagset(set(flat_gold) | set(order)) and is_entity_tagset(set(flat_pred) - {"<none>"}):
            out.update(entity_scores(references, [[t if t != "<none>" else "O" for t in s] for s in predictions],
                                     mode=entity_mode, scheme=entity_scheme))
        else:
            out.update({"entity_precision": None, "entity_recall": None, "entity_f1": None,
                        "entity_per_type": None, "entity_support": None})
        return out
