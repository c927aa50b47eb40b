"""Push, pull, list, search, inspect and verify adapters on a hub; check an adapter's base model.

Nothing from an adapter is ever executed: pushes and pulls copy files, hash them and parse JSON, YAML
(``safe_load``) and safetensors headers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

from skewtune.adapters.io import (
    MANIFEST_HASH_KEY,
    MANIFEST_NAME,
    REQUIRED_FILES,
    check_base_fingerprint,
    check_manifest_hash,
    check_safetensors_header,
    parse_manifest,
    read_manifest,
    render_card,
    verify_folder,
    write_manifest,
)
from skewtune.errors import AdapterError, HubError
from skewtune.hub import index as ix
from skewtune.hub.backends import Backend, open_hub
from skewtune.hub.names import format_ref, parse_ref, validate_name, validate_relpath
from skewtune.utils.io import atomic_dir, check_no_overlap, check_writable_dir, sha256_file

CARD_NAME = "README.md"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
_ABS_PATH_RE = re.compile(r"^(?:/[^/]|~[/\\]|[A-Za-z]:[/\\]|file://)")  # POSIX, home, Windows drive, file URL
LOCAL_ONLY_KEYS = frozenset({"base_path"})  # meaningful on the pusher's machine only: dropped on push
GENERIC_FOLDER_NAMES = frozenset({"adapter", "adapters", "output", "outputs", "merged", "run", "model"})


# --- local adapter folders ------------------------------------------------------------------------

def check_shareable(folder: str | Path) -> dict[str, Any]:
    """Verify a local adapter folder for sharing: hashes, no extra/unsafe files, safetensors weights.

    Returns the manifest; raises :class:`HubError` naming the problem.
    """
    folder = Path(folder)
    try:
        manifest = verify_folder(folder)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise AdapterError(f"{folder}/{MANIFEST_NAME} has a bad 'files' table", "re-save the adapter with skewtune")
        for rel in files:
            validate_relpath(rel)
        for rel in files:
            if rel.endswith(".safetensors"):
                check_safetensors_header(folder / rel)
        try:
            json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdapterError(f"{folder}/adapter_config.json is not valid JSON", "re-save the adapter") from exc
    except AdapterError as exc:
        raise HubError(exc.message, exc.hint) from exc
    return manifest


def _clean_tokens(values: list[str] | tuple[str, ...] | None, kind: str) -> list[str]:
    out = []
    for value in values or []:
        if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
            raise HubError(f"invalid {kind} {value!r}", f"a {kind} is 1-64 characters of letters, digits and ._:+-")
        out.append(value)
    return out


def _retag_card(text: str, tags: list[str], languages: list[str]) -> str | None:
    """The card with tags/languages merged into its YAML front matter; None when it has none."""
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---", 4)
    if end == -1:
        return None
    try:
        front = yaml.safe_load(text[4:end]) or {}
    except yaml.YAMLError:
        return None
    if not isinstance(front, dict):
        return None
    if tags:
        front["tags"] = sorted({*(front.get("tags") or []), *tags})
    if languages:
        front["language"] = list(languages)
    return "---\n" + yaml.safe_dump(front, sort_keys=False).strip() + text[end:]


def _is_local_path(value: str) -> bool:
    return bool(_ABS_PATH_RE.match(value))


def strip_local_paths(value: Any, replaced: dict[str, str] | None = None) -> tuple[Any, dict[str, str]]:
    """``value`` (a manifest) without the pusher's local paths: ``base_path`` keys dropped, every other absolute
    path (``training.dataset``, a backbone folder, merge sources …) cut to its last component.

    Returns the cleaned copy and ``{old: new}`` for every string replaced (to clean the card the same way).
    """
    replaced = {} if replaced is None else replaced
    if isinstance(value, dict):
        return {k: strip_local_paths(v, replaced)[0] for k, v in value.items() if k not in LOCAL_ONLY_KEYS}, replaced
    if isinstance(value, list):
        return [strip_local_paths(v, replaced)[0] for v in value], replaced
    if isinstance(value, str) and _is_local_path(value):
        new = re.split(r"[/\\]", value.rstrip("/\\"))[-1] or "local"
        replaced[value] = new
        return new, replaced
    return value, replaced


def default_name(adapter_dir: str | Path) -> str:
    """The hub name a push without ``--name`` uses: the manifest's ``name`` (made a valid hub name), else the
    folder's name unless it is a generic one such as ``adapter`` (every run folder holds an ``adapter/``)."""
    folder = Path(adapter_dir).expanduser()
    manifest = read_manifest(folder)
    candidates = [str(manifest.get("name") or "")]
    backbone = str(manifest.get("backbone") or "")
    if _is_local_path(backbone):  # "<dataset>-<backbone folder path>-<adapter>": keep the folder's own name only
        candidates[0] = candidates[0].replace(backbone.replace("/", "_"), strip_local_paths(backbone)[0])
    if folder.resolve().name.lower() not in GENERIC_FOLDER_NAMES:
        candidates.append(folder.resolve().name)
    for text in candidates:
        slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).replace("..", ".").strip("-._")[:64].rstrip("-._")
        if slug and slug not in ("index.json", "skewtune-index"):
            return validate_name(slug)
    raise HubError(f"cannot derive a hub name for {folder} (its manifest has no name)", "pass --name NAME")


