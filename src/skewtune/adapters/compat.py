"""Narrow shims that make peft 0.21.2 prompt-learning adapters run on the pinned transformers 5.24.

Upstream problems worked around here (checked in the installed sources):

1. **Prefix tuning cannot run at all.** ``PeftModelForSequenceClassification/TokenClassification.
   _prefix_tuning_forward`` (peft/peft_model.py) looks for a ``past_key_values`` parameter in the signature of the
   model's ``forward`` and raises "Model does not support past key values which are required for prefix tuning"
   when it is missing. transformers 5 renamed it to ``cache`` (``@deprecate_kwarg("past_key_values", "5.40.0",
   new_name="cache")`` on BertModel/XLMRobertaModel/LlamaModel...), so the check fails on every model.
   Renaming is not enough either: a prefilled ``DynamicCache`` makes the encoder embeddings shift every position
   id by ``num_virtual_tokens`` (``cache_length = cache.get_seq_length()``, also XLM-R's padding-aware position
   ids), the model-level cache is mutated in place (breaks gradient checkpointing's recomputation), and the
   encoder mask builder needs peft's prefix-extended 2-D mask. (The reported transformers 4.57 XLM-R failure,
   "'<' not supported between instances of 'tuple' and 'int'", came from that model-level ``past_key_values``
   path too; 4.57 is not installed here to confirm, and the shim never hands the model a cache.)
2. **Prompt tuning is wrong for token classification and decoders.** peft prepends the virtual tokens to
   ``inputs_embeds`` but never strips them from token-classification logits ("Expected input batch_size (16) to
   match target batch_size (10)"), and a decoder's sequence-classification head then pools position ``-1``
   because it only sees ``inputs_embeds`` (a pad token on right-padded batches).

The shim keeps peft's modules, parameters, config and saved format (``adapter_config.json`` with ``peft_type``
``PREFIX_TUNING``/``PROMPT_TUNING`` and ``adapter_model.safetensors`` with ``prompt_embeddings``) and replaces
only the forward pass of the :class:`peft.PeftModel` instance:

* prefix: a per-batch state object is passed down the model as the keyword argument ``skewtune_prefix``
  (transformers 5 forwards ``**kwargs`` from the task model to every attention module). A forward pre-hook on
  each self-attention module takes it out, computes that layer's prefix from the peft prefix parameters (so no
  autograd graph is shared between layers: reentrant gradient checkpointing works), hands the module a per-layer
  ``cache`` object whose ``update`` prepends the prefix to the layer's keys/values, and extends the attention
  mask by ``num_virtual_tokens`` always-visible columns (bool for sdpa, additive float for eager; an explicit
  causal mask is built where sdpa would otherwise use ``is_causal``). Position ids are not shifted.
* prompt: virtual tokens are prepended to the embeddings as in peft; token-classification logits drop them
  before the loss; decoders get padding moved to the left and padding-invariant position ids, so the head pools
  the last real token.

Remove this module when peft passes ``cache=`` and transformers keeps encoder positions unshifted.

3. **Merging fails for tuners without their own ``_replace_module`` (IA³) when a head without a ``weight`` is
   trained.** ``BaseTuner._replace_module`` sets ``new_module.weight = child.weight`` on every module it
   unwraps, so unloading the ``ModulesToSaveWrapper`` around BERT's pooler raises "'BertPooler' object has no
   attribute 'weight'" (peft issue #3114; the guard of PR #3213 is not in 0.21.2). :func:`merge_and_unload`
   swaps each wrapper for its trained copy first, then calls peft.
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from peft import PeftModel
from peft.utils import ModulesToSaveWrapper
from transformers.modeling_layers import GenericForSequenceClassification
from transformers.modeling_outputs import TokenClassifierOutput

from skewtune.errors import AdapterError, ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel

PREFIX_KWARG = "skewtune_prefix"

# model_type -> name suffix of its self-attention modules (the ones that call ``cache.update(key, value, ...)``)
PREFIX_ATTENTION: dict[str, str] = {
    "bert": "attention.self",
    "roberta": "attention.self",
    "xlm-roberta": "attention.self",
    "llama": "self_attn",
    "qwen2": "self_attn",
    "mistral": "self_attn",
}
PREFIX_ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
# task models that pool the last non-padding token (decoders); prompt tuning left-aligns their batches
LAST_TOKEN_POOLING = ("llama", "qwen2", "mistral", "gpt2", "gemma", "gemma2", "phi", "phi3", "opt", "gpt_neox")


# ----------------------------------------------------------------------------------------------------------- prefix


def prefix_attention_modules(model: Any) -> list[Any]:
    """The self-attention modules that receive the prefix, in layer order; ConfigError when unsupported."""
    config = model.config
    model_type = getattr(config, "model_type", "?")
    suffix = PREFIX_ATTENTION.get(model_type)
    if suffix is None:
        raise ConfigError(
            f"prefix adapters are not supported on model type '{model_type}'",
            f"use --adapter lora/ia3/prompt, or a backbone of type {', '.join(sorted(PREFIX_ATTENTION))}",
        )
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in PREFIX_ATTN_IMPLEMENTATIONS:
        raise ConfigError(
            f"prefix adapters need eager or sdpa attention, this {model_type} backbone uses '{impl}'",
            "load the backbone with attn_implementation='sdpa'",
        )
    modules = [m for name, m in model.named_modules() if name == suffix or name.endswith("." + suffix)]
    layers = getattr(config, "num_hidden_layers", len(modules))
    if not modules or len(modules) != layers:
        raise ConfigError(
            f"found {len(modules)} self-attention modules ('{suffix}') in this {model_type} backbone, expected {layers}",
            "use --adapter lora for this backbone",
        )
    for module in modules:
        if "cache" not in inspect.signature(module.forward).parameters:
            raise ConfigError(
                f"the attention of this {model_type} backbone ({type(module).__name__}) takes no 'cache' argument",
                "use --adapter lora for this backbone",
            )
    return modules


def check_prefix_support(model: Any) -> None:
    """Raise ConfigError (one line) when prefix adapters cannot serve ``model``'s architecture."""
    prefix_attention_modules(model)


