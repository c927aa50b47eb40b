"""Offline ``evaluate`` metric for token classification: token accuracy, tag macro-F1, BIO entity P/R/F1.

Loaded with ``evaluate.load(<path to this folder>)`` (no Hub access). Inputs are word-level tag strings, one
list per sentence. Token scores are scikit-learn's over the flattened words; macro-F1 averages the per-tag F1
over the tags that occur in the references or the predictions (restricted to ``labels`` when given; a
prediction outside ``labels``, such as the placeholder of a word cut off by truncation, is simply wrong).

Entity scores follow seqeval's default (conlleval-compatible, non-strict) semantics, reimplemented here:
chunks are read from IOB1/IOB2/IOBES tags (``B-``, ``I-``, ``E-``, ``S-`` prefixes; an ``I-`` after ``O`` or
after another type opens a chunk), sentences are separated so no chunk spans two, and an entity counts as
correct only when type, start and end all match; precision, recall and F1 are micro-averaged over types, and
0 when undefined. They are reported (not None) only when every tag is ``O`` or carries such a prefix.
"""

from collections import defaultdict

import datasets
import evaluate
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

CONFUSION_MATRIX_MAX_TAGS = 500  # a larger confusion matrix is None (n x n cells)
_DESCRIPTION = "Token accuracy, macro/weighted F1 over tags, per-tag scores, and entity-level P/R/F1 for BIO tags."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted tags, a list of strings per sentence.
    references: gold tags, a list of strings per sentence (same lengths).
    labels: optional tag order for the per-tag lists and the confusion matrix.
Returns:
    accuracy, macro_f1, weighted_f1, labels, per_class_precision, per_class_recall, per_class_f1, support,
    confusion_matrix (rows = gold), num_tokens, num_sentences, and, for BIO-style tags, entity_precision,
    entity_recall, entity_f1, entity_per_type ({type: {precision, recall, f1, support}}); else those are None.
"""

_PREFIXES = ("B-", "I-", "E-", "S-")


def is_entity_tagset(tags):
    """True when every tag is ``O``/a bare ``B``/``I``/``E``/``S`` or carries a ``B-``/``I-``/``E-``/``S-`` prefix."""
    return all(t in ("O", "B", "I", "E", "S") or t.startswith(_PREFIXES) for t in tags)


def _end_of_chunk(prev_tag, tag, prev_type, type_):
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag, tag, prev_type, type_):
    if tag in ("B", "S"):
        return True
    if (prev_tag, tag) in {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}:
        return True
    return tag not in ("O", ".") and prev_type != type_


def get_entities(sentences):
    """``(type, start, end)`` chunks (inclusive ends) over sentences joined with an ``O`` between them."""
    seq = [tag for sentence in sentences for tag in list(sentence) + ["O"]]
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate(seq + ["O"]):
        tag = chunk[0] if chunk else "O"
        type_ = chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def entity_scores(references, predictions):
    """Micro P/R/F1 over exact-match chunks plus per-type scores (seqeval default mode)."""
    gold, pred = defaultdict(set), defaultdict(set)
    for type_, start, end in get_entities(references):
        gold[type_].add((start, end))
    for type_, start, end in get_entities(predictions):
        pred[type_].add((start, end))

    def prf(tp, n_pred, n_true):
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_true if n_true else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    per_type = {}
    tp_all = pred_all = true_all = 0
    for type_ in sorted(set(gold) | set(pred)):
        tp = len(gold[type_] & pred[type_])
        p, r, f = prf(tp, len(pred[type_]), len(gold[type_]))
        per_type[type_] = {"precision": p, "recall": r, "f1": f, "support": len(gold[type_])}
        tp_all, pred_all, true_all = tp_all + tp, pred_all + len(pred[type_]), true_all + len(gold[type_])
    p, r, f = prf(tp_all, pred_all, true_all)
    return {"entity_precision": p, "entity_recall": r, "entity_f1": f, "entity_per_type": per_type,
            "entity_support": true_all}


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

    def _compute(self, predictions, references, labels=None):
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
            out.update(entity_scores(references, [[t if t != "<none>" else "O" for t in s] for s in predictions]))
        else:
            out.update({"entity_precision": None, "entity_recall": None, "entity_f1": None,
                        "entity_per_type": None, "entity_support": None})
        return out
