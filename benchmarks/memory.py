"""Peak memory and speed of LoRA training per quant mode, ± gradient checkpointing, beside ``skewtune plan``'s estimate.

Each row is one ``skewtune train`` in a fresh subprocess: LoRA r=8 on the attention projections, ``--max_steps``
optimizer steps of ``--batch`` rows that are all truncated to exactly ``--max_length`` tokens (a generated CSV of
long texts: the planner plans for full-length batches, so the measurement must fill them), validation and test
scored on 8 rows in batches of the training size. Measured per row:

* peak RSS — ``ru_maxrss`` of that child alone (``os.wait4``), which covers loading the backbone and training;
* samples/s — ``train_samples_per_second`` from the run's metrics.json (noisy on a shared CPU; RSS is not);
* the planner's estimate for the same settings (:func:`skewtune.training.memory.plan_memory`) and its error
  ``(estimate − measured) / measured``.

A first child measures the runtime baseline (Python + torch + transformers + peft + accelerate + skewtune imported,
nothing loaded). The planner's constants are fitted on the 12 table rows (``--fit``: least squares on the relative
errors); the :data:`HELD_OUT` rows (other batch sizes and lengths) are measured the same way but never fitted: they
check that the estimate carries over.

    python benchmarks/memory.py                       # smollm2 and minilm, 6 modes each + held-out rows → results/memory.*
    python benchmarks/memory.py --fit                 # print the constants fitted on the measured table rows
    python benchmarks/memory.py --replan              # recompute only the estimates on the measured rows
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness  # beside this script

MODES = [(quant, checkpointing) for quant in ("none", "8bit", "4bit") for checkpointing in (False, True)]
WORDS = ("the movie was great and the service terrible but the food fantastic while the weather stayed sad "
         "although everyone said it was the best day of the year for the team and its song").split()
# (backbone, quant, gradient checkpointing, batch, max_length): measured, never used to fit the constants
HELD_OUT = [("smollm2", "4bit", True, 16, 128), ("smollm2", "none", False, 4, 64), ("minilm", "8bit", False, 32, 128)]
BASELINE_CODE = ("import resource, json, torch, transformers, peft, accelerate, skewtune.training.pipeline; "
                 "print(json.dumps({'rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))")


def long_texts_csv(path: Path, rows: int, seed: int = 0) -> Path:
    """``rows`` texts of 300 words (far over 128 tokens for any tokenizer here), two balanced labels."""
    rng = random.Random(seed)
    lines = ["text,label"] + [" ".join(rng.choice(WORDS) for _ in range(300)) + f",{('negative', 'positive')[i % 2]}"
                              for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def child_peak(cmd: list[str], log: Path, timeout_s: float) -> tuple[int, float, float]:
    """Run ``cmd``; ``(exit status, its own peak RSS in MB, seconds)``. ``os.wait4`` reports that child alone."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=harness.child_env())
        deadline = start + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - start