@dataclass
class _PrefixState:
    """The prefix of one forward pass; each attention hook computes its own layer's (key, value) from it."""

    peft_model: Any
    batch_size: int
    hit: set[int] = field(default_factory=set)

    def layer(self, index: int) -> tuple[Any, Any]:
        return layer_prefix(self.peft_model, index, self.batch_size)


class _PrefixKV:
    """Per-layer stand-in for a transformers ``Cache``: ``update`` returns the prefix + the layer's keys/values.

    Stateless, so recomputation under gradient checkpointing sees the same prefix; a real cache passed by the
    model (decoders build one when ``use_cache``) is updated first and keeps only the real tokens.
    """

    def __init__(self, key: Any, value: Any, inner: Any = None) -> None:
        self.key, self.value, self.inner = key, value, inner

    def update(self, key_states: Any, value_states: Any, layer_idx: int | None = None, *args: Any, **kwargs: Any):
        if self.inner is not None:
            key_states, value_states = self.inner.update(key_states, value_states, layer_idx, *args, **kwargs)
        key = self.key.to(device=key_states.device, dtype=key_states.dtype)
        value = self.value.to(device=value_states.device, dtype=value_states.dtype)
        return torch.cat([key, key_states], dim=-2), torch.cat([value, value_states], dim=-2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.inner.get_seq_length(layer_idx) if self.inner is not None else 0


def _extend_mask(mask: Any, n_prefix: int, module: Any, hidden: Any, past: int) -> Any:
    """Prepend ``n_prefix`` always-visible key columns to a 4-D attention mask (None stays None unless causal)."""
    if mask is None:
        if not getattr(module, "is_causal", False):
            return None
        # sdpa would use is_causal=True, which aligns the triangle top-left: wrong once keys outnumber queries
        q_len = hidden.shape[-2]
        rows = torch.arange(q_len, device=hidden.device)[:, None] + past
        cols = torch.arange(past + q_len, device=hidden.device)[None, :]
        mask = (cols <= rows)[None, None]
        if module.config._attn_implementation == "eager":
            mask = torch.zeros(mask.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
                ~mask, torch.finfo(hidden.dtype).min
            )
    if mask.dim() != 4:
        raise AdapterError(
            f"prefix shim got a {mask.dim()}-D attention mask in {type(module).__name__}, expected 4-D",
            "use eager or sdpa attention",
        )
    extra_shape = (*mask.shape[:-1], n_prefix)
    if mask.dtype == torch.bool:
        extra = torch.ones(extra_shape, dtype=torch.bool, device=mask.device)
    else:
        extra = torch.zeros(extra_shape, dtype=mask.dtype, device=mask.device)
    return torch.cat([extra, mask], dim=-1)


def _make_prefix_hook(layer: int, params: list[str]):
    """Forward pre-hook for one self-attention module (see module docstring)."""

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]):
        state = kwargs.pop(PREFIX_KWARG, None)
        if state is None:
            return args, kwargs
        args = list(args)

        def get(name: str) -> Any:
            if name in kwargs:
                return kwargs[name]
            index = params.index(name) if name in params else len(args)
            return args[index] if index < len(args) else None

        def put(name: str, value: Any) -> None:
            index = params.index(name) if name in params else len(args)
            if name not in kwargs and index < len(args):
                args[index] = value
            else:
                kwargs[name] = value

        key, value = state.layer(layer)
        inner = get("cache")
        hidden = get("hidden_states")
        cache_layer = getattr(module, "layer_idx", None)
        past = inner.get_seq_length(layer if cache_layer is None else cache_layer) if inner is not None else 0
        put("attention_mask", _extend_mask(get("attention_mask"), key.shape[-2], module, hidden, past))
        put("cache", _PrefixKV(key, value, inner))
        state.hit.add(layer)
        return tuple(args), kwargs

    return hook


