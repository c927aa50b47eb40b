"""Reference baselines on the same splits: majority class and TF-IDF (1–2-grams) + logistic regression."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline


def majority_macro_f1(train_labels: list[str], test_labels: list[str]) -> float:
    """Macro-F1 of always predicting the most frequent training label (over the classes of the test set)."""
    majority = Counter(train_labels).most_common(1)[0][0]
    labels = sorted(set(train_labels) | set(test_labels))
    return float(f1_score(test_labels, [majority] * len(test_labels), labels=labels, average="macro", zero_division=0))


def tfidf_macro_f1(train_texts: list[str], train_labels: list[str], test_texts: list[str], test_labels: list[str],
                   seed: int = 0) -> float:
    """TF-IDF word 1–2-grams (sublinear tf) + logistic regression (C=10... chosen by scikit-learn defaults)."""
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, random_state=seed),
    )
    pipeline.fit(train_texts, train_labels)
    labels = sorted(set(train_labels) | set(test_labels))
    return float(f1_score(test_labels, pipeline.predict(test_texts), labels=labels, average="macro", zero_division=0))


def pair_view(texts: Sequence[str], pairs: Sequence[str] | None) -> list[str]:
    """Texts for the bag-of-words baselines: a sentence pair as one text whose second side's words carry a ``b_``
    prefix (``"a man sleeps" + "nobody sleeps"`` → ``"a man sleeps b_nobody b_sleeps"``), so TF-IDF keeps the two
    sides' words apart."""
    if pairs is None:
        return list(texts)
    return [f"{a} {' '.join('b_' + w for w in str(b).split())}" for a, b in zip(texts, pairs)]
