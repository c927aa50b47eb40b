"""Profile the training step of the main recipe's LoRA settings, 8-bit or fp32 backbone (issue: performance).

Thirty length-grouped batches of 16 tweets after 10 warm-up batches, under the torch profiler; prints samples/s and
the ops by self CPU time. Run the two back to back to compare them at the same moment of the shared machine:

    python benchmarks/profile_step.py 8bit && python benchmarks/profile_step.py none
"""

from __future__ import annotations

import sys
import tempfile
import time


def main(quant: str) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from skewtune.data import LengthGroupedBatchSampler
    from skewtune.training import TrainConfig, prepare
    from skewtune.training.loop import configure_threads, logits_of

    cfg = TrainConfig(dataset="tweets", quant=quant, target_modules="attention", output_dir=tempfile.mkdtemp(),
                      overwrite_output_dir=True, per_device_train_batch_size=16, baselines=False,
                      report_plots=False, max_train_samples=2000, max_eval_samples=64, lora_dropout=0.0,
                      backbone_dropout=0.0)
    run = prepare(cfg, recipe="bench")
    configure_threads(run.accelerator)
    split = run.tokenized["train"]
    sampler = LengthGroupedBatchSampler(split.lengths, 16, seed=0, indices=list(range(800)))
    batches = [run.collator([split[i] for i in b]) for b in list(sampler)[:40]]
    model = run.model
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(batch: dict) -> None:
        loss_fn(logits_of(model, batch), batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:10]:
        step(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for batch in batches[10:]:
            step(batch)
        seconds = time.perf_counter() - start
    print(f"{quant}: {30 * 16 / seconds:.1f} samples/s (profiled)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "8bit")
