"""Validation of adapter names, version references and file paths coming from users or from a hub.

Everything that ends up in a path (hub side or local side) passes through here first: names follow
``^[a-z0-9][a-z0-9._-]{0,63}$`` without ``..``; file paths are relative POSIX paths of plain name parts
with an allowed suffix. Nothing here touches the filesystem.
"""

from __future__ import annotations

import re

from skewtune.adapters.io import ALLOWED_SUFFIXES, FORBIDDEN_SUFFIXES
from skewtune.errors import HubError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
REF_RE = re.compile(r"^(?P<name>[^@]*)(?:@(?P<version>[^@]*))?$")
VERSION_RE = re.compile(r"^v?(?P<n>[1-9][0-9]{0,8})$")
PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
# names that would collide with hub bookkeeping (index file, HF index repo)
RESERVED_NAMES = frozenset({"index.json", "skewtune-index"})
MAX_DEPTH = 4


def validate_name(name: str) -> str:
    """Return ``name`` if it is a safe adapter name, else raise :class:`HubError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name or name in RESERVED_NAMES:
        shown = name if isinstance(name, str) else type(name).__name__
        raise HubError(
            f"invalid adapter name {shown!r}",
            "use 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, without '..'",
        )
    return name


def parse_version(text: str | int | None) -> int | None:
    """``'v2'``/``'2'``/``2`` -> 2; ``None``/``'latest'`` -> None (the latest version)."""
    if text is None or text == "latest":
        return None
    if isinstance(text, int) and not isinstance(text, bool) and text >= 1:
        return text
    match = VERSION_RE.fullmatch(str(text))
    if not match:
        raise HubError(f"invalid version {text!r}", "use vN (e.g. v2) or 'latest'")
    return int(match.group("n"))


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name@vN`` -> (name, N or None for latest), both validated."""
    match = REF_RE.fullmatch(ref) if isinstance(ref, str) else None
    if not match:
        raise HubError(f"invalid adapter reference {ref!r}", "use NAME or NAME@vN")
    return validate_name(match.group("name")), parse_version(match.group("version"))


def format_ref(name: str, version: int) -> str:
    return f"{name}@v{version}"


def validate_relpath(rel: str) -> str:
    """Return ``rel`` if it is a safe relative POSIX file path inside an adapter folder."""
    ok = isinstance(rel, str) and 0 < len(rel) <= 512 and "\\" not in rel and ":" not in rel
    parts = rel.split("/") if ok else []
    ok = ok and not rel.startswith("/") and 0 < len(parts) <= MAX_DEPTH
    ok = ok and all(PART_RE.fullmatch(p) and p not in (".", "..") and ".." not in p for p in parts)
    if not ok:
        raise HubError(f"unsafe file path {rel!r} in adapter", "only plain relative file names are allowed")
    suffix = "." + parts[-1].rsplit(".", 1)[-1].lower() if "." in parts[-1] else ""
    if suffix in FORBIDDEN_SUFFIXES or suffix not in ALLOWED_SUFFIXES:
        raise HubError(
            f"file {rel!r} has a type adapters may not contain",
            f"only {', '.join(ALLOWED_SUFFIXES)} files are shared; skewtune never loads pickle or code",
        )
    return rel
