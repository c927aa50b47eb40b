"""Read LoRA adapter folders for merging: factors, per-layer scaling, heads, and compatibility checks.

Weights are read with ``safetensors`` only (never ``torch.load``). For every adapted layer (module path ``m``)
the dense update is ``ΔW_m = s_m · B_m A_m`` with ``s_m = α_m / r_m`` (``α_m / sqrt(r_m)`` for rsLoRA), where
``r_m`` is the rank stored in the weights and ``α_m`` comes from ``alpha_pattern`` (peft's own pattern matching:
a pattern key ``k`` matches module path ``m`` when ``re.match(rf"(.*\\.)?({k})$", m)``) or ``lora_alpha``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from skewtune.adapters.io import MANIFEST_NAME, check_folder_safe, read_manifest, verify_folder
from skewtune.errors import AdapterError, MergeError, OutputError
from skewtune.utils.io import check_writable_dir, sha256_file

PEFT_PREFIX = "base_model.model."
_A, _B = ".lora_A.weight", ".lora_B.weight"
# peft LoRA options whose update is not s·B·A on a Linear weight: refused with the option's name
_VARIANT_FLAGS: tuple[str, ...] = (
    "use_dora", "lora_bias", "use_qalora", "use_bdlora", "alora_invocation_tokens", "arrow_config",
    "kasa_config", "velora_config", "monteclora_config", "trainable_token_indices", "target_parameters",
    "layer_replication",
)


def pattern_key(pattern_keys: Sequence[str], module: str) -> str | None:
    """The first key of ``rank_pattern``/``alpha_pattern`` that peft would apply to ``module`` (or None)."""
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", module):
            return key
    return None


@dataclass
class LoraSource:
    """One source adapter: its config, optional manifest, LoRA factors per module and head tensors."""

    path: Path
    config: dict[str, Any]
    manifest: dict[str, Any] | None
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module path -> (A: r×d_in, B: d_out×r)
    heads: dict[str, torch.Tensor]  # parameter path without the peft prefix -> tensor
    weights_sha256: str
    config_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str((self.manifest or {}).get("name") or self.path.name)

    def rank(self, module: str) -> int:
        return int(self.factors[module][0].shape[0])

    def alpha(self, module: str) -> float:
        patterns = self.config.get("alpha_pattern") or {}
        key = pattern_key(list(patterns), module)
        return float(patterns[key] if key is not None else self.config.get("lora_alpha", 8))

    def scaling(self, module: str) -> float:
        """``s = α/r``, or ``α/sqrt(r)`` when ``use_rslora`` (Kalajdzievski 2023)."""
        r = self.rank(module)
        alpha = self.alpha(module)
        return alpha / math.sqrt(r) if self.config.get("use_rslora") else alpha / r

    def delta(self, module: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Dense update ``s · B A`` of ``module`` (d_out × d_in), in ``dtype``."""
        a, b = self.factors[module]
        return self.scaling(module) * (b.to(dtype) @ a.to(dtype))

    def shape(self, module: str) -> tuple[int, int]:
        a, b = self.factors[module]
        return int(b.shape[0]), int(a.shape[1])

    @property
    def id2label(self) -> dict[str, str] | None:
        labels = (self.manifest or {}).get("id2label")
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) and labels else None

    @property
    def problem_type(self) -> str:
        """single_label, multi_label or regression (the manifest's; single_label when unrecorded)."""
        return str((self.manifest or {}).get("problem_type") or "single_label")

    @property
    def task_type(self) -> str:
        if self.manifest and self.manifest.get("task_type"):
            return str(self.manifest["task_type"])
        return {"SEQ_CLS": "seq_cls", "TOKEN_CLS": "token_cls"}.get(str(self.config.get("task_type")), str(self.config.get("task_type")))

    @property
    def base_name(self) -> str | None:
        name = (self.manifest or {}).get("base_model") or self.config.get("base_model_name_or_path")
        return str(name) if name else None

    @property
    def base_fingerprint(self) -> dict[str, str] | None:
        fp = (self.manifest or {}).get("base_fingerprint")
        return dict(fp) if isinstance(fp, dict) and fp else None

    @property
    def weights_dtype(self) -> torch.dtype:
        return next(iter(self.factors.values()))[0].dtype


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"cannot read {path}: {exc}", "re-save the adapter") from exc
    if not isinstance(data, dict):
        raise AdapterError(f"{path} is not a JSON object", "re-save the adapter")
    return data


