"""Atomic file and folder writes: write to a temporary sibling, then rename into place.

A reader never sees a partial file or folder: ``os.replace`` is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skewtune.errors import OutputError


def _os_error(exc: OSError, path: Path) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"no space left on device while writing {path}", "free disk space or choose another --output_dir")
    if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return OutputError(f"cannot write to {path} (read-only or permission denied)", "choose a writable --output_dir")
    return OutputError(f"cannot write {path}: {exc.strerror or exc}", "check the output path")


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as exc:
        raise _os_error(exc, path) from exc
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _os_error(exc, path) from exc
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give what mkdir() would
        if path.exists():
            if not overwrite:
                raise OutputError(f"{path} already exists", "remove it or allow overwriting")
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _os_error(exc, path) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_writable_dir(path: str | os.PathLike[str]) -> None:
    """Fail early, before any work, when ``path`` (or its nearest existing parent) is not writable."""
    probe = Path(path)
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        # also catches what os.access cannot for root: a path through an existing file
        where = "is a file" if probe == Path(path) else f"runs through {probe}, which is a file"
        raise OutputError(f"output path {path} {where}, not a folder", "choose a folder path for the output")
    if not os.access(probe, os.W_OK):
        raise OutputError(f"cannot write to {path} (read-only or permission denied)", "choose a writable --output_dir")
    # os.access trusts permission bits, which root bypasses, and knows nothing of /sys, some network or FUSE
    # mounts, quotas: create (and remove) one empty hidden file to be sure
    try:
        fd, name = tempfile.mkstemp(prefix=".skewtune-write-test-", suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise _os_error(exc, Path(path)) from exc


def check_no_overlap(output: str | os.PathLike[str], reads: dict[str, str | os.PathLike[str] | None], flag: str) -> None:
    """Refuse an ``output`` path that is, contains or lies inside any path the command reads.

    ``reads`` maps a description ("the input file", "the hub", "the adapter") to a path (``None``: skipped).
    Paths are compared after resolving symlinks, so a link to an input counts as that input. Raises
    :class:`OutputError` naming both paths; nothing is written.
    """
    out = Path(output).expanduser().resolve()
    for what, path in reads.items():
        if path is None or str(path) == "":
            continue
        src = Path(path).expanduser().resolve()
        if out == src or src in out.parents or out in src.parents:
            relation = "is" if out == src else ("lies inside" if src in out.parents else "contains")
            raise OutputError(f"{flag} {output} {relation} {what} {path}, which this command reads",
                              f"choose a {flag} outside it")


def usual_permissions(folder: str | os.PathLike[str]) -> None:
    """mkdtemp/mkstemp make 0700/0600 entries; give a finished cache folder the usual 0755/0644."""
    folder = Path(folder)
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, 0o644)
