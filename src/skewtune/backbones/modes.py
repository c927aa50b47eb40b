"""Quantization modes of a backbone and the word-embedding rule — plain values, no torch (flag validation uses them)."""

from __future__ import annotations

from skewtune.errors import ConfigError

QUANT_MODES = ("8bit", "4bit", "none")  # LLM.int8, NF4 + double quantization, fp32


def resolve_quantize_embeddings(quant: str, requested: bool | None) -> bool:
    """``None`` (default) → on for ``8bit``/``4bit``; ConfigError for ``true`` with ``--quant none``."""
    if requested is None:
        return quant in ("8bit", "4bit")
    if requested and quant == "none":
        raise ConfigError("--quantize_embeddings true needs a quantized backbone",
                          "use --quant 8bit or --quant 4bit, or drop --quantize_embeddings")
    return bool(requested)
