"""Compute precision for prediction: ``fp32``, ``bf16``, ``fp16`` or ``auto``.

``auto`` keeps an unmerged adapter at the precision it was evaluated in (fp32 compute; predictions equal the
training run's evaluation). A merged adapter is a plain dense model exported for serving, so ``auto`` runs it in
bf16 where the hardware multiplies bf16 natively: CUDA GPUs with bf16 support, and CPUs with AMX-BF16 tiles
(Intel Sapphire Rapids and later) or AVX512-BF16 dot products (AMD Zen 4 and later, Intel Cooper Lake); speed and
agreement with fp32 are measured by ``benchmarks/predict_precision.py``. Elsewhere it stays fp32 (bf16 without
either is emulated, slower than fp32).
"""

from __future__ import annotations

import torch

from skewtune.errors import ConfigError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES = ("auto", *DTYPES)
# ``torch.cpu.get_capabilities()`` keys of CPU units that multiply bf16 natively
NATIVE_BF16_UNITS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16() -> bool:
    """AMX-BF16 tiles or AVX512-BF16, from ``torch.cpu.get_capabilities()`` (false where torch cannot tell)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    try:
        capabilities = get() if get else {}
        return any(capabilities.get(unit) for unit in NATIVE_BF16_UNITS)
    except Exception:  # capability probing must never stop a prediction
        return False


def check_dtype_name(requested: str) -> None:
    if requested not in CHOICES:
        raise ConfigError(f"unknown dtype '{requested}'", f"use one of: {', '.join(CHOICES)}")


def resolve_dtype(requested: str, *, merged: bool, device: torch.device) -> torch.dtype:
    """The compute dtype for ``requested`` (see the module docstring for ``auto``)."""
    check_dtype_name(requested)
    if requested != "auto":
        if requested == "fp16" and device.type == "cpu":
            raise ConfigError("dtype fp16 is not supported on CPU", "use --dtype bf16 or fp32 on CPU")
        return DTYPES[requested]
    if not merged:
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32


def apply_dtype(model: torch.nn.Module, dtype: torch.dtype, *, castable: bool) -> bool:
    """Cast a dense model's weights to ``dtype``; return whether logits need an autocast context instead.

    Quantized (int8/4-bit) layers cannot be cast, so their models run under ``torch.autocast`` (bitsandbytes then
    dequantizes to ``dtype``).
    """
    if dtype == torch.float32:
        return False
    if castable:
        model.to(dtype)
        return False
    return True
