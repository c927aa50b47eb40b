"""Offline ``evaluate`` metric: accuracy, macro/weighted F1, per-class precision/recall/F1, confusion matrix.

Loaded with ``evaluate.load(<path to this folder>)`` so no script is fetched from the Hugging Face Hub
(``evaluate.load("accuracy")`` needs the network). Computations are scikit-learn's.
"""

import datasets
import evaluate
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.utils.class_weight import compute_sample_weight

CONFUSION_MATRIX_MAX_CLASSES = 500  # a larger confusion matrix is None (n x n cells: 100,000 classes would be 80 GB)
_DESCRIPTION = "Accuracy, macro and weighted F1, per-class precision/recall/F1 and the confusion matrix."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class ids.
    references: gold class ids.
    num_labels: number of classes (so absent classes still get a row).
Returns:
    accuracy, macro_f1, weighted_f1, per_class_precision, per_class_recall, per_class_f1 (lists by class id),
    confusion_matrix (rows = gold, columns = predicted; None above 500 classes), balanced_accuracy (mean per-class recall) and
    balanced_macro_f1: macro-F1 with every row weighted 1/n_(its gold class), i.e. the expected macro-F1 on a test
    set with the same per-class behaviour but equal class sizes (how a long-tail benchmark scores, on any split).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SkewtuneClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_labels=None):
        labels = list(range(num_labels)) if num_labels else sorted(set(references) | set(predictions))
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=labels, zero_division=0
        )
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(references, predictions, labels=labels, average="weighted", zero_division=0)),
            "per_class_precision": [float(x) for x in precision],
            "per_class_recall": [float(x) for x in recall],
            "per_class_f1": [float(x) for x in f1],
            "support": [int(x) for x in support],
            # n x n cells: above CONFUSION_MATRIX_MAX_CLASSES classes it is left out (None), never allocated
            "confusion_matrix": (confusion_matrix(references, predictions, labels=labels).tolist()
                                 if len(labels) <= CONFUSION_MATRIX_MAX_CLASSES else None),
            "balanced_accuracy": float(balanced_accuracy_score(references, predictions)) if references else 0.0,
            "balanced_macro_f1": float(f1_score(references, predictions, labels=labels, average="macro",
                                                zero_division=0,
                                                sample_weight=compute_sample_weight("balanced", references))),
        }

