"""Base-model fingerprint: sha256 of the normalised ``config.json`` plus a sampled hash of the safetensors weights.

The weight hash covers, for every tensor of every ``*.safetensors`` file in the folder (files and tensors in sorted
order), its name, dtype, shape and the first and last 4 KiB of its raw little-endian bytes. Only the safetensors
header and those bytes are read (seek + read; no tensor is materialised), so a multi-GB model is fingerprinted by
reading a few hundred KB. The digest equals the one skewtune recorded before this reader existed (it loaded each
tensor and hashed the same bytes on a little-endian machine); it does not depend on the machine's byte order. Nothing in the folder is executed or unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from skewtune.errors import BackboneError

SAMPLE = 4096
MAX_HEADER = 100 * 1024 * 1024
# keys that vary with the saving library version, not with the architecture
_VOLATILE_CONFIG_KEYS = ("transformers_version", "_name_or_path", "torch_dtype", "dtype")


def normalise_config(raw: bytes) -> bytes:
    """Config bytes with the library-version keys dropped and keys sorted (raw bytes when not a JSON object)."""
    if not raw:
        return raw
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return raw
    if not isinstance(data, dict):
        return raw
    for key in _VOLATILE_CONFIG_KEYS:
        data.pop(key, None)
    return json.dumps(data, sort_keys=True).encode()


def _header(handle: Any, path: Path, size: int) -> dict[str, Any]:
    head = handle.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if length <= 1 or length > min(MAX_HEADER, size - 8):
        raise BackboneError(f"{path} is not a safetensors file (bad header length)", "re-download the base model")
    try:
        header = json.loads(handle.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BackboneError(f"{path} is not a safetensors file (header is not JSON)", "re-download the base model") from exc
    if not isinstance(header, dict):
        raise BackboneError(f"{path} is not a safetensors file (header is not an object)", "re-download the base model")
    return header


def _update_weights(digest: Any, path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        header = _header(handle, path, size)
        start = handle.tell()
        for key in sorted(k for k in header if k != "__metadata__"):
            info = header[key]
            offsets = info.get("data_offsets") if isinstance(info, dict) else None
            ok = isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            if not ok or not 0 <= offsets[0] <= offsets[1] <= size - start or not isinstance(info.get("dtype"), str):
                raise BackboneError(f"{path} is not a valid safetensors file (bad entry {key[:80]!r})",
                                    "re-download the base model")
            digest.update(key.encode())
            digest.update(str(info["dtype"]).encode())
            digest.update(str(list(info.get("shape") or [])).encode())
            begin, end = start + offsets[0], start + offsets[1]
            handle.seek(begin)
            digest.update(handle.read(min(SAMPLE, end - begin)))
            tail = max(begin, end - SAMPLE)
            handle.seek(tail)
            digest.update(handle.read(end - tail))


def base_fingerprint(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{"config_sha256", "weights_sha256"}`` of a base-model folder (see the module docstring)."""
    folder = Path(path)
    config = folder / "config.json"
    config_sha = hashlib.sha256(normalise_config(config.read_bytes() if config.is_file() else b"")).hexdigest()
    digest = hashlib.sha256()
    for weights in sorted(folder.glob("*.safetensors")):
        _update_weights(digest, weights)
    return {"config_sha256": config_sha, "weights_sha256": digest.hexdigest()}