def measure_row(backbone: str, quant: str, checkpointing: bool, batch: int, max_length: int, fitted: bool,
                args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    out = work / f"{backbone}-{quant}-{'gc' if checkpointing else 'nogc'}-b{batch}-t{max_length}"
    cmd = [sys.executable, "-m", "skewtune.cli.main", "train", "--backbone", backbone, "--quant", quant,
           "--gradient_checkpointing", str(checkpointing).lower(), "--dataset", str(data),
           "--max_steps", str(args.steps), "--per_device_train_batch_size", str(batch),
           "--per_device_eval_batch_size", str(batch), "--max_length", str(max_length),
           "--max_train_samples", str(args.steps * batch), "--max_eval_samples", "8", "--sampler", "none",
           "--baselines", "false", "--report_plots", "false", "--eval_every_epoch", "false",
           "--output_dir", str(out), "--overwrite_output_dir"]
    status, peak_mb, seconds = child_peak(cmd, work / f"{out.name}.log", args.timeout)
    if status != 0:
        print((work / f"{out.name}.log").read_text(encoding="utf-8")[-3000:], file=sys.stderr)
        raise SystemExit(f"{out.name} failed (exit {status})")
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    row = {"backbone": backbone, "quant": quant, "gradient_checkpointing": checkpointing, "batch": batch,
           "max_length": max_length, "fitted": fitted, "steps": metrics["train_steps"], "peak_rss_mb": round(peak_mb, 1),
           "samples_per_second": round(metrics["train_samples_per_second"], 2),
           "backbone_bytes": metrics["backbone_bytes"], "trainable_params": metrics["trainable_params"],
           "truncated_texts": metrics["truncated_texts"], "wall_s": round(seconds, 1)}
    print(f"{out.name}: peak {peak_mb:.0f} MB, {row['samples_per_second']} samples/s ({seconds:.0f} s)", flush=True)
    return row


def measure_baseline(work: Path, timeout_s: float) -> float:
    status, peak_mb, _ = child_peak([sys.executable, "-c", BASELINE_CODE], work / "baseline.log", timeout_s)
    if status != 0:
        raise SystemExit("baseline child failed: " + (work / "baseline.log").read_text(encoding="utf-8")[-2000:])
    return round(peak_mb, 1)


def add_estimates(rows: list[dict[str, Any]]) -> None:
    """The planner's estimate and its relative error for every measured row (in place)."""
    from skewtune.backbones import resolve_backbone
    from skewtune.training.memory import plan_memory

    for row in rows:
        plan = plan_memory(resolve_backbone(row["backbone"]).path, quant=row["quant"], batch=row["batch"],
                           max_length=row["max_length"], gradient_checkpointing=row["gradient_checkpointing"])
        row["estimate_mb"] = round(plan.total_mb, 1)
        row["estimate_parts_mb"] = {k: round(v, 1) for k, v in plan.parts_mb().items()}
        row["error"] = round((plan.total_mb - row["peak_rss_mb"]) / row["peak_rss_mb"], 4)


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [
        "# Memory per quant mode ± gradient checkpointing (`python benchmarks/memory.py`)",
        "",
        f"LoRA r=8 (attention), batch {s['batch']} × {s['max_length']} tokens (every row truncated to full length), "
        f"{s['steps']} optimizer steps, each row a fresh `skewtune train` process. Peak RSS: `ru_maxrss` of that "
        "process (loading included); samples/s from its metrics.json (3 steps: indicative only); estimate: "
        "`skewtune plan` for the same settings, error = (estimate − measured) / measured; the planner's five "
        "constants were fitted (`--fit`) on a measurement of the settings of this table (an earlier run of this "
        "benchmark: the current rows are a re-measurement); the held-out settings below were never fitted. Runtime "
        f"baseline (imports only): {result['baseline_rss_mb']:.0f} MB.",
        "",
        "| backbone | quant | checkpointing | peak RSS MB | samples/s | plan MB | plan error |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        if r.get("fitted", True):
            lines.append(_table_line(r))
    held_out = [r for r in result["rows"] if not r.get("fitted", True)]
    if held_out:
        lines += ["", "Held out (measured the same way, not used to fit the planner's constants):", "",
                  "| backbone | quant | checkpointing | batch × tokens | peak RSS MB | samples/s | plan MB | plan error |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [_table_line(r, shape=True) for r in held_out]
    fitted = max(abs(r["error"]) for r in result["rows"] if r.get("fitted", True))
    held = max((abs(r["error"]) for r in held_out), default=0.0)
    lines += ["", f"Largest planner error: {100 * fitted:.1f}% on the settings the constants were fitted on, "
              f"{100 * held:.1f}% on the held-out rows (bound: 25%; src/skewtune/training/memory.py)."]
    return "\n".join(lines)


def _table_line(r: dict[str, Any], shape: bool = False) -> str:
    size = f" {r['batch']} × {r['max_length']} |" if shape else ""
    return (f"| {r['backbone']} | {r['quant']} | {'on' if r['gradient_checkpointing'] else 'off'} |{size} "
            f"{r['peak_rss_mb']:.0f} | {r['samples_per_second']:.2f} | {r['estimate_mb']:.0f} | {100 * r['error']:+.1f}% |")


def fit_constants(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Least-squares fit (relative errors, Nelder-Mead) of the planner's constants on the fitted rows."""
    import numpy as np
    from scipy.optimize import minimize

    from skewtune.backbones import resolve_backbone
    from skewtune.training import memory

    rows = [r for r in rows if r.get("fitted", True)]
    paths = {b: resolve_backbone(b).path for b in {r["backbone"] for r in rows}}

    def errors(x: Any) -> Any:
        memory.RUNTIME_MB, memory.ACTIVATION_SCALE = float(x[0]), float(x[1])
        memory.LOAD_FACTOR = {"none": 0.0, "8bit": float(x[2]), "4bit": float(x[3])}
        memory.GC_SAVED_PER_TOKEN = float(x[4])
        return np.array([(memory.plan_memory(paths[r["backbone"]], quant=r["quant"], batch=r["batch"],
                                             max_length=r["max_length"],
                                             gradient_checkpointing=r["gradient_checkpointing"]).total_mb
                          - r["peak_rss_mb"]) / r["peak_rss_mb"] for r in rows])

    # fp32 keeps no loading term: its weights are the memory-mapped checkpoint pages themselves
    start = [memory.RUNTIME_MB, memory.ACTIVATION_SCALE, memory.LOAD_FACTOR["8bit"], memory.LOAD_FACTOR["4bit"],
             memory.GC_SAVED_PER_TOKEN]
    x = minimize(lambda x: float((errors(x) ** 2).sum()), start, method="Nelder-Mead",
                 options={"maxiter": 4000, "xatol": 1e-4, "fatol": 1e-10}).x
    return {"RUNTIME_MB": round(float(x[0]), 1), "ACTIVATION_SCALE": round(float(x[1]), 3),
            "LOAD_FACTOR": {"none": 0.0, "8bit": round(float(x[2]), 3), "4bit": round(float(x[3]), 3)},
            "GC_SAVED_PER_TOKEN": round(float(x[4]), 2),
            "max_abs_error": round(float(abs(errors(x)).max()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["smollm2", "minilm"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per row")
    parser.add_argument("--replan", action="store_true", help="recompute the estimates of the measured rows only")
    parser.add_argument("--fit", action="store_true", help="print the planner constants fitted on the measured rows")
    args = parser.parse_args()
    stem = harness.results_path("memory")
    if args.fit:
        print(json.dumps(fit_constants(json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))["rows"])))
        return
    if args.replan:
        result = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    else:
        rows = []
        with tempfile.TemporaryDirectory(prefix="skewtune-memory-") as tmp:
            work = Path(tmp)
            data = long_texts_csv(work / "long.csv", rows=10 * args.steps * max(args.batch, 32))
            baseline = measure_baseline(work, args.timeout)
            print(f"runtime baseline: {baseline:.0f} MB", flush=True)
            for backbone in args.backbones:
                for quant, checkpointing in MODES:
                    rows.append(measure_row(backbone, quant, checkpointing, args.batch, args.max_length, True,
                                            args, data, work))
            for backbone, quant, checkpointing, batch, max_length in HELD_OUT:
                if backbone in args.backbones:
                    rows.append(measure_row(backbone, quant, checkpointing, batch, max_length, False,
                                            args, data, work))
        result = {"settings": {"batch": args.batch, "max_length": args.max_length, "steps": args.steps,
                               "adapter": "lora r=8 attention"},
                  "baseline_rss_mb": baseline, "rows": rows,
                  "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
                  "machine": harness.machine()}
        result["machine"]["memory_gb"] = result["memory_gb"]
        harness.write_results(stem, result)  # the measurements first: --replan can estimate them again
    add_estimates(result["rows"])
    result["max_abs_error"] = max(abs(r["error"]) for r in result["rows"])
    text = markdown(result) + f"\n\nRAM: {result['memory_gb']} GB."  # the harness appends the CPU line
    for path in harness.write_results(stem, result, text):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