def stage_adapter(src: Path, dst: Path, *, tags: list[str], languages: list[str]) -> dict[str, Any]:
    """Copy the verified adapter ``src`` to ``dst`` (only its manifest's files) and add tags/languages.

    The pusher's local paths are stripped from the manifest and the card (:func:`strip_local_paths`); a missing
    card is rendered from the manifest. The copy is re-hashed and verified again, so the bytes pushed are the
    bytes checked. Returns the staged manifest.
    """
    manifest = check_shareable(src)
    for rel in [*manifest["files"], MANIFEST_NAME]:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)
    card = dst / CARD_NAME
    clean, replaced = strip_local_paths(manifest)
    if isinstance(manifest.get("base_path"), str) and clean.get("base_model"):
        replaced[manifest["base_path"]] = str(clean["base_model"])  # the card's peft snippet: the Hub id
    if tags or languages or not card.is_file() or clean != manifest or MANIFEST_HASH_KEY not in manifest:
        manifest = dict(clean)
        if tags:
            manifest["tags"] = sorted({*(manifest.get("tags") or []), *tags})
        if languages:
            manifest["languages"] = list(languages)
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            for old in sorted(replaced, key=len, reverse=True):
                text = text.replace(old, replaced[old])
            if tags or languages:
                text = _retag_card(text, tags, languages) or render_card(manifest)
        else:
            text = render_card(manifest)
        card.write_text(text, encoding="utf-8")
        write_manifest(dst, manifest)
    return check_shareable(dst)


# --- hub operations -------------------------------------------------------------------------------

def push(adapter_dir: str | Path, hub_url: str, name: str | None = None, *, tags: list[str] | None = None,
         languages: list[str] | None = None, storage_options: dict[str, Any] | None = None) -> str:
    """Share the adapter folder ``adapter_dir`` on ``hub_url`` as a new version of ``name``
    (default: :func:`default_name`, from the manifest's ``name``).

    The folder is verified (hashes, safetensors only) before anything is written; the pushed manifest and card
    carry no local paths (:func:`strip_local_paths`). Returns ``"name@vN"``.
    """
    name = validate_name(name) if name is not None else default_name(adapter_dir)
    tags, languages = _clean_tokens(tags, "tag"), _clean_tokens(languages, "language")
    backend = open_hub(hub_url, storage_options)
    with tempfile.TemporaryDirectory(prefix="skewtune-push-") as tmp:
        staged = Path(tmp) / name
        manifest = stage_adapter(Path(adapter_dir).expanduser(), staged, tags=tags, languages=languages)
        size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        facts = ix.version_facts(manifest, sha256_file(staged / MANIFEST_NAME), size)
        push_id = uuid.uuid4().hex
        index = backend.update_index(lambda i: ix.reserve(i, name, push_id))
        version = ix.reserved_version(index, name, push_id)
        try:
            backend.put_version(name, version, staged)
        except BaseException:
            with contextlib.suppress(Exception):
                backend.update_index(lambda i: ix.finish(i, name, push_id, ix.FAILED))
            backend.delete_version(name, version)
            raise
        backend.update_index(lambda i: ix.finish(i, name, push_id, ix.READY, facts))
    return format_ref(name, version)


