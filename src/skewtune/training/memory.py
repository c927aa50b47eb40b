"""Peak-memory planner for LoRA training on a frozen (fp32, 8-bit or 4-bit) backbone: an estimate from config.json.

The parts, in bytes (fp32 = 4 B per value):

* **weights** — parameters counted by layer type from the config. Per weight of a block's linear layer: fp32 4 B;
  LLM.int8 ``1 B + 4 B / in_features`` (int8 + one fp32 scale per output row); NF4 with double quantization
  ``0.5 B + 1 B / 64 + 4 B / (64·256)`` (4-bit codes, a uint8 absmax per block of 64, an fp32 scale per 256 blocks).
  The word embedding follows :func:`~skewtune.backbones.modes.resolve_quantize_embeddings` (int8 row-wise:
  ``V·d + 4·V``; NF4: ``V·d/2 + 4·V·d/64``); norms, biases, position tables and the head stay fp32.
* **trainable** — LoRA ``r·(in + out)`` per wrapped projection plus the trainable head copy, each
  ``16 B`` (fp32 value, gradient and AdamW's two moments).
* **activations** — what autograd keeps for the backward pass, ``4 B · B · T · L · s`` with ``s`` values saved per
  token and layer: ``s = a_h·h + a_i·I + a_s·n_heads·T`` (hidden size ``h``, MLP size ``I``, attention scores
  ``n_heads·T`` per token); quantized layers keep their inputs too (:data:`QUANT_SAVED_PER_TOKEN`). With gradient
  checkpointing ``4 B · B · T · (g·h·L + s)``: ``g·h`` values per token and block stay between the passes
  (:data:`GC_SAVED_PER_TOKEN`: the block input and what the checkpoint wrapper keeps beside it) plus one block's full
  ``s`` while it is recomputed.
* **runtime** — the process before any model: Python, torch, transformers, peft, accelerate, skewtune, a tokenizer
  and the data (:data:`RUNTIME_MB`; the imports alone measured 581 MB).
* **loading** — quantized modes only, :data:`LOAD_FACTOR` ``[quant] ×`` the fp32 checkpoint size: packing reads
  every fp32 weight of the memory-mapped safetensors file (its pages stay mapped and count in RSS) and makes fp32
  copies, part of which the allocator keeps. An fp32 backbone's weights are those mapped pages (no extra term).

``peak = runtime + loading + weights + trainable + activations``. The per-token coefficients come from counting the
tensors each block saves (:data:`SAVED_PER_TOKEN`, :data:`QUANT_SAVED_PER_TOKEN`); the five constants
:data:`RUNTIME_MB`, :data:`ACTIVATION_SCALE`, :data:`GC_SAVED_PER_TOKEN` and the two quantized :data:`LOAD_FACTOR`
values were fitted (least squares on relative errors, ``python benchmarks/memory.py --fit``) on the 12 rows of the
measured table ``benchmarks/results/memory.json``: smollm2 and MiniLM, fp32 / 8-bit / 4-bit, ± checkpointing,
batch 8 × 128 tokens, on one CPU machine. Its held-out rows (other batch sizes and lengths) were not fitted; every
row's estimate is within 25 % of the measured peak RSS (a test keeps that checked). The loading term varies from
run to run (two runs of the table differed by up to 11 % on quantized rows); other machines, allocators and
library versions move the runtime and loading terms.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skewtune.backbones.modes import QUANT_MODES, resolve_quantize_embeddings
from skewtune.errors import ConfigError

MB = 1024 * 1024
FP32 = 4
# Python + torch + transformers + peft + accelerate + skewtune imported (benchmarks/memory.py baseline child: 581 MB),
# a tokenizer and the data loaded, MB (fitted, see module docstring)
RUNTIME_MB = 611.9
# multiples of the fp32 checkpoint's bytes resident at the peak on top of the kept weights (fitted): quantized loads
# keep the memory-mapped safetensors pages they read (about 1×) plus part of the fp32 copies made while packing
LOAD_FACTOR = {"none": 0.0, "8bit": 1.725, "4bit": 1.53}
# one fitted scale on the counted activations (fitted: 0.99, the count holds)
ACTIVATION_SCALE = 0.99
# values saved per token and block, as multiples of (h, I, n_heads·T): counted from what autograd keeps
SAVED_PER_TOKEN: dict[str, tuple[float, float, float]] = {
    # norm in/out, q, k, v (GQA: kv share counted as h), rotary q/k, attention out, o in, residual, norm in/out;
    # MLP: gate, up, silu(gate), product
    "llama": (10.0, 4.0, 1.0),
    # q, k, v, context, dense out, LayerNorm in/out ×2, output dense in; MLP: intermediate out, GELU out
    "bert": (9.0, 2.0, 1.0),
}
# values kept per token and block between the forward and backward passes with gradient checkpointing, as a
# multiple of h (fitted: the block input plus what the checkpoint wrapper and the peft/quantized layers keep)
GC_SAVED_PER_TOKEN = 5.41
# extra values per token and block with quantized linear layers, as multiples of (h, I): their autograd functions
# keep every layer input (the block's two normed inputs, the attention output, the MLP's down-projection input),
# which a frozen fp32 nn.Linear does not need to keep
QUANT_SAVED_PER_TOKEN = (3.0, 1.0)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
NF4_EMBEDDING_BYTES = 0.5 + 4 / 64


@dataclass
class Architecture:
    """The sizes the planner needs, read from a Hugging Face ``config.json``."""

    model_type: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    positions: int  # learned position table rows (0 for rotary)
    type_vocab: int
    bias: bool
    checkpoint_bytes: int  # fp32 bytes of every weight (what loading reads)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Architecture:
        kind = str(config.get("model_type", ""))
        try:
            hidden = int(config["hidden_size"])
            layers = int(config["num_hidden_layers"])
            heads = int(config["num_attention_heads"])
            vocab = int(config["vocab_size"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"config.json lacks {exc} (model type '{kind}')",
                              "the planner reads BERT- and Llama-style configs") from None
        head_dim = int(config.get("head_dim") or hidden // heads)
        arch = cls(model_type="llama" if kind in ("llama", "mistral", "qwen2") else "bert", vocab=vocab,
                   hidden=hidden, layers=layers, heads=heads,
                   kv_heads=int(config.get("num_key_value_heads") or heads), head_dim=head_dim,
                   intermediate=int(config.get("intermediate_size") or 4 * hidden),
                   positions=0 if kind in ("llama", "mistral", "qwen2") else int(config.get("max_position_embeddings", 512)),
                   type_vocab=int(config.get("type_vocab_size", 0) or 0),
                   bias=kind not in ("llama", "mistral", "qwen2"), checkpoint_bytes=0)
        arch.checkpoint_bytes = FP32 * arch.total_params(num_labels=0)
        return arch

    def block_linears(self) -> list[tuple[str, int, int]]:
        """``(name, in, out)`` of each linear layer of one block."""
        h, q, kv, inter = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        if self.model_type == "llama":
            return [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h),
                    ("gate_proj", h, inter), ("up_proj", h, inter), ("down_proj", inter, h)]
        return [("query", h, h), ("key", h, h), ("value", h, h), ("dense", h, h),
                ("intermediate", h, inter), ("output", inter, h)]

    def small_params(self) -> int:
        """Parameters that stay fp32 in every mode: norms, biases, position and token-type tables, pooler."""
        h, block = self.hidden, self.block_linears()
        if self.model_type == "llama":
            return self.layers * 2 * h + h
        per_block = 4 * h + sum(out for _, _, out in block)  # two LayerNorms + every bias
        return self.layers * per_block + (self.positions + self.type_vocab + 2) * h + h * h + h

    def total_params(self, num_labels: int = 2) -> int:
        linear = self.layers * sum(i * o for _, i, o in self.block_linears())
        return self.vocab * self.hidden + linear + self.small_params() + self.hidden * num_labels


@dataclass
class MemoryPlan:
    """An estimate of a training run's peak resident memory, in bytes per part."""

    weights: float
    trainable: float
    activations: float
    runtime: float
    loading: float
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return self.weights + self.trainable + self.activations + self.runtime + self.loading

    @property
    def total_mb(self) -> float:
        return self.total / MB

    def parts_mb(self) -> dict[str, float]:
        return {"weights": self.weights / MB, "trainable + optimizer": self.trainable / MB,
                "activations": self.activations / MB, "loading (fp32 weights read)": self.loading / MB,
                "runtime baseline": self.runtime / MB, "total": self.total_mb}

    def lines(self) -> list[str]:
        """The readable breakdown, one part per line."""
        return [f"{name:<28}{value:>10,.0f} MB" for name, value in self.parts_mb().items()]


