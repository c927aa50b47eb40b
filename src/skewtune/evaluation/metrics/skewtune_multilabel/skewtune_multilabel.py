"""Offline ``evaluate`` metric for multi-label classification: micro/macro/weighted/samples F1, per-label scores,
subset accuracy and Hamming loss.

Loaded with ``evaluate.load(<path to this folder>)`` so no script is fetched from the Hugging Face Hub.
Inputs are multi-hot rows (one 0/1 per label). Computations are scikit-learn's, with ``zero_division=0`` for the
label-wise scores (a label never predicted has precision 0; one absent from the references and never predicted has
F1 0) and ``zero_division=1`` for ``samples_f1`` only: a row with no gold label and no predicted label is a
perfect row (F1 1), one with no gold label and some prediction scores 0.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, hamming_loss, precision_recall_fscore_support

_DESCRIPTION = "Micro/macro/weighted/samples F1, per-label precision/recall/F1/support, subset accuracy, Hamming loss."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted multi-hot rows (a list of 0/1 per row, one per label).
    references: gold multi-hot rows (same shape).
Returns:
    micro_f1, macro_f1, weighted_f1 (support-weighted), samples_f1 (mean per-row F1; a row with neither gold nor
    predicted labels counts 1), per_class_precision, per_class_recall, per_class_f1, support (lists by label id),
    subset_accuracy (rows whose whole label set is right), hamming_loss (fraction of wrong row-label cells),
    num_rows, num_labels.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SkewtuneMultilabel(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64")),
                                        "references": datasets.Sequence(datasets.Value("int64"))}),
        )

    def _compute(self, predictions, references):
        pred = np.asarray(predictions, dtype=np.int64)
        ref = np.asarray(references, dtype=np.int64)
        if pred.ndim != 2 or pred.shape != ref.shape:
            raise ValueError(f"predictions {pred.shape} and references {ref.shape} must be equal (rows, labels) shapes")
        if not (np.isin(pred, (0, 1)).all() and np.isin(ref, (0, 1)).all()):
            raise ValueError("predictions and references must be multi-hot 0/1 rows")
        precision, recall, f1, support = precision_recall_fscore_support(ref, pred, average=None, zero_division=0)
        return {
            "micro_f1": float(f1_score(ref, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(ref, pred, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(ref, pred, average="weighted", zero_division=0)),
            "samples_f1": float(f1_score(ref, pred, average="samples", zero_division=1)),
            "per_class_precision": [float(x) for x in precision],
            "per_class_recall": [float(x) for x in recall],
            "per_class_f1": [float(x) for x in f1],
            "support": [int(x) for x in support],
            "subset_accuracy": float(accuracy_score(ref, pred)),
            "hamming_loss": float(hamming_loss(ref, pred)),
            "num_rows": int(ref.shape[0]),
            "num_labels": int(ref.shape[1]),
        }