def load_source(path: str | Path) -> LoraSource:
    """Read and check one adapter folder (safetensors only; manifest hashes verified when present)."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise MergeError(f"adapter folder {folder} does not exist", "pass existing adapter folders to --adapters")
    check_folder_safe(folder)
    manifest = None
    if (folder / MANIFEST_NAME).is_file():
        manifest = read_manifest(folder)
        if manifest.get("files"):
            verify_folder(folder, manifest)
    config = _read_json(folder / "adapter_config.json")
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise MergeError(
            f"{folder} is a {peft_type or 'non-PEFT'} adapter; merging needs LoRA-family adapters (LoRA, rsLoRA)",
            "merge only LoRA adapters (train with --adapter lora or rslora)",
        )
    for flag in _VARIANT_FLAGS:
        if config.get(flag):
            raise MergeError(
                f"{folder} uses the LoRA option '{flag}', whose update is not s·B·A and cannot be merged exactly",
                "merge plain LoRA / rsLoRA adapters, or fold this one into the base with merge_into_base",
            )
    try:
        state = load_file(str(folder / "adapter_model.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise AdapterError(f"cannot read {folder}/adapter_model.safetensors: {exc}", "re-save the adapter") from exc
    a_parts: dict[str, torch.Tensor] = {}
    b_parts: dict[str, torch.Tensor] = {}
    heads: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        plain = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        if plain.endswith(_A):
            a_parts[plain[: -len(_A)]] = tensor
        elif plain.endswith(_B):
            b_parts[plain[: -len(_B)]] = tensor
        elif "lora_" in plain:
            raise MergeError(
                f"{folder} holds '{key}', a LoRA tensor of a kind merging does not support (only Linear lora_A/lora_B)",
                "merge adapters that target Linear layers only",
            )
        else:
            heads[plain] = tensor
    if set(a_parts) != set(b_parts) or not a_parts:
        raise AdapterError(f"{folder}/adapter_model.safetensors has no complete lora_A/lora_B pairs", "re-save the adapter")
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module in sorted(a_parts):
        a, b = a_parts[module], b_parts[module]
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise MergeError(
                f"{folder}: layer {module} has LoRA factors of shapes {tuple(a.shape)} and {tuple(b.shape)}",
                "merge adapters that target Linear layers only",
            )
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise MergeError(f"{folder}: layer {module} has NaN or infinite LoRA weights", "merge healthy adapters")
        factors[module] = (a, b)
    return LoraSource(
        path=folder,
        config=config,
        manifest=manifest,
        factors=factors,
        heads=heads,
        weights_sha256=sha256_file(folder / "adapter_model.safetensors"),
        config_sha256=sha256_file(folder / "adapter_config.json"),
    )


def check_compatible(sources: Sequence[LoraSource]) -> None:
    """Same base model, task type and layer shapes; raise MergeError otherwise."""
    first = sources[0]
    fingerprints = [s.base_fingerprint for s in sources]
    if all(fingerprints):
        for src, fp in zip(sources[1:], fingerprints[1:]):
            if fp != fingerprints[0]:
                raise MergeError(
                    f"{src.path} was trained on a different base model than {first.path} (base_fingerprint differs)",
                    "merge adapters trained on the same backbone",
                )
    else:
        names = [s.base_name for s in sources]
        unknown = [str(s.path) for s, n in zip(sources, names) if not n]
        if unknown:
            raise MergeError(
                f"cannot tell the base model of {', '.join(unknown)} (no base_fingerprint or base_model)",
                "save the adapters with skewtune, or set base_model_name_or_path in adapter_config.json",
            )
        for src, name in zip(sources[1:], names[1:]):
            if _norm_name(name) != _norm_name(names[0]):
                raise MergeError(
                    f"{src.path} is for base model '{name}' but {first.path} is for '{names[0]}'",
                    "merge adapters trained on the same backbone",
                )
    for src in sources[1:]:
        if src.task_type != first.task_type:
            raise MergeError(
                f"{src.path} is a {src.task_type} adapter but {first.path} is {first.task_type}",
                "merge adapters of the same task type",
            )
        if bool(src.config.get("fan_in_fan_out")) != bool(first.config.get("fan_in_fan_out")):
            raise MergeError(f"{src.path} and {first.path} disagree on fan_in_fan_out", "merge adapters of the same base")
    shapes: dict[str, tuple[tuple[int, int], Path]] = {}
    for src in sources:
        for module in src.factors:
            shape = src.shape(module)
            if module in shapes and shapes[module][0] != shape:
                raise MergeError(
                    f"layer {module} is {shapes[module][0]} in {shapes[module][1]} but {shape} in {src.path}",
                    "merge adapters trained on the same backbone",
                )
            shapes.setdefault(module, (shape, src.path))


def _norm_name(name: str | None) -> str:
    text = str(name or "").rstrip("/")
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def check_output(out: Path, sources: Sequence[Path], marker: str = "adapter_config.json") -> None:
    """Refuse an output that overlaps a source or would replace a non-empty folder not marked by ``marker``."""
    resolved = out.resolve()
    for src in sources:
        s = src.resolve()
        if resolved == s or s in resolved.parents or resolved in s.parents:
            raise MergeError(f"output_dir {out} overlaps the source adapter {src}", "choose a new --output_dir")
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out} exists and is not a folder", "choose a new --output_dir")
        if any(out.iterdir()) and not (out / marker).is_file():
            raise OutputError(
                f"{out} exists, is not empty and is not an earlier output (no {marker}); it would be replaced",
                "choose a new or empty --output_dir",
            )
    check_writable_dir(out)
