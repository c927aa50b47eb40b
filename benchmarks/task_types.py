"""The task types of issue #20 on real data: sentence pairs (SNLI), multi-label (WNUT-16 entity types per tweet),
regression (VADER ratings), each trained by `skewtune train` with the main job's defaults and scored on its test
split beside a bag-of-words baseline fitted on the same training rows.

Runs (one fresh `python -m skewtune.cli.main train` process each, one after another; LoRA on 8-bit MiniLM, the
packaged defaults unless listed):

* ``snli``: ``--snli_rows`` pairs drawn from SNLI's training lines (validation: 10% carved from them), scored on
  ``--eval_rows`` pairs of SNLI's own test split, 1 epoch; baseline: TF-IDF 1–2-grams of both sides (the second
  side's words prefixed) + logistic regression — the run's own ``baseline_tfidf_macro_f1``;
* ``wnut16_types``: all 2,394 tweets → 10 entity types (60% of the tweets have none), 5 epochs, ASL loss,
  ML-ROS oversampling, per-label thresholds tuned on validation; baseline: TF-IDF + one-vs-rest logistic
  regression (class-weighted) with thresholds tuned on the same validation rows;
* ``vader``: 23,555 texts rated −4…4, 1 epoch; baseline: TF-IDF + ridge regression (α tuned on validation).

    python benchmarks/task_types.py            # → benchmarks/results/task_types.{json,md}
    python benchmarks/task_types.py --quick    # tiny subsets, to outputs/benchmarks/
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def train(name: str, out: Path, *flags: str) -> dict[str, Any]:
    """One `skewtune train` in a fresh process; its metrics.json, wall time and peak RSS."""
    command = [sys.executable, "-m", "skewtune.cli.main", "train", "--output_dir", str(out), "--overwrite_output_dir",
               "true", "--report_to", "none", *flags]
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed: {stderr.strip().splitlines()[-1] if stderr.strip() else proc.returncode}")
    metrics = json.loads((out / "metrics.json").read_text())
    print(f"{name}: {wall:.0f} s", flush=True)
    return {"metrics": metrics, "wall_s": wall, "command": " ".join(command[3:])}


def splits_of(out: Path) -> Any:
    """The run's splits, rebuilt from its config exactly as it built them (same seed, same limits)."""
    from skewtune.data.datasets import load_dataset_splits

    config = json.loads((out / "config.json").read_text())
    return load_dataset_splits(config["dataset"], seed=config["seed"], max_train_samples=config["max_train_samples"],
                               max_eval_samples=config["max_eval_samples"])


