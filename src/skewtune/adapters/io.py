"""Adapter folder I/O: the ``skewtune.json`` manifest, card, and integrity checks.

An adapter folder is a standard PEFT folder plus ``README.md`` (card) and ``skewtune.json`` (manifest);
see docs/ARCHITECTURE.md. Only safetensors weights are accepted; nothing in the folder is ever executed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from skewtune.errors import AdapterError
from skewtune.utils.io import atomic_write_json, sha256_file
from skewtune.version import __version__

MANIFEST_NAME = "skewtune.json"
FORMAT_VERSION = 1
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".py", ".pyc", ".so", ".sh", ".ckpt", ".npy", ".npz")
ALLOWED_SUFFIXES = (".json", ".safetensors", ".md", ".txt", ".png", ".model", ".yaml")


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, keyed by POSIX relative path."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    }


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Complete ``manifest`` (version, timestamps, file hashes) and write it atomically into ``folder``."""
    folder = Path(folder)
    data = dict(manifest)
    data.setdefault("format_version", FORMAT_VERSION)
    data["skewtune_version"] = __version__
    data.setdefault("created_at", now_iso())
    data["files"] = file_hashes(folder)
    atomic_write_json(folder / MANIFEST_NAME, data)
    return data


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise AdapterError(f"{folder} has no {MANIFEST_NAME}", "point at an adapter folder saved by skewtune")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path} is not valid JSON ({exc})", "re-save or re-pull the adapter") from exc
    if not isinstance(data, dict) or "id2label" not in data:
        raise AdapterError(f"{path} lacks the label mapping (id2label)", "re-save the adapter with skewtune")
    return data


def task_names(manifest: Mapping[str, Any]) -> list[str]:
    """The tasks of a multi-task adapter, default first; ``[]`` for a single-task adapter."""
    tasks = list(manifest.get("tasks") or {})
    default = manifest.get("default_task")
    return sorted(tasks, key=lambda t: t != default)


def select_task(manifest: Mapping[str, Any], task: str | None,
                folder: str | Path = "adapter") -> tuple[str | None, dict[str, str], str | None]:
    """``(task, id2label, head_file)`` of ``task`` (default: the manifest's default task).

    A single-task adapter gives ``(None, its id2label, None)``; naming a task it does not have is an error
    (its own dataset or name is accepted). An unknown task raises :class:`AdapterError` listing the valid ones.
    """
    tasks = manifest.get("tasks") or {}
    if not tasks:
        if task is not None and task not in {manifest.get("dataset"), manifest.get("default_task"), manifest.get("name")}:
            raise AdapterError(f"{folder} is a single-task adapter; task '{task}' does not apply to it",
                               "drop --task / task= (it selects a head of a merged multi-task adapter)")
        return None, {str(k): str(v) for k, v in (manifest.get("id2label") or {}).items()}, None
    name = task or manifest.get("default_task") or next(iter(tasks))
    if name not in tasks:
        raise AdapterError(f"{folder} has no task '{name}'", f"use one of: {', '.join(task_names(manifest))}")
    info = tasks[name] or {}
    labels = info.get("id2label") or {}
    if not labels:
        raise AdapterError(f"{folder} lists no labels for task '{name}'", "re-save the adapter with skewtune")
    return name, {str(k): str(v) for k, v in labels.items()}, info.get("head_file")


def check_folder_safe(folder: str | Path) -> None:
    """Refuse missing PEFT files and anything that could be executed or unpickled."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AdapterError(f"adapter folder {folder} does not exist", "check the --adapter path")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            if name.endswith(".safetensors") and (folder / "adapter_model.bin").exists():
                raise AdapterError(
                    f"{folder} holds pickle weights (adapter_model.bin), which skewtune never loads",
                    "re-save the adapter with safetensors (save_pretrained(..., safe_serialization=True))",
                )
            raise AdapterError(f"{folder} is missing {name}", "point at a complete PEFT adapter folder")
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise AdapterError(f"{path} is a symbolic link, which adapters may not contain", "remove the link")
        if path.is_file() and path.suffix.lower() in FORBIDDEN_SUFFIXES:
            raise AdapterError(
                f"{path.name} in {folder} is not allowed (only safetensors weights, JSON and text)",
                "remove the file; skewtune never loads pickle or code",
            )


def verify_folder(folder: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check every file's sha256 against the manifest and refuse extra or missing files."""
    folder = Path(folder)
    check_folder_safe(folder)
    manifest = manifest or read_manifest(folder)
    expected = manifest.get("files") or {}
    if not expected:
        raise AdapterError(f"{folder}/{MANIFEST_NAME} lists no file hashes", "re-save the adapter with skewtune")
    actual = file_hashes(folder)
    extra = sorted(set(actual) - set(expected))
    missing = sorted(set(expected) - set(actual))
    if extra:
        raise AdapterError(f"{folder} holds files not in its manifest: {', '.join(extra)}", "pull a clean copy")
    if missing:
        raise AdapterError(f"{folder} is missing files listed in its manifest: {', '.join(missing)}", "pull a clean copy")
    bad = [name for name, digest in expected.items() if actual[name] != digest]
    if bad:
        raise AdapterError(f"sha256 mismatch in {folder}: {', '.join(bad)} changed", "the adapter was altered; pull a clean copy")
    return manifest


