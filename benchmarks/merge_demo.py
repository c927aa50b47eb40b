#!/usr/bin/env python
"""Merge demo on real data (issue 6): tweets sentiment (3 classes) + Pang & Lee polarity (2 classes) on MiniLM 8-bit.

    python benchmarks/merge_demo.py            # sources: the reference adapters of adapters/ + one tweets adapter
                                               # trained here on a disjoint 4,000-tweet subset; writes
                                               # benchmarks/results/merge_demo.{json,md}
    python benchmarks/merge_demo.py --train    # train every source here (same settings as the reference adapters)
    python benchmarks/merge_demo.py --quick    # smoke run (tiny subsets, 150 test texts per task; minutes);
                                               # writes outputs/merge_demo/quick/merge_demo.{json,md}

Sources (LoRA r=8 on the attention projections of MiniLM-L6 loaded 8-bit; ``recipes/lora_sentiment.py``):

* ``tweets`` (A): a stratified subsample of the tweets training split (seed 42), 1 epoch — by default the
  reference adapter ``tweets-sentiment-minilm-lora`` pulled (verified) from the repo's ``adapters/`` hub;
* ``pang_lee``: all 3,200 Pang & Lee training sentences, 2 epochs — reference ``pang-lee-polarity-minilm-lora``;
* ``tweets_b`` (B): the same settings on an equally large stratified subset of the tweets training split
  *disjoint* from A's, with the canonical validation/test splits as files (so the test split is the same).

Merges, each method with its defaults (weights 1/n for linear/cat/svd/dare_linear/magnitude_prune, 1 for
task_arithmetic/ties/dare_ties; density 0.5; λ = 1; seed 0):

* **multi-task** A + pang_lee: different label sets → one merged LoRA, one head (classifier + pooler) per task;
* **same task** A + B: same labels → the heads are merged by the same method too.

Every adapter is scored with :func:`skewtune.merge.evaluate_adapter` on the test split of the same
deduplicated 80/10/10 split (seed 42) the sources were trained with — all 400 Pang & Lee test sentences and a
stratified 1,000 of the 3,721 test tweets (``--max_eval_samples``; the same texts for every adapter, so the
comparisons are paired); "kept" = merge macro-F1 / single-task macro-F1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import harness  # beside this script

REPO = harness.REPO
RECIPE = REPO / "recipes" / "lora_sentiment.py"
METHODS = ("linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune", "task_arithmetic")
REFERENCE = {"tweets": "tweets-sentiment-minilm-lora", "pang_lee": "pang-lee-polarity-minilm-lora"}
COMMON = {"backbone": "minilm", "quant": "8bit", "adapter": "lora", "seed": 42, "eval_every_epoch": "false",
          "report_plots": "false", "baselines": "false"}
PRESETS: dict[str, dict[str, Any]] = {
    # sizes as the reference adapters of scripts/build_reference_adapters.py
    # eval: a stratified 1,000-tweet subsample of the 3,721-tweet test split (18 tweet scorings per run); all 400
    # Pang & Lee test sentences
    "full": {"tweets": 4000, "tweets_epochs": 1, "pang_lee": None, "pang_lee_epochs": 2, "eval": 1000},
    "quick": {"tweets": 300, "tweets_epochs": 1, "pang_lee": 300, "pang_lee_epochs": 1, "eval": 150},
}
GOAL = 0.95


def log(message: str) -> None:
    print(message, flush=True)


# ----------------------------------------------------------------------------------------------- sources


def train(name: str, flags: dict[str, Any], work: Path) -> Path:
    """``recipes/lora_sentiment.py`` in a fresh process; reuses a finished run with the same flags."""
    run_dir = work / "runs" / name
    wanted = {**COMMON, **flags}
    stamp = run_dir / "demo_flags.json"
    if (run_dir / "adapter" / "skewtune.json").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        log(f"   {name}: reusing {run_dir}")
        return run_dir / "adapter"
    argv = [sys.executable, str(RECIPE)]
    for key, value in wanted.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    argv += ["--output_dir", str(run_dir), "--overwrite_output_dir"]
    log(f"   training {name}: {' '.join(argv[2:])}")
    env = dict(os.environ, PYTHONHASHSEED="0", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    proc = None
    if not (run_dir / "adapter").is_dir() and any((run_dir / "checkpoints").glob("step-*/skewtune_state.json")):
        # an interrupted run: the pipeline resumes it when the settings match (exit 2 otherwise: start over)
        proc = subprocess.run([a for a in argv if a != "--overwrite_output_dir"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL)
    if proc is None or proc.returncode == 2:
        proc = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"error: training {name} failed (exit {proc.returncode})")
    stamp.write_text(json.dumps(wanted, indent=2))
    return run_dir / "adapter"


def write_rows(path: Path, texts: list[str], labels: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    return path


def disjoint_tweets(a_training: dict[str, Any], size: int, work: Path) -> dict[str, Any]:
    """Recipe flags for B: ``size`` tweets of the training split that A never saw, canonical val/test files."""
    from sklearn.model_selection import train_test_split

    from skewtune.data import load_dataset_splits
    from skewtune.data.datasets import normalise_for_dedup

    seed = int(a_training.get("seed", 42))
    full = load_dataset_splits("tweets", seed=seed)
    seen = load_dataset_splits("tweets", seed=seed, max_train_samples=a_training.get("max_train_samples"))
    used = {normalise_for_dedup(t) for t in seen.train_texts}
    rest = [(t, y) for t, y in zip(full.train_texts, full.train_labels) if normalise_for_dedup(t) not in used]
    if size > len(rest):
        raise SystemExit(f"error: only {len(rest)} tweets are left for B, asked for {size}")
    texts, labels = [t for t, _ in rest], [y for _, y in rest]
    if size < len(rest):
        texts, _, labels, _ = train_test_split(texts, labels, train_size=size, random_state=seed, stratify=labels)
    data = work / "data"
    return {
        "dataset": str(write_rows(data / "tweets_b.csv", texts, labels)),
        "validation_file": str(write_rows(data / "tweets_validation.csv", full.validation_texts, full.validation_labels)),
        "test_file": str(write_rows(data / "tweets_test.csv", full.test_texts, full.test_labels)),
        "num_train_epochs": a_training.get("num_train_epochs", 1),
    }


def sources(args: argparse.Namespace, preset: dict[str, Any], work: Path) -> dict[str, dict[str, Any]]:
    from skewtune.adapters.io import read_manifest

    out: dict[str, dict[str, Any]] = {}
    if args.train or args.quick:
        out["tweets"] = {"path": train("tweets", {"dataset": "tweets", "max_train_samples": preset["tweets"],
                                                  "num_train_epochs": preset["tweets_epochs"]}, work)}
        out["pang_lee"] = {"path": train("pang_lee", {"dataset": "pang_lee", "max_train_samples": preset["pang_lee"],
                                                      "num_train_epochs": preset["pang_lee_epochs"]}, work)}
    else:
        from skewtune.hub import check_base_compatible, info, pull

        for task, name in REFERENCE.items():
            ref = info(name, args.hub)["ref"]
            folder = pull(ref, args.hub, work / "sources" / ref.replace("@", "-"))
            check_base_compatible(folder, "minilm")
            out[task] = {"path": folder, "hub_ref": ref}
            log(f"   {task}: pulled {ref} from {args.hub}")
    a_training = read_manifest(out["tweets"]["path"])["training"]
    size = a_training.get("max_train_samples") or preset["tweets"]
    out["tweets_b"] = {"path": train("tweets_b", disjoint_tweets(a_training, int(size), work), work),
                       "train_size": int(size)}
    for info_ in out.values():
        manifest = read_manifest(info_["path"])
        settings = manifest.get("training") or {}
        run_metrics = Path(info_["path"]).parent / "metrics.json"
        recorded = json.loads(run_metrics.read_text()).get("train_size") if run_metrics.is_file() else None
        info_.setdefault("train_size", (manifest.get("reference") or {}).get("train_size") or recorded
                         or settings.get("max_train_samples"))
        info_.update(path=str(info_["path"]), dataset=manifest.get("dataset"),
                     labels=[v for _, v in sorted(manifest["id2label"].items(), key=lambda kv: int(kv[0]))],
                     epochs=settings.get("num_train_epochs"), adapter_sha256=manifest["files"]["adapter_model.safetensors"],
                     recorded_test_macro_f1=(manifest.get("metrics") or {}).get("eval_macro_f1"))
    return out


# ----------------------------------------------------------------------------------------------- merging


def score(folder: str | Path, dataset: str, eval_n: int | None, task: str | None = None) -> dict[str, Any]:
    from skewtune.merge import evaluate_adapter

    start = time.perf_counter()
    result = evaluate_adapter(folder, dataset, task=task, max_eval_samples=eval_n, seed=42)
    return {"macro_f1": result["macro_f1"], "accuracy": result["accuracy"], "n": result["num_samples"],
            "per_class_f1": result["per_class_f1"], "seconds": round(time.perf_counter() - start, 1)}


def merge(method: str, paths: list[str], out: Path) -> tuple[Path, dict[str, Any]]:
    from skewtune.merge import merge_adapters

    folder = merge_adapters(paths, method=method, output_dir=out, seed=0, name=f"demo-{out.parent.name}-{method}")
    lineage = json.loads((folder / "skewtune.json").read_text())["lineage"]
    params = {k: v for k, v in lineage["parameters"].items() if v is not None and k != "storage"}
    ranks = sorted({layer["rank"] for layer in lineage["layers"].values()})
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return folder, {"parameters": params, "ranks": ranks, "max_abs_error": lineage["max_abs_error"], "bytes": size}


def run(args: argparse.Namespace) -> dict[str, Any]:
    preset = PRESETS["quick" if args.quick else "full"]
    eval_n = args.max_eval_samples if args.max_eval_samples is not None else preset["eval"]
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    log("== sources")
    src = sources(args, preset, work)
    timings["sources_s"] = time.perf_counter() - t0

    log("== single-task scores")
    t1 = time.perf_counter()
    single = {
        "tweets": score(src["tweets"]["path"], "tweets", eval_n),
        "pang_lee": score(src["pang_lee"]["path"], "pang_lee", eval_n),
        "tweets_b": score(src["tweets_b"]["path"], "tweets", eval_n),
    }
    for key, value in single.items():
        log(f"   {key}: macro-F1 {value['macro_f1']:.4f}")

    multi: dict[str, Any] = {}
    same: dict[str, Any] = {}
    for method in args.methods:
        folder, facts = merge(method, [src["tweets"]["path"], src["pang_lee"]["path"]], work / "multi" / method)
        row = {**facts}
        for task in ("tweets", "pang_lee"):
            got = score(folder, task, eval_n, task=task)
            got["kept"] = got["macro_f1"] / single[task]["macro_f1"] if single[task]["macro_f1"] else None
            row[task] = got
        row["min_kept"] = min(row[t]["kept"] for t in ("tweets", "pang_lee"))
        multi[method] = row
        log(f"   multi-task {method:16s} tweets {row['tweets']['macro_f1']:.4f} ({row['tweets']['kept']:.1%})"
            f"  pang_lee {row['pang_lee']['macro_f1']:.4f} ({row['pang_lee']['kept']:.1%})")
        if not args.skip_same_task:
            folder, facts = merge(method, [src["tweets"]["path"], src["tweets_b"]["path"]], work / "same" / method)
            got = score(folder, "tweets", eval_n)
            same[method] = {**facts, "tweets": got,
                            "kept_vs_a": got["macro_f1"] / single["tweets"]["macro_f1"],
                            "kept_vs_b": got["macro_f1"] / single["tweets_b"]["macro_f1"]}
            log(f"   same-task  {method:16s} tweets {got['macro_f1']:.4f}")
    timings["merge_eval_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    best = max(multi, key=lambda m: multi[m]["min_kept"]) if multi else None
    import torch

    return {
        "mode": "quick" if args.quick else ("train" if args.train else "reference-hub"),
        "goal": f"best merge keeps >= {GOAL:.0%} of each single-task adapter's macro-F1",
        "goal_met": bool(best and multi[best]["min_kept"] >= GOAL),
        "best_multi_task_method": best,
        "eval": {"split": "test", "seed": 42, "max_eval_samples": eval_n,
                 "sizes": {k: v["n"] for k, v in single.items()}},
        "sources": src,
        "single": single,
        "multi_task": multi,
        "same_task": same,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "environment": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count()},
        "machine": harness.machine(),
    }


# ----------------------------------------------------------------------------------------------- report


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"


def markdown(result: dict[str, Any]) -> str:
    s, single = result["sources"], result["single"]
    lines = [
        "# Merge demo: tweets sentiment + Pang & Lee polarity on MiniLM-L6 (8-bit) LoRA",
        "",
        f"Generated by `python benchmarks/merge_demo.py` (mode: {result['mode']}). Test split of the deduplicated"
        f" 80/10/10 split (seed 42): {result['eval']['sizes']['tweets']} tweets, {result['eval']['sizes']['pang_lee']}"
        " Pang & Lee sentences. Score: macro-F1 (`skewtune.merge.evaluate_adapter`); kept = merge / single.",
        "",
        "Sources (LoRA r=8, α=16 on the attention projections; heads = classifier + pooler):",
        "",
    ]
    for key, info in s.items():
        where = f"hub `{info['hub_ref']}`" if info.get("hub_ref") else "trained by the demo"
        recorded = info.get("recorded_test_macro_f1")
        note = f"; full-test macro-F1 {recorded:.4f} as recorded" if isinstance(recorded, float) else ""
        lines.append(f"- `{key}`: dataset `{info['dataset']}`, {info['train_size']} training texts, {info['epochs']:g}"
                     f" epoch(s), labels {', '.join(info['labels'])} ({where}{note})")
    lines += [
        "",
        "## Multi-task merge (tweets + pang_lee: one merged LoRA, one head per task)",
        "",
        "| adapter | weights | tweets macro-F1 | kept | pang_lee macro-F1 | kept | min kept |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| single-task adapters | – | {single['tweets']['macro_f1']:.4f} | 100% | {single['pang_lee']['macro_f1']:.4f}"
        " | 100% | 100% |",
    ]
    for method, row in result["multi_task"].items():
        weights = ", ".join(f"{w:g}" for w in row["parameters"]["weights"])
        mark = " **(best)**" if method == result["best_multi_task_method"] else ""
        lines.append(f"| {method}{mark} | {weights} | {row['tweets']['macro_f1']:.4f} | {_pct(row['tweets']['kept'])}"
                     f" | {row['pang_lee']['macro_f1']:.4f} | {_pct(row['pang_lee']['kept'])} | {_pct(row['min_kept'])} |")
    best = result["best_multi_task_method"]
    if best:
        verdict = "met" if result["goal_met"] else "NOT met"
        lines += ["", f"Goal (best merge keeps ≥ 95% of each single-task macro-F1): **{verdict}** — best `{best}`"
                  f" keeps {_pct(result['multi_task'][best]['min_kept'])} of the weaker task."]
    if result["same_task"]:
        lines += [
            "",
            "## Same task (tweets A + tweets B, disjoint training subsets: LoRA and heads merged)",
            "",
            "| adapter | weights | tweets macro-F1 | vs A | vs B |",
            "| --- | --- | --- | --- | --- |",
            f"| A (single) | – | {single['tweets']['macro_f1']:.4f} | 100% | – |",
            f"| B (single) | – | {single['tweets_b']['macro_f1']:.4f} | – | 100% |",
        ]
        for method, row in result["same_task"].items():
            weights = ", ".join(f"{w:g}" for w in row["parameters"]["weights"])
            lines.append(f"| {method} | {weights} | {row['tweets']['macro_f1']:.4f} | {_pct(row['kept_vs_a'])}"
                         f" | {_pct(row['kept_vs_b'])} |")
    t = result["timings_s"]
    env = result["environment"]
    lines += ["", f"Run time: {t['total_s']:.0f} s in all (sources {t['sources_s']:.0f} s, merges + scoring"
              f" {t['merge_eval_s']:.0f} s) on {env['cpus']} CPUs, torch {env['torch']} with {env['threads']} threads.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny training subsets and 150 test texts per task")
    parser.add_argument("--train", action="store_true", help="train every source here instead of pulling the references")
    parser.add_argument("--hub", default=str(REPO / "adapters"), help="hub holding the reference adapters")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--skip_same_task", action="store_true", help="only the multi-task merges")
    parser.add_argument("--max_eval_samples", type=int, default=None, help="stratified test subsample per task")
    parser.add_argument("--work", default=None, help="runs, merges (default: outputs/merge_demo[/quick])")
    parser.add_argument("--out", default=None, help="result prefix (default: benchmarks/results/merge_demo)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    default_work = REPO / "outputs" / "merge_demo" / ("quick" if args.quick else "full")
    args.work = args.work or str(default_work)
    out = Path(args.out) if args.out else (default_work / "merge_demo" if args.quick else harness.results_path("merge_demo"))
    from skewtune.cli.main import run_guarded

    def go() -> int:
        result = run(args)
        harness.write_results(out, result, markdown(result))
        log(f"== wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({result['timings_s']['total_s']:.0f} s)")
        return 0

    return run_guarded(go)


if __name__ == "__main__":
    sys.exit(main())
