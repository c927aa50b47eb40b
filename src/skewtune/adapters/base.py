"""What every adapter builder shares: the registry ``ADAPTERS``, :class:`AdapterSettings` and the target modules
per architecture. Builders live in ``registry.py`` (LoRA family, IA³), ``prefix.py`` and ``prompt.py`` and register
themselves here; the package ``__init__`` imports them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skewtune.errors import ConfigError
from skewtune.utils.registry import Registry

if TYPE_CHECKING:
    from peft import PeftConfig
    from transformers import PreTrainedModel

# attention (+ feed-forward) Linear names per model_type; "all-linear" style lists keep LoRA strong on small encoders
TARGET_MODULES: dict[str, dict[str, list[str]]] = {
    "bert": {"attention": ["query", "value"], "all": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]},
    "roberta": {"attention": ["query", "value"], "all": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]},
    "xlm-roberta": {"attention": ["query", "value"], "all": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]},
    "deberta-v2": {"attention": ["query_proj", "value_proj"], "all": ["query_proj", "key_proj", "value_proj", "attention.output.dense", "intermediate.dense", "output.dense"]},
    "distilbert": {"attention": ["q_lin", "v_lin"], "all": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]},
    "gpt2": {"attention": ["c_attn"], "all": ["c_attn", "c_proj", "c_fc"]},
    "llama": {"attention": ["q_proj", "v_proj"], "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    "qwen2": {"attention": ["q_proj", "v_proj"], "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    "mistral": {"attention": ["q_proj", "v_proj"], "all": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
}
IA3_FEEDFORWARD: dict[str, list[str]] = {
    "bert": ["output.dense"], "roberta": ["output.dense"], "xlm-roberta": ["output.dense"],
    "deberta-v2": ["output.dense"], "distilbert": ["lin2"], "gpt2": ["c_fc"],
    "llama": ["down_proj"], "qwen2": ["down_proj"], "mistral": ["down_proj"],
}


@dataclass
class AdapterSettings:
    """Hyper-parameters shared by the adapter builders (unused ones are ignored per method)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: list[str] | str | None = None  # None → per-architecture default; "attention" | "all" | names
    num_virtual_tokens: int = 16
    modules_to_save: list[str] = field(default_factory=list)
    layers_to_transform: list[int] | None = None  # LoRA family: only these transformer layers (None: all)


def default_target_modules(model_type: str, which: str = "all") -> list[str]:
    family = TARGET_MODULES.get(model_type)
    if family is None:
        raise ConfigError(
            f"no default LoRA target modules for model type '{model_type}'",
            f"pass --target_modules explicitly (known families: {', '.join(sorted(TARGET_MODULES))})",
        )
    return list(family[which])


def resolve_target_modules(model: PreTrainedModel, settings: AdapterSettings) -> list[str]:
    targets = settings.target_modules
    model_type = model.config.model_type
    if targets is None:
        return default_target_modules(model_type, "all")
    if isinstance(targets, str):
        if targets in ("attention", "all"):
            return default_target_modules(model_type, targets)
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    names = [name for name, _ in model.named_modules()]
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        raise ConfigError(
            f"target modules {', '.join(unmatched)} match no module of this {model_type} backbone",
            f"use names such as {', '.join(default_target_modules(model_type, 'all')) if model_type in TARGET_MODULES else 'the Linear layers of the model'}",
        )
    return list(targets)


def peft_task_type(task: str) -> str:
    """peft's task type for skewtune's ``task`` (``seq_cls`` / ``token_cls``)."""
    return "TOKEN_CLS" if task == "token_cls" else "SEQ_CLS"


# name -> builder(model, settings, task) returning the peft config
ADAPTERS: Registry[Callable[..., PeftConfig]] = Registry("adapter")
