"""Prefix tuning (Li & Liang 2021; P-tuning v2, Liu et al. 2022) for sequence and token classification.

peft builds and saves the prefix (``PrefixTuningConfig``); :mod:`skewtune.adapters.compat` makes it run on
transformers 5: trainable keys/values are prepended in every self-attention layer, positions are not shifted.
Supported model types: :data:`skewtune.adapters.compat.PREFIX_ATTENTION` (BERT, RoBERTa, XLM-R, Llama, Qwen2,
Mistral) with eager or sdpa attention; anything else raises ConfigError before peft is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from peft import PrefixTuningConfig

from skewtune.adapters.base import ADAPTERS, AdapterSettings, peft_task_type
from skewtune.adapters.compat import check_prefix_support
from skewtune.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass
class PrefixSettings(AdapterSettings):
    """AdapterSettings plus the prefix options: an MLP reparametrisation (``prefix_projection``) and its width."""

    prefix_projection: bool = False
    encoder_hidden_size: int | None = None  # MLP width with prefix_projection; None -> the model's hidden size


@ADAPTERS.register("prefix")
def prefix_config(model: PreTrainedModel, settings: AdapterSettings, task: str) -> PrefixTuningConfig:
    """Prefix tuning (Li & Liang 2021): trainable keys/values prepended in every self-attention layer.

    ``PrefixTuningConfig`` for ``model`` (ConfigError when its architecture cannot take a prefix)."""
    check_prefix_support(model)
    if settings.num_virtual_tokens < 1:
        raise ConfigError(
            f"num_virtual_tokens must be at least 1, got {settings.num_virtual_tokens}", "use e.g. --num_virtual_tokens 16"
        )
    projection = bool(getattr(settings, "prefix_projection", False))
    hidden = getattr(settings, "encoder_hidden_size", None) or model.config.hidden_size
    return PrefixTuningConfig(
        task_type=peft_task_type(task),
        num_virtual_tokens=settings.num_virtual_tokens,
        prefix_projection=projection,
        encoder_hidden_size=hidden,
        modules_to_save=list(settings.modules_to_save) or None,
    )