def multilabel_baseline(splits: Any) -> dict[str, float]:
    """TF-IDF 1–2-grams + one-vs-rest class-weighted logistic regression, per-label thresholds fitted on
    validation (the same rule as the adapter's), scored with the same metric module."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from skewtune.evaluation.metrics_loader import multilabel_report
    from skewtune.imbalance.multilabel import apply_thresholds, fit_thresholds

    def matrix(split: str) -> np.ndarray:
        return np.asarray(splits.ids(split)) > 0.5

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    x_train = vectorizer.fit_transform(list(splits.train_texts))
    best: tuple[float, Any] | None = None
    for c in (1.0, 4.0, 16.0):  # C tuned on validation micro-F1
        model = OneVsRestClassifier(LogisticRegression(C=c, class_weight="balanced", max_iter=2000)).fit(
            x_train, matrix("train"))
        val = model.predict_proba(vectorizer.transform(list(splits.validation_texts)))
        thresholds = fit_thresholds(val, matrix("validation"))
        score = multilabel_report(apply_thresholds(val, thresholds), matrix("validation"), splits.labels)["micro_f1"]
        if best is None or score > best[0]:
            best = (score, (model, thresholds, c))
    model, thresholds, c = best[1]
    test = model.predict_proba(vectorizer.transform(list(splits.test_texts)))
    report = multilabel_report(apply_thresholds(test, thresholds), matrix("test"), splits.labels)
    return {"micro_f1": report["micro_f1"], "macro_f1": report["macro_f1"], "samples_f1": report["samples_f1"],
            "C": c}


def regression_baseline(splits: Any) -> dict[str, float]:
    """TF-IDF 1–2-grams + ridge regression, α tuned on validation Pearson r."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    from skewtune.evaluation.metrics_loader import regression_report

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    x_train = vectorizer.fit_transform(list(splits.train_texts))
    best = None
    for alpha in (0.3, 1.0, 3.0, 10.0):
        model = Ridge(alpha=alpha).fit(x_train, splits.ids("train"))
        r = regression_report(model.predict(vectorizer.transform(list(splits.validation_texts))).tolist(),
                              splits.ids("validation"))["pearson"]
        if best is None or r > best[0]:
            best = (r, model, alpha)
    _, model, alpha = best
    report = regression_report(model.predict(vectorizer.transform(list(splits.test_texts))).tolist(),
                               splits.ids("test"))
    return {"pearson": report["pearson"], "spearman": report["spearman"], "mse": report["mse"], "alpha": alpha}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--snli_rows", type=int, default=20_000)
    parser.add_argument("--eval_rows", type=int, default=2_000)
    args = parser.parse_args()
    work = REPO / "outputs" / "benchmarks" / "task_types_runs"
    limits = ["--max_train_samples", "600", "--max_eval_samples", "200", "--max_steps", "20"] if args.quick else []
    runs: dict[str, Any] = {}
    started = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    runs["snli"] = train("snli", work / "snli", "--dataset", "snli",
                         *(limits or ["--max_train_samples", str(args.snli_rows), "--max_eval_samples",
                                      str(args.eval_rows)]))
    runs["wnut16_types"] = train("wnut16_types", work / "wnut16_types", "--dataset", "wnut16_types", "--loss", "asl",
                                 *(limits or ["--num_train_epochs", "5"]))
    runs["vader"] = train("vader", work / "vader", "--dataset", "vader",
                          *(limits or ["--max_eval_samples", str(args.eval_rows)]))
    runs["wnut16_types"]["baseline"] = multilabel_baseline(splits_of(work / "wnut16_types"))
    runs["vader"]["baseline"] = regression_baseline(splits_of(work / "vader"))
    result = {"quick": args.quick, "runs": runs, "seconds_total": time.perf_counter() - started,
              "machine": harness.machine()}
    m = {k: v["metrics"] for k, v in runs.items()}
    rows = [
        ("sentence pairs: SNLI (3 classes)", f"{m['snli']['train_size']:,} / {m['snli']['test_size']:,}",
         f"macro-F1 **{m['snli']['eval_macro_f1']:.4f}**, accuracy {m['snli']['eval_accuracy']:.4f}",
         f"TF-IDF + LR (both sides): macro-F1 {m['snli']['baseline_tfidf_macro_f1']:.4f}", runs["snli"]),
        ("multi-label: WNUT-16 entity types per tweet (10 labels)",
         f"{m['wnut16_types']['train_size']:,} / {m['wnut16_types']['test_size']:,}",
         f"micro-F1 **{m['wnut16_types']['eval_micro_f1']:.4f}**, macro-F1 {m['wnut16_types']['eval_macro_f1']:.4f}, "
         f"samples-F1 {m['wnut16_types']['eval_samples_f1']:.4f}",
         "TF-IDF + one-vs-rest LR, thresholds tuned: micro-F1 {micro_f1:.4f}, macro-F1 {macro_f1:.4f}".format(
             **runs["wnut16_types"]["baseline"]), runs["wnut16_types"]),
        ("regression: VADER ratings (−4…4)", f"{m['vader']['train_size']:,} / {m['vader']['test_size']:,}",
         f"Pearson r **{m['vader']['eval_pearson']:.4f}**, Spearman ρ {m['vader']['eval_spearman']:.4f}, "
         f"MSE {m['vader']['eval_mse']:.3f}",
         "TF-IDF + ridge: Pearson r {pearson:.4f}, Spearman ρ {spearman:.4f}".format(**runs["vader"]["baseline"]),
         runs["vader"]),
    ]
    lines = ["# Task types on real data (issue #20)", "",
             "| task (data) | train / test rows | skewtune (LoRA, 8-bit MiniLM) | baseline on the same split | "
             "train time |", "| --- | ---: | --- | --- | ---: |"]
    lines += [f"| {a} | {b} | {c} | {d} | {run['metrics']['train_runtime_s']:.0f} s |" for a, b, c, d, run in rows]
    lines += ["", "Commands: " + "; ".join(f"`skewtune {r['command']}`" for r in runs.values()), "",
              harness.machine_line(result["machine"])]
    harness.write_results(harness.results_path("task_types", args.quick), result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
