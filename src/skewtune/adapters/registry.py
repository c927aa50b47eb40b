"""Build a peft adapter by name on a loaded backbone.

Target modules are chosen per architecture family; heads (classifier/pooler/score) are trained and saved
through peft's ``modules_to_save`` so a vanilla ``PeftModel.from_pretrained`` restores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skewtune.errors import ConfigError
from skewtune.utils.registry import Registry

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


def _resolve_targets(model: Any, settings: AdapterSettings) -> list[str]:
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


def _task_type(task: str) -> str:
    return "TOKEN_CLS" if task == "token_cls" else "SEQ_CLS"


ADAPTERS: Registry[Callable[..., Any]] = Registry("adapter")


def _lora_config(model: Any, settings: AdapterSettings, task: str, **extra: Any):
    from peft import LoraConfig

    return LoraConfig(
        task_type=_task_type(task),
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=_resolve_targets(model, settings),
        modules_to_save=list(settings.modules_to_save) or None,
        layers_to_transform=list(settings.layers_to_transform) if settings.layers_to_transform else None,
        **extra,
    )


@ADAPTERS.register("lora")
def _lora(model: Any, settings: AdapterSettings, task: str):
    """LoRA (Hu et al. 2021): W + (alpha/r)·B·A."""
    return _lora_config(model, settings, task)


@ADAPTERS.register("rslora")
def _rslora(model: Any, settings: AdapterSettings, task: str):
    """rank-stabilised LoRA (Kalajdzievski 2023): W + (alpha/√r)·B·A."""
    return _lora_config(model, settings, task, use_rslora=True)


@ADAPTERS.register("dora")
def _dora(model: Any, settings: AdapterSettings, task: str):
    """DoRA (Liu et al. 2024): magnitude m · (W + BA)/‖W + BA‖_c."""
    return _lora_config(model, settings, task, use_dora=True)


@ADAPTERS.register("ia3")
def _ia3(model: Any, settings: AdapterSettings, task: str):
    """(IA)^3 (Liu et al. 2022): learned vectors rescaling keys, values and feed-forward activations."""
    from peft import IA3Config

    model_type = model.config.model_type
    targets = _resolve_targets(model, AdapterSettings(target_modules=settings.target_modules))
    feed_forward = [t for t in IA3_FEEDFORWARD.get(model_type, []) if t in targets]
    return IA3Config(
        task_type=_task_type(task),
        target_modules=targets,
        feedforward_modules=feed_forward,
        modules_to_save=list(settings.modules_to_save) or None,
    )


def build_adapter(model: Any, kind: str, settings: AdapterSettings | None = None, task: str = "seq_cls"):
    """Wrap ``model`` with the adapter ``kind``; returns a ``peft.PeftModel``."""
    from peft import get_peft_model

    settings = settings or AdapterSettings()
    config_builder = ADAPTERS.get(kind)
    config = config_builder(model, settings, task)
    peft_model = get_peft_model(model, config)
    if getattr(config, "is_prompt_learning", False):  # prefix/prompt: peft 0.21's forward fails on transformers 5
        from skewtune.adapters.compat import install_prompt_learning_shim

        install_prompt_learning_shim(peft_model)
    return peft_model


@ADAPTERS.register("prefix")
def _prefix(model: Any, settings: AdapterSettings, task: str):
    """Prefix tuning (Li & Liang 2021): trainable keys/values prepended in every self-attention layer."""
    from skewtune.adapters.prefix import prefix_config

    return prefix_config(model, settings, task)


@ADAPTERS.register("prompt")
def _prompt(model: Any, settings: AdapterSettings, task: str):
    """Prompt tuning (Lester et al. 2021): trainable virtual-token embeddings prepended to the input."""
    from skewtune.adapters.prompt import prompt_config

    return prompt_config(model, settings, task)
