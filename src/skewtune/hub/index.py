"""The hub's ``index.json``: format, migration from older formats, per-version facts and search.

Format 2 (current)::

    {
      "format_version": 2,
      "generation": 7,                      # +1 on every committed update (the compare-and-swap counter)
      "updated_at": "2026-11-28T17:00:00Z",
      "adapters": {
        "<name>": {"versions": [
          {"version": 1, "status": "ready",  # "pending" while uploading, "failed" if the upload failed
           "pushed_at": "...", "created_at": "...",  # (+ "push_id" while pending)
           "task_type": "seq_cls", "backbone": "minilm", "base_model": "...", "base_fingerprint": {...},
           "adapter_type": "lora", "quant": "8bit", "labels": ["negative", "neutral", "positive"],
           "languages": ["en"], "dataset": "tweets", "tags": [...], "metrics": {"eval_macro_f1": 0.75},
           "manifest_sha256": "<sha256 of the version's skewtune.json>", "size_bytes": 312345,
           "skewtune_version": "0.1.0"}
        ]}
      }
    }

Format 1 (pre-release hubs) was a flat list without status or generation::

    {"format_version": 1, "adapters": [{"name": "x", "version": "v1", "base_model": ..., ...}, ...]}

:func:`load_index` migrates it in memory; the next push writes format 2. Only ``ready`` versions are
visible to ``ls``/``search``/``pull``; version numbers are never reused.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import datetime, timezone
from typing import Any

from skewtune.adapters.io import now_iso
from skewtune.errors import HubError
from skewtune.hub.names import NAME_RE, format_ref, parse_version

INDEX_FORMAT = 2
INDEX_NAME = "index.json"
READY, PENDING, FAILED = "ready", "pending", "failed"

# manifest keys copied into the index as they are
_FACT_KEYS = ("task_type", "backbone", "base_model", "base_fingerprint", "adapter_type", "quant",
              "dataset", "created_at", "skewtune_version")


def stamp() -> str:
    """UTC time for index entries; ``SOURCE_DATE_EPOCH`` pins it (reproducible hubs committed to a repo)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    if epoch.isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return now_iso()


def empty_index() -> dict[str, Any]:
    return {"format_version": INDEX_FORMAT, "generation": 0, "updated_at": stamp(), "adapters": {}}


def dumps(index: dict[str, Any]) -> bytes:
    return (json.dumps(index, indent=2, sort_keys=False) + "\n").encode("utf-8")


def load_index(raw: bytes, where: str) -> dict[str, Any]:
    """Parse, migrate and validate index bytes; :class:`HubError` when corrupt or too new."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HubError(f"index.json at {where} is corrupt ({exc})", "restore index.json from a backup or re-push") from exc
    if not isinstance(data, dict):
        raise HubError(f"index.json at {where} is corrupt (not a JSON object)", "restore index.json from a backup")
    fmt = data.get("format_version")
    if fmt == 1:
        data = migrate_v1(data, where)
    elif fmt != INDEX_FORMAT:
        if isinstance(fmt, int) and fmt > INDEX_FORMAT:
            raise HubError(f"index.json at {where} has format {fmt}, newer than this skewtune reads ({INDEX_FORMAT})",
                           "upgrade skewtune")
        raise HubError(f"index.json at {where} is corrupt (format_version {fmt!r})", "restore index.json from a backup")
    _validate(data, where)
    return data


def migrate_v1(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Format 1 (flat list of entries, versions as ``"vN"``) -> format 2."""
    entries = data.get("adapters")
    if not isinstance(entries, list):
        raise HubError(f"index.json at {where} is corrupt (format 1 needs a list of adapters)", "restore it from a backup")
    out = empty_index()
    out["updated_at"] = data.get("updated_at", out["updated_at"])
    for item in entries:
        if not isinstance(item, dict):
            raise HubError(f"index.json at {where} is corrupt (format 1 entry is not an object)", "restore it from a backup")
        entry = {k: v for k, v in item.items() if k not in ("name", "version")}
        try:
            entry["version"] = parse_version(item.get("version"))
        except HubError as exc:
            raise HubError(f"index.json at {where} is corrupt ({exc.message})", "restore it from a backup") from exc
        entry.setdefault("status", READY)
        out["adapters"].setdefault(str(item.get("name")), {"versions": []})["versions"].append(entry)
    for record in out["adapters"].values():
        record["versions"].sort(key=lambda e: e["version"] or 0)
    return out


def _validate(data: dict[str, Any], where: str) -> None:
    adapters = data.get("adapters")
    if not isinstance(adapters, dict) or not isinstance(data.get("generation", 0), int):
        raise HubError(f"index.json at {where} is corrupt (bad 'adapters' or 'generation')", "restore it from a backup")
    for name, record in adapters.items():
        versions = record.get("versions") if isinstance(record, dict) else None
        bad = not NAME_RE.fullmatch(str(name)) or ".." in str(name) or not isinstance(versions, list)
        bad = bad or any(not isinstance(v, dict) or not isinstance(v.get("version"), int) or v["version"] < 1
                         for v in versions or [])
        if bad:
            raise HubError(f"index.json at {where} is corrupt (bad entry {str(name)[:80]!r})", "restore it from a backup")


