"""Multi-task adapters: one merged LoRA, one classification head per task.

A skewtune extension of the adapter folder, written by :func:`skewtune.merge.merge_adapters` when the sources
have different label sets::

    merged/
      adapter_config.json          # standard PEFT LoRA config (merged LoRA; modules_to_save = union of heads)
      adapter_model.safetensors    # standard PEFT weights: merged LoRA + the head of the default task
      heads/<task>.safetensors     # every task's head tensors (modules_to_save), keys as in the PEFT file
      README.md                    # card with the lineage and task list
      skewtune.json                # manifest: id2label of the default task plus
                                   #   "default_task": "<task>",
                                   #   "tasks": {"<task>": {"id2label": {...}, "head_file": "heads/<task>.safetensors",
                                   #                        "sources": [...], "dataset": ...}}

Vanilla ``PeftModel.from_pretrained`` loads it as a single-task model for the default task;
:class:`MultiTaskClassifier` swaps the head per call: ``predict(texts, task=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from safetensors.torch import load_file

from skewtune.adapters.heads import set_head_params  # shared with inference (skewtune.inference.load_adapter)
from skewtune.adapters.io import read_manifest, verify_folder
from skewtune.backbones import (
    base_fingerprint,
    load_backbone,
    load_tokenizer,
    quiet_loading,
    resolve_backbone,
)
from skewtune.errors import AdapterError, MergeError
from skewtune.merge.sources import PEFT_PREFIX


def load_heads(path: Path) -> dict[str, torch.Tensor]:
    return {k[len(PEFT_PREFIX):] if k.startswith(PEFT_PREFIX) else k: v for k, v in load_file(str(path)).items()}


def check_base(manifest: Mapping[str, Any], base_path: str) -> None:
    """Refuse a base folder whose fingerprint differs from the one the adapter records."""
    expected = manifest.get("base_fingerprint")
    folder = Path(base_path)
    if expected and folder.is_dir() and (folder / "config.json").is_file():
        if base_fingerprint(str(folder)) != expected:
            raise MergeError(
                f"base model {base_path} differs from the one the adapter was trained on (base_fingerprint)",
                f"pass the adapter's base model ({manifest.get('base_model')})",
            )


class MultiTaskClassifier:
    """Sequence classifier over a (multi-task) merged adapter: ``predict(texts, task=...)``."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        tasks: Mapping[str, Mapping[str, str]],
        heads: Mapping[str, Mapping[str, torch.Tensor]],
        default_task: str,
        max_length: int = 256,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.id2label = {t: dict(labels) for t, labels in tasks.items()}
        self.heads = {t: dict(h) for t, h in heads.items()}
        self.default_task = default_task
        self.max_length = max_length
        self._active = default_task

    @property
    def tasks(self) -> list[str]:
        return list(self.id2label)

    @classmethod
    def from_folder(
        cls, path: str | Path, base_model_path: str, quant: str = "none", max_length: int = 256
    ) -> MultiTaskClassifier:
        """Load a merged adapter folder (single- or multi-task) on ``base_model_path`` (name or folder)."""
        folder = Path(path).expanduser()
        manifest = verify_folder(folder, read_manifest(folder))
        if manifest.get("task_type", "seq_cls") != "seq_cls":
            raise MergeError("MultiTaskClassifier handles sequence classification only", "use a seq_cls adapter")
        tasks_info = manifest.get("tasks") or {}
        default = manifest.get("default_task") or "default"
        if not tasks_info:
            tasks_info = {default: {"id2label": manifest.get("id2label") or {}, "head_file": None}}
        spec = resolve_backbone(base_model_path)
        check_base(manifest, spec.path)
        labels = {t: {str(k): str(v) for k, v in info["id2label"].items()} for t, info in tasks_info.items()}
        if not labels.get(default):
            raise AdapterError(f"{folder} has no labels for task '{default}'", "re-save the adapter with skewtune")
        base = load_backbone(spec, num_labels=len(labels[default]),
                             id2label={int(k): v for k, v in labels[default].items()}, quant=quant)
        with quiet_loading():
            model = PeftModel.from_pretrained(base, str(folder), is_trainable=False)
        heads: dict[str, dict[str, torch.Tensor]] = {}
        for task, info in tasks_info.items():
            head_file = info.get("head_file")
            if head_file:
                target = (folder / head_file).resolve()
                if folder.resolve() not in target.parents or not target.is_file():
                    raise AdapterError(f"head file {head_file} of task '{task}' is missing or outside {folder}",
                                       "pull a clean copy of the adapter")
                heads[task] = load_heads(target)
            else:
                heads[task] = {}
        return cls(model, load_tokenizer(spec), labels, heads, default, max_length=max_length)

    def _activate(self, task: str | None) -> str:
        task = task or self.default_task
        if task not in self.id2label:
            raise MergeError(f"unknown task '{task}'", f"use one of: {', '.join(self.tasks)}")
        if task != self._active and self.heads.get(task):
            set_head_params(self.model, self.heads[task])
            self._active = task
        return task

    def predict_logits(self, texts: Sequence[str], task: str | None = None, batch_size: int = 32) -> torch.Tensor:
        """Logits (n × num_labels of ``task``)."""
        self._activate(task)
        if isinstance(texts, str):
            texts = [texts]
        out = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                enc = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(device)
                out.append(self.model(**enc).logits.float().cpu())
        return torch.cat(out) if out else torch.empty(0, len(self.id2label[task or self.default_task]))

    def predict(self, texts: Sequence[str], task: str | None = None, batch_size: int = 32) -> list[str]:
        """Predicted label names of ``task`` (default: the manifest's default task)."""
        name = self._activate(task)
        logits = self.predict_logits(texts, name, batch_size)
        return [self.id2label[name][str(int(i))] for i in logits.argmax(dim=-1)]
