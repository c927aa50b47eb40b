"""The tuned TF-IDF + logistic regression baseline: C chosen on validation only, the test split scored once."""

from __future__ import annotations

from sklearn.metrics import f1_score

from skewtune.data.datasets import load_dataset_splits
from skewtune.evaluation.baselines import TFIDF_C_GRID, tfidf_baseline, tfidf_pipeline


def test_tfidf_baseline_picks_c_on_validation_and_scores_test() -> None:
    s = load_dataset_splits("tweets", seed=0, max_train_samples=1200, max_eval_samples=300)
    result = tfidf_baseline(s.train_texts, s.train_labels, s.validation_texts, s.validation_labels,
                            s.test_texts, s.test_labels, seed=0)
    assert result["C"] in TFIDF_C_GRID and result["min_df"] == 2 and result["class_weight"] == "balanced"
    by_c = {}
    for c in TFIDF_C_GRID:  # the same grid refitted by hand: the chosen C has the best validation macro-F1
        model = tfidf_pipeline(c, seed=0).fit(list(s.train_texts), s.train_labels)
        by_c[c] = f1_score(s.validation_labels, model.predict(list(s.validation_texts)), average="macro")
    assert result["validation_macro_f1"] == max(by_c.values())
    assert result["C"] == min(c for c, f1 in by_c.items() if f1 == max(by_c.values()))
    model = tfidf_pipeline(result["C"], seed=0).fit(list(s.train_texts), s.train_labels)
    test_f1 = f1_score(s.test_labels, model.predict(list(s.test_texts)), average="macro")
    assert abs(result["macro_f1"] - test_f1) < 1e-9
    assert result["macro_f1"] > 0.45  # three classes: well above the majority class's 0.2


def test_tfidf_baseline_on_a_tiny_corpus_falls_back_to_every_term() -> None:
    texts = ["good day", "bad night", "fine movie", "awful film"]  # no term twice
    labels = ["pos", "neg", "pos", "neg"]
    result = tfidf_baseline(texts, labels, [], [], texts, labels)
    assert result["min_df"] == 1 and result["validation_macro_f1"] is None and result["C"] in TFIDF_C_GRID