def version_facts(manifest: dict[str, Any], manifest_sha256: str, size_bytes: int) -> dict[str, Any]:
    """The manifest's key facts stored per version so ``ls``/``search`` need no walk of the hub."""
    facts: dict[str, Any] = {k: manifest.get(k) for k in _FACT_KEYS}
    id2label = manifest.get("id2label") or {}
    facts["labels"] = [id2label[k] for k in sorted(id2label, key=lambda k: int(k))]
    facts["languages"] = list(manifest.get("languages") or [])
    facts["tags"] = sorted({*(manifest.get("tags") or []), *(v for v in (manifest.get("adapter_type"),
                                                                         manifest.get("task_type")) if v)})
    facts["metrics"] = {k: v for k, v in (manifest.get("metrics") or {}).items()
                        if isinstance(v, int | float) and not isinstance(v, bool)}
    facts["manifest_sha256"] = manifest_sha256
    facts["size_bytes"] = size_bytes
    return facts


# --- mutators: idempotent (keyed by push_id) so a compare-and-swap retry never applies twice ---------

def reserve(index: dict[str, Any], name: str, push_id: str) -> dict[str, Any]:
    """Add a ``pending`` version ``max(all versions) + 1`` for ``name`` (once per ``push_id``)."""
    versions = index["adapters"].setdefault(name, {"versions": []})["versions"]
    if not any(v.get("push_id") == push_id for v in versions):
        number = max((v["version"] for v in versions), default=0) + 1
        versions.append({"version": number, "status": PENDING, "push_id": push_id, "pushed_at": stamp()})
    return index


def finish(index: dict[str, Any], name: str, push_id: str, status: str, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mark the version reserved by ``push_id`` as ``ready`` (with its facts) or ``failed``.

    The push id is dropped: once applied, a retry finds nothing to do (the change is already in the chain).
    """
    for entry in index["adapters"].get(name, {}).get("versions", []):
        if entry.get("push_id") == push_id:
            entry.update(facts or {})
            entry["status"] = status
            entry["pushed_at"] = stamp()
            del entry["push_id"]
    return index


def reserved_version(index: dict[str, Any], name: str, push_id: str) -> int:
    for entry in index["adapters"].get(name, {}).get("versions", []):
        if entry.get("push_id") == push_id:
            return int(entry["version"])
    raise HubError(f"the hub lost the reservation of {name} (concurrent repair?)", "push again")


def bump(index: dict[str, Any]) -> dict[str, Any]:
    """A copy with generation + 1 and a fresh ``updated_at``."""
    new = copy.deepcopy(index)
    new["format_version"] = INDEX_FORMAT
    new["generation"] = int(index.get("generation", 0)) + 1
    new["updated_at"] = stamp()
    return new


# --- reading -------------------------------------------------------------------------------------

def ready_versions(index: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return sorted((v for v in index["adapters"].get(name, {}).get("versions", []) if v.get("status") == READY),
                  key=lambda v: v["version"])


def select(index: dict[str, Any], name: str, version: int | None, where: str) -> dict[str, Any]:
    """The entry for ``name@vN`` (latest ready when ``version`` is None); HubError naming what exists."""
    versions = ready_versions(index, name)
    if not versions:
        known = sorted(n for n in index["adapters"] if ready_versions(index, n))
        raise HubError(f"no adapter '{name}' on hub {where}",
                       f"use one of: {', '.join(known)}" if known else "push one first (skewtune hub push)")
    if version is None:
        return versions[-1]
    for entry in versions:
        if entry["version"] == version:
            return entry
    raise HubError(f"no version v{version} of '{name}' on hub {where}",
                   f"use one of: {', '.join(format_ref(name, v['version']) for v in versions)}")


def summary(index: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per adapter: the latest ready version's facts plus the list of ready versions."""
    rows = []
    for name in sorted(index["adapters"]):
        versions = ready_versions(index, name)
        if versions:
            latest = versions[-1]
            rows.append({"name": name, "ref": format_ref(name, latest["version"]), "latest": latest["version"],
                         "versions": [v["version"] for v in versions], **_public(latest)})
    return rows


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("push_id", "status")}


_TASK_ALIASES = {"text-classification": "seq_cls", "sequence-classification": "seq_cls",
                 "token-classification": "token_cls"}


def matches(entry: dict[str, Any], *, base_model: str | None = None, task: str | None = None,
            language: str | None = None, tag: str | None = None, labels: list[str] | None = None,
            min_metric: tuple[str, float] | None = None) -> bool:
    """Whether one version entry satisfies every given filter (``None`` filters are ignored)."""
    if base_model is not None:
        have = {str(entry.get("base_model") or "").lower(), str(entry.get("backbone") or "").lower()}
        if base_model.lower() not in have:
            return False
    if task is not None and _TASK_ALIASES.get(task, task) != entry.get("task_type"):
        return False
    if language is not None and language.lower() not in [str(x).lower() for x in entry.get("languages") or []]:
        return False
    if tag is not None and tag not in (entry.get("tags") or []):
        return False
    if labels is not None and sorted(labels) != sorted(entry.get("labels") or []):
        return False
    if min_metric is not None:
        key, threshold = min_metric
        value = (entry.get("metrics") or {}).get(key)
        if not isinstance(value, int | float) or value < threshold:
            return False
    return True


def search_rows(index: dict[str, Any], all_versions: bool = False, **filters: Any) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(index["adapters"]):
        versions = ready_versions(index, name)
        for entry in versions if all_versions else versions[-1:]:
            if matches(entry, **filters):
                rows.append({"name": name, "ref": format_ref(name, entry["version"]), **_public(entry)})
    return rows
