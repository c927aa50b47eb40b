"""Adapter folder I/O: the ``skewtune.json`` manifest, card, and integrity checks.

An adapter folder is a standard PEFT folder plus ``README.md`` (card) and ``skewtune.json`` (manifest);
see docs/ARCHITECTURE.md. Only safetensors weights are accepted; nothing in the folder is ever executed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from skewtune.errors import AdapterError
from skewtune.utils.fingerprint import base_fingerprint
from skewtune.utils.io import atomic_write_json, json_default, sha256_file
from skewtune.version import __version__

MANIFEST_NAME = "skewtune.json"
FORMAT_VERSION = 1
REQUIRED_FILES = ("adapter_config.json", "adapter_model.safetensors")
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".py", ".pyc", ".so", ".sh", ".ckpt", ".npy", ".npz")
ALLOWED_SUFFIXES = (".json", ".safetensors", ".md", ".txt", ".png", ".model", ".yaml")
MANIFEST_HASH_KEY = "manifest_sha256"  # in skewtune.json: sha256 of the manifest's canonical form without this key
MANIFEST_MAX_BYTES = 16 * 1024 * 1024
MANIFEST_MAX_DEPTH = 32
MAX_LOGIT_BIAS = 1e4  # post-hoc biases are log-prior sized; larger ones overflow fp16/bf16 logits
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_INDEX_RE = re.compile(r"^(0|[1-9][0-9]{0,8})$")


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, keyed by POSIX relative path."""
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    }


def canonical_manifest(manifest: Mapping[str, Any]) -> bytes:
    """The bytes :data:`MANIFEST_HASH_KEY` covers: the manifest without that key, as sorted compact UTF-8 JSON."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_HASH_KEY}
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise AdapterError(f"the manifest cannot be written as JSON ({exc})", "keep manifest values plain JSON") from exc


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 (hex) of :func:`canonical_manifest`."""
    return hashlib.sha256(canonical_manifest(manifest)).hexdigest()


