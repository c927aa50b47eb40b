"""Does ``torch.compile`` pay for skewtune's CPU training step? (issue: performance)

Trains the main recipe's LoRA settings (no dropout) on 40 timed length-grouped batches of 16 tweets, after 10
warm-up batches, eager vs ``torch.compile(model, dynamic=True)`` (inductor), for ``--quant none`` and ``8bit``.
Reports the warm-up seconds (compilation included) and samples/s after it. Each case runs in its own process.

    python benchmarks/torch_compile.py            # about 4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import harness  # beside this script


def training_step(quant: str, n_batches: int, compiled: bool = False, batch: int = 16, rows: int = 800,
                  longest: bool = False) -> tuple:
    """The main recipe's LoRA settings (no dropout) on ``quant``: (one optimizer step on a batch, the batches,
    the loss of a batch — a forward only).

    ``n_batches`` length-grouped batches of ``batch`` tweets drawn from the first ``rows`` training rows (``longest``:
    one batch of the ``batch`` longest training tweets), collated once. Shared with ``profile_step.py`` and
    ``int8_matmul.py``.
    """
    import torch

    from skewtune.data import LengthGroupedBatchSampler
    from skewtune.inference.logits import logits_of
    from skewtune.training import TrainConfig, prepare
    from skewtune.training.engine import configure_threads

    cfg = TrainConfig(dataset="tweets", quant=quant, target_modules="attention", output_dir=tempfile.mkdtemp(),
                      overwrite_output_dir=True, per_device_train_batch_size=batch, baselines=False,
                      report_plots=False, max_train_samples=max(2000, rows), max_eval_samples=64, lora_dropout=0.0,
                      backbone_dropout=0.0, sampler=None)
    run = prepare(cfg, recipe="bench")
    configure_threads(run.accelerator)
    split = run.tokenized["train"]
    if longest:
        groups = [sorted(range(len(split.lengths)), key=lambda i: -split.lengths[i])[:batch]]
    else:
        groups = list(LengthGroupedBatchSampler(split.lengths, batch, seed=0, indices=list(range(rows))))
    batches = [run.collator([split[i] for i in g]) for g in groups[:n_batches]]
    model = run.model
    model.train()
    forward = torch.compile(model, dynamic=True) if compiled else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def loss_of(batch: dict) -> torch.Tensor:
        return loss_fn(logits_of(forward, batch), batch["labels"])

    def step(batch: dict) -> None:
        loss_of(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, batches, loss_of


def measure(quant: str, compiled: bool) -> dict:
    step, batches, _ = training_step(quant, 50, compiled)
    start = time.perf_counter()
    for batch in batches[:10]:
        step(batch)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for batch in batches[10:]:
        step(batch)
    seconds = time.perf_counter() - start
    return {"quant": quant, "compiled": compiled, "warmup_s": warmup, "samples_per_s": 40 * 16 / seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs=2, metavar=("QUANT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        harness.emit(measure(args.only[0], args.only[1] == "compile"))
        return 0
    rows = []
    for quant in ("none", "8bit"):
        for mode in ("eager", "compile"):
            rows.append(harness.run_child(__file__, "--only", quant, mode, env=harness.child_env(),
                                          what=f"{quant} {mode}"))
            print(rows[-1], flush=True)
    lines = ["| backbone | mode | warm-up s (10 steps) | samples/s after | × eager |", "| --- | --- | ---: | ---: | ---: |"]
    for row in rows:
        eager = next(r for r in rows if r["quant"] == row["quant"] and not r["compiled"])
        lines.append(f"| {row['quant']} | {'compile' if row['compiled'] else 'eager'} | {row['warmup_s']:.1f} | "
                     f"{row['samples_per_s']:.1f} | {row['samples_per_s'] / eager['samples_per_s']:.2f} |")
    harness.write_results(harness.results_path("torch_compile"),
                          {"rows": rows, "command": "python benchmarks/torch_compile.py"}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
