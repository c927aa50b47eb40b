"""Profile the training step of the main recipe's LoRA settings, 8-bit or fp32 backbone (issue: performance).

Thirty length-grouped batches of 16 tweets after 10 warm-up batches (the step of ``torch_compile.py``, eager), under
the torch profiler; prints samples/s and the ops by self CPU time. Run the two back to back to compare them at the
same moment of the shared machine:

    python benchmarks/profile_step.py 8bit && python benchmarks/profile_step.py none
"""

from __future__ import annotations

import sys
import time

from torch_compile import training_step  # this folder is on sys.path when the script runs


def main(quant: str) -> None:
    from torch.profiler import ProfilerActivity, profile

    step, batches, _ = training_step(quant, 40)
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