def write_manifest(folder: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Complete ``manifest`` (version, timestamps, file hashes, its own hash) and write it atomically into ``folder``.

    ``manifest_sha256`` covers every other field of the manifest (:func:`manifest_digest`), ``files`` covers every
    other file of the folder; :func:`verify_folder` checks both.
    """
    folder = Path(folder)
    data = dict(manifest)
    data.setdefault("format_version", FORMAT_VERSION)
    data["skewtune_version"] = __version__
    data.setdefault("created_at", now_iso())
    data["files"] = file_hashes(folder)
    data.pop(MANIFEST_HASH_KEY, None)
    data = json.loads(json.dumps(data, default=json_default))  # the values as they will read back (numpy scalars, paths)
    validate_manifest(data, folder / MANIFEST_NAME)
    data[MANIFEST_HASH_KEY] = manifest_digest(data)
    atomic_write_json(folder / MANIFEST_NAME, data)
    return data


def parse_manifest(raw: bytes, where: str | Path) -> dict[str, Any]:
    """Parse and validate manifest bytes (:func:`validate_manifest`); AdapterError naming ``where``."""
    if len(raw) > MANIFEST_MAX_BYTES:
        raise AdapterError(f"{where} is {len(raw)} bytes, more than a manifest holds ({MANIFEST_MAX_BYTES})",
                           "re-save or re-pull the adapter")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{where} is not valid JSON ({exc})", "re-save or re-pull the adapter") from exc
    except RecursionError as exc:
        raise AdapterError(f"{where} is nested too deeply to be a manifest", "re-save or re-pull the adapter") from exc
    if not isinstance(data, dict) or "id2label" not in data:
        raise AdapterError(f"{where} lacks the label mapping (id2label)", "re-save the adapter with skewtune")
    validate_manifest(data, where)
    return data


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's ``skewtune.json``, parsed and schema-checked (its own hash is checked by :func:`verify_folder`)."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise AdapterError(f"{folder} has no {MANIFEST_NAME}", "point at an adapter folder saved by skewtune")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"cannot read {path} ({exc.strerror or exc})", "check the adapter folder") from exc
    return parse_manifest(raw, path)


# --- manifest schema --------------------------------------------------------------------------------

_FIX = "re-save the adapter with skewtune, or pull a clean copy"
_STR_FIELDS = ("name", "backbone", "base_model", "base_path", "dataset", "task_type", "quant", "adapter_type",
               "default_task", "created_at", "skewtune_version", "license", "role")
_LIST_OF_STR_FIELDS = ("languages", "tags")
_MAP_FIELDS = ("metrics", "training", "imbalance", "pooling")


def _depth(value: Any) -> int:
    """Nesting depth of lists/dicts, computed without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > MANIFEST_MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _type_name(value: Any) -> str:
    return {dict: "a map", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _bad(where: str | Path, field: str, problem: str) -> AdapterError:
    return AdapterError(f"{where}: field '{field}' {problem}", _FIX)


def _check_id2label(labels: Any, where: str | Path, field: str) -> int:
    if not isinstance(labels, dict):
        raise _bad(where, field, f"must be a map of class index to label, not {_type_name(labels)}")
    for key, value in labels.items():
        if not _INDEX_RE.fullmatch(key):
            raise _bad(where, field, f"has the key {key[:40]!r}; keys are class indices '0', '1', ...")
        if not isinstance(value, str | int | float) or value == "":
            raise _bad(where, field, f"maps {key} to {_type_name(value)}; labels are non-empty strings (or numbers)")
    indices = sorted(int(k) for k in labels)
    if indices != list(range(len(indices))):
        gaps = sorted(set(range(max(indices, default=-1) + 1)) - set(indices))[:5]
        raise _bad(where, field, f"skips class index {', '.join(map(str, gaps))}; indices must run 0..{len(indices) - 1}")
    if len({str(v) for v in labels.values()}) != len(labels):
        raise _bad(where, field, "names one label for two classes")
    return len(labels)


def _check_decision(rule: Any, n_labels: int, where: str | Path, field: str) -> None:
    if rule is None:
        return
    bias = rule.get("logit_bias") if isinstance(rule, dict) else None
    if not isinstance(bias, list):
        raise _bad(where, field, f"must be null or a map with a 'logit_bias' list, not {_type_name(rule)}")
    if not all(isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b) for b in bias):
        raise _bad(where, field, "has a logit_bias that is not a list of finite numbers")
    if any(abs(b) > MAX_LOGIT_BIAS for b in bias):
        raise _bad(where, field, f"has a logit bias beyond ±{MAX_LOGIT_BIAS:g} (it would overflow the logits)")
    if len(bias) != n_labels:
        raise _bad(where, field, f"has {len(bias)} logit biases for {n_labels} labels")


def validate_manifest(data: Any, where: str | Path = MANIFEST_NAME) -> None:
    """Check the types and shapes of every manifest field skewtune reads; AdapterError naming the first bad one.

    ``id2label`` maps class indices ``"0".."n-1"`` (no gaps) to distinct labels; ``files`` maps relative paths to
    sha256 hex; ``decision`` is null or ``{"logit_bias": [n finite numbers]}``; ``tasks`` (merged multi-task
    adapters) maps task names to ``{"id2label", "head_file", "decision"}`` and contains ``default_task``.
    """
    if not isinstance(data, dict):
        raise AdapterError(f"{where} is not a JSON object", _FIX)
    if _depth(data) > MANIFEST_MAX_DEPTH:
        raise AdapterError(f"{where} is nested more than {MANIFEST_MAX_DEPTH} levels deep", _FIX)
    if "id2label" not in data:
        raise AdapterError(f"{where} lacks the label mapping (id2label)", "re-save the adapter with skewtune")
    n_labels = _check_id2label(data["id2label"], where, "id2label")
    for field in _STR_FIELDS:
        if data.get(field) is not None and not isinstance(data[field], str):
            raise _bad(where, field, f"must be a string, not {_type_name(data[field])}")
    for field in _LIST_OF_STR_FIELDS:
        value = data.get(field)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise _bad(where, field, "must be a list of strings")
    for field in _MAP_FIELDS:
        if data.get(field) is not None and not isinstance(data[field], dict):
            raise _bad(where, field, f"must be a map, not {_type_name(data[field])}")
    if not isinstance(data.get("format_version", FORMAT_VERSION), int) or isinstance(data.get("format_version"), bool):
        raise _bad(where, "format_version", "must be an integer")
    files = data.get("files")
    if files is not None:
        if not isinstance(files, dict):
            raise _bad(where, "files", f"must be a map of file path to sha256, not {_type_name(files)}")
        for rel, digest in files.items():
            if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
                raise _bad(where, "files", f"lists {rel[:80]!r} without a sha256 (64 hex digits)")
    digest = data.get(MANIFEST_HASH_KEY)
    if digest is not None and (not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest)):
        raise _bad(where, MANIFEST_HASH_KEY, "must be a sha256 (64 hex digits)")
    fingerprint = data.get("base_fingerprint")
    if fingerprint is not None and (not isinstance(fingerprint, dict) or not all(
            isinstance(fingerprint.get(k), str) and _SHA256_RE.fullmatch(fingerprint[k])
            for k in ("config_sha256", "weights_sha256"))):
        raise _bad(where, "base_fingerprint", "must be null or {config_sha256, weights_sha256} (sha256 hex)")
    _check_decision(data.get("decision"), n_labels, where, "decision")
    tasks = data.get("tasks")
    if tasks is None:
        return
    if not isinstance(tasks, dict):
        raise _bad(where, "tasks", f"must be a map of task name to head, not {_type_name(tasks)}")
    for name, info in tasks.items():
        if not isinstance(info, dict):
            raise _bad(where, f"tasks.{name[:40]}", f"must be a map, not {_type_name(info)}")
        n = _check_id2label(info.get("id2label"), where, f"tasks.{name[:40]}.id2label")
        if info.get("head_file") is not None and not isinstance(info["head_file"], str):
            raise _bad(where, f"tasks.{name[:40]}.head_file", "must be a string")
        _check_decision(info.get("decision"), n, where, f"tasks.{name[:40]}.decision")
    if tasks and data.get("default_task") not in tasks:
        raise _bad(where, "default_task", f"must name one of the tasks ({', '.join(sorted(tasks))[:200]})")


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


