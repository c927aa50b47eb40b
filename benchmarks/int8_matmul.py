"""skewtune's CPU int8 matmul vs bitsandbytes' ``MatMul8bitFp``, before/after, in one process (issue: performance).

The main recipe's model settings (8-bit MiniLM, LoRA r=8 on query/value, no dropout) train length-grouped batches
of tweets; three models take turns on the same batches in one process, so the shared machine's drift hits all
of them alike: fp32, 8-bit through stock ``MatMul8bitFp`` (bitsandbytes 0.50), 8-bit through
``backbones/bnb_compat.DequantizedInt8Matmul`` (the default). Reports non-padding tokens/s and the ratio to fp32 at
batch 16 and 32, and the bytes the autograd graph holds after the forward of the 32 longest tweets (glibc
``mallinfo2``: exact bytes in use, unlike RSS), each variant in its own process.

    python benchmarks/int8_matmul.py          # about 4 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import sys
import time

import harness  # beside this script
from torch_compile import training_step

VARIANTS = ("fp32", "8bit_stock", "8bit_skewtune")


def _install_switch():
    """Route skewtune's patched matmul to the stock function or to skewtune's, switchable per call."""
    import bitsandbytes.autograd._functions as bnb_functions
    import bitsandbytes.nn.modules as bnb_modules

    import skewtune.backbones.bnb_compat as compat

    skewtune_fn = compat.DequantizedInt8Matmul
    current_state: list = [None]

    class Stock:
        @staticmethod
        def apply(A, CB, scale, bias):  # the arguments of DequantizedInt8Matmul, bitsandbytes' function
            return bnb_functions.MatMul8bitFp.apply(A, CB, None, bias, current_state[0])

    forward = bnb_modules.Linear8bitLt.forward

    def tracking_forward(self, x):
        current_state[0] = self.state
        return forward(self, x)

    bnb_modules.Linear8bitLt.forward = tracking_forward

    def use(variant: str) -> None:
        compat.DequantizedInt8Matmul = Stock if variant == "8bit_stock" else skewtune_fn

    return use


def speed(batch: int, steps: int, warmup: int = 6) -> dict:
    use = _install_switch()
    models = {}
    for variant in VARIANTS:
        step, batches, _ = training_step("none" if variant == "fp32" else "8bit", warmup + steps, batch=batch,
                                         rows=(warmup + steps) * batch)
        models[variant] = step, batches
    seconds = dict.fromkeys(VARIANTS, 0.0)
    tokens = dict.fromkeys(VARIANTS, 0)
    for i in range(warmup + steps):
        for variant in VARIANTS[i % 3:] + VARIANTS[:i % 3]:  # rotate the order every batch
            step, batches = models[variant]
            use(variant)
            start = time.perf_counter()
            step(batches[i])
            if i >= warmup:
                seconds[variant] += time.perf_counter() - start
                tokens[variant] += int(batches[i]["attention_mask"].sum())
    rate = {v: tokens[v] / seconds[v] for v in VARIANTS}
    return {"batch_size": batch, "timed_steps": steps, "tokens_per_s": rate,
            "ratio_to_fp32": {v: rate[v] / rate["fp32"] for v in VARIANTS}}


def graph_bytes(variant: str) -> dict:
    """Bytes the autograd graph holds after one forward of the 32 longest training tweets."""
    use = _install_switch()
    use(variant)
    _, batches, loss_of = training_step("none" if variant == "fp32" else "8bit", 1, batch=32, rows=3000,
                                        longest=True)

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                  "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2

    def in_use() -> int:
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd

    for _ in range(2):
        loss_of(batches[0]).backward()
    gc.collect()
    before = in_use()
    loss = loss_of(batches[0])
    held = in_use() - before
    del loss
    return {"variant": variant, "shape": list(batches[0]["input_ids"].shape), "graph_mb": held / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=42)
    parser.add_argument("--only", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        kind, value = args.only
        harness.emit(speed(int(value), args.steps) if kind == "speed" else graph_bytes(value))
        return 0

    def child(*only: str) -> dict:
        return harness.run_child(__file__, "--steps", str(args.steps), "--only", *only, env=harness.child_env(),
                                 what=" ".join(only))

    speeds = [child("speed", str(batch)) for batch in (16, 32)]
    memory = [child("memory", variant) for variant in VARIANTS]
    summary = {"speed": speeds, "memory": memory, "command": "python benchmarks/int8_matmul.py"}
    lines = ["| batch | fp32 tokens/s | 8-bit stock MatMul8bitFp | 8-bit skewtune | skewtune ÷ stock |",
             "|---:|---:|---:|---:|---:|"]
    for s in speeds:
        r, t = s["ratio_to_fp32"], s["tokens_per_s"]
        lines.append(f"| {s['batch_size']} | {t['fp32']:.0f} | {t['8bit_stock']:.0f} ({r['8bit_stock']:.3f}× fp32) | "
                     f"{t['8bit_skewtune']:.0f} ({r['8bit_skewtune']:.3f}× fp32) | "
                     f"{t['8bit_skewtune'] / t['8bit_stock']:.3f} |")
    lines += ["", "| variant | autograd graph after the forward, MB (32 × "
              f"{memory[0]['shape'][1]} tokens) |", "|---|---:|"]
    lines += [f"| {m['variant']} | {m['graph_mb']:.1f} |" for m in memory]
    harness.write_results(harness.results_path("int8_matmul"), summary, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