def cache_root() -> Path:
    """``$SKEWTUNE_CACHE`` or ``$XDG_CACHE_HOME/skewtune`` or ``~/.cache/skewtune``."""
    env = os.environ.get("SKEWTUNE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "skewtune"


def cache_dir(hub_url: str, name: str, version: int) -> Path:
    """Default pull destination: ``<cache_root>/hub/<hub slug>-<hash>/<name>/v<N>``."""
    slug = re.sub(r"[^a-z0-9]+", "-", hub_url.lower()).strip("-")[-40:].strip("-") or "hub"
    key = hashlib.sha256(hub_url.encode("utf-8")).hexdigest()[:10]
    return cache_root() / "hub" / f"{slug}-{key}" / validate_name(name) / f"v{int(version)}"


def _check_manifest_bytes(raw: bytes, entry: dict[str, Any], label: str) -> dict[str, Any]:
    """Parse a hub copy's manifest: its bytes against the index's ``manifest_sha256``, its schema, its own hash."""
    expected = entry.get("manifest_sha256")
    if expected and hashlib.sha256(raw).hexdigest() != expected:
        raise HubError(f"sha256 mismatch for {label}/{MANIFEST_NAME} (the hub index recorded another manifest)",
                       "the hub copy was altered; ask its owner to re-push")
    try:
        manifest = parse_manifest(raw, f"{label}/{MANIFEST_NAME}")
    except AdapterError as exc:
        raise HubError(exc.message, "the hub copy is damaged or was altered; ask its owner to re-push") from exc
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise HubError(f"{label}/{MANIFEST_NAME} lacks file hashes or labels", "ask the hub owner to re-push")
    for rel in files:
        validate_relpath(rel)
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise HubError(f"{label} lacks {', '.join(missing)} (only safetensors PEFT adapters are shared)",
                       "ask the hub owner to re-push a safetensors adapter")
    try:
        check_manifest_hash(manifest, label)
    except AdapterError as exc:
        raise HubError(exc.message, "the hub copy was altered; ask its owner to re-push") from exc
    return manifest


def _verify_pulled(folder: Path, entry: dict[str, Any], label: str) -> dict[str, Any]:
    """All checks on a downloaded folder; errors name ``label`` instead of the temporary path."""
    _check_manifest_bytes((folder / MANIFEST_NAME).read_bytes(), entry, label)
    try:
        return check_shareable(folder)
    except HubError as exc:
        raise HubError(f"{label} failed verification: {exc.message.replace(str(folder), label)}",
                       "the hub copy was altered or damaged; nothing was written") from exc


def _same_verified(folder: Path, entry: dict[str, Any]) -> bool:
    try:
        if entry.get("manifest_sha256") and sha256_file(folder / MANIFEST_NAME) != entry["manifest_sha256"]:
            return False
        check_shareable(folder)
    except (OSError, HubError):
        return False
    return True


def _resolve(ref: str, hub_url: str, storage_options: dict[str, Any] | None) -> tuple[Backend, str, dict[str, Any]]:
    name, version = parse_ref(ref)
    backend = open_hub(hub_url, storage_options)
    entry = ix.select(backend.require_index(), name, version, hub_url)
    return backend, name, entry


def pull(ref: str, hub_url: str, dest: str | Path | None = None, *, force: bool = False,
         storage_options: dict[str, Any] | None = None) -> Path:
    """Download ``name`` (latest) or ``name@vN`` into ``dest`` (default: the user cache) and verify it.

    The manifest is checked against the index (``manifest_sha256`` of its bytes) and its own hash, every file's
    sha256 against the manifest, in a temporary folder renamed into place only when all checks pass; a hub entry
    that is not a regular file (symbolic link, fifo, device) is refused before anything is copied. An existing
    verified copy is reused unless ``force``; an explicit ``dest`` holding something else is refused unless
    ``force``, and a ``dest`` overlapping the hub or the hub cache is always refused.
    """
    backend, name, entry = _resolve(ref, hub_url, storage_options)
    number = int(entry["version"])
    label = f"{format_ref(name, number)} on {hub_url}"
    target = Path(dest).expanduser() if dest is not None else cache_dir(backend.cache_key, name, number)
    if dest is not None:  # --force replaces --dest: it must not be (inside) the hub or the cache, nor contain them
        check_no_overlap(target, {"the hub": backend.local_root, "the hub cache": cache_root()}, "--dest")
    if target.exists() and not force:
        if target.is_dir() and _same_verified(target, entry):
            return target
        if dest is not None:
            raise HubError(f"{target} already exists", "pass --force to replace it or choose another --dest")
    if target.exists() and not target.is_dir():
        raise HubError(f"{target} is a file", "choose another --dest")
    check_writable_dir(target.parent)
    remote = backend.list_version(name, number)
    for rel in remote:
        validate_relpath(rel)
    if MANIFEST_NAME not in remote:
        raise HubError(f"{label} has no {MANIFEST_NAME}", "ask the hub owner to re-push")
    manifest = _check_manifest_bytes(backend.read_file(name, number, MANIFEST_NAME), entry, label)
    expected = {*manifest["files"], MANIFEST_NAME}
    extra, missing = sorted(set(remote) - expected), sorted(expected - set(remote))
    if extra:
        raise HubError(f"{label} holds files not in its manifest: {', '.join(extra)}",
                       "the hub copy was altered; ask its owner to re-push")
    if missing:
        raise HubError(f"{label} is missing files listed in its manifest: {', '.join(missing)}",
                       "the hub is damaged; ask its owner to re-push")
    with atomic_dir(target) as tmp:
        backend.get_files(name, number, sorted(expected), tmp)
        _verify_pulled(tmp, entry, label)
    return target


def ls(hub_url: str, *, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per adapter (latest version's facts, ``versions``), read from ``index.json`` only."""
    return ix.summary(open_hub(hub_url, storage_options).require_index())


def search(hub_url: str, *, base_model: str | None = None, task: str | None = None, language: str | None = None,
           tag: str | None = None, labels: list[str] | None = None, min_metric: tuple[str, float] | None = None,
           all_versions: bool = False, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Adapters whose latest version (or any version with ``all_versions``) matches every filter.

    ``base_model`` matches the manifest's base model id or its backbone name (``minilm``), case-insensitively; ``task`` is ``seq_cls``/``token_cls`` (or the pipeline tag);
    ``labels`` is the exact label set (any order); ``min_metric=("eval_macro_f1", 0.7)`` keeps adapters
    whose recorded metric is at least the threshold.
    """
    if min_metric is not None:
        key, threshold = min_metric
        if not isinstance(key, str) or not isinstance(threshold, int | float):
            raise HubError(f"invalid metric threshold {min_metric!r}", "use (metric name, number), e.g. eval_macro_f1=0.7")
    index = open_hub(hub_url, storage_options).require_index()
    return ix.search_rows(index, all_versions=all_versions, base_model=base_model, task=task, language=language,
                          tag=tag, labels=list(labels) if labels is not None else None, min_metric=min_metric)


def info(ref: str, hub_url: str, *, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The index facts of ``name[@vN]``, its ready versions, and its manifest (checked against the index)."""
    backend, name, entry = _resolve(ref, hub_url, storage_options)
    number = int(entry["version"])
    label = f"{format_ref(name, number)} on {hub_url}"
    manifest = _check_manifest_bytes(backend.read_file(name, number, MANIFEST_NAME), entry, label)
    versions = [v["version"] for v in ix.ready_versions(backend.require_index(), name)]
    facts = {k: v for k, v in entry.items() if k not in ("push_id", "status")}
    return {"name": name, "ref": format_ref(name, number), **facts, "versions": versions, "manifest": manifest}


def verify(path_or_ref: str | Path, hub_url: str | None = None, *,
           storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Verify a local adapter folder, or download ``name[@vN]`` from ``hub_url`` to a scratch folder and verify it.

    Returns the manifest; raises :class:`HubError` on any mismatch.
    """
    path = Path(path_or_ref).expanduser()
    if isinstance(path_or_ref, Path) or path.is_dir():
        return check_shareable(path)
    if hub_url is None:
        raise HubError(f"{path_or_ref} is neither an adapter folder nor checkable without a hub",
                       "pass an existing folder, or --hub URL / SKEWTUNE_HUB for NAME[@vN]")
    with tempfile.TemporaryDirectory(prefix="skewtune-verify-") as tmp:
        folder = pull(str(path_or_ref), hub_url, Path(tmp) / "adapter", force=True, storage_options=storage_options)
        return read_manifest(folder)


# --- base model compatibility ---------------------------------------------------------------------

def _base_folder(base: str | Path) -> Path:
    path = Path(base).expanduser()
    if path.is_dir():
        return path
    # lazy: skewtune.backbones imports torch + transformers (seconds); only the base-model check needs them
    from skewtune.backbones import resolve_backbone

    spec = resolve_backbone(str(base))
    if not Path(spec.path).is_dir():
        raise HubError(f"cannot fingerprint base '{base}': it is not a local folder", "pass a local base-model folder")
    return Path(spec.path)


def check_base_compatible(manifest: dict[str, Any] | str | Path, base_path: str | Path, force: bool = False) -> bool:
    """Compare the adapter's recorded base fingerprint with the base at ``base_path`` (folder or backbone name).

    True when they match. On a mismatch (or no recorded fingerprint) raise :class:`AdapterError` naming
    both bases, or with ``force`` warn and return False (:func:`skewtune.adapters.io.check_base_fingerprint`).
    """
    if not isinstance(manifest, dict):
        manifest = read_manifest(manifest)
    return check_base_fingerprint(manifest, _base_folder(base_path), force=force, base_label=str(base_path))
