"""Per-task classification heads of a multi-task adapter folder (what inference needs to pick a task).

A merged adapter whose sources have different label sets (written by :func:`skewtune.merge.merge_adapters`)
stores one head per task next to the standard PEFT files; its ``skewtune.json`` says which::

    "default_task": "<task>",          # the head inside adapter_model.safetensors (what plain peft loads)
    "tasks": {"<task>": {"id2label": {...}, "head_file": "heads/<task>.safetensors", ...}}

:func:`skewtune.adapters.io.task_names` / :func:`~skewtune.adapters.io.select_task` read that part of the manifest
(no torch, so the hub can list tasks); :func:`load_head_file` and :func:`set_head_params` put a task's head tensors
into a loaded model. Inference and merging both use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

from skewtune.errors import AdapterError

PEFT_PREFIX = "base_model.model."  # keys of a PEFT safetensors file


def load_head_file(folder: str | Path, head_file: str) -> dict[str, torch.Tensor]:
    """Head tensors of ``folder/head_file`` (inside the folder only), keys without the PEFT prefix."""
    folder = Path(folder)
    target = (folder / head_file).resolve()
    if folder.resolve() not in target.parents or not target.is_file():
        raise AdapterError(f"head file {head_file} is missing or outside {folder}", "pull a clean copy of the adapter")
    return {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in load_file(str(target)).items()}


def _find_owner(model: torch.nn.Module, param_path: str) -> tuple[torch.nn.Module, str]:
    """Module holding ``param_path`` (peft ModulesToSaveWrapper → its active copy) and the leaf name."""
    root = model.base_model.model if hasattr(model, "peft_config") else model  # PeftModel → the transformers model
    parts = param_path.split(".")
    module: torch.nn.Module = root
    for i, part in enumerate(parts[:-1]):
        module = getattr(module, part)
        copies = getattr(module, "modules_to_save", None)
        if isinstance(copies, torch.nn.ModuleDict) and copies:
            active = list(getattr(module, "active_adapters", None) or [])
            module = copies[active[0]] if active and active[0] in copies else next(iter(copies.values()))
            rest = parts[i + 1:]
            for sub in rest[:-1]:
                module = getattr(module, sub)
            return module, rest[-1]
    return module, parts[-1]


def set_head_params(model: torch.nn.Module, heads: Mapping[str, torch.Tensor]) -> None:
    """Put head tensors (keys without the ``base_model.model.`` prefix) into ``model``, resizing if needed."""
    with torch.no_grad():
        for key, value in heads.items():
            owner, leaf = _find_owner(model, key)
            current = getattr(owner, leaf, None)
            if not isinstance(current, torch.Tensor):
                raise AdapterError(f"the model has no parameter {key} for the head", "use the adapter's own base model")
            if current.dtype == torch.int8:
                raise AdapterError(f"head parameter {key} is quantized in the base", "keep heads out of quantization")
            new = value.to(dtype=current.dtype, device=current.device)
            if tuple(current.shape) == tuple(new.shape):
                current.copy_(new)
            else:
                setattr(owner, leaf, torch.nn.Parameter(new.clone(), requires_grad=False))
                if leaf == "weight" and hasattr(owner, "out_features"):
                    owner.out_features = int(new.shape[0])