def read_architecture(backbone_path: str | Path) -> Architecture:
    """:class:`Architecture` from ``<backbone_path>/config.json``; ConfigError when it is missing or unreadable."""
    path = Path(backbone_path) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({type(exc).__name__})", "pass a backbone folder with a config.json") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a JSON object", "pass a backbone folder with a Hugging Face config.json")
    return Architecture.from_config(config)


def _weight_bytes(arch: Architecture, quant: str, quantize_embeddings: bool, num_labels: int) -> float:
    per_linear = {"none": lambda i, o: FP32 * i * o,
                  "8bit": lambda i, o: i * o + FP32 * o,
                  "4bit": lambda i, o: NF4_BYTES * i * o}[quant]
    linear = arch.layers * sum(per_linear(i, o) for _, i, o in arch.block_linears())
    v, h = arch.vocab, arch.hidden
    if quantize_embeddings and quant == "8bit":
        embedding = v * h + FP32 * v
    elif quantize_embeddings and quant == "4bit":
        embedding = NF4_EMBEDDING_BYTES * v * h
    else:
        embedding = FP32 * v * h
    return linear + embedding + FP32 * (arch.small_params() + h * num_labels)


def _lora_targets(arch: Architecture, target_modules: str) -> list[tuple[str, int, int]]:
    block = arch.block_linears()
    if target_modules == "all":
        return block
    if target_modules == "attention":
        wanted = {"q_proj", "v_proj", "query", "value"}
    else:
        wanted = {name.strip() for name in target_modules.split(",") if name.strip()}
    return [layer for layer in block if layer[0] in wanted]