def render_card(manifest: dict[str, Any]) -> str:
    """Hugging Face model card (YAML front matter + a short body) from a manifest."""
    metrics = manifest.get("metrics") or {}
    front: dict[str, Any] = {
        "base_model": manifest.get("base_model"),
        "library_name": "peft",
        "license": manifest.get("license", "apache-2.0"),
        "language": manifest.get("languages") or ["en"],
        "tags": sorted({"skewtune", manifest.get("adapter_type", "lora"), manifest.get("task_type", "seq_cls"),
                        *(manifest.get("tags") or [])}),
        "datasets": [manifest["dataset"]] if manifest.get("dataset") else [],
        "pipeline_tag": "token-classification" if manifest.get("task_type") == "token_cls" else "text-classification",
        "metrics": [k.removeprefix("eval_") for k, v in metrics.items() if isinstance(v, int | float) and k.startswith("eval_")],
    }
    labels = manifest.get("id2label") or {}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {manifest.get('name', 'skewtune adapter')}",
        "",
        f"A {manifest.get('adapter_type', 'lora')} adapter for `{manifest.get('base_model')}` trained with skewtune"
        f" ({manifest.get('quant', 'none')} backbone) on `{manifest.get('dataset')}`.",
        "",
        "Labels: " + ", ".join(f"`{k}` = {v}" for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))),
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for key, value in metrics.items():
        if isinstance(value, float):
            lines.append(f"| {key} | {value:.4f} |")
        elif isinstance(value, int):
            lines.append(f"| {key} | {value} |")
    lines += [
        "",
        "Load with peft:",
        "",
        *peft_snippet(manifest),
        "",
    ]
    return "\n".join(lines)


def peft_snippet(manifest: dict[str, Any]) -> list[str]:
    """Card lines loading the adapter with plain peft: on the local base folder the manifest records (works
    offline; the Hub id is named in a comment), with ``id2label`` so predictions print real labels."""
    labels = manifest.get("id2label") or {}
    id2label = {int(k): v for k, v in sorted(labels.items(), key=lambda kv: int(kv[0]))}
    head = "AutoModelForTokenClassification" if manifest.get("task_type") == "token_cls" else "AutoModelForSequenceClassification"
    hub_id = manifest.get("base_model")
    base = manifest.get("base_path") or hub_id
    lines = ["```python", "from peft import PeftModel", f"from transformers import {head}", "",
             f"id2label = {id2label!r}"]
    if manifest.get("base_path") and hub_id and hub_id != base:
        lines.append(f"# the base model's local folder; with network access the Hub id {hub_id!r} works too")
    lines += [f"base = {head}.from_pretrained({str(base)!r}, num_labels={len(id2label)}, id2label=id2label,",
              "                                       ignore_mismatched_sizes=True)  # the adapter brings its own head",
              "model = PeftModel.from_pretrained(base, '<this folder>').eval()", "```"]
    return lines


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


def check_safetensors_header(path: str | Path) -> dict[str, Any]:
    """Parse only the header of a safetensors file (no tensor is loaded); AdapterError when malformed.

    Layout: 8-byte little-endian header length, then a JSON object of ``name -> {dtype, shape, data_offsets}``
    (plus an optional ``__metadata__``); the offsets must stay inside the file.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length <= 1 or length > min(SAFETENSORS_MAX_HEADER, size - 8):
            raise AdapterError(f"{path.name} is not a safetensors file (bad header length)", "re-save the adapter with safetensors")
        raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{path.name} is not a safetensors file (header is not JSON)", "re-save the adapter") from exc
    data_size = size - 8 - length
    ok = isinstance(header, dict)
    for key, info in header.items() if ok else ():
        if key == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
        ok = ok and 0 <= offsets[0] <= offsets[1] <= data_size and isinstance(info.get("dtype"), str)
    if not ok:
        raise AdapterError(f"{path.name} is not a valid safetensors file (bad tensor table)", "re-save the adapter")
    return header
