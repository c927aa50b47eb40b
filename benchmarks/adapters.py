"""Every adapter × quantization mode on the same tweets subset and settings, in one run.

    python benchmarks/adapters.py --quick     # 12 configurations, 32 train / 32 test tweets, 2 steps each
    python benchmarks/adapters.py             # 30 configurations, 960 train / 500 test tweets, 30 steps each
    python benchmarks/adapters.py --backbone smollm2 --adapters lora,prefix --modes none,8bit --name adapters_smollm2
    python benchmarks/adapters.py --adapters lora --modes 8bit,8bit+emb8 --max_train_samples 4000 \\
        --max_eval_samples 0 --name embeddings          # the quantized-embedding accuracy check

Each configuration runs the library pipeline in-process (``skewtune.training.prepare`` → ``train`` →
``finish_metrics`` with a :class:`~skewtune.training.TrainConfig`; baselines and plots off, outputs in a
temporary folder) inside its **own child process**, so ``peak_rss_mb`` (``ru_maxrss``) is that configuration's
own peak, not the cumulative peak of one process running many. Children are forked from a ``forkserver``
that has only imported the libraries (its RSS, ``import_floor_mb``, is what any fresh process starts from).

Writes ``benchmarks/results/<name>.json`` (every figure plus settings, library versions and a ``note``) and
``benchmarks/results/<name>.md`` (the table for the README). Modes: ``none`` (fp32), ``8bit`` (LLM.int8 linear
layers, fp32 word embedding), ``8bit+emb8`` (+ int8 word embedding), ``4bit`` (NF4 + double quantization,
fp32 word embedding), ``4bit+emb4`` (+ NF4 word embedding). ``backbone_bytes`` is
``get_memory_footprint()`` of the base model (parameters + buffers, heads included).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import io
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import harness  # beside this script

ADAPTERS = ("lora", "dora", "rslora", "prefix", "ia3", "prompt")
# mode -> (--quant, --quantize_embeddings)
MODES: dict[str, tuple[str, bool]] = {
    "none": ("none", False),
    "8bit": ("8bit", False),
    "8bit+emb8": ("8bit", True),
    "4bit": ("4bit", False),
    "4bit+emb4": ("4bit", True),
}
# one learning rate per adapter family (prompt-learning methods need larger steps); everything else shared
LEARNING_RATES = {"lora": 1e-3, "dora": 1e-3, "rslora": 1e-3, "ia3": 1e-2, "prefix": 1e-2, "prompt": 3e-2}
PRESETS: dict[str, dict[str, Any]] = {
    # quick: 12 configurations (6 adapters × QUICK_MODES), 2 optimizer steps each: checks every pair runs and
    # measures bytes / RSS; its F1 is not informative. full: 30 configurations, 30 steps each.
    "quick": {"max_train_samples": 32, "max_eval_samples": 32, "max_length": 32, "per_device_train_batch_size": 16},
    "full": {"max_train_samples": 960, "max_eval_samples": 500, "max_length": 64, "per_device_train_batch_size": 32},
}
QUICK_MODES = ("8bit+emb8", "4bit+emb4")  # the --quant 8bit / 4bit defaults
SHARED = {
    "dataset": "tweets", "backbone": "minilm", "num_train_epochs": 1.0,
    "per_device_eval_batch_size": 128, "lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.1,
    "target_modules": "attention", "num_virtual_tokens": 16, "lr_scheduler_type": "linear", "warmup_ratio": 0.06,
    "seed": 42, "eval_every_epoch": False, "baselines": False, "report_plots": False,
    "backbone_dropout": None, "sampler": None,  # the values these results were measured with (TrainConfig's old defaults)
}
PRELOAD = ["torch", "transformers", "peft", "accelerate", "bitsandbytes", "skewtune.training", "skewtune.adapters",
           "skewtune.backbones", "skewtune.data"]
KEEP = ("eval_macro_f1", "eval_accuracy", "trainable_params", "all_params", "backbone_bytes", "peak_rss_mb",
        "train_samples_per_second", "train_runtime_s", "train_steps", "train_size", "test_size", "learning_rate",
        "quantize_embeddings")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _floor() -> float:
    """Peak RSS of a child that does nothing: the import floor every configuration starts from."""
    return _peak_rss_mb()


def _fp32_bytes(backbone: str, num_labels: int = 3) -> int:
    """``get_memory_footprint()`` of the fp32 backbone with its head: the denominator of the × fp32 column."""
    from skewtune.backbones import load_backbone, resolve_backbone

    return int(load_backbone(resolve_backbone(backbone), num_labels=num_labels, quant="none").get_memory_footprint())


def run_config(settings: dict[str, Any]) -> dict[str, Any]:
    """One configuration, in a fresh child: prepare → train → finish_metrics; returns the kept figures."""
    import logging

    from skewtune.training import TrainConfig, finish_metrics, prepare, train

    logging.getLogger("skewtune").setLevel(logging.WARNING)
    start = time.perf_counter()
    chatter = io.StringIO()  # progress bars and truncation notes of the child
    try:
        with tempfile.TemporaryDirectory(prefix="skewtune-bench-") as tmp, contextlib.redirect_stderr(chatter):
            cfg = TrainConfig(**settings, output_dir=str(Path(tmp) / "out"))
            run = prepare(cfg, recipe="benchmark")
            load_s = time.perf_counter() - start
            train(run)
            metrics = finish_metrics(run)
    except Exception as exc:  # a failing configuration is a result too
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
                "traceback": traceback.format_exc(limit=3), "stderr_tail": chatter.getvalue()[-500:],
                "peak_rss_mb": _peak_rss_mb(),
                "wall_s": time.perf_counter() - start}
    row = {key: metrics.get(key) for key in KEEP}
    row["peak_rss_mb"] = _peak_rss_mb()
    row["prepare_s"] = load_s
    row["wall_s"] = time.perf_counter() - start
    return row


def markdown(result: dict[str, Any]) -> str:
    """The README table: one row per adapter × mode."""
    s = result["settings"]
    lines = [
        f"Tweets (3 classes), backbone `{s['backbone']}`, {s['max_train_samples']} train / {s['test_size']} test tweets, "
        f"1 epoch, batch {s['per_device_train_batch_size']}, max_length {s['max_length']}, seed {s['seed']}, "
        f"{result['machine']['cpu_count']} CPU cores; learning rate per adapter: "
        + ", ".join(f"{k} {v:g}" for k, v in result["learning_rates"].items() if k in result["adapters"]) + ".",
        "",
        "| adapter | mode | trainable params | backbone MB | × fp32 | peak RSS MB | train samples/s | test macro-F1 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    fp32 = result["fp32_backbone_bytes"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"| {r['adapter']} | {r['mode']} | failed: {r['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {r['adapter']} | {r['mode']} | {r['trainable_params']:,} | {r['backbone_bytes'] / 1e6:.1f} | "
            f"{r['backbone_bytes'] / fp32:.2f} | {r['peak_rss_mb']:.0f} | "
            f"{r['train_samples_per_second']:.1f} | {r['eval_macro_f1']:.4f} |"
        )
    lines += ["", f"Mode: `none` fp32; `8bit` LLM.int8 linear layers, fp32 word embedding; `8bit+emb8` + int8 word "
              "embedding; `4bit` NF4 + double quantization, fp32 word embedding; `4bit+emb4` + NF4 word embedding "
              "(defaults: `--quant 8bit`/`4bit` quantize the embedding). Peak RSS per configuration (own process; "
              f"import floor {result['import_floor_mb']:.0f} MB). {result['note']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset (≤ 5 minutes on 2 cores)")
    parser.add_argument("--adapters", default=",".join(ADAPTERS))
    parser.add_argument("--modes", default=None, help=f"default: {','.join(MODES)} ({','.join(QUICK_MODES)} with --quick)")
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None, help="0: the whole test split")
    parser.add_argument("--per_device_train_batch_size", type=int, default=None)
    parser.add_argument("--max_length", type=int, default=None)
    parser.add_argument("--backbone", default=None, help="registry name (default minilm; e.g. smollm2)")
    parser.add_argument("--name", default="adapters", help="results file stem (benchmarks/results/; quick: outputs/benchmarks/)")
    parser.add_argument("--note", default="", help="appended to the JSON 'note' (e.g. machine load)")
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.load_at_start = harness.load_average()
    adapters = [a.strip() for a in args.adapters.split(",") if a.strip()]
    modes = [m.strip() for m in (args.modes or ",".join(QUICK_MODES if args.quick else MODES)).split(",") if m.strip()]
    bad = [a for a in adapters if a not in ADAPTERS] + [m for m in modes if m not in MODES]
    if bad:
        parser.error(f"unknown adapter/mode {', '.join(bad)} (adapters: {', '.join(ADAPTERS)}; modes: {', '.join(MODES)})")
    preset = dict(PRESETS["quick" if args.quick else "full"])
    if args.max_train_samples is not None:
        preset["max_train_samples"] = args.max_train_samples
    if args.max_eval_samples is not None:
        preset["max_eval_samples"] = args.max_eval_samples or None
    if args.per_device_train_batch_size is not None:
        preset["per_device_train_batch_size"] = args.per_device_train_batch_size
    if args.max_length is not None:
        preset["max_length"] = args.max_length
    if args.backbone is not None:
        preset["backbone"] = args.backbone
    settings = {**SHARED, **preset}

    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    with harness.child_pool(PRELOAD) as pool:
        floor = pool.submit(_floor).result()
        fp32_bytes = pool.submit(_fp32_bytes, settings["backbone"]).result()
        for adapter in adapters:
            for mode in modes:
                quant, embeddings = MODES[mode]
                config = {**settings, "adapter": adapter, "quant": quant, "quantize_embeddings": embeddings,
                          "learning_rate": str(LEARNING_RATES[adapter])}
                row = {"adapter": adapter, "mode": mode, **pool.submit(run_config, config).result(),
                       "load_average_after": harness.load_average()}
                runs.append(row)
                status = row.get("error") or (f"F1 {row['eval_macro_f1']:.4f}  {row['backbone_bytes'] / 1e6:.1f} MB  "
                                              f"RSS {row['peak_rss_mb']:.0f} MB  {row['train_samples_per_second']:.1f}/s")
                print(f"{adapter:7s} {mode:10s} {row['wall_s']:6.1f}s  {status}", flush=True)
                _write(args, settings, adapters, modes, floor, fp32_bytes, started, runs, complete=False)
    result = _write(args, settings, adapters, modes, floor, fp32_bytes, started, runs, complete=True)
    print(f"wrote {harness.results_path(args.name, args.quick)}.json and .md in {result['total_wall_s']:.0f}s")
    return 0 if all("error" not in r for r in runs) else 1


def _write(args: argparse.Namespace, settings: dict[str, Any], adapters: list[str], modes: list[str], floor: float,
           fp32_bytes: int, started: float, runs: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    """Write the JSON + markdown (after every configuration, so a killed run keeps what it measured)."""
    test_sizes = {r["test_size"] for r in runs if r.get("test_size")}
    result = {
        "benchmark": args.name,
        "preset": "quick" if args.quick else "full",
        "created_at": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python benchmarks/adapters.py " + " ".join(args.argv),
        "complete": complete,
        "settings": {**settings, "test_size": ", ".join(str(s) for s in sorted(test_sizes)) or "?"},
        "adapters": adapters,
        "modes": {m: {"quant": MODES[m][0], "quantize_embeddings": MODES[m][1]} for m in modes},
        "learning_rates": LEARNING_RATES,
        "machine": {**harness.machine(), "load_average_at_start": args.load_at_start,
                    "load_average_now": harness.load_average()},
        "import_floor_mb": floor,
        "fp32_backbone_bytes": fp32_bytes,
        "total_wall_s": time.perf_counter() - started,
        "note": ("Measured on a 2-core CPU shared with other engineers' jobs at the same time: samples/s and wall "
                 "times are depressed and noisy; bytes, RSS and F1 are not affected (F1 is deterministic for a "
                 "seed). " + args.note).strip(),
        "runs": runs,
    }
    harness.write_results(harness.results_path(args.name, args.quick), result, markdown(result))
    return result


if __name__ == "__main__":
    sys.exit(main())