def plan_memory(backbone_path: str | Path, *, quant: str = "8bit", batch: int = 32, max_length: int = 128,
                gradient_checkpointing: bool = False, lora_r: int = 8, target_modules: str = "attention",
                quantize_embeddings: bool | None = None, num_labels: int = 2) -> MemoryPlan:
    """Estimate the peak RSS of ``skewtune train`` (LoRA) with these settings (see the module docstring)."""
    if quant not in QUANT_MODES:
        raise ConfigError(f"unknown quant mode '{quant}'", f"use one of: {', '.join(QUANT_MODES)}")
    for name, value in (("batch", batch), ("max_length", max_length), ("lora_r", lora_r), ("num_labels", num_labels)):
        if value < 1:
            raise ConfigError(f"--{name} must be ≥ 1, got {value}", f"pass a positive --{name}")
    arch = read_architecture(backbone_path)
    embeddings = resolve_quantize_embeddings(quant, quantize_embeddings)
    weights = _weight_bytes(arch, quant, embeddings, num_labels)
    lora = arch.layers * sum(lora_r * (i + o) for _, i, o in _lora_targets(arch, target_modules))
    head = arch.hidden * num_labels + (arch.hidden * arch.hidden if arch.model_type == "bert" else 0)
    trainable = 16 * (lora + head)
    a_h, a_i, a_s = SAVED_PER_TOKEN[arch.model_type]
    if quant != "none":
        a_h, a_i = a_h + QUANT_SAVED_PER_TOKEN[0], a_i + QUANT_SAVED_PER_TOKEN[1]
    per_token_layer = a_h * arch.hidden + a_i * arch.intermediate + a_s * arch.heads * max_length
    tokens = batch * max_length
    if gradient_checkpointing:
        saved = tokens * (GC_SAVED_PER_TOKEN * arch.hidden * arch.layers + per_token_layer)
    else:
        saved = tokens * per_token_layer * arch.layers
    activations = ACTIVATION_SCALE * FP32 * saved
    settings = {"quant": quant, "batch": batch, "max_length": max_length,
                "gradient_checkpointing": gradient_checkpointing, "lora_r": lora_r, "target_modules": target_modules,
                "quantize_embeddings": embeddings, "params": arch.total_params(num_labels)}
    return MemoryPlan(weights=weights, trainable=trainable, activations=activations, runtime=RUNTIME_MB * MB,
                      loading=LOAD_FACTOR[quant] * arch.checkpoint_bytes, settings=settings)


