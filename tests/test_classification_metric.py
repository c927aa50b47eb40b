"""The bundled offline classification metric: balanced scores equal scores on an explicitly balanced test set."""

from __future__ import annotations

import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from skewtune.evaluation.metrics_loader import classification_report


def test_balanced_scores_match_a_replicated_balanced_test_set() -> None:
    refs = [0] * 6 + [1] * 3 + [2] * 2
    preds = [0, 0, 0, 0, 1, 2, 1, 1, 0, 2, 0]
    report = classification_report(preds, refs, {0: "a", 1: "b", 2: "c"})
    # replicate every row so each class has 6 rows (class 1 twice, class 2 three times): the same per-class
    # behaviour at a uniform class prior
    copies = {0: 1, 1: 2, 2: 3}
    big_refs = [y for y in refs for _ in range(copies[y])]
    big_preds = [p for p, y in zip(preds, refs) for _ in range(copies[y])]
    assert report["balanced_macro_f1"] == pytest.approx(f1_score(big_refs, big_preds, average="macro"), rel=1e-12)
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(refs, preds), rel=1e-12)
    assert report["macro_f1"] == pytest.approx(f1_score(refs, preds, average="macro"), rel=1e-12)
    assert report["balanced_macro_f1"] != pytest.approx(report["macro_f1"])