def layer_prefix(peft_model: Any, layer: int, batch_size: int) -> tuple[Any, Any]:
    """Prefix (key, value) of one layer, each (batch, kv_heads, virtual_tokens, head_dim), as peft's ``get_prompt``.

    Computed per layer straight from the prefix parameters (peft's ``PrefixEncoder``: an embedding, optionally
    Linear-Tanh-Linear), inside the layer's forward: no graph is shared between layers, so (reentrant) gradient
    checkpointing can recompute a layer and backpropagate through it on its own.
    """
    config = peft_model.active_peft_config
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    n_tokens, heads = config.num_virtual_tokens, config.num_attention_heads
    width = config.token_dim
    embedded = encoder.embedding.weight[:n_tokens]  # == embedding(prompt_tokens): peft's tokens are arange(n)
    rows = slice(2 * layer * width, (2 * layer + 2) * width)
    if getattr(encoder, "prefix_projection", False) and not config.inference_mode:
        first, activation, last = encoder.transform
        chunk = torch.nn.functional.linear(activation(first(embedded)), last.weight[rows], last.bias[rows])
    else:  # saved/loaded prefixes are already projected: peft stores the encoder output
        chunk = embedded[:, rows]
    kv = chunk.view(n_tokens, 2, heads, width // heads).permute(1, 2, 0, 3).unsqueeze(1)
    kv = kv.expand(2, batch_size, heads, n_tokens, width // heads)
    return kv[0], kv[1]


def prefix_key_values(peft_model: Any, batch_size: int) -> list[tuple[Any, Any]]:
    """Every layer's prefix (key, value); see :func:`layer_prefix`."""
    return [layer_prefix(peft_model, i, batch_size) for i in range(peft_model.active_peft_config.num_layers)]


def _batch_size(input_ids: Any, inputs_embeds: Any) -> int:
    if input_ids is not None:
        return int(input_ids.shape[0])
    if inputs_embeds is not None:
        return int(inputs_embeds.shape[0])
    raise ConfigError("the adapter forward needs input_ids or inputs_embeds", "pass the tokenised batch")


def _passthrough(**named: Any) -> dict[str, Any]:
    return {k: v for k, v in named.items() if v is not None}


def _prefix_forward(
    self: Any,
    input_ids: Any = None,
    attention_mask: Any = None,
    inputs_embeds: Any = None,
    labels: Any = None,
    output_attentions: Any = None,
    output_hidden_states: Any = None,
    return_dict: Any = None,
    task_ids: Any = None,
    **kwargs: Any,
):
    """PeftModel.forward replacement for PREFIX_TUNING (bound per instance by :func:`install_prompt_learning_shim`)."""
    kwargs.pop("past_key_values", None)
    kwargs.pop("cache", None)
    kwargs.setdefault("use_cache", False)
    state = _PrefixState(self, _batch_size(input_ids, inputs_embeds))
    base = self.get_base_model()
    outputs = base(
        input_ids=input_ids,
        attention_mask=attention_mask,
        inputs_embeds=inputs_embeds,
        labels=labels,
        **_passthrough(output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                       return_dict=return_dict),
        **{PREFIX_KWARG: state},
        **kwargs,
    )
    n_layers = self.active_peft_config.num_layers
    if len(state.hit) != n_layers:
        raise AdapterError(
            f"the prefix reached {len(state.hit)} of {n_layers} attention layers of this "
            f"{base.config.model_type} backbone",
            "use --adapter lora for this backbone",
        )
    return outputs


def _install_prefix(peft_model: Any) -> None:
    base = peft_model.get_base_model()
    modules = prefix_attention_modules(base)
    n_layers = peft_model.active_peft_config.num_layers
    if n_layers != len(modules):
        raise ConfigError(
            f"the prefix adapter has {n_layers} layers, the backbone {len(modules)}",
            "load the adapter on the backbone it was trained on",
        )
    encoder = peft_model.prompt_encoder[peft_model.active_adapter]
    if getattr(encoder, "prefix_projection", False) and not peft_model.active_peft_config.inference_mode:
        transform = getattr(encoder, "transform", None)
        if not (isinstance(transform, torch.nn.Sequential) and len(transform) == 3):
            raise AdapterError("unexpected peft PrefixEncoder layout", "use peft 0.21 (pinned by skewtune)")
    for layer, module in enumerate(modules):
        if getattr(module, "_skewtune_prefix_hooked", False):
            continue
        params = list(inspect.signature(module.forward).parameters)
        module.register_forward_pre_hook(_make_prefix_hook(layer, params), with_kwargs=True)
        module._skewtune_prefix_hooked = True


# ----------------------------------------------------------------------------------------------------------- prompt


def _pools_last_token(model: Any) -> bool:
    return isinstance(model, GenericForSequenceClassification) or model.config.model_type in LAST_TOKEN_POOLING


def _prompt_forward(
    self: Any,
    input_ids: Any = None,
    attention_mask: Any = None,
    inputs_embeds: Any = None,
    labels: Any = None,
    output_attentions: Any = None,
    output_hidden_states: Any = None,
    return_dict: Any = None,
    task_ids: Any = None,
    **kwargs: Any,
):
    """PeftModel.forward replacement for PROMPT_TUNING on SEQ_CLS / TOKEN_CLS."""
    config = self.active_peft_config
    n_virtual = config.num_virtual_tokens
    base = self.get_base_model()
    if inputs_embeds is None:
        inputs_embeds = self.word_embeddings(input_ids)
    batch, length = inputs_embeds.shape[:2]
    device = inputs_embeds.device
    if attention_mask is None:
        attention_mask = torch.ones(batch, length, dtype=torch.long, device=device)
    token_cls = config.task_type == "TOKEN_CLS"
    if not token_cls and _pools_last_token(base):
        # move padding to the left (stable), so the head's position -1 is the last real token
        order = torch.argsort(attention_mask.long(), dim=1, stable=True)
        attention_mask = torch.gather(attention_mask, 1, order)
        inputs_embeds = torch.gather(inputs_embeds, 1, order[..., None].expand_as(inputs_embeds))
        full_mask = torch.cat([torch.ones(batch, n_virtual, dtype=attention_mask.dtype, device=device), attention_mask], 1)
        kwargs["position_ids"] = (full_mask.long().cumsum(-1) - 1).clamp(min=0)
    token_type_ids = kwargs.pop("token_type_ids", None)
    if token_type_ids is not None:
        zeros = torch.zeros(batch, n_virtual, dtype=token_type_ids.dtype, device=token_type_ids.device)
        kwargs["token_type_ids"] = torch.cat([zeros, token_type_ids], dim=1)
    prompts = self.get_prompt(batch_size=batch, task_ids=task_ids).to(inputs_embeds.dtype)
    inputs_embeds = torch.cat([prompts.to(device), inputs_embeds], dim=1)
    attention_mask = torch.cat(
        [torch.ones(batch, n_virtual, dtype=attention_mask.dtype, device=device), attention_mask], dim=1
    )
    kwargs.setdefault("use_cache", False)
    extra = _passthrough(output_attentions=output_attentions, output_hidden_states=output_hidden_states)
    if not token_cls:
        return base(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **extra, **kwargs)
    outputs = base(inputs_embeds=inputs_embeds, attention_mask=attention_mask, **extra, **kwargs)
    logits = outputs.logits[:, n_virtual:]
    loss = None
    if labels is not None:
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device), ignore_index=-100
        )
    return TokenClassifierOutput(
        loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
    )