def available_memory_bytes() -> int:
    """Memory the system can give a new process now (``psutil.virtual_memory().available``, an accelerate
    dependency; else ``MemAvailable`` of /proc/meminfo); ConfigError when neither answers."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    raise ConfigError("cannot tell how much memory is available", "pass --memory_gb")


LORA_ADAPTERS = ("lora", "dora", "rslora")


def memory_warning(backbone_path: str | Path, cfg: Any, processes: int | None = None) -> str | None:
    """One line when the plan for ``cfg`` (a TrainConfig) × ``processes`` on this machine (default: the launcher's
    ``LOCAL_WORLD_SIZE``, else 1) exceeds the available memory, else None; None too when the plan does not apply
    (non-LoRA adapters, an unreadable config)."""
    if cfg.adapter not in LORA_ADAPTERS:
        return None
    if processes is None:
        local = os.environ.get("LOCAL_WORLD_SIZE", "")
        processes = int(local) if local.isdigit() and int(local) > 0 else 1
    settings = {"quant": cfg.quant, "batch": cfg.per_device_train_batch_size, "max_length": cfg.max_length,
                "gradient_checkpointing": bool(getattr(cfg, "gradient_checkpointing", False)), "lora_r": cfg.lora_r,
                "target_modules": cfg.target_modules or "all", "quantize_embeddings": cfg.quantize_embeddings}
    try:
        need = processes * plan_memory(backbone_path, **settings).total
        have = available_memory_bytes()
    except (ConfigError, OSError, ValueError, KeyError):
        return None
    if need <= have:
        return None
    return (f"memory: the plan estimates {need / MB:,.0f} MB peak for this run but {have / MB:,.0f} MB are "
            f"available; it may run out of memory (see `skewtune plan`: --gradient_checkpointing true, --quant 4bit "
            f"or a smaller batch lower it)")


def fitting_alternatives(backbone_path: str | Path, budget_bytes: float, **settings: Any) -> list[str]:
    """Settings that would fit ``budget_bytes``, cheapest change first: checkpointing, 4-bit, then halved batches."""
    options: list[str] = []
    tries: list[tuple[str, dict[str, Any]]] = []
    if not settings.get("gradient_checkpointing"):
        tries.append(("--gradient_checkpointing true", {"gradient_checkpointing": True}))
    if settings.get("quant") != "4bit":
        tries.append(("--quant 4bit", {"quant": "4bit"}))
        if not settings.get("gradient_checkpointing"):
            tries.append(("--quant 4bit --gradient_checkpointing true", {"quant": "4bit", "gradient_checkpointing": True}))
    for text, change in tries:
        if plan_memory(backbone_path, **{**settings, **change}).total <= budget_bytes:
            options.append(text)
    batch = int(settings.get("batch", 32))
    while batch > 1:
        batch //= 2
        if plan_memory(backbone_path, **{**settings, "batch": batch}).total <= budget_bytes:
            options.append(f"--batch {batch}")
            break
    return options
