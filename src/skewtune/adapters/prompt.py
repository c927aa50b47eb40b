"""Prompt tuning (Lester et al. 2021): trainable virtual-token embeddings prepended to the input.

peft builds and saves the prompt (``PromptTuningConfig``); :mod:`skewtune.adapters.compat` fixes its forward for
token classification (virtual tokens dropped from the logits) and decoders (last real token pooled).
Encoders pool the first virtual token in place of [CLS], as in peft.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peft import PromptTuningConfig, PromptTuningInit

from skewtune.adapters.base import ADAPTERS, AdapterSettings, peft_task_type
from skewtune.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class PromptSettings(AdapterSettings):
    """AdapterSettings plus the prompt initialisation: random (default) or the embeddings of ``init_text``."""

    init_text: str | None = None
    tokenizer_path: str | None = None  # for init_text; None -> the backbone folder


@ADAPTERS.register("prompt")
def prompt_config(model: PreTrainedModel, settings: AdapterSettings, task: str) -> PromptTuningConfig:
    """Prompt tuning (Lester et al. 2021): trainable virtual-token embeddings prepended to the input.

    ``PromptTuningConfig`` for ``model``; text initialisation tokenises ``init_text`` with the backbone's tokenizer."""
    if settings.num_virtual_tokens < 1:
        raise ConfigError(
            f"num_virtual_tokens must be at least 1, got {settings.num_virtual_tokens}", "use e.g. --num_virtual_tokens 16"
        )
    if model.get_input_embeddings() is None:
        raise ConfigError(
            f"prompt tuning needs input embeddings, this {model.config.model_type} backbone has none",
            "use --adapter lora",
        )
    init_text = getattr(settings, "init_text", None)
    extra: dict[str, Any] = {"prompt_tuning_init": PromptTuningInit.RANDOM}
    if init_text:
        tokenizer_path = getattr(settings, "tokenizer_path", None) or getattr(model.config, "_name_or_path", "")
        if not tokenizer_path or not Path(tokenizer_path).is_dir():
            raise ConfigError(
                "prompt initialisation from text needs the backbone's tokenizer folder",
                "pass tokenizer_path (a local folder) or drop init_text",
            )
        extra = {
            "prompt_tuning_init": PromptTuningInit.TEXT,
            "prompt_tuning_init_text": init_text,
            "tokenizer_name_or_path": str(tokenizer_path),
        }
    return PromptTuningConfig(
        task_type=peft_task_type(task),
        num_virtual_tokens=settings.num_virtual_tokens,
        modules_to_save=list(settings.modules_to_save) or None,
        **extra,
    )
