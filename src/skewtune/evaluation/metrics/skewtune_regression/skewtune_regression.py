"""Offline ``evaluate`` metric for regression: Pearson's r, Spearman's ρ, MSE, MAE.

Loaded with ``evaluate.load(<path to this folder>)`` so no script is fetched from the Hugging Face Hub. r and ρ
are SciPy's (``pearsonr``, ``spearmanr``; 0 when either side is constant, where they are undefined); MSE and MAE are
scikit-learn's.
"""

import datasets
import evaluate
import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import mean_absolute_error, mean_squared_error

_DESCRIPTION = "Pearson's r, Spearman's rho, mean squared error and mean absolute error of predicted numbers."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted numbers.
    references: gold numbers (same length).
Returns:
    pearson, spearman, mse, mae, num_rows.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SkewtuneRegression(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"),
                                        "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        pred = np.asarray(predictions, dtype=np.float64)
        gold = np.asarray(references, dtype=np.float64)
        constant = len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0
        return {
            "pearson": 0.0 if constant else float(pearsonr(pred, gold)[0]),
            "spearman": 0.0 if constant else float(spearmanr(pred, gold)[0]),
            "mse": float(mean_squared_error(gold, pred)) if len(pred) else 0.0,
            "mae": float(mean_absolute_error(gold, pred)) if len(pred) else 0.0,
            "num_rows": int(len(pred)),
        }
