"""Atomic file and folder writes: write to a temporary sibling, then rename into place.

A reader never sees a partial file or folder: ``os.replace`` is atomic on POSIX within one filesystem.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
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
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    The temporary file (``.<name>.XXXX.tmp``) is locked while it is written; stale ones of the same name that a
    killed writer left are removed first (:func:`remove_stale_leftovers`).
    """
    path = Path(path)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_leftovers(path.parent, target=path.name)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # "a live writer's": a sweeper leaves it alone
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
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    """``json.dumps`` ``default=``: numpy scalars and arrays as Python numbers and lists, paths as strings."""
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

    On an exception the temporary folder is removed and ``path`` is left as it was. The temporary folder
    (``.<name>.XXXX.tmp``) is locked while it is built; stale ones of the same name that a killed writer left are
    removed first (:func:`remove_stale_leftovers`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_leftovers(path.parent, target=path.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise _os_error(exc, path) from exc
    held = -1
    try:
        held = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(held, fcntl.LOCK_EX)  # "a live writer's": a sweeper leaves it alone
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
    finally:
        if held >= 0:
            os.close(held)


STALE_AFTER_S = 60.0  # an unlocked temporary entry this old belongs to no live writer (see remove_stale_leftovers)


def is_leftover(name: str) -> bool:
    """A hidden temporary name of an atomic write or a checkpoint (``.adapter.XXXX.tmp``, ``.step-3.old``, …)."""
    return name.startswith(".") and name.endswith((".tmp", ".old"))


def _locked_by_writer(path: Path, is_dir: bool) -> bool:
    """Does a live process hold the ``flock`` that :func:`atomic_dir` / :func:`atomic_write_bytes` take?"""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if is_dir else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return True  # cannot tell: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _restore_previous(old: Path) -> None:
    """A kill between :func:`atomic_dir`'s two renames leaves the previous folder in ``.<name>.XXXX.old/x`` and
    nothing under ``<name>``: put it back."""
    name = old.name[1:-len(".old")].rsplit(".", 1)[0]
    target = old.parent / name
    with contextlib.suppress(OSError):
        if name and [p.name for p in old.iterdir()] == ["x"] and not os.path.lexists(target):
            os.replace(old / "x", target)


def remove_stale_leftovers(folder: str | os.PathLike[str], target: str | None = None,
                           min_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the hidden temporary entries (:func:`is_leftover`) that killed writers left in ``folder``.

    ``target``: only those of that name (``.<target>.XXXX.tmp`` / ``.old``). An entry is stale when no live
    writer holds its lock and it is at least ``min_age_s`` old (a writer holding ``folder``'s own output lock
    passes 0). A stale ``.old`` folder whose original is missing is put back first. Returns what was removed;
    never raises.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    now = time.time()
    removed = []
    for entry in entries:
        if not is_leftover(entry.name) or (target is not None and not entry.name.startswith(f".{target}.")):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if not (is_dir or stat.S_ISREG(st.st_mode)) or now - st.st_mtime < min_age_s:
            continue
        path = Path(entry.path)
        if _locked_by_writer(path, is_dir):
            continue
        with contextlib.suppress(OSError):
            if is_dir:
                if entry.name.endswith(".old"):
                    _restore_previous(path)
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


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
        with contextlib.suppress(FileNotFoundError):  # a run sweeping its folder's leftovers took it already
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
            raise OutputError(f"{flag} {output} {relation} {what} {path}, which this command reads "
                              "(writing there would destroy it)",
                              f"choose a {flag} that is not, does not hold and does not lie inside {what}")


def usual_permissions(folder: str | os.PathLike[str]) -> None:
    """mkdtemp/mkstemp make 0700/0600 entries; give a finished cache folder the usual 0755/0644."""
    folder = Path(folder)
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, 0o644)
