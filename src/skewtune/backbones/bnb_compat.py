"""Narrow shims for bitsandbytes on CPU.

Upstream problem (bitsandbytes 0.48–0.50, ``bitsandbytes/autograd/_functions.py::matmul``): on CPU the
training path already uses ``MatMul8bitFp`` (dequantize the int8 weight, fp32 GEMM — "~3x faster" per its own
comment), but in eval mode ``matmul`` falls back to ``MatMul8bitLt``, which casts activations to float16 and
quantizes them with no fast CPU kernel: evaluation and prediction become several times slower than training
and lose precision. :func:`patch_cpu_int8_inference` routes CPU calls to ``MatMul8bitFp`` in both modes; GPU
calls are untouched. Outlier thresholds don't apply to the dequantized path (weights are used at full int8
precision with fp32 activations, which is at least as exact).
"""

from __future__ import annotations

import functools
from typing import Any

_PATCHED = False


def patch_cpu_int8_inference() -> bool:
    """Install the CPU inference route once; returns True when the patch is active."""
    global _PATCHED
    if _PATCHED:
        return True
    try:
        import bitsandbytes.autograd._functions as bnb_functions
        import bitsandbytes.nn.modules as bnb_modules
    except Exception:  # pragma: no cover - bitsandbytes absent or broken on this platform
        return False
    if not hasattr(bnb_functions, "MatMul8bitFp"):
        return False
    original = bnb_functions.matmul

    @functools.wraps(original)
    def matmul(A: Any, B: Any, out: Any = None, state: Any = None, threshold: float = 0.0, bias: Any = None):
        if A.device.type == "cpu" and state is not None and state.CB is not None:
            return bnb_functions.MatMul8bitFp.apply(A, B, out, bias, state)
        return original(A, B, out=out, state=state, threshold=threshold, bias=bias)

    bnb_functions.matmul = matmul
    # Linear8bitLt.forward calls bnb.matmul imported into bitsandbytes' namespace
    import bitsandbytes

    bitsandbytes.matmul = matmul
    if hasattr(bnb_modules, "bnb"):
        bnb_modules.bnb.matmul = matmul
    _PATCHED = True
    return True
