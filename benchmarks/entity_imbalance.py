#!/usr/bin/env python
"""Entity tagging under O-dominance (issue 20): plain cross-entropy vs class-weighted and O-down-weighted token losses.

    python benchmarks/entity_imbalance.py --quick   # smoke run: 300 training tweets, 1 epoch, ce vs o_weight 0.3,
                                                    # 1 seed; writes outputs/benchmarks/entity_imbalance.{json,md}
    python benchmarks/entity_imbalance.py           # the benchmark: every --configs entry × --seeds, full corpus;
                                                    # writes benchmarks/results/entity_imbalance.{json,md}

Data: the registered token dataset ``wnut16`` (WNUT-16 Twitter NER train split, 2,394 tweets, BIO tags of 10 entity
types; O is ~95 % of the words), deduplicated and split 80/10/10 by ``skewtune.data.tokens.load_token_splits`` with
the run's seed (so each seed has its own split; within a seed every loss sees the same split and test tweets: the
comparison is paired per seed).

Training: ``skewtune train-tokens`` as a user runs it, one process at a time: MiniLM-L6 loaded 8-bit, LoRA r 8 on
every linear layer of the blocks (train-tokens' defaults), ``--max_length 64``, batch 16, lr 2e-3, ``--epochs``
epochs, no per-epoch evaluation; only the loss flags differ between configurations:

* ``ce``: plain cross-entropy over the labelled words;
* ``sqrt_weighted_ce`` / ``weighted_ce``: class weights ``w_c ∝ n_c^-1/2`` / ``n_c^-1`` from the training tag
  counts, weighted mean ``Σ w_y l / Σ w_y``;
* ``o_weight=W``: plain cross-entropy with the O tag's weight set to ``W`` (other tags 1).

Scores (test split, word level, tags read at each word's first subword): entity precision / recall / F1 micro over
types (seqeval's default definitions: ``skewtune.evaluation.spans``, equal to seqeval in tests/test_entity_spans.py),
entity F1 macro over the entity types present in the test split, per-type F1, token accuracy. Mean ± sample std over
seeds where more than one seed ran.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness

CONFIGS = {  # name -> train-tokens loss flags
    "ce": [],
    "sqrt_weighted_ce": ["--loss", "sqrt_weighted_ce"],
    "weighted_ce": ["--loss", "weighted_ce"],
    "o_weight=0.3": ["--o_weight", "0.3"],
    "o_weight=0.1": ["--o_weight", "0.1"],
}


def train_args(dataset: str, out: Path, seed: int, epochs: float, flags: list[str], max_train: int | None,
               threads: int) -> list[str]:
    args = ["train-tokens", "--dataset", dataset, "--backbone", "minilm", "--quant", "8bit", "--max_length", "64",
            "--per_device_train_batch_size", "16", "--learning_rate", "2e-3", "--num_train_epochs", str(epochs),
            "--seed", str(seed), "--output_dir", str(out), "--overwrite_output_dir", "true", "--report_plots", "false",
            "--report_to", "none", "--eval_every_epoch", "false", "--num_threads", str(threads), *flags]
    if max_train:
        args += ["--max_train_samples", str(max_train)]
    return args


def run_one(name: str, seed: int, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """One training through the CLI in a child process; its test scores from metrics.json (the run folder kept
    under ``--keep_dir`` when given, e.g. to predict with its adapter)."""
    with tempfile.TemporaryDirectory(prefix="entity_imbalance_") as tmp:
        out = Path(args.keep_dir) / f"{name}_s{seed}" if args.keep_dir else Path(tmp) / "run"
        cmd = [sys.executable, "-m", "skewtune.cli.main",
               *train_args(args.dataset, out, seed, args.epochs, CONFIGS[name], args.max_train, threads)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=harness.child_env())
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"{name} seed {seed} failed (exit {proc.returncode})")
        metrics = json.loads((out / "metrics.json").read_text())
    per_type = metrics["eval_entity_per_type"]
    present = {t: s for t, s in per_type.items() if s["support"] > 0}
    return {
        "config": name, "seed": seed, "flags": CONFIGS[name], "wall_s": round(wall, 1),
        "entity_precision": metrics["eval_entity_precision"], "entity_recall": metrics["eval_entity_recall"],
        "entity_f1": metrics["eval_entity_f1"],
        "entity_macro_f1": statistics.fmean(s["f1"] for s in present.values()) if present else 0.0,
        "token_accuracy": metrics["eval_accuracy"],
        "per_type_f1": {t: s["f1"] for t, s in sorted(per_type.items())},
        "per_type_support": {t: s["support"] for t, s in sorted(per_type.items())},
    }


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarise(runs: list[dict[str, Any]], configs: list[str]) -> dict[str, Any]:
    out = {}
    for name in configs:
        rows = [r for r in runs if r["config"] == name]
        entry = {}
        for key in ("entity_precision", "entity_recall", "entity_f1", "entity_macro_f1", "token_accuracy", "wall_s"):
            mean, std = mean_std([r[key] for r in rows])
            entry[key] = {"mean": mean, "std": std}
        types = sorted({t for r in rows for t in r["per_type_f1"]})
        entry["per_type_f1"] = {t: statistics.fmean(r["per_type_f1"].get(t, 0.0) for r in rows) for t in types}
        entry["seeds"] = [r["seed"] for r in rows]
        out[name] = entry
    return out


def fmt(stat: dict[str, float | None], scale: float = 100.0) -> str:
    text = f"{stat['mean'] * scale:.1f}"
    return text + (f" ± {stat['std'] * scale:.1f}" if stat["std"] is not None else "")


def markdown(result: dict[str, Any]) -> str:
    summary, configs = result["summary"], result["configs"]
    seeds = result["seeds"]
    lines = [
        "# Entity tagging under O-dominance (WNUT-16)", "",
        f"`skewtune train-tokens --dataset {result['dataset']}`: MiniLM-L6 8-bit + LoRA, {result['epochs']} epoch(s), "
        f"max_length 64, batch 16, lr 2e-3; seeds {', '.join(map(str, seeds))} (each seed its own 80/10/10 split; "
        "every loss sees the same split per seed). Test split, word level; entity scores as seqeval's default mode. "
        "Mean ± sample std over seeds, in %.", "",
        "| loss | entity P | entity R | entity F1 (micro) | entity F1 (macro over types) | token accuracy | s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in configs:
        s = summary[name]
        lines.append(f"| {name} | {fmt(s['entity_precision'])} | {fmt(s['entity_recall'])} | {fmt(s['entity_f1'])} | "
                     f"{fmt(s['entity_macro_f1'])} | {fmt(s['token_accuracy'])} | {s['wall_s']['mean']:.0f} |")
    types = sorted({t for name in configs for t in summary[name]["per_type_f1"]})
    support = {t: max(r["per_type_support"].get(t, 0) for r in result["runs"] if r["seed"] == seeds[0]) for t in types}
    lines += ["", f"Per-type entity F1 (%, mean over seeds; test support of seed {seeds[0]} in parentheses):", "",
              "| loss | " + " | ".join(f"{t} ({support[t]})" for t in types) + " |",
              "|---|" + "---|" * len(types)]
    for name in configs:
        per = summary[name]["per_type_f1"]
        lines.append(f"| {name} | " + " | ".join(f"{per.get(t, 0.0) * 100:.0f}" for t in types) + " |")
    lines += ["", "Per seed (entity F1 micro, %): " + "; ".join(
        f"{r['config']} s{r['seed']} {r['entity_f1'] * 100:.1f}" for r in result["runs"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (outputs/benchmarks/, never the results)")
    parser.add_argument("--dataset", default="wnut16")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max_train", type=int, default=None, help="training tweets (default: all)")
    parser.add_argument("--threads", default="auto", help="torch threads per training (auto: harness.choose_threads)")
    parser.add_argument("--keep_dir", default=None, help="keep each run folder as <keep_dir>/<config>_s<seed>")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.seeds, args.epochs, args.max_train = ["ce", "o_weight=0.3"], [0], 1.0, 300
    threads = harness.choose_threads(args.threads)
    runs: list[dict[str, Any]] = []
    planned = [(seed, name) for seed in args.seeds for name in args.configs]
    for seed, name in planned:
        run = run_one(name, seed, args, threads)
        runs.append(run)
        print(f"{name:18s} seed {seed}: entity F1 {run['entity_f1']:.3f} (P {run['entity_precision']:.3f} "
              f"R {run['entity_recall']:.3f}) macro {run['entity_macro_f1']:.3f} acc {run['token_accuracy']:.3f} "
              f"[{run['wall_s']:.0f} s]", flush=True)
        # written after every run: an interrupted benchmark leaves the seeds it completed
        seeds = sorted({r["seed"] for r in runs if sum(x["seed"] == r["seed"] for x in runs) == len(args.configs)})
        done = [r for r in runs if r["seed"] in seeds]
        if not done:
            continue
        result = {"benchmark": "entity_imbalance", "dataset": args.dataset, "configs": args.configs, "seeds": seeds,
                  "epochs": args.epochs, "max_train": args.max_train, "threads": threads,
                  "complete": len(runs) == len(planned), "summary": summarise(done, args.configs), "runs": done}
        paths = harness.write_results(harness.results_path("entity_imbalance", quick=args.quick), result,
                                      markdown(result))
        print("wrote " + ", ".join(map(str, paths)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
