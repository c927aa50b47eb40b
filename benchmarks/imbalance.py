#!/usr/bin/env python
"""Long-tail benchmark (issue 4): every imbalance method of skewtune on tweets subsampled to ρ = n_max / n_min.

    python benchmarks/imbalance.py --quick      # smoke run (≈ 1 min idle, ≤ 5 min on 2 busy shared cores): ρ ∈
                                                # {natural, 100}, 1 seed, n_max 100, 4 methods from 2 trainings per ρ;
                                                # writes outputs/imbalance/quick/imbalance.{json,md,png}
    python benchmarks/imbalance.py              # the benchmark: ρ ∈ {natural, 10, 50, 100}, seeds 0 1 2, 20 methods
                                                # (13 trainings per ρ and seed, 156 in all; ≈ 66 min on 2 idle cores);
                                                # writes benchmarks/results/imbalance.{json,md,png}
    python benchmarks/imbalance.py --dry_run    # print the plan (class sizes, trainings, time estimate) and exit
    python benchmarks/imbalance.py --methods ce focal ldam+sqrt_frequency+bias_tuning --ratios 10,100 --seeds 5 \\
        --n_max 1000 --epochs 2 --out outputs/imbalance/big/imbalance

Data. The tweets corpus (CrowdFlower, 3 classes) deduplicated and split 80/10/10, stratified, with the fixed split
seed 42 (``skewtune.data.load_dataset_splits``, as every recipe): negative 12,780 / neutral 11,550 / positive 5,432
training tweets, natural ρ ≈ 2.35. For each ρ and seed, :func:`skewtune.imbalance.long_tail_splits` (``random_state``
the seed, ``test_random_state`` 0) subsamples the training split per class to an exponential decay from the largest class, in natural-frequency order: class ``i`` (``i = 0`` the most frequent of
``C`` classes) gets ``round(n_max · ρ^(−i/(C−1)))`` rows (at least 1); for ``natural`` the natural proportions
scaled to the same ``n_max``. Inside a class the rows are the first ones of a permutation keyed by (seed, class):
the seed changes both the subsample and the training seed, and for one seed a smaller class size is a prefix of a
larger one (the ρ = 100 set is nested in the ρ = 10 set, the majority rows are the same for every ρ).

* validation: the canonical validation split subsampled with the *same* decay (``--val_n_max``, default
  ``n_max / 2``, at least ``--val_min`` = 5 rows per class): users only have skewed validation data, so the post-hoc
  rules are fitted on skewed data too (the floor keeps a handful of tail rows to fit on at ρ = 100);
* test: one fixed, balanced subset of the canonical test split (``--test_per_class`` = 150 per class, drawn with
  its own fixed seed): the same rows for every method, ρ and seed, so every comparison is paired.

Training (every method, every ρ and seed alike): ``recipes/lora_sentiment.py``'s settings (MiniLM-L6 loaded 8-bit,
LoRA r 8 / α 16 / dropout 0.1 on the attention projections, AdamW lr 1e-3, linear schedule, warmup 6 %, batch 32)
with ``max_length`` 64 (< 1 % of the tweets are longer) and 1.5 epochs (the loop runs 2 epochs and stops half way:
LDAM's deferred re-weighting, on from epoch 1, then covers the last third of the steps). Each training runs the
library pipeline in-process — ``skewtune.training.prepare(cfg, splits=<the subsample>)`` → ``train`` — with the
same :class:`~skewtune.training.TrainConfig` flags the recipe takes (``loss``, ``sampler``, ``augment``; for
``post_hoc`` see below), in its own child process forked from a ``forkserver`` that imported the libraries once.

Methods (``--methods``): ``+``-joined parts, each a name of the imbalance registries — a loss (``LOSSES``), a
sampler (``SAMPLERS``), an augmentation (``AUGMENTERS``) or a post-hoc rule (``POST_HOC``); a name that is both a
loss and a sampler (``class_balanced``) is the loss, write ``sampler:class_balanced`` for the sampler (any part may
be written ``kind:name``). The loss defaults to ``ce``. Row samplers balance fully (``sampler_ratio`` unset),
``eda`` fills the minority classes to half the largest (``augment_ratio`` 0.5), as the recipe's defaults.

Post-hoc rules are not retrained: ``X+bias_tuning`` reuses the validation and test logits of the training of
``X`` and applies :func:`skewtune.imbalance.fit_post_hoc` / :func:`~skewtune.imbalance.apply_decision` to them —
exactly what ``--post_hoc`` does in the pipeline (``fit_decision_rule``: fit on the validation logits with the
training class counts, add the bias to the test logits), without paying a second identical training
(``tests/test_imbalance_benchmark.py`` checks that both give the same rule). Their wall time is the training's
plus the fit.

Scores: macro-F1 and the recall of the minority class (the least frequent one, ``positive``) on the balanced test
rows, mean ± sample std over the seeds. Goal (issue 4): at ρ = 100 the best combination (a method of ≥ 2
techniques, best by mean test macro-F1 among those run) beats plain cross-entropy by ≥ 10 macro-F1 points, and
at the natural ratio by ≥ 1.5 points; the best single method is reported beside it. Choosing the best on the
test rows among a few pre-declared candidates is slightly optimistic: the per-seed paired deltas are listed too.

Cost: the largest plain training (ce, natural ρ, 932 rows × 1.5 epochs = 1,398 rows, then 916 validation + test
rows) took 35 s wall — 25.5 s training (55 rows/s), 9.2 s prediction (100 rows/s), 0.5 s ``prepare`` — measured
with one torch thread beside another job keeping both cores busy (on the 2-core Intel Xeon these results were
measured on, where the throughput benchmark then gave 58 training rows/s on idle cores). The cost model of
``--dry_run`` (58 training rows/s, 100 predicted rows/s, 1.5 s per training) puts the full preset — 156 trainings of 12–1,200 rows × 1.5 epochs — at ≈ 66 min (≈ 42 training,
≈ 20 prediction, ≈ 4 overhead). On a contended CPU, two torch threads are ruinous (the same training ran at
6 rows/s with 2 threads beside that job): ``--threads auto`` trains with 1 thread whenever other processes keep
≥ half a core busy, re-checked from ``/proc/stat`` before every training (scores did not change with the thread
count in that check). Finished trainings are cached under ``--work`` (default
``outputs/imbalance/<quick|full>/runs``) and reused when their settings and rows match, so an interrupted run
continues where it stopped (``--fresh`` retrains everything; so should a change of library code); the JSON and
markdown are rewritten after every training, the plot at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import io
import json
import math
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness  # beside this script

from skewtune.imbalance import classes_by_frequency, long_tail_splits
from skewtune.utils.stats import mean_std

IMBALANCE_VERSIONS = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "imbalanced-learn", "scikit-learn")

REPO = harness.REPO
SPLIT_SEED = 42  # the canonical deduplicated 80/10/10 split every recipe uses
TEST_SEED = 0  # the balanced test subset: one draw for every run
KINDS = ("loss", "sampler", "augment", "post_hoc")
# shared training settings: the main recipe's (skewtune/configs/lora_sentiment.yaml) as they were when the benchmark ran (LoRA dropout 0.1,
# the backbone's own dropout, no resampling), with max_length 64 (set per preset below)
SHARED: dict[str, Any] = {
    "dataset": "tweets", "backbone": "minilm", "quant": "8bit", "adapter": "lora", "lora_r": 8, "lora_alpha": 16.0,
    "lora_dropout": 0.1, "target_modules": "attention", "learning_rate": "1e-3", "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 256, "lr_scheduler_type": "linear", "warmup_ratio": 0.06, "eval_every_epoch": False,
    "baselines": False, "report_plots": False, "augment_ratio": 0.5, "sampler_ratio": None, "backbone_dropout": None,
}
FULL_METHODS = (
    "ce",
    # losses
    "weighted_ce", "sqrt_weighted_ce", "focal", "class_balanced", "ldam", "logit_adjusted",
    # samplers
    "random_over", "random_under", "sampler:class_balanced", "sqrt_frequency",
    # augmentation
    "eda",
    # post-hoc rules on the ce training (no retraining)
    "ce+logit_adjustment", "ce+bias_tuning",
    # combinations
    "logit_adjusted+bias_tuning", "ldam+sqrt_frequency", "ldam+sqrt_frequency+bias_tuning",
    # post-hoc on other trainings (no retraining either)
    "focal+bias_tuning", "random_over+bias_tuning", "eda+bias_tuning",
)
QUICK_METHODS = ("ce", "logit_adjusted", "ce+bias_tuning", "logit_adjusted+bias_tuning")
PRESETS: dict[str, dict[str, Any]] = {
    # full: 13 trainings × 4 ρ × 3 seeds = 156 trainings of 12–1,200 rows; ≈ 66 min on 2 idle cores (--dry_run)
    "full": {"ratios": "natural,10,50,100", "seeds": "3", "methods": FULL_METHODS, "n_max": 400, "val_n_max": None,
             "val_min": 5, "test_per_class": 150, "epochs": 1.5, "max_length": 64},
    # quick: 2 trainings × 2 ρ, 1 seed, tiny sets: checks the plumbing (≈ 1 min idle, ≤ 5 min on 2 cores shared with
    # a job that keeps both busy); its F1 is not informative
    "quick": {"ratios": "natural,100", "seeds": "1", "methods": QUICK_METHODS, "n_max": 100, "val_n_max": None,
              "val_min": 5, "test_per_class": 30, "epochs": 1.0, "max_length": 64},
}
GOALS = {"100": 10.0, "natural": 1.5}  # macro-F1 points the best combination must gain over ce at that ρ
# cost model of --dry_run and the start banner (2 idle cores of the Intel Xeon the benchmark ran on; throughput benchmark)
TRAIN_PER_S = 58.0  # c_skewtune_8bit there; 55 rows/s measured here (ce, natural ρ, n_max 400: 1,398 rows in 25.5 s)
PREDICT_PER_S = 100.0  # 160 at batch 16 there; 100 rows/s measured here (916 validation + test rows in 9.2 s)
OVERHEAD_PER_TRAINING_S = 1.5  # fork + prepare (0.4–0.7 s measured) + checkpoint writes + the CPU-load probe
PRELOAD = ["torch", "transformers", "peft", "accelerate", "bitsandbytes", "sklearn", "skewtune.training",
           "skewtune.adapters", "skewtune.backbones", "skewtune.data", "skewtune.imbalance"]


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """One row of the tables: a training (loss, sampler, augment) and an optional post-hoc rule on its logits."""

    name: str
    loss: str = "ce"
    sampler: str | None = None
    augment: str | None = None
    post_hoc: str | None = None

    @property
    def base(self) -> tuple[str, str | None, str | None]:
        """What is trained: post-hoc variants share the training of their base."""
        return (self.loss, self.sampler, self.augment)

    @property
    def techniques(self) -> int:
        return sum(x is not None for x in (self.sampler, self.augment, self.post_hoc)) + (self.loss != "ce")

    @property
    def family(self) -> str:
        if self.techniques == 0:
            return "baseline"
        if self.techniques > 1:
            return "combination"
        if self.loss != "ce":
            return "loss"
        return "sampler" if self.sampler else ("augment" if self.augment else "post_hoc")


def registry_names() -> dict[str, list[str]]:
    """Names the pipeline accepts per kind (SMOTE-family samplers and ``contextual`` need what a run lacks)."""
    from skewtune.imbalance import AUGMENTERS, LOSSES, POST_HOC, SAMPLERS

    return {
        "loss": LOSSES.names(),
        "sampler": [n for n in SAMPLERS.names() if n not in ("smote", "adasyn", "borderline_smote")],
        "augment": [n for n in AUGMENTERS.names() if n != "contextual"],
        "post_hoc": POST_HOC.names(),
    }


def valid_methods_hint(names: dict[str, list[str]]) -> str:
    return "; ".join(f"{kind}: {', '.join(values)}" for kind, values in names.items())


def parse_method(spec: str, names: dict[str, list[str]]) -> Method:
    """``"ldam+sqrt_frequency+bias_tuning"`` → Method; ValueError naming the valid parts otherwise."""
    text = spec.strip()
    if not text:
        raise ValueError("empty method name")
    parts: dict[str, str] = {}
    for raw in text.split("+"):
        token = raw.strip()
        kind, sep, name = token.partition(":")
        if sep:
            if kind not in KINDS:
                raise ValueError(f"unknown kind '{kind}' in '{spec}' (kinds: {', '.join(KINDS)})")
            if name not in names[kind]:
                raise ValueError(f"unknown {kind} '{name}' in method '{spec}'")
        else:
            name = token
            kind = next((k for k in KINDS if name in names[k]), "")
            if not kind:
                raise ValueError(f"unknown method part '{name}' in '{spec}'")
        if kind in parts:
            raise ValueError(f"method '{spec}' has two {kind} parts ('{parts[kind]}', '{name}')")
        parts[kind] = name
    return Method(name=text, loss=parts.get("loss", "ce"), sampler=parts.get("sampler"), augment=parts.get("augment"),
                  post_hoc=parts.get("post_hoc"))


def training_order(methods: Sequence[Method]) -> list[tuple[str, str | None, str | None]]:
    """The distinct trainings, in the order their methods first appear."""
    return list(dict.fromkeys(m.base for m in methods))


def base_label(base: tuple[str, str | None, str | None]) -> str:
    """``("ldam", "sqrt_frequency", None)`` → ``"ldam+sqrt_frequency"`` (a sampler named like a loss gets ``sampler:``)."""
    loss, sampler, augment = base
    parts = [loss]
    if sampler:
        parts.append(f"sampler:{sampler}" if sampler in registry_names()["loss"] else sampler)
    if augment:
        parts.append(augment)
    return "+".join(parts)


# ----------------------------------------------------------------------------------------------- ratios and data


def parse_ratio(text: str) -> float | None:
    """``natural`` → None; a number > 1 → float; ValueError otherwise."""
    value = text.strip().lower()
    if value == "natural":
        return None
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"ratio '{text}' is neither 'natural' nor a number") from None
    if not (math.isfinite(number) and number > 1):
        raise ValueError(f"ratio must be > 1 (ρ = n_max / n_min), got {text}")
    return number


def ratio_key(ratio: float | None) -> str:
    if ratio is None:
        return "natural"
    return str(int(ratio)) if float(ratio).is_integer() else f"{ratio:g}"


def parse_seeds(text: str) -> list[int]:
    """``"3"`` → [0, 1, 2]; ``"0,4,7"`` → those seeds."""
    value = str(text).strip()
    if "," in value:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    else:
        seeds = list(range(int(value)))
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds '{text}': give a count ≥ 1 or distinct non-negative integers")
    return seeds


def rows_fingerprint(splits: Any) -> str:
    digest = hashlib.sha256()
    for part in ("train", "validation", "test"):
        for text, label in zip(getattr(splits, f"{part}_texts"), getattr(splits, f"{part}_labels")):
            digest.update(f"{part}\t{label}\t{text}\n".encode())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- one training


def training_config(settings: dict[str, Any], base: tuple[str, str | None, str | None], seed: int) -> dict[str, Any]:
    loss, sampler, augment = base
    return {**SHARED, **settings, "loss": loss, "sampler": sampler, "augment": augment, "post_hoc": None,
            "seed": int(seed)}


def train_one(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh child: ``prepare(cfg, splits=…)`` → ``train`` → validation and test logits."""
    start = time.perf_counter()
    os.environ["SKEWTUNE_NUM_THREADS"] = str(job["threads"])
    chatter = io.StringIO()  # progress bars and truncation notes
    try:
        import logging

        from skewtune.inference.logits import predict_logits
        from skewtune.training import TrainConfig, prepare, train
        from skewtune.training.pipeline import training_class_counts

        logging.getLogger("skewtune").setLevel(logging.WARNING)
        with tempfile.TemporaryDirectory(prefix="skewtune-imbalance-") as tmp, contextlib.redirect_stderr(chatter):
            cfg = TrainConfig(**job["config"], output_dir=str(Path(tmp) / "out"))
            run = prepare(cfg, recipe="imbalance_benchmark", splits=job["splits"])
            prepare_s = time.perf_counter() - start
            train(run)
            t_predict = time.perf_counter()
            model = run.accelerator.unwrap_model(run.model)
            logits = {split: predict_logits(model, run.tokenized[split], run.collator, cfg.per_device_eval_batch_size,
                                            run.accelerator.device, accelerator=run.accelerator)
                      for split in ("validation", "test")}
            predict_s = time.perf_counter() - t_predict
    except Exception as exc:  # a failing training is a result too
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"error": f"{type(exc).__name__}: {first}", "traceback": traceback.format_exc(limit=4),
                "stderr_tail": chatter.getvalue()[-800:], "wall_s": time.perf_counter() - start}
    import torch

    return {
        "validation_logits": logits["validation"].to(torch.float32).tolist(),
        "validation_labels": list(run.tokenized["validation"].labels),
        "test_logits": logits["test"].to(torch.float32).tolist(),
        "test_labels": list(run.tokenized["test"].labels),
        "labels": list(run.splits.labels),
        "class_counts": training_class_counts(run),  # after a sampler's resampling, as the pipeline uses them
        "train_size": len(run.tokenized["train"]),
        "augmented_rows": int(run.splits.info.get("augmented_rows", 0) or 0),
        "train_steps": run.metrics.get("train_steps"),
        "train_runtime_s": run.metrics.get("train_runtime_s"),
        "train_samples_per_second": run.metrics.get("train_samples_per_second"),
        "truncated_texts": sum(t.truncated for t in run.tokenized.values()),
        "torch_threads": torch.get_num_threads(),
        "prepare_s": prepare_s,
        "predict_s": predict_s,
        "wall_s": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------------------------- scoring


def score_method(method: Method, trained: dict[str, Any]) -> dict[str, Any]:
    """Macro-F1 and minority recall on the test logits of ``method``'s training, after its post-hoc rule (fitted
    on the validation logits with the training class counts, as ``fit_decision_rule`` does)."""
    import numpy as np

    from skewtune.evaluation import classification_report
    from skewtune.imbalance import apply_decision, fit_post_hoc

    start = time.perf_counter()
    val_z = np.asarray(trained["validation_logits"], dtype=np.float64)
    test_z = np.asarray(trained["test_logits"], dtype=np.float64)
    rule = None
    if method.post_hoc:
        rule = fit_post_hoc(method.post_hoc, val_z, trained["validation_labels"], class_counts=trained["class_counts"])
        val_z, test_z = apply_decision(val_z, rule), apply_decision(test_z, rule)
    id2label = dict(enumerate(trained["labels"]))
    test = classification_report(test_z.argmax(-1).tolist(), trained["test_labels"], id2label)
    val = classification_report(val_z.argmax(-1).tolist(), trained["validation_labels"], id2label)
    minority = trained["minority"]
    return {
        "macro_f1": test["macro_f1"],
        "minority_recall": test["per_class_recall"][minority],
        "accuracy": test["accuracy"],
        "per_class_recall": test["per_class_recall"],
        "per_class_f1": test["per_class_f1"],
        "validation_macro_f1": val["macro_f1"],
        "decision": rule,
        "wall_s": float(trained["wall_s"]) + (time.perf_counter() - start),
    }


def aggregate(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``records`` (ratio, method, seed, macro_f1, minority_recall, wall_s, …) → results[ratio][method] with the
    per-seed lists (seed order) and their mean / std; ratios and methods in first-seen order."""
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for rec in records:
        grouped.setdefault(rec["ratio"], {}).setdefault(rec["method"], []).append(rec)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ratio, by_method in grouped.items():
        out[ratio] = {}
        for method, recs in by_method.items():
            recs = sorted(recs, key=lambda r: r["seed"])
            entry: dict[str, Any] = {"seeds": [r["seed"] for r in recs]}
            for key in ("macro_f1", "minority_recall", "validation_macro_f1", "wall_s"):
                values = [r[key] for r in recs if r.get(key) is not None]
                if not values:
                    continue
                entry[key] = values
                entry[f"{key}_mean"], entry[f"{key}_std"] = mean_std(values)
            out[ratio][method] = entry
    return out


def goal_check(results: dict[str, dict[str, dict[str, Any]]], methods: Sequence[Method],
               goals: dict[str, float] | None = None) -> dict[str, Any]:
    """Per goal ratio: the best combination (≥ 2 techniques) and the best single method vs ``ce``, in points."""
    goals = GOALS if goals is None else goals
    by_name = {m.name: m for m in methods}
    verdict: dict[str, Any] = {"per_ratio": {}, "met": None}
    for ratio, points in goals.items():
        rows = results.get(ratio, {})
        ce = rows.get("ce")
        if ce is None or "macro_f1_mean" not in ce:
            why = "ratio not run" if ratio not in results else "no ce result at this ratio"
            verdict["per_ratio"][ratio] = {"required_points": points, "met": None, "why": why}
            continue
        ce_by_seed = dict(zip(ce["seeds"], ce["macro_f1"]))
        check: dict[str, Any] = {"required_points": points, "ce_macro_f1": ce["macro_f1_mean"]}
        for label, keep in (("best_combination", lambda m: m.techniques >= 2), ("best_method", lambda m: m.techniques >= 1)):
            candidates = [(name, entry) for name, entry in rows.items()
                          if name in by_name and keep(by_name[name]) and "macro_f1_mean" in entry]
            if not candidates:
                check[label] = None
                continue
            name, entry = max(candidates, key=lambda kv: kv[1]["macro_f1_mean"])
            paired = [100 * (f - ce_by_seed[s]) for s, f in zip(entry["seeds"], entry["macro_f1"]) if s in ce_by_seed]
            delta = 100 * (entry["macro_f1_mean"] - ce["macro_f1_mean"])
            check[label] = {"method": name, "macro_f1": entry["macro_f1_mean"], "delta_points": delta,
                            "paired_delta_points": paired, "met": delta >= points}
        combo = check.get("best_combination")
        check["met"] = None if combo is None else bool(combo["met"])
        verdict["per_ratio"][ratio] = check
    flags = [check["met"] for check in verdict["per_ratio"].values()]
    # met: every goal ratio evaluated and met; False as soon as one is evaluated and missed; None: not evaluable
    verdict["met"] = False if False in flags else (True if flags and None not in flags else None)
    return verdict


# ----------------------------------------------------------------------------------------------- report


def _cell(entry: dict[str, Any] | None, key: str) -> str:
    if not entry or f"{key}_mean" not in entry:
        return "–"
    if len(entry[key]) == 1:
        return f"{100 * entry[f'{key}_mean']:.1f}"
    return f"{100 * entry[f'{key}_mean']:.1f} ± {100 * entry[f'{key}_std']:.1f}"


def _ratio_header(result: dict[str, Any], ratio: str) -> str:
    realized = result["sizes"].get(ratio, {}).get("realized_ratio")
    if ratio == "natural" and realized:
        return f"natural ({realized:.2f})"
    return f"ρ = {ratio}"


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    ratios = s["ratios"]
    res = result["results"]
    order = s["class_order"]
    lines = [
        "# Imbalance benchmark: long-tail tweets on MiniLM-L6 (8-bit) LoRA",
        "",
        f"Generated by `{result['command']}` (preset {result['preset']}"
        f"{'' if result['complete'] else ', INCOMPLETE: still running or interrupted'}). Tweets (3 classes, "
        f"deduplicated 80/10/10 split, seed {SPLIT_SEED}); training split subsampled to class sizes "
        f"n_max · ρ^(−i/2) in natural-frequency order ({', '.join(order)}), n_max = {s['n_max']}, per seed "
        f"({', '.join(map(str, s['seeds']))}); validation subsampled alike (n_max {s['val_n_max']}, ≥ {s['val_min']} per "
        f"class; the post-hoc rules are fitted on it); test: the same {s['test_per_class']} tweets per class for "
        f"every run. LoRA r {s['lora_r']} on the attention projections, lr {s['learning_rate']}, batch "
        f"{s['per_device_train_batch_size']}, {s['epochs']:g} epoch(s), max_length {s['max_length']}, torch "
        f"threads {threads_used(result)}. Cells: test score × 100, mean ± std over seeds; post-hoc rows reuse the "
        "logits of their base training (no retraining).",
        "",
        "Training / validation rows per class:",
        "",
        "| ρ | " + " | ".join(order) + " | realized ρ | validation |",
        "| --- | " + " | ".join("---:" for _ in order) + " | ---: | --- |",
    ]
    for ratio in ratios:
        size = result["sizes"].get(ratio)
        if size:
            lines.append(f"| {_ratio_header(result, ratio)} | " + " | ".join(str(size["train"][c]) for c in order)
                         + f" | {size['realized_ratio']:.1f} | " + " / ".join(str(size["validation"][c]) for c in order)
                         + " |")
    for key, title in (("macro_f1", "Macro-F1"), ("minority_recall", f"Minority-class recall ({order[-1]})")):
        lines += ["", f"## {title}", "", "| method | " + " | ".join(_ratio_header(result, r) for r in ratios) + " |",
                  "| --- | " + " | ".join("---:" for _ in ratios) + " |"]
        best = {r: max((e.get(f"{key}_mean", -1.0) for e in res.get(r, {}).values()), default=None) for r in ratios}
        for method in s["methods"]:
            cells = []
            for r in ratios:
                entry = res.get(r, {}).get(method)
                cell = _cell(entry, key)
                if entry and best[r] is not None and entry.get(f"{key}_mean") == best[r]:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    goal = result["goal"]
    lines += ["", "## Goal", ""]
    verdict = {True: "**met**", False: "**NOT met**", None: "not evaluated (ratio or ce missing)"}[goal["met"]]
    lines.append(f"Best combination beats plain cross-entropy by ≥ 10 macro-F1 points at ρ = 100 and ≥ 1.5 at the "
                 f"natural ratio: {verdict}.")
    lines.append("")
    for ratio, check in goal["per_ratio"].items():
        if "ce_macro_f1" not in check:
            lines.append(f"- {_ratio_header(result, ratio)}: {check.get('why', 'not run')}")
            continue
        parts = []
        for label in ("best_combination", "best_method"):
            best_entry = check.get(label)
            if best_entry:
                paired = ", ".join(f"{d:+.1f}" for d in best_entry["paired_delta_points"])
                parts.append(f"{label.replace('_', ' ')} `{best_entry['method']}` {100 * best_entry['macro_f1']:.1f} "
                             f"({best_entry['delta_points']:+.1f} points; per seed {paired})")
        mark = {True: "met", False: "not met", None: "–"}[check["met"]]
        lines.append(f"- {_ratio_header(result, ratio)} (needs +{check['required_points']:g}): ce "
                     f"{100 * check['ce_macro_f1']:.1f}; " + "; ".join(parts) + f" — {mark}")
    if result.get("plot"):
        lines += ["", f"![macro-F1 vs ρ]({Path(result['plot']).name})"]
    failed = [r for r in result["runs"] if "error" in r]
    if failed:
        lines += ["", "Failed trainings: " + "; ".join(f"{r['training']} ρ {r['ratio']} seed {r['seed']}: {r['error']}"
                                                       for r in failed)]
    m = result["machine"]
    trainings = [r for r in result["runs"] if "error" not in r]
    per = mean_std([r["wall_s"] for r in trainings])[0] if trainings else math.nan
    load = ", ".join(f"{x:.1f}" for x in (m.get("load_average_at_start") or []))
    reused = sum(1 for r in trainings if r.get("reused"))
    total = sum(float(r["wall_s"]) for r in trainings) / 60
    lines += ["", f"{len(trainings)} trainings, mean {per:.0f} s each (fork + prepare + train + predict), {total:.0f} min "
              f"of training processes in all on {m['cpu_count']} CPU cores"
              + (f"; this invocation took {result['total_wall_s'] / 60:.1f} min and reused {reused} finished trainings "
                 "from the cache (same settings and rows)" if reused else
                 f"; wall time {result['total_wall_s'] / 60:.1f} min")
              + f"; load average at the start {load}. The CPU may have been shared with other jobs: wall times are "
              "indicative, scores are not affected.", ""]
    return "\n".join(lines)


def threads_used(result: dict[str, Any]) -> str:
    used = sorted({r["torch_threads"] for r in result["runs"] if r.get("torch_threads")})
    return "/".join(map(str, used)) or "–"


def plot(result: dict[str, Any], path: Path) -> Path:
    """Macro-F1 vs ρ (log x), one line per method, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skewtune.utils.io import atomic_write_bytes

    s = result["settings"]
    ratios = [r for r in s["ratios"] if r in result["sizes"]]
    xs = {r: result["sizes"][r]["realized_ratio"] for r in ratios}
    styles = {"baseline": ("-", 2.6), "loss": ("-", 1.2), "sampler": ("--", 1.2), "augment": (":", 1.6),
              "post_hoc": ("-.", 1.2), "combination": ("-", 2.0)}
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    for index, name in enumerate(s["methods"]):
        points = [(xs[r], result["results"][r][name]) for r in ratios if name in result["results"].get(r, {})
                  and "macro_f1_mean" in result["results"][r][name]]
        if not points:
            continue
        family = s["method_parts"][name]["family"]
        style, width = styles[family]
        color = "black" if family == "baseline" else cmap((2 * index) % 20 + (index // 10) % 2)
        ax.errorbar([p[0] for p in points], [100 * p[1]["macro_f1_mean"] for p in points],
                    yerr=[100 * p[1]["macro_f1_std"] for p in points], label=name, linestyle=style, linewidth=width,
                    marker="o" if family == "combination" else ".", capsize=2, color=color)
    ax.set_xscale("log")
    ax.set_xticks([xs[r] for r in ratios], [f"natural\n({xs[r]:.2f})" if r == "natural" else r for r in ratios])
    ax.minorticks_off()
    ax.set_xlabel("imbalance ratio ρ = n_max / n_min (training and validation)")
    ax.set_ylabel("test macro-F1 × 100 (balanced test set)")
    ax.set_title(f"tweets long-tail, MiniLM-L6 8-bit LoRA, n_max {s['n_max']}, {len(s['seeds'])} seed(s)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------- driver


def estimate_seconds(plan: Sequence[dict[str, Any]]) -> float:
    """Wall time of ``plan`` (one dict per training: train_rows, epochs, eval_rows) on 2 idle cores."""
    return sum(OVERHEAD_PER_TRAINING_S + p["train_rows"] * p["epochs"] / TRAIN_PER_S + p["eval_rows"] / PREDICT_PER_S
               for p in plan)


def _train_rows(sizes: dict[str, int], base: tuple[str, str | None, str | None], augment_ratio: float) -> int:
    """Rows one epoch sees: the row samplers change the count, batch samplers draw as many rows as there are."""
    _, sampler, augment = base
    counts = list(sizes.values())
    if augment:
        target = math.ceil(augment_ratio * max(counts) - 1e-9)
        counts = [max(c, target) for c in counts]
    if sampler == "random_over":
        return max(counts) * len(counts)
    if sampler in ("random_under", "near_miss"):
        return min(counts) * len(counts)
    return sum(counts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: ρ natural,100, 1 seed, n_max 100, 2 trainings per ρ")
    p.add_argument("--methods", nargs="+", default=None, help="method names ('+'-joined registry names; see above)")
    p.add_argument("--ratios", default=None, help="comma list of 'natural' and numbers > 1 (default natural,10,50,100)")
    p.add_argument("--seeds", default=None, help="a count (seeds 0..N-1) or a comma list (default 3)")
    p.add_argument("--n_max", type=int, default=None, help="training rows of the largest class (default 400)")
    p.add_argument("--val_n_max", type=int, default=None, help="validation rows of the largest class (default n_max/2)")
    p.add_argument("--val_min", type=int, default=None, help="validation rows per class at least (default 5)")
    p.add_argument("--test_per_class", type=int, default=None, help="balanced test rows per class (default 150)")
    p.add_argument("--epochs", type=float, default=None, help="num_train_epochs for every training (default 1.5)")
    p.add_argument("--max_length", type=int, default=None, help="tokens per tweet (default 64)")
    p.add_argument("--learning_rate", default=None, help="for every training (default 1e-3)")
    p.add_argument("--threads", default="auto", help="torch threads per training (auto: 1 when the CPU is busy)")
    p.add_argument("--work", default=None, help="training cache (default outputs/imbalance/<quick|full>)")
    p.add_argument("--out", default=None, help="result prefix (default benchmarks/results/imbalance; quick: "
                                               "outputs/imbalance/quick/imbalance)")
    p.add_argument("--fresh", action="store_true", help="retrain everything, ignoring cached trainings")
    p.add_argument("--dry_run", action="store_true", help="print the plan and the time estimate, train nothing")
    return p


def resolve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Preset ← flags; bad values are argparse errors (one line, exit 2)."""
    preset = dict(PRESETS["quick" if args.quick else "full"])
    names = registry_names()
    specs = args.methods if args.methods is not None else list(preset["methods"])
    methods: list[Method] = []
    for spec in [s for chunk in specs for s in chunk.split(",") if s.strip()]:
        try:
            method = parse_method(spec, names)
        except ValueError as exc:
            parser.error(f"{exc}; valid names — {valid_methods_hint(names)}; join them with '+'")
        if method.name not in {m.name for m in methods}:
            methods.append(method)
    if not methods:
        parser.error("--methods is empty")
    try:
        ratios = [parse_ratio(r) for r in (args.ratios or preset["ratios"]).split(",") if r.strip()]
        seeds = parse_seeds(args.seeds or preset["seeds"])
    except ValueError as exc:
        parser.error(str(exc))
    if not ratios:
        parser.error("--ratios is empty")
    values = {key: getattr(args, key) if getattr(args, key) is not None else preset[key]
              for key in ("n_max", "val_n_max", "val_min", "test_per_class", "epochs", "max_length")}
    if values["val_n_max"] is None:
        values["val_n_max"] = max(1, values["n_max"] // 2)
    for key in ("n_max", "val_n_max", "val_min", "test_per_class", "max_length"):
        if values[key] < 1:
            parser.error(f"--{key} must be ≥ 1, got {values[key]}")
    if not values["epochs"] > 0:
        parser.error(f"--epochs must be > 0, got {values['epochs']}")
    return {"methods": methods, "ratios": list(dict.fromkeys(ratios)), "seeds": seeds,
            "learning_rate": args.learning_rate or SHARED["learning_rate"], **values}


def run(args: argparse.Namespace, plan: dict[str, Any], out: Path, work: Path) -> dict[str, Any]:
    from skewtune.data import load_dataset_splits
    from skewtune.utils.io import atomic_write_json

    started = time.perf_counter()
    load_at_start = harness.load_average()
    threads = harness.choose_threads(args.threads)  # re-chosen before every training when --threads auto
    methods: list[Method] = plan["methods"]
    bases = training_order(methods)
    canonical = load_dataset_splits("tweets", seed=SPLIT_SEED)
    order = classes_by_frequency(dict(Counter(canonical.train_labels)))
    minority = order[-1]
    train_settings = {"num_train_epochs": float(plan["epochs"]), "max_length": int(plan["max_length"]),
                      "learning_rate": str(plan["learning_rate"])}
    ratio_keys = [ratio_key(r) for r in plan["ratios"]]

    jobs: list[dict[str, Any]] = []
    sizes: dict[str, dict[str, Any]] = {}
    for seed in plan["seeds"]:
        for ratio in plan["ratios"]:
            splits = long_tail_splits(canonical, ratio, plan["n_max"], random_state=seed, val_n_max=plan["val_n_max"],
                                      val_min=plan["val_min"], test_per_class=plan["test_per_class"],
                                      test_random_state=TEST_SEED)
            info = {**splits.info, "ratio": ratio_key(ratio)}
            sizes.setdefault(info["ratio"], {"train": info["train_sizes"], "validation": info["validation_sizes"],
                                             "test_per_class": info["test_per_class"],
                                             "realized_ratio": info["realized_ratio"]})
            fingerprint = rows_fingerprint(splits)
            for base in bases:
                config = training_config(train_settings, base, seed)
                key = hashlib.sha256(json.dumps([config, fingerprint], sort_keys=True).encode()).hexdigest()[:16]
                jobs.append({"ratio": info["ratio"], "seed": seed, "base": base, "config": config, "splits": splits,
                             "key": key,
                             "train_rows": _train_rows(info["train_sizes"], base, SHARED["augment_ratio"]),
                             "eval_rows": len(splits.validation_texts) + len(splits.test_texts),
                             "epochs": float(plan["epochs"])})
    estimate = estimate_seconds(jobs)
    log(f"imbalance benchmark: {len(methods)} methods ({len(bases)} trainings per ρ and seed), ρ {ratio_keys}, "
        f"seeds {plan['seeds']}, n_max {plan['n_max']}: {len(jobs)} trainings, estimated {estimate / 60:.0f} min on 2 "
        f"idle cores; {threads} torch thread(s), load average {load_at_start}")
    for ratio in ratio_keys:
        size = sizes[ratio]
        log(f"   ρ {ratio:>7s}: train {size['train']} (realized ρ {size['realized_ratio']:.2f}), validation "
            f"{size['validation']}, test {size['test_per_class']} per class")
        if ratio != "natural" and abs(size["realized_ratio"] - float(ratio)) > 0.05 * float(ratio):
            log(f"   note: n_max {plan['n_max']} is too small for ρ {ratio} (the smallest class rounds to "
                f"{min(size['train'].values())} rows); pick n_max a multiple of ρ")

    settings = {
        "dataset": "tweets", "split_seed": SPLIT_SEED, "test_seed": TEST_SEED, "class_order": order,
        "minority_class": minority, "ratios": ratio_keys, "seeds": plan["seeds"], "n_max": plan["n_max"],
        "val_n_max": plan["val_n_max"], "val_min": plan["val_min"], "test_per_class": sizes[ratio_keys[0]]["test_per_class"],
        "epochs": float(plan["epochs"]), "threads": args.threads, **SHARED,
        "max_length": int(plan["max_length"]), "learning_rate": str(plan["learning_rate"]),
        "methods": [m.name for m in methods],
        "method_parts": {m.name: {"loss": m.loss, "sampler": m.sampler, "augment": m.augment, "post_hoc": m.post_hoc,
                                  "family": m.family, "training": base_label(m.base)} for m in methods},
        "cost_model": {"train_rows_per_s": TRAIN_PER_S, "predict_rows_per_s": PREDICT_PER_S,
                       "overhead_per_training_s": OVERHEAD_PER_TRAINING_S, "estimated_s": round(estimate, 1)},
    }
    if args.dry_run:
        return {"dry_run": True, "settings": settings, "trainings": len(jobs)}

    cache = work / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []

    def result_dict(complete: bool) -> dict[str, Any]:
        results = aggregate(records)
        return {
            "benchmark": "imbalance",
            "preset": "quick" if args.quick else "full",
            "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python benchmarks/imbalance.py " + " ".join(args.argv),
            "complete": complete,
            "settings": settings,
            "sizes": sizes,
            "results": results,
            "goal": goal_check(results, methods),
            "plot": str(out.with_suffix(".png")) if complete else None,
            "machine": {**harness.machine(IMBALANCE_VERSIONS), "load_average_at_start": load_at_start,
                        "load_average_now": harness.load_average()},
            "total_wall_s": time.perf_counter() - started,
            "runs": runs,
            "per_seed": [{k: v for k, v in r.items() if k not in ("per_class_recall", "per_class_f1")} for r in records],
        }

    def write(complete: bool) -> dict[str, Any]:
        result = result_dict(complete)
        harness.write_results(out, result, markdown(result))
        if complete:
            png = plot(result, out.with_suffix(".png"))
            with contextlib.suppress(OSError):  # mkstemp makes 0600 files; results are for everyone to read
                os.chmod(png, 0o644)
        return result

    pool = harness.child_pool(PRELOAD)
    try:
        for number, job in enumerate(jobs, 1):
            cached = cache / f"{job['key']}.json"
            label = base_label(job["base"])
            trained: dict[str, Any]
            if cached.is_file() and not args.fresh:
                trained = json.loads(cached.read_text())
                reused = True
            else:
                threads = harness.choose_threads(args.threads)
                t_job = time.perf_counter()
                try:
                    trained = pool.submit(train_one, {"config": job["config"], "splits": job["splits"],
                                                      "threads": threads}).result()
                except BrokenProcessPool:  # the child was killed (out of memory?)
                    trained = {"error": "the training process died (killed, out of memory?)",
                               "wall_s": time.perf_counter() - t_job}
                    pool.shutdown(wait=False)
                    pool = harness.child_pool(PRELOAD)
                reused = False
                if "error" not in trained:
                    atomic_write_json(cached, trained)
            row = {"training": label, "ratio": job["ratio"], "seed": job["seed"], "key": job["key"], "reused": reused,
                   **{k: v for k, v in trained.items() if not k.endswith(("_logits", "_labels")) and k != "labels"},
                   "load_average_after": harness.load_average()}
            runs.append(row)
            if "error" in trained:
                log(f"[{number}/{len(jobs)}] ρ {job['ratio']:>7s} seed {job['seed']} {label:28s} FAILED: {trained['error']}")
                write(False)
                continue
            trained["minority"] = minority
            scored = []
            for method in methods:
                if method.base != job["base"]:
                    continue
                got = score_method(method, trained)
                records.append({"ratio": job["ratio"], "method": method.name, "seed": job["seed"], **got})
                scored.append(f"{method.name} {100 * got['macro_f1']:.1f}/{100 * got['minority_recall']:.0f}")
            log(f"[{number}/{len(jobs)}] ρ {job['ratio']:>7s} seed {job['seed']} {label:28s} {trained['wall_s']:5.0f} s"
                f"{' (cached)' if reused else ''}  macro-F1/minority recall: {'; '.join(scored)}")
            write(False)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return write(True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    plan = resolve(args, parser)
    mode = "quick" if args.quick else "full"
    work = Path(args.work) if args.work else REPO / "outputs" / "imbalance" / mode
    default_out = work / "imbalance" if args.quick else harness.results_path("imbalance")
    out = Path(args.out) if args.out else default_out
    from skewtune.cli.main import run_guarded

    def go() -> int:
        result = run(args, plan, out, work)
        if result.get("dry_run"):
            return 0
        log(markdown(result))
        log(f"== wrote {out.with_suffix('.json')}, .md and .png ({result['total_wall_s']:.0f} s)")
        return 0 if all("error" not in r for r in result["runs"]) else 1

    return run_guarded(go)


if __name__ == "__main__":
    sys.exit(main())
