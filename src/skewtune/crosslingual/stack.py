"""Stack a language adapter under a task adapter (MAD-X style) on one peft model.

Choice: both adapters stay *separate named LoRA adapters of the same* :class:`peft.PeftModel` and are active
together (``LoraModel.set_adapter([task, language])``). Every adapted Linear then computes
``W x + B_task A_task x + B_lang A_lang x`` — exactly the adapter that ``add_weighted_adapter([task, lang],
[1, 1], combination_type="cat")`` would build, without materialising it, so languages swap in O(1) (activate
another name) and nothing is merged into the (possibly 8-bit) base weights; merging the language LoRA into int8
weights would re-quantize them and could not be undone. The task adapter's head (``modules_to_save``) stays the
only head. Language adapters are loaded frozen; when a task adapter is *trained* over a language adapter (MAD-X:
train over the source-language adapter, then swap in the target one), only the task adapter learns.

Loading goes through ``PeftModel.add_adapter`` of the base class plus ``set_peft_model_state_dict``: the
sequence/token-classification subclasses would register the classifier as a ``modules_to_save`` of every added
adapter, and peft then refuses two active adapters that both own a classifier copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file

from skewtune.adapters.io import check_folder_safe, read_manifest, verify_folder
from skewtune.errors import AdapterError


def _peft(model: Any) -> Any:
    """The PeftModel inside an Accelerate/DDP wrapper."""
    inner = getattr(model, "module", model)
    if not hasattr(inner, "base_model") or not hasattr(inner, "peft_config"):
        raise AdapterError("language adapters stack onto a peft model", "wrap the backbone with build_adapter first")
    return inner


def attach_language_adapter(model: Any, folder: str | Path, name: str, *, verify: bool = True) -> str:
    """Load the LoRA language adapter in ``folder`` into ``model`` as adapter ``name`` (frozen, inactive)."""


    peft_model = _peft(model)
    folder = Path(folder)
    check_folder_safe(folder)
    manifest = read_manifest(folder)
    if verify:
        verify_folder(folder, manifest)
    if manifest.get("role") != "language_adapter":
        raise AdapterError(f"{folder} is not a language adapter (role {manifest.get('role')!r})",
                           "train one with skewtune.crosslingual.train_language_adapter")
    if name in peft_model.peft_config:
        raise AdapterError(f"adapter name '{name}' is already loaded", "choose another name or detach it first")
    config = LoraConfig.from_pretrained(str(folder))
    config.inference_mode = True
    config.modules_to_save = None
    try:
        # add_adapter initialises the new LoRA weights randomly (then overwritten by the file) and so advanced the
        # global torch RNG: every extra adapter shifted the task adapter's dropout masks and data order, i.e.
        # loading N languages silently changed the training seed. fork_rng keeps the caller's RNG untouched.
        with torch.random.fork_rng(devices=[]):
            PeftModel.add_adapter(peft_model, name, config)
        weights = load_file(str(folder / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(peft_model, weights, adapter_name=name)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise AdapterError(f"language adapter {folder} does not fit this backbone: {str(exc).splitlines()[0][:200]}",
                           "train it on the same backbone as the task adapter") from exc
    unexpected = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if unexpected:
        raise AdapterError(f"language adapter {folder} has weights this model lacks: {unexpected[0]}",
                           "train it on the same backbone as the task adapter")
    _freeze(peft_model, name)
    return name


def _freeze(peft_model: Any, name: str) -> None:
    marker = f".{name}."
    for param_name, param in peft_model.named_parameters():
        if marker in param_name:
            param.requires_grad_(False)


def activate(model: Any, task: str = "default", language: str | None = None) -> list[str]:
    """Make ``task`` (+ ``language`` under it) the active adapters; only ``task`` keeps trainable weights."""
    peft_model = _peft(model)
    names = [task] + ([language] if language else [])
    for name in names:
        if name not in peft_model.peft_config:
            raise AdapterError(f"adapter '{name}' is not loaded", f"loaded: {', '.join(peft_model.peft_config)}")
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    peft_model.base_model.set_adapter(names)
    # set_adapter makes every active adapter trainable: restore the task's state, keep languages frozen
    for param_name, param in peft_model.named_parameters():
        param.requires_grad_(param_name in trainable and all(f".{n}." not in param_name for n in names[1:]))
    return names


def detach_language_adapter(model: Any, name: str, task: str = "default") -> None:
    """Remove adapter ``name`` (e.g. before saving the task adapter alone)."""
    peft_model = _peft(model)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    peft_model.base_model.set_adapter([task])
    peft_model.delete_adapter(name)
    for param_name, param in peft_model.named_parameters():
        param.requires_grad_(param_name in trainable)


def loaded_language_adapters(model: Any, task: str = "default") -> list[str]:
    return [name for name in _peft(model).peft_config if name != task]


__all__ = ["activate", "attach_language_adapter", "detach_language_adapter", "loaded_language_adapters"]