# ----------------------------------------------------------------------------------------------------------- public


def install_prompt_learning_shim(peft_model: Any) -> Any:
    """Make a PREFIX_TUNING / PROMPT_TUNING ``PeftModel`` run on transformers 5 (no-op for other adapters)."""
    config = peft_model.active_peft_config
    peft_type = str(getattr(config, "peft_type", ""))
    if peft_type.endswith("PREFIX_TUNING"):
        _install_prefix(peft_model)
        peft_model.forward = types.MethodType(_prefix_forward, peft_model)
    elif peft_type.endswith("PROMPT_TUNING"):
        peft_model.forward = types.MethodType(_prompt_forward, peft_model)
    return peft_model


def load_trained_adapter(base_model: PreTrainedModel, folder: str | Path, *, is_trainable: bool = False) -> PeftModel:
    """``PeftModel.from_pretrained(base_model, folder)`` plus the shim prefix/prompt adapters need to run."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise AdapterError(f"{folder} has no adapter_config.json", "point at an adapter folder saved by skewtune")
    try:
        model = PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable)
    except (ValueError, RuntimeError, KeyError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        # torch's "Error(s) in loading state_dict for …:" says nothing by itself: name the first mismatch
        detail = next((line for line in lines if "size mismatch" in line), lines[0])[:300]
        raise AdapterError(
            f"cannot load the adapter in {folder} on this backbone: {detail}",
            "load it on the backbone (and task head) it was trained with",
        ) from exc
    return install_prompt_learning_shim(model)


def merge_and_unload(peft_model: PeftModel) -> PreTrainedModel:
    """peft's ``merge_and_unload`` with trained ``modules_to_save`` copies put in place first (shim 3 above)."""
    for name, module in list(peft_model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper):
            parent_name, _, child_name = name.rpartition(".")
            trained = module.modules_to_save[module.active_adapters[0]]
            setattr(peft_model.get_submodule(parent_name), child_name, trained)
    return peft_model.merge_and_unload()