def check_manifest_hash(manifest: Mapping[str, Any], folder: str | Path = "adapter") -> bool:
    """True when the manifest's ``manifest_sha256`` matches its content; False when it has none (older format).

    A mismatch (the manifest was edited after skewtune wrote it) raises :class:`AdapterError`.
    """
    recorded = manifest.get(MANIFEST_HASH_KEY)
    if recorded is None:
        return False
    if manifest_digest(manifest) != recorded:
        raise AdapterError(
            f"{Path(folder) / MANIFEST_NAME} was edited after skewtune wrote it (its {MANIFEST_HASH_KEY} does not "
            "match its content)", "pull a clean copy, or re-save the adapter with skewtune")
    return True


def verify_folder(folder: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Check the manifest's own hash, every file's sha256 against the manifest, and refuse extra or missing files.

    A manifest without ``manifest_sha256`` (written before skewtune covered it) is accepted; :func:`verify_report`
    says so.
    """
    folder = Path(folder)
    check_folder_safe(folder)
    manifest = manifest or read_manifest(folder)
    check_manifest_hash(manifest, folder)
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


def verify_report(manifest: Mapping[str, Any], *, base: str | None = None, base_matches: bool | None = None) -> str:
    """What a successful verification checked, in words (``hub verify`` prints it)."""
    n = len(manifest.get("files") or {})
    if manifest.get(MANIFEST_HASH_KEY):
        parts = [f"manifest and {n} files match their sha256"]
    else:
        parts = [f"{n} files match their sha256; manifest not covered (older format, written without {MANIFEST_HASH_KEY})"]
    if base is None:
        parts.append("base fingerprint not checked (no base given)")
    elif base_matches:
        parts.append(f"base fingerprint matches {base}")
    else:
        parts.append(f"base fingerprint differs from {base} or is not recorded (accepted by --force_base)")
    return "; ".join(parts)


# --- base model --------------------------------------------------------------------------------------

def check_base_fingerprint(manifest: Mapping[str, Any], base_dir: str | Path, *, force: bool = False,
                           base_label: str | None = None, require: bool = True) -> bool:
    """Compare the adapter's recorded ``base_fingerprint`` with the base-model folder ``base_dir``.

    True when they match. A mismatch raises :class:`AdapterError` naming both bases (with ``force``: a warning,
    False). An adapter that records no fingerprint raises likewise when ``require`` (with ``force`` or without
    ``require``: a warning, False). The fingerprint reads the config and a few KB per tensor
    (:mod:`skewtune.utils.fingerprint`).
    """
    label = base_label or str(base_dir)
    recorded = manifest.get("base_fingerprint")
    trained_on = manifest.get("base_model") or manifest.get("backbone") or "unknown"
    if not isinstance(recorded, dict) or not recorded.get("config_sha256") or not recorded.get("weights_sha256"):
        message = f"the adapter records no base-model fingerprint (trained on '{trained_on}'), so base '{label}' cannot be checked"
        if force or not require:
            warnings.warn(message, stacklevel=2)
            return False
        raise AdapterError(message, "re-save the adapter with skewtune, or force loading (force_base=True / --force_base)")
    actual = base_fingerprint(base_dir)
    if actual["config_sha256"] == recorded["config_sha256"] and actual["weights_sha256"] == recorded["weights_sha256"]:
        return True
    message = (f"base-model mismatch: the adapter was trained on '{trained_on}' (config {recorded['config_sha256'][:12]}, "
               f"weights {recorded['weights_sha256'][:12]}) but base '{label}' has config "
               f"{actual['config_sha256'][:12]}, weights {actual['weights_sha256'][:12]}")
    if force:
        warnings.warn(message, stacklevel=2)
        return False
    raise AdapterError(message, f"load it onto '{trained_on}', or force it (force_base=True / --force_base) at your own risk")


# manifest score suffix (``eval_<suffix>``) -> model-index metric: Hub metric id, display name, its arguments
CARD_METRICS: tuple[tuple[str, str, str, dict[str, str] | None], ...] = (
    ("accuracy", "accuracy", "Accuracy", None),
    ("macro_f1", "f1", "Macro F1", {"average": "macro"}),
    ("weighted_f1", "f1", "Weighted F1", {"average": "weighted"}),
    ("balanced_accuracy", "balanced_accuracy", "Balanced accuracy", None),
    ("entity_precision", "precision", "seqeval entity precision", None),
    ("entity_recall", "recall", "seqeval entity recall", None),
    ("entity_f1", "f1", "seqeval entity F1", None),
)
TASK_NAMES = {"text-classification": "Text Classification", "token-classification": "Token Classification"}


def card_pipeline_tag(manifest: Mapping[str, Any]) -> str:
    """The Hub task of an adapter: ``token-classification`` for tagging, else ``text-classification``."""
    return "token-classification" if manifest.get("task_type") == "token_cls" else "text-classification"


def model_index(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card's Hugging Face ``model-index``: the manifest's measured scores, one result per dataset.

    Schema (huggingface_hub ``repocard_data``): ``[{name, results: [{task: {type, name},
    dataset: {name, type, split}, metrics: [{type, value, name, args}]}]}]``. Scores come from
    ``metrics.eval_<suffix>`` (the split in ``metrics.eval_split``, left out when not recorded) or, for a merged
    multi-task adapter scored with ``skewtune merge --eval``, from ``metrics.eval_<task>_<suffix>`` with
    ``metrics.merge_eval``'s dataset and split. Non-finite or non-numeric values are skipped; ``[]`` when nothing
    was measured.
    """
    def mapping(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    metrics = mapping(manifest.get("metrics"))
    merge_eval = mapping(metrics.get("merge_eval"))
    groups: list[tuple[str, Any, Any]] = []  # (score key prefix, dataset, split)
    if len(merge_eval) > 1:
        for task, entry in merge_eval.items():
            groups.append((f"eval_{task}_", mapping(entry).get("dataset"),
                           mapping(mapping(entry).get("merged")).get("split")))
    elif merge_eval:
        entry = mapping(next(iter(merge_eval.values())))
        groups.append(("eval_", entry.get("dataset") or manifest.get("dataset"),
                       mapping(entry.get("merged")).get("split") or metrics.get("eval_split")))
    else:
        groups.append(("eval_", manifest.get("dataset"), metrics.get("eval_split")))
    tag = card_pipeline_tag(manifest)
    results = []
    for prefix, dataset, split in groups:
        scores = []
        for suffix, metric_type, name, args in CARD_METRICS:
            value = metrics.get(prefix + suffix)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            shown = f"{name} ({split})" if isinstance(split, str) and split else name
            score: dict[str, Any] = {"type": metric_type, "value": float(value), "name": shown}
            if args:
                score["args"] = dict(args)
            scores.append(score)
        if not scores or not isinstance(dataset, str) or not dataset:
            continue
        data: dict[str, Any] = {"name": dataset, "type": dataset}
        if isinstance(split, str) and split:
            data["split"] = split
        results.append({"task": {"type": tag, "name": TASK_NAMES[tag]}, "dataset": data, "metrics": scores})
    if not results:
        return []
    return [{"name": str(manifest.get("name") or "skewtune adapter"), "results": results}]


def render_card(manifest: dict[str, Any]) -> str:
    """Hugging Face model card (YAML front matter + a short body) from a manifest.

    The front matter carries the Hub's ``model-index`` (:func:`model_index`) when the manifest has scores.
    """
    metrics = manifest.get("metrics") or {}
    front: dict[str, Any] = {
        "base_model": manifest.get("base_model"),
        "library_name": "peft",
        "license": manifest.get("license", "apache-2.0"),
        "language": manifest.get("languages") or ["en"],
        "tags": sorted({"skewtune", manifest.get("adapter_type", "lora"), manifest.get("task_type", "seq_cls"),
                        *(manifest.get("tags") or [])}),
        "datasets": [manifest["dataset"]] if manifest.get("dataset") else [],
        "pipeline_tag": card_pipeline_tag(manifest),
        "metrics": [k.removeprefix("eval_") for k, v in metrics.items() if isinstance(v, int | float) and k.startswith("eval_")],
    }
    index = model_index(manifest)
    if index:
        front["model-index"] = index
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
    # what the head's outputs are: the sigmoids of a multi-label head, the one number of a regression head
    problem = {"multi_label": ", problem_type='multi_label_classification'",
               "regression": ", problem_type='regression'"}.get(str(manifest.get("problem_type")), "")
    lines += [f"base = {head}.from_pretrained({str(base)!r}, num_labels={len(id2label)}, id2label=id2label{problem},",
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
