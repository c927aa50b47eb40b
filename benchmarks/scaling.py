"""How training time grows with dataset size and sequence length, and 1 vs 2 processes (issue: performance).

Three measurements of the main recipe's settings (``skewtune/configs/lora_sentiment.yaml``, which ``skewtune train`` starts from: 8-bit MiniLM, LoRA r=8 on
attention, batch 32; without resampling, so N rows are N training rows), in one run:

  size     ``skewtune train`` for one epoch on N ∈ {250, 500, 1000, 2000} tweets (``--quick``: 250, 500, 1000);
           reported: the training loop's wall time (``train_runtime_s``) and samples/s — time should grow
           linearly in N (constant samples/s) since batches are length-grouped and padded dynamically.
  length   forward + backward of one batch of 16 rows of exactly T tokens (tweets concatenated and cut, no padding)
           for T ∈ {16, 32, 64, 128, 256}; reported: ms per step and µs per token — per-token cost grows only
           through attention (4·L·d·T FLOPs per token against 2·N_linear), so it stays almost flat up to 256.
  ddp      the same ``skewtune train`` on 2,000 tweets with 1 process (2 threads) and with 2 processes
           (``accelerate launch --config_file recipes/configs/accelerate_cpu_ddp.yaml``, gloo, 1 thread each).

Each training run is its own subprocess. Writes ``benchmarks/results/scaling.{json,md}`` (``--quick``:
``outputs/benchmarks/scaling.{json,md}``).

    python benchmarks/scaling.py --quick     # about 4 minutes on 2 CPU cores
    python benchmarks/scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import harness  # beside this script

REPO = harness.REPO
# the main recipe's settings (skewtune train's defaults), without resampling (so N rows are N training rows),
# 200 test rows, one epoch
TRAIN_FLAGS = ["--sampler", "none", "--dataset", "tweets", "--max_eval_samples", "200", "--baselines", "false", "--report_plots", "false",
               "--eval_every_epoch", "false", "--num_train_epochs", "1", "--overwrite_output_dir", "true"]


def _train(rows: int, processes: int, work: Path) -> dict:
    out = work / f"n{rows}_p{processes}"
    flags = [*TRAIN_FLAGS, "--max_train_samples", str(rows), "--output_dir", str(out)]
    if processes == 1:
        cmd = [sys.executable, "-m", "skewtune.cli.main", "train", *flags]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "recipes" / "configs" / "accelerate_cpu_ddp.yaml"), "--num_processes", str(processes),
               "-m", "skewtune.cli.main", "train", *flags]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SKEWTUNE_NUM_THREADS")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "TOKENIZERS_PARALLELISM": "false"})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"training on {rows} rows with {processes} process(es) failed")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"rows": rows, "processes": processes, "train_runtime_s": metrics["train_runtime_s"],
            "train_samples_per_second": metrics["train_samples_per_second"], "train_steps": metrics["train_steps"],
            "job_wall_s": wall, "eval_macro_f1": metrics["eval_macro_f1"]}


def _lengths(lengths: list[int], batch: int, repeats: int) -> list[dict]:
    """In this process: ms per forward+backward step of ``batch`` rows of exactly T tokens."""
    import torch

    from skewtune.inference.logits import logits_of
    from skewtune.training import TrainConfig, prepare
    from skewtune.training.config import recipe_defaults
    from skewtune.training.engine import configure_threads

    recipe = {**recipe_defaults("lora_sentiment"), "sampler": None, "max_length": max(lengths)}
    cfg = TrainConfig(**{**recipe, "dataset": "tweets", "max_train_samples": 512, "max_eval_samples": 64,
                         "baselines": False, "report_plots": False, "output_dir": tempfile.mkdtemp(),
                         "overwrite_output_dir": True})
    run = prepare(cfg, recipe="bench")
    configure_threads(run.accelerator)
    model = run.model
    model.train()
    stream = [t for i in range(len(run.tokenized["train"])) for t in run.tokenized["train"][i]["input_ids"][1:-1]]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    rows = []
    for length in lengths:
        need = batch * (length - 2)
        ids = torch.tensor((stream * (need // len(stream) + 1))[:need]).view(batch, length - 2)
        cls, sep = run.tokenizer.cls_token_id, run.tokenizer.sep_token_id
        ids = torch.cat([torch.full((batch, 1), cls), ids, torch.full((batch, 1), sep)], dim=1)
        batch_in = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.zeros(batch, dtype=torch.long)}
        times = []
        for step in range(repeats + 2):
            start = time.perf_counter()
            loss = loss_fn(logits_of(model, batch_in), batch_in["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= 2:  # warm-up
                times.append(time.perf_counter() - start)
        best = sorted(times)[len(times) // 2]  # median
        rows.append({"tokens": length, "batch": batch, "ms_per_step": 1000 * best,
                     "us_per_token": 1e6 * best / (batch * length), "threads": torch.get_num_threads()})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only_lengths", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    lengths = [16, 32, 64, 128, 256]
    if args.only_lengths:  # child process
        harness.emit({"rows": _lengths(lengths, 16, 3 if args.quick else 6)})
        return 0
    sizes = [250, 500, 1000] if args.quick else [250, 500, 1000, 2000]
    ddp_rows = 1000 if args.quick else 2000
    work = Path(tempfile.mkdtemp(prefix="skewtune-scaling-"))
    started = time.perf_counter()
    size_rows = []
    for n in sizes:
        size_rows.append(_train(n, 1, work))
        print(f"size {n}: {size_rows[-1]['train_runtime_s']:.1f} s", flush=True)
    length_rows = harness.run_child(__file__, "--only_lengths", *(["--quick"] if args.quick else []),
                                    what="sequence-length measurement")["rows"]
    print("lengths done", flush=True)
    one = next((r for r in size_rows if r["rows"] == ddp_rows), None) or _train(ddp_rows, 1, work)
    two = _train(ddp_rows, 2, work)
    ddp = {"rows": ddp_rows, "one_process": one, "two_processes": two,
           "speedup": one["train_runtime_s"] / two["train_runtime_s"]}
    base = size_rows[0]
    for r in size_rows:
        r["time_ratio"] = r["train_runtime_s"] / base["train_runtime_s"]
        r["size_ratio"] = r["rows"] / base["rows"]
    summary = {"quick": args.quick, "cpu_count": os.cpu_count(), "size": size_rows, "length": length_rows, "ddp": ddp,
               "seconds_total": time.perf_counter() - started,
               "command": "python benchmarks/scaling.py" + (" --quick" if args.quick else "")}
    lines = [f"# Scaling (the main recipe's settings: 8-bit MiniLM LoRA, batch 32; `{summary['command']}`)", "",
             "Dataset size (one epoch of `skewtune train --sampler none "
             "--max_train_samples N`):", "",
             "| rows | train s | samples/s | × rows | × time |", "| ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['rows']} | {r['train_runtime_s']:.1f} | {r['train_samples_per_second']:.1f} | "
              f"{r['size_ratio']:.0f} | {r['time_ratio']:.2f} |" for r in size_rows]
    lines += ["", "Sequence length (one forward + backward of 16 rows of exactly T tokens, median):", "",
              "| T | ms / step | µs / token |", "| ---: | ---: | ---: |"]
    lines += [f"| {r['tokens']} | {r['ms_per_step']:.0f} | {r['us_per_token']:.0f} |" for r in length_rows]
    lines += ["", f"Processes ({ddp_rows} rows, one epoch; 2 processes = `accelerate launch --config_file "
              "recipes/configs/accelerate_cpu_ddp.yaml`, DDP over gloo, 1 thread each):", "",
              "| processes | train s | samples/s | test macro-F1 (200 rows) |", "| ---: | ---: | ---: | ---: |"]
    for r in (one, two):
        lines.append(f"| {r['processes']} | {r['train_runtime_s']:.1f} | {r['train_samples_per_second']:.1f} | "
                     f"{r['eval_macro_f1']:.3f} |")
    lines += ["", f"2 processes / 1 process speed-up: {ddp['speedup']:.2f}× on {os.cpu_count()} cores."]
    harness.write_results(harness.results_path("scaling", args.quick), summary, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
