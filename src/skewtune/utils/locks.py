"""One writer per output place: an exclusive ``fcntl.flock`` on a small lock file, held for a writer's lifetime.

The lock file holds who took it (pid, host, start time, command) so that a second writer can name the holder.
The kernel drops a ``flock`` when its holder's last file descriptor closes, so a crashed or killed writer never
leaves a lock held: at worst a stale lock file stays, which the next writer takes over. A clean release removes
the lock file again, and the folders the lock itself had to create (when they are still empty), so a refused
command leaves nothing behind.

The lock is advisory: it keeps skewtune writers apart, not other programs. Taking it never waits: a place already
held raises :class:`~skewtune.errors.OutputError` at once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from skewtune.errors import OutputError

LOCK_NAME = ".skewtune.lock"  # inside a locked output folder
_ATTEMPTS = 5  # a lock file removed by its releasing holder between our open and our flock: open it again


def folder_lock_path(folder: str | os.PathLike[str]) -> Path:
    """Where the lock of an output folder lives: ``<folder>/.skewtune.lock``."""
    return Path(folder) / LOCK_NAME


def file_lock_path(path: str | os.PathLike[str]) -> Path:
    """Where the lock of an output file lives: ``.<name>.skewtune.lock`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.skewtune.lock"


def is_lock_file(path: str | os.PathLike[str]) -> bool:
    """Is ``path`` a lock file of this module (a folder's or a file's)?"""
    name = Path(path).name
    return name == LOCK_NAME or (name.startswith(".") and name.endswith(".skewtune.lock"))


def _holder_text(command: str | None) -> str:
    command = " ".join(sys.argv) if command is None else command
    if len(command) > 200:
        command = command[:197] + "..."
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} since {started}: {command}\n"


class OutputLock:
    """An exclusive lock on one output place (a folder or a file), taken without waiting.

    ``place`` is the folder or file the lock guards, ``flag`` the option that named it (for messages). Use it as
    a context manager, or call :meth:`acquire` and :meth:`release` (a lock that is not released is dropped by the
    kernel when the process ends). Taking a lock that another writer holds raises :class:`OutputError` naming
    the holder; nothing is left behind.
    """

    def __init__(self, place: str | os.PathLike[str], *, flag: str = "--output_dir", is_file: bool = False,
                 command: str | None = None) -> None:
        self.place = Path(place)
        self.flag = flag
        self.path = file_lock_path(place) if is_file else folder_lock_path(place)
        self.command = command
        self._fd: int | None = None
        self._created: list[Path] = []  # folders this lock created, outermost first

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock; raise :class:`OutputError` when another writer holds it (or it cannot be created)."""
        if self._fd is not None:
            return self
        self._make_parents()
        try:
            for _ in range(_ATTEMPTS):
                fd = self._try_lock()
                if fd is not None:
                    self._fd = fd
                    break
            else:
                raise self._busy("")
            with contextlib.suppress(OSError):  # who holds it is a courtesy for the next writer's message
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, _holder_text(self.command).encode("utf-8", "replace"), 0)
        except OSError as exc:
            self.release()
            raise OutputError(f"cannot create the lock file {self.path}: {exc.strerror or exc}",
                              f"choose a writable {self.flag}") from exc
        except BaseException:
            self.release()
            raise
        return self

    def _make_parents(self) -> None:
        missing = []
        probe = self.path.parent
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                continue  # another writer made it at the same moment: not ours to remove
            except OSError as exc:
                self._remove_created()
                raise OutputError(f"cannot create {folder}: {exc.strerror or exc}",
                                  f"choose a writable {self.flag}") from exc
            self._created.append(folder)

    def _try_lock(self) -> int | None:
        """The locked descriptor of the current lock file; None when it was replaced meanwhile (try again)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                with contextlib.suppress(OSError):
                    holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
                os.close(fd)
                self._remove_created()
                raise self._busy(holder) from None
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file after we opened it: our lock would guard nothing
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
        return None

    def _busy(self, holder: str) -> OutputError:
        who = f" ({' '.join(holder.split())})" if holder else ""
        return OutputError(f"{self.flag} {self.place} is in use by another skewtune run{who}",
                           f"wait for that run to end, or choose another {self.flag}")

    def release(self) -> None:
        """Drop the lock and remove its file (and the empty folders the lock created). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    os.unlink(self.path)  # while still holding it: a waiting opener retries on the new file
            os.close(fd)
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: whatever the writer put there stays
        self._created = []

    def __del__(self) -> None:  # a lock dropped without release: free the descriptor (the file stays, unheld)
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


@contextlib.contextmanager
def output_lock(place: str | os.PathLike[str], *, flag: str = "--output_dir", is_file: bool = False,
                command: str | None = None) -> Iterator[OutputLock]:
    """Hold an :class:`OutputLock` on ``place`` for the ``with`` block."""
    with OutputLock(place, flag=flag, is_file=is_file, command=command) as lock:
        yield lock
