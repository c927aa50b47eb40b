"""Reference baselines on the same splits: majority class and tuned TF-IDF (1–2-grams) + logistic regression."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline, make_pipeline


def majority_macro_f1(train_labels: list[str], test_labels: list[str]) -> float:
    """Macro-F1 of always predicting the most frequent training label (over the classes of the test set)."""
    majority = Counter(train_labels).most_common(1)[0][0]
    labels = sorted(set(train_labels) | set(test_labels))
    return float(f1_score(test_labels, [majority] * len(test_labels), labels=labels, average="macro", zero_division=0))


# The tuned baseline's grid: word 1–2-grams, sublinear tf, terms in ≥ 2 training texts, class-balanced logistic
# regression; only the inverse regularisation strength C is chosen, on the validation split's macro-F1.
TFIDF_C_GRID = (1.0, 2.0, 4.0, 8.0)
PARALLEL_FIT_ROWS = 5000  # below this many training texts the fits run one after another (process start-up dominates)


def tfidf_pipeline(c: float = 2.0, *, min_df: int = 2, class_weight: str | None = "balanced", seed: int = 0) -> Pipeline:
    """TF-IDF word 1–2-grams (sublinear tf: 1 + log tf) + L2 logistic regression with inverse strength ``c``."""
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df),
        LogisticRegression(C=c, class_weight=class_weight, max_iter=3000, random_state=seed),
    )


def _fit_score(classifier: LogisticRegression, c: float, x_train: Any, train_labels: list[str], x_val: Any,
               val_labels: list[str], labels: list[str]) -> tuple[float | None, LogisticRegression]:
    model = clone(classifier).set_params(C=c).fit(x_train, train_labels)
    if not val_labels:
        return None, model
    return float(f1_score(val_labels, model.predict(x_val), labels=labels, average="macro", zero_division=0)), model


def tfidf_baseline(train_texts: Sequence[str], train_labels: list[str], validation_texts: Sequence[str],
                   validation_labels: list[str], test_texts: Sequence[str], test_labels: list[str], *, seed: int = 0,
                   c_grid: Sequence[float] = TFIDF_C_GRID, min_df: int = 2) -> dict[str, Any]:
    """The tuned TF-IDF + logistic regression baseline: :func:`tfidf_pipeline`'s C picked from ``c_grid`` by
    validation macro-F1 (ties: the smaller C), fitted on the training texts only, scored on the test texts.

    Returns ``macro_f1`` and ``accuracy`` on test, the chosen ``C``, ``min_df`` and ``validation_macro_f1``. With
    fewer than ``min_df`` texts per term the vectorizer falls back to ``min_df=1``; without validation texts C is
    the grid's middle value."""
    labels = sorted(set(train_labels) | set(test_labels))
    template = tfidf_pipeline(min_df=min_df, seed=seed)
    vectorizer, classifier = template[0], template[-1]
    try:
        x_train = vectorizer.fit_transform(train_texts)
    except ValueError:  # "After pruning, no terms remain": a tiny corpus
        min_df = 1
        vectorizer = clone(vectorizer).set_params(min_df=1)
        x_train = vectorizer.fit_transform(train_texts)
    grid = list(c_grid) if len(validation_texts) else [list(c_grid)[len(c_grid) // 2]]
    x_val = vectorizer.transform(validation_texts) if len(validation_texts) else None
    jobs = min(len(grid), os.cpu_count() or 1) if len(train_texts) >= PARALLEL_FIT_ROWS else 1
    fits = Parallel(n_jobs=jobs)(delayed(_fit_score)(classifier, c, x_train, list(train_labels), x_val,
                                                     list(validation_labels), labels) for c in grid)
    best = max(range(len(grid)), key=lambda i: (fits[i][0] or 0.0, -grid[i]))
    predicted = fits[best][1].predict(vectorizer.transform(test_texts))
    return {"macro_f1": float(f1_score(test_labels, predicted, labels=labels, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(test_labels, predicted)), "C": grid[best], "min_df": min_df,
            "class_weight": classifier.class_weight, "validation_macro_f1": fits[best][0]}


def pair_view(texts: Sequence[str], pairs: Sequence[str] | None) -> list[str]:
    """Texts for the bag-of-words baselines: a sentence pair as one text whose second side's words carry a ``b_``
    prefix (``"a man sleeps" + "nobody sleeps"`` → ``"a man sleeps b_nobody b_sleeps"``), so TF-IDF keeps the two
    sides' words apart."""
    if pairs is None:
        return list(texts)
    return [f"{a} {' '.join('b_' + w for w in str(b).split())}" for a, b in zip(texts, pairs)]
