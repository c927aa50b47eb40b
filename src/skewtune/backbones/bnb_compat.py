"""Narrow shims for bitsandbytes on CPU: one dequantizing int8 matmul for training and inference.

Upstream problems (bitsandbytes 0.48–0.50, ``bitsandbytes/autograd/_functions.py``):

- ``matmul`` uses ``MatMul8bitFp`` (dequantize the int8 weight, fp32 GEMM — "~3x faster" per its own comment) on
  CPU only in training; in eval mode it falls back to ``MatMul8bitLt``, which casts activations to float16 and
  quantizes them with no fast CPU kernel: evaluation and prediction become several times slower than training
  and lose precision.
- ``MatMul8bitFp`` keeps every layer's input alive until the backward (``ctx.A = A``) although a frozen int8
  weight needs no gradient — for the FFN's down projection (input = GELU output, which nothing else saves) that
  is a ``tokens × 4d`` fp32 tensor per layer — and rebuilds the row scale ``SCB / 127`` twice per call.

:func:`patch_cpu_int8_matmul` routes CPU calls with frozen int8 weights, in both modes, to
:class:`DequantizedInt8Matmul`: ``y = A · (CB · s)ᵀ + b`` with ``s = SCB / 127`` per output row, the same
dequantize + GEMM calls as ``MatMul8bitFp`` (bit-identical outputs and input gradients), saving only ``CB`` and ``s`` and recomputing the
fp32 weight in the backward (``∂L/∂A = ∂L/∂y · (CB · s)``), so memory stays at int8. GPU calls, trainable int8
weights and ``out=`` calls keep bitsandbytes' own path. Outlier thresholds don't apply to the dequantized path
(weights are used at full int8 precision with fp32 activations, which is at least as exact).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

_PATCHED = False


def _row_scale(state: Any) -> torch.Tensor:
    """``SCB / 127`` as a column, cached on ``state`` until ``SCB`` is replaced or changed in place. A scale cached
    under ``torch.inference_mode`` is an inference tensor, which autograd refuses to save for a backward pass: it
    is rebuilt when used outside inference mode (scoring first, then fine-tuning)."""
    scb = state.SCB
    cached = getattr(state, "_skewtune_row_scale", None)
    if (cached is None or cached[0] is not scb or cached[1] != scb._version
            or (cached[2].is_inference() and not torch.is_inference_mode_enabled())):
        cached = (scb, scb._version, scb.unsqueeze(1).mul(1.0 / 127.0))
        state._skewtune_row_scale = cached
    return cached[2]


class DequantizedInt8Matmul(torch.autograd.Function):
    """``A · (CB · s)ᵀ + bias`` for a frozen row-wise int8 weight ``CB`` (bitsandbytes' LLM.int8 layout).

    Forward and backward dequantize into a temporary in ``A``'s dtype (under autocast the GEMM then runs in the
    autocast dtype, as in ``MatMul8bitFp``); only ``CB`` and ``s`` are saved for the backward.
    """

    @staticmethod
    def forward(ctx: Any, A: torch.Tensor, CB: torch.Tensor, scale: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(CB, scale)
        ctx.dtype_A = A.dtype
        return torch.nn.functional.linear(A, CB.to(A.dtype).mul_(scale), bias)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple:
        CB, scale = ctx.saved_tensors
        grad_A = grad_bias = None
        if ctx.needs_input_grad[0]:
            weight = CB.to(ctx.dtype_A).mul_(scale)
            grad_A = torch.matmul(grad_output.to(ctx.dtype_A), weight)
        if ctx.needs_input_grad[3]:
            grad_bias = grad_output.reshape(-1, grad_output.shape[-1]).sum(0)
        return grad_A, None, None, grad_bias


def patch_cpu_int8_matmul() -> bool:
    """Install the CPU int8 route once; returns True when the patch is active."""
    global _PATCHED
    if _PATCHED:
        return True
    try:  # lazy: bitsandbytes is platform-dependent and may be absent or broken; only 8-bit loads patch it
        import bitsandbytes
        import bitsandbytes.autograd._functions as bnb_functions
        import bitsandbytes.nn.modules as bnb_modules
    except Exception:  # pragma: no cover - bitsandbytes absent or broken on this platform
        return False
    original = bnb_functions.matmul

    @functools.wraps(original)
    def matmul(A: Any, B: Any, out: Any = None, state: Any = None, threshold: float = 0.0, bias: Any = None):
        if (A.device.type == "cpu" and out is None and state is not None and state.CB is not None
                and state.SCB is not None and not state.has_fp16_weights):
            return DequantizedInt8Matmul.apply(A, state.CB, _row_scale(state), bias)
        return original(A, B, out=out, state=state, threshold=threshold, bias=bias)

    bnb_functions.matmul = matmul
    # Linear8bitLt.forward calls bnb.matmul imported into bitsandbytes' namespace
    bitsandbytes.matmul = matmul
    if hasattr(bnb_modules, "bnb"):
        bnb_modules.bnb.matmul = matmul
    _PATCHED = True
    return True
