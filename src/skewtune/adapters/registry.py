"""Build a peft adapter by name on a loaded backbone: the LoRA family (``lora``, ``rslora``, ``dora``) and ``ia3``
(``prefix`` and ``prompt`` register from their own modules).

Target modules are chosen per architecture family; heads (classifier/pooler/score) are trained and saved
through peft's ``modules_to_save`` so a vanilla ``PeftModel.from_pretrained`` restores them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peft import IA3Config, LoraConfig, get_peft_model

from skewtune.adapters import prefix, prompt  # noqa: F401  (the prefix and prompt builders register themselves)
from skewtune.adapters.base import (
    ADAPTERS,
    IA3_FEEDFORWARD,
    TARGET_MODULES,
    AdapterSettings,
    default_target_modules,
    peft_task_type,
    resolve_target_modules,
)
from skewtune.adapters.compat import install_prompt_learning_shim

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = ["ADAPTERS", "IA3_FEEDFORWARD", "TARGET_MODULES", "AdapterSettings", "build_adapter",
           "default_target_modules", "resolve_target_modules"]



def _lora_config(model: PreTrainedModel, settings: AdapterSettings, task: str, **extra: Any) -> LoraConfig:
    return LoraConfig(
        task_type=peft_task_type(task),
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=resolve_target_modules(model, settings),
        modules_to_save=list(settings.modules_to_save) or None,
        layers_to_transform=list(settings.layers_to_transform) if settings.layers_to_transform else None,
        **extra,
    )


@ADAPTERS.register("lora")
def _lora(model: PreTrainedModel, settings: AdapterSettings, task: str) -> LoraConfig:
    """LoRA (Hu et al. 2021): W + (alpha/r)·B·A."""
    return _lora_config(model, settings, task)


@ADAPTERS.register("rslora")
def _rslora(model: PreTrainedModel, settings: AdapterSettings, task: str) -> LoraConfig:
    """rank-stabilised LoRA (Kalajdzievski 2023): W + (alpha/√r)·B·A."""
    return _lora_config(model, settings, task, use_rslora=True)


@ADAPTERS.register("dora")
def _dora(model: PreTrainedModel, settings: AdapterSettings, task: str) -> LoraConfig:
    """DoRA (Liu et al. 2024): magnitude m · (W + BA)/‖W + BA‖_c."""
    return _lora_config(model, settings, task, use_dora=True)


@ADAPTERS.register("ia3")
def _ia3(model: PreTrainedModel, settings: AdapterSettings, task: str) -> IA3Config:
    """(IA)^3 (Liu et al. 2022): learned vectors rescaling keys, values and feed-forward activations."""
    model_type = model.config.model_type
    targets = resolve_target_modules(model, AdapterSettings(target_modules=settings.target_modules))
    feed_forward = [t for t in IA3_FEEDFORWARD.get(model_type, []) if t in targets]
    return IA3Config(
        task_type=peft_task_type(task),
        target_modules=targets,
        feedforward_modules=feed_forward,
        modules_to_save=list(settings.modules_to_save) or None,
    )


def build_adapter(model: PreTrainedModel, kind: str, settings: AdapterSettings | None = None,
                  task: str = "seq_cls") -> PeftModel:
    """Wrap ``model`` with the adapter ``kind``; returns a ``peft.PeftModel``."""
    settings = settings or AdapterSettings()
    config_builder = ADAPTERS.get(kind)
    config = config_builder(model, settings, task)
    peft_model = get_peft_model(model, config)
    if getattr(config, "is_prompt_learning", False):  # prefix/prompt: peft 0.21's forward fails on transformers 5
        install_prompt_learning_shim(peft_model)
    return peft_model
