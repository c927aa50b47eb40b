"""Quantized embeddings, the bitsandbytes capability probe and k-bit training preparation.

Why our own embedding modules: bitsandbytes quantizes ``nn.Linear`` only and leaves the word embeddings fp32
(8-bit MiniLM: 59.0 MB of which 46.9 MB is the fp32 30522×384 word embedding). bitsandbytes 0.50.2 does ship
``bnb.nn.Embedding8bit``/``Embedding4bit`` and both run on CPU, but their ``_save_to_state_dict`` raises
``NotImplementedError("Saving Embedding8bit module is not implemented")``: ``model.state_dict()`` fails, and with
it peft's ``save_pretrained`` and Accelerate's ``save_state``. The two narrow modules below are plain torch
(any device), keep a ``state_dict`` and dequantize only the gathered rows:

* :class:`Int8Embedding` — row-wise absmax int8 (the LLM.int8 vector-wise scheme, Dettmers et al. 2022):
  ``s_i = max_j |W_ij|``, ``q_ij = round(127 · W_ij / s_i) ∈ [-127, 127]``, ``Ŵ_ij = q_ij · s_i / 127``;
  worst-case error per entry ``s_i / 254``. Bytes: ``V·d`` (int8) + ``4·V`` (fp32 scales).
* :class:`NF4Embedding` — blockwise NormalFloat-4 (QLoRA, Dettmers et al. 2023): blocks of ``B = 64`` values per
  row, ``a_b = max |W_block|``, each value stored as the index of the nearest of the 16 NF4 levels to
  ``W / a_b`` (two indices per byte), ``Ŵ = NF4[k] · a_b``. Bytes: ``V·d/2`` + ``4·V·d/B``.

Only the word (input) embedding is quantized: position and token-type tables are small (MiniLM: 512×384 and
2×384, 0.9 % of the fp32 model) and sit on every token. Embeddings are frozen base weights, so adapters trained
on a quantized-embedding backbone save in standard PEFT format and load on the fp32 base (vanilla peft).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from skewtune.errors import ConfigError

# the 16 NF4 levels (bitsandbytes.functional.get_4bit_type("nf4"); QLoRA appendix E)
NF4_LEVELS = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)
NF4_BLOCK = 64
_CHUNK_ROWS = 8192  # rows quantized at a time: bounds the temporary fp32 copies


class Int8Embedding(nn.Module):
    """Frozen ``nn.Embedding`` stored as row-wise absmax int8 (see module docstring); output in the original dtype.

    ``weight`` stays a (frozen, int8) parameter of shape ``(num_embeddings, embedding_dim)`` so that code which
    finds the word embeddings by shape (peft prompt tuning) still finds this module.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, padding_idx: int | None = None,
                 dtype: torch.dtype = torch.float32, device: Any = None) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.dtype = dtype
        self.weight = nn.Parameter(torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_scale", torch.ones(num_embeddings, dtype=torch.float32, device=device))

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding) -> Int8Embedding:
        source = embedding.weight.detach()
        module = cls(*source.shape, padding_idx=embedding.padding_idx, dtype=source.dtype, device=source.device)
        with torch.no_grad():
            for start in range(0, source.shape[0], _CHUNK_ROWS):
                rows = source[start:start + _CHUNK_ROWS].float()
                scale = rows.abs().amax(dim=1).clamp_min(1e-12)
                module.weight[start:start + _CHUNK_ROWS] = torch.round(rows * (127.0 / scale[:, None])).to(torch.int8)
                module.weight_scale[start:start + _CHUNK_ROWS] = scale
        return module

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = nn.functional.embedding(input_ids, self.weight)
        scale = self.weight_scale[input_ids].unsqueeze(-1)
        return (rows.float() * (scale / 127.0)).to(self.dtype)

    def dequantized_weight(self) -> torch.Tensor:
        """The full ``Ŵ`` (for inspection and tests; training never builds it)."""
        return (self.weight.float() * (self.weight_scale[:, None] / 127.0)).to(self.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 row-wise absmax"


class NF4Embedding(nn.Module):
    """Frozen ``nn.Embedding`` stored as blockwise NF4 (see module docstring); output in the original dtype.

    ``weight`` is a frozen uint8 parameter ``(num_embeddings, embedding_dim // 2)``: two 4-bit level indices per
    byte (high nibble first); ``weight_absmax`` holds one fp32 absmax per block of ``block_size`` values.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, *, padding_idx: int | None = None,
                 dtype: torch.dtype = torch.float32, device: Any = None, block_size: int = NF4_BLOCK) -> None:
        super().__init__()
        if embedding_dim % 2:
            raise ConfigError(f"4-bit embeddings need an even embedding size, got {embedding_dim}",
                              "pass --quantize_embeddings false")
        if embedding_dim % block_size:
            block_size = embedding_dim  # one block per row
        self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, padding_idx
        self.dtype, self.block_size = dtype, block_size
        self.weight = nn.Parameter(torch.zeros(num_embeddings, embedding_dim // 2, dtype=torch.uint8, device=device),
                                   requires_grad=False)
        self.register_buffer("weight_absmax", torch.ones(num_embeddings, embedding_dim // block_size,
                                                         dtype=torch.float32, device=device))
        self.register_buffer("levels", torch.tensor(NF4_LEVELS, dtype=torch.float32, device=device), persistent=False)

    @classmethod
    def from_embedding(cls, embedding: nn.Embedding, block_size: int = NF4_BLOCK) -> NF4Embedding:
        source = embedding.weight.detach()
        module = cls(*source.shape, padding_idx=embedding.padding_idx, dtype=source.dtype, device=source.device,
                     block_size=block_size)
        levels = module.levels
        midpoints = (levels[1:] + levels[:-1]) / 2
        blocks = module.embedding_dim // module.block_size
        with torch.no_grad():
            for start in range(0, source.shape[0], _CHUNK_ROWS):
                rows = source[start:start + _CHUNK_ROWS].float()
                grouped = rows.view(rows.shape[0], blocks, module.block_size)
                absmax = grouped.abs().amax(dim=2).clamp_min(1e-12)
                codes = torch.bucketize((grouped / absmax[..., None]).contiguous(), midpoints).view(rows.shape[0], -1)
                module.weight[start:start + _CHUNK_ROWS] = (codes[:, 0::2] * 16 + codes[:, 1::2]).to(torch.uint8)
                module.weight_absmax[start:start + _CHUNK_ROWS] = absmax
        return module

    def _dequantize(self, packed: torch.Tensor, absmax: torch.Tensor) -> torch.Tensor:
        codes = torch.stack([packed >> 4, packed & 15], dim=-1).flatten(-2).long()
        values = self.levels[codes].unflatten(-1, (-1, self.block_size)) * absmax.unsqueeze(-1)
        return values.flatten(-2).to(self.dtype)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._dequantize(nn.functional.embedding(input_ids, self.weight), self.weight_absmax[input_ids])

    def dequantized_weight(self) -> torch.Tensor:
        """The full ``Ŵ`` (for inspection and tests; training never builds it)."""
        return self._dequantize(self.weight, self.weight_absmax)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, nf4 blocks of {self.block_size}"


QUANTIZED_EMBEDDINGS = (Int8Embedding, NF4Embedding)


def quantize_input_embeddings(model: Any, bits: int) -> nn.Module:
    """Replace ``model``'s word embedding by :class:`Int8Embedding` (8) or :class:`NF4Embedding` (4), in place.

    Refused (ConfigError) when the embedding is tied to an output layer (the tie would silently break) or uses
    ``max_norm`` (renormalises rows in place on lookup).
    """
    embedding = model.get_input_embeddings()
    if isinstance(embedding, QUANTIZED_EMBEDDINGS):
        return embedding
    if not isinstance(embedding, nn.Embedding):
        raise ConfigError(f"cannot quantize a {type(embedding).__name__} input embedding",
                          "pass --quantize_embeddings false")
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        raise ConfigError("the input embedding is tied to the output layer and cannot be quantized alone",
                          "pass --quantize_embeddings false")
    if embedding.max_norm is not None:
        raise ConfigError("embeddings with max_norm cannot be quantized", "pass --quantize_embeddings false")
    if bits == 8:
        quantized: nn.Module = Int8Embedding.from_embedding(embedding)
    elif bits == 4:
        quantized = NF4Embedding.from_embedding(embedding)
    else:
        raise ConfigError(f"no {bits}-bit embedding quantization", "use 8 or 4")
    model.set_input_embeddings(quantized)
    return quantized


def logical_numel(param: torch.Tensor, module: nn.Module | None = None) -> int:
    """Number of real weights a parameter stands for: a packed 4-bit tensor holds two per byte element.

    bitsandbytes ``Params4bit`` keeps the original shape in ``quant_state.shape``; :class:`NF4Embedding` packs
    ``embedding_dim // 2`` bytes per row. Any other tensor counts its elements.
    """
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    if shape is not None:
        return int(torch.Size(shape).numel())
    if isinstance(module, NF4Embedding) and param is module.weight:
        return module.num_embeddings * module.embedding_dim
    return param.numel()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model`` counted as weights, not storage elements (each shared tensor once):
    with ``--quant 4bit`` a plain ``numel`` sum reports about half the real count."""
    seen: set[int] = set()
    total = 0
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen or (trainable_only and not param.requires_grad):
                continue
            seen.add(id(param))
            total += logical_numel(param, module)
    return total


def prepare_for_kbit_training(model: Any, gradient_checkpointing: bool = False) -> Any:
    """peft's ``prepare_model_for_kbit_training`` without the memory inflation, in place.

    peft freezes the base, casts *every* fp16/bf16 parameter to fp32 (on an fp16-loaded backbone that doubles the
    embedding matrix: 96M of multilingual-e5-small's 118M parameters) and turns on gradient checkpointing by default
    (~30 % slower on CPU). Here: freeze the base, upcast only 1-D half-precision parameters (LayerNorm weights and
    biases: the numerically sensitive ones, QLoRA §3) to fp32, leave matrices as loaded, and enable (non-reentrant)
    gradient checkpointing only when asked. skewtune loads backbones in fp32, so the upcast is usually a no-op.
    """
    for param in model.parameters():
        param.requires_grad_(False)
        if param.dim() == 1 and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.float()
    if gradient_checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def keep_cpu_4bit_trainable(model: Any) -> int:
    """Turn off bitsandbytes' one-way CPU inference repacking of ``Linear4bit`` weights; returns the layer count.

    Upstream problem (bitsandbytes 0.50.2, ``nn/modules.py::Linear4bit.forward``): on CPUs with AVX512-BF16, the
    first forward in eval mode without gradients rewrites the weight in place into a CPU-packed layout
    (``_convert_weight_packed_for_cpu``) and sets ``quant_state.packing_format_for_cpu``. From then on
    ``matmul_4bit`` takes the inference-only ``gemv_4bit`` route in every mode: after the first validation pass
    LoRA training fails ("a view of a leaf Variable that requires grad is being used in an in-place operation")
    or loses its gradient path; the route also rounds the block absmax to bf16 (logits moved by 0.03 on MiniLM),
    and the conversion crashes outright when ``in_features < blocksize`` (64). With the flag off, eval uses the
    same dequantize + matmul path as training (compute dtype from the quantization config). GPU is unaffected.
    """
    count = 0
    try:  # lazy: bitsandbytes is platform-dependent and may be absent; only quantized models need it
        from bitsandbytes.nn import Linear4bit
    except Exception:  # pragma: no cover - bitsandbytes absent
        return 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def keep_int8_scales(model: Any) -> int:
    """Keep every ``Linear8bitLt``'s row scales when its weight parameter is re-created; returns the layer count.

    Upstream problem (peft 0.21.2 ``utils/integrations.py::dequantize_module_weight`` with bitsandbytes 0.50.2):
    on CPU peft re-assigns ``module.weight = module.weight.to("cpu")`` after dequantizing (DoRA does this on
    every forward). ``Int8Params.to`` builds a new parameter with ``CB`` set but ``SCB = None`` (the scales
    already moved to ``module.state``), and the next ``Linear8bitLt.forward`` copies that ``None`` into
    ``state.SCB``: DoRA on an 8-bit backbone fails on its second step with "'NoneType' object has no attribute
    'unsqueeze'". A forward pre-hook hands the (unchanged) scales back before bitsandbytes reads them.
    """
    try:  # lazy: as in keep_cpu_4bit_trainable
        from bitsandbytes.nn import Linear8bitLt
    except Exception:  # pragma: no cover - bitsandbytes absent
        return 0

    def restore(module: Any, args: Any) -> None:
        weight, state = module.weight, module.state
        if getattr(weight, "CB", None) is not None and getattr(weight, "SCB", None) is None and state.SCB is not None:
            weight.SCB = state.SCB

    count = 0
    for module in model.modules():
        if isinstance(module, Linear8bitLt) and not getattr(module, "_skewtune_keeps_scb", False):
            module.register_forward_pre_hook(restore)
            module._skewtune_keeps_scb = True
            count += 1
    return count


def probe_device() -> torch.device:
    """Where quantized layers will live: the current CUDA device, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def check_bitsandbytes(quant: str, device: torch.device | None = None) -> None:
    """ConfigError (one line, naming the failure) unless bitsandbytes can train ``quant`` layers on ``device``.

    Runs a 64×64 ``Linear8bitLt``/``Linear4bit`` (NF4, double quantization) forward + backward once per process
    and device (milliseconds); the result is cached.
    """
    if quant == "none":
        return
    device = device or probe_device()
    problem = _probe(quant, str(device))
    if problem:
        raise ConfigError(
            f"--quant {quant} cannot run on {device} with the installed bitsandbytes: {problem}",
            "install a bitsandbytes build with a kernel for this device (>= 0.48 for CPU), or use --quant 8bit/none",
        )


@functools.cache
def _probe(quant: str, device: str) -> str | None:
    try:  # lazy: the probe reports a bitsandbytes that does not import instead of failing at import time
        import bitsandbytes as bnb
    except Exception as exc:  # pragma: no cover - import failures differ per platform
        return f"bitsandbytes does not import ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    try:
        with torch.random.fork_rng(devices=devices):  # layer init must not move the run's seeded RNG
            return _probe_layer(bnb, quant, device)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"[:200]


def _probe_layer(bnb: Any, quant: str, device: str) -> str | None:
    """A 64×64 quantized layer, forward + backward on ``device``; a problem description or None."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 64, generator=generator)
    if quant == "8bit":
        layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False)
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        compute = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=compute, compress_statistics=True,
                                  quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=True, quant_type="nf4")
    layer = layer.to(device)
    x = torch.randn(2, 64, generator=generator).to(device).requires_grad_(True)
    out = layer(x)
    out.float().sum().backward()
    if x.grad is None or not torch.isfinite(out.float()).all() or not torch.isfinite(x.grad.float()).all():
        return "the probe layer produced no finite output/gradient"
    return None
