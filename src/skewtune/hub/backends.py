"""Hub storage backends: a local folder, any fsspec filesystem, or the Hugging Face Hub.

Layout on a local folder or fsspec URL (one code path over fsspec)::

    <root>/index.json               # the index (skewtune.hub.index), always a complete JSON document
    <root>/<name>/v<N>/<files>      # one adapter folder per version, never rewritten
    <root>/.index.lock              # local folders only: the fcntl lock serialising index updates
    <root>/.index/g<generation>.json  # object stores only: the compare-and-swap journal (below)

How an index update stays atomic and safe under concurrent pushers:

* **Local folder / file://**: an exclusive ``fcntl.flock`` on ``<root>/.index.lock`` around
  read-modify-write; the new ``index.json`` is written to a temporary name and renamed over the old one.
* **Other fsspec filesystems** (``s3://``, ``gs://``, ``memory://``, ...) have no atomic rename, so each
  update is a compare-and-swap on a generation counter: read the newest ``.index/g<G>.json``, apply the
  change, then create ``.index/g<G+1>.json`` with an *exclusive create* (``open(path, "xb")``; s3fs sends
  ``If-None-Match: *``; a backend without "xb" falls back to check-then-write, best effort). Losing the race raises ``FileExistsError`` and the
  update is retried from the new state (jittered back-off, up to 60 tries). The object is read back
  and its parent generation re-checked (catches a journal pruned under a very slow writer and servers
  that ignore the precondition, except for a race inside the read-back window). ``index.json`` is then
  rewritten as a plain copy for readers that do not know the journal; the
  journal keeps the last 32 generations. Readers take the newest journal entry when there is one.
* **Hugging Face Hub** (``hf://<org>``): the index lives in the dataset repo ``<org>/skewtune-index``;
  an update is a commit with ``parent_commit=<sha read>`` so the Hub refuses it (HTTP 412/409) when
  someone committed in between, and it is retried. Each adapter is the model repo ``<org>/<name>``
  with the adapter files at the repo root (``PeftModel.from_pretrained("<org>/<name>")`` works and the
  card renders); each push is one commit tagged ``v<N>`` (``revision="v2"`` pulls a given version).

Every update is idempotent (keyed by a push id), so a retry never applies a change twice.

Reading a version refuses anything that is not a regular file, on every backend: on a local folder every entry
of ``<name>/v<N>`` (and those two folders) is ``lstat``-ed and must be a plain folder or a regular file (no
symbolic link, fifo, socket or device), and files are opened with ``O_NOFOLLOW``; fsspec listings must report
``type == "file"``; a Hugging Face download must produce regular files. A hub can never make a pull copy or
print a file of the puller's machine.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import random
import re
import shutil
import stat
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub import HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError

from skewtune.errors import HubError, SkewtuneError
from skewtune.hub.index import INDEX_NAME, bump, dumps, empty_index, load_index
from skewtune.utils.io import atomic_write_bytes

Mutator = Callable[[dict[str, Any]], dict[str, Any]]

JOURNAL_DIR = ".index"
LOCK_NAME = ".index.lock"
JOURNAL_KEEP = 32
MAX_ATTEMPTS = 60
HF_INDEX_REPO = "skewtune-index"
HF_ORG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_JOURNAL_RE = re.compile(r"^g(\d{12})\.json$")
_MEMORY_LOCK = threading.Lock()  # memory:// checks "x" mode and writes in two steps: serialise in-process


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def guard(url: str, action: str) -> Iterator[None]:
    """Turn storage/network exceptions into one-line :class:`HubError` s."""
    try:
        yield
    except SkewtuneError:
        raise
    except FileNotFoundError as exc:
        raise HubError(f"cannot {action} on hub {url}: not found ({_first_line(exc)})",
                       "check the hub URL, adapter name and version") from exc
    except PermissionError as exc:
        raise HubError(f"cannot {action} on hub {url}: permission denied ({_first_line(exc)})",
                       "check the hub's credentials and permissions") from exc
    except Exception as exc:  # network, auth and backend-specific errors all end here
        raise HubError(f"cannot {action} on hub {url}: {type(exc).__name__}: {_first_line(exc)}",
                       "check the hub URL, network access and credentials") from exc


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0.0, min(0.5, 0.005 * 2**min(attempt, 7))))


class Backend(ABC):
    """Storage of one hub: the index plus immutable version folders."""

    url: str

    @abstractmethod
    def read_index(self) -> dict[str, Any] | None:
        """The current index (migrated), or None when the hub has none yet."""

    @abstractmethod
    def update_index(self, mutate: Mutator) -> dict[str, Any]:
        """Apply ``mutate`` to the current index atomically (creating the hub if needed); the new index."""

    @abstractmethod
    def put_version(self, name: str, version: int, folder: Path) -> None:
        """Upload every file of ``folder`` as ``name@v<version>``."""

    @abstractmethod
    def list_version(self, name: str, version: int) -> list[str]:
        """Relative POSIX paths of the files stored for ``name@v<version>``."""

    @abstractmethod
    def get_files(self, name: str, version: int, rels: list[str], dest: Path) -> None:
        """Download the given files of ``name@v<version>`` into ``dest``."""

    @abstractmethod
    def read_file(self, name: str, version: int, rel: str) -> bytes:
        """One file of ``name@v<version>``."""

    @abstractmethod
    def delete_version(self, name: str, version: int) -> None:
        """Best-effort removal of a failed upload."""

    @property
    def cache_key(self) -> str:
        """A canonical form of the hub URL, used to name the local cache folder."""
        return self.url

    @property
    def local_root(self) -> Path | None:
        """The hub's folder on this machine (None for remote hubs): outputs must not overlap it."""
        return None

    def require_index(self) -> dict[str, Any]:
        index = self.read_index()
        if index is None:
            raise HubError(f"no skewtune hub at {self.url} (no index.json)",
                           "check --hub / SKEWTUNE_HUB, or push an adapter there to create the hub")
        return index


class FsspecBackend(Backend):
    """A hub on a local folder (``local=True``: fcntl lock + rename) or any other fsspec filesystem."""

    def __init__(self, url: str, fs: Any, root: str, local: bool) -> None:
        self.url, self.fs, self.root, self.local = url, fs, root.rstrip("/") or "", local

    @property
    def cache_key(self) -> str:
        return f"file://{self.root}" if self.local else self.url

    @property
    def local_root(self) -> Path | None:
        return Path(self.root) if self.local else None

    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.root else "/" + "/".join(parts)

    def _vdir(self, name: str, version: int) -> str:
        return self._p(name, f"v{version}")

    def _cat(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    # --- index --------------------------------------------------------------------------------
    def read_index(self) -> dict[str, Any] | None:
        with guard(self.url, "read the index"):
            if self.local:
                raw = self._cat(self._p(INDEX_NAME))
                return load_index(raw, self.url) if raw is not None else None
            index, _gen, _raw = self._read_remote()
            return index

    def _journal(self) -> list[int]:
        try:
            names = self.fs.ls(self._p(JOURNAL_DIR), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        except TypeError:  # filesystems without the refresh keyword
            names = self.fs.ls(self._p(JOURNAL_DIR), detail=False)
        gens = [int(m.group(1)) for n in names if (m := _JOURNAL_RE.match(posixpath.basename(str(n).rstrip("/"))))]
        return sorted(gens)

    def _gen_path(self, gen: int) -> str:
        return self._p(JOURNAL_DIR, f"g{gen:012d}.json")

    def _read_remote(self) -> tuple[dict[str, Any] | None, int, bytes | None]:
        """(index, its generation, raw bytes of its journal entry or None when read from index.json)."""
        self.fs.invalidate_cache()
        for _ in range(5):
            gens = self._journal()
            if not gens:
                break
            raw = self._cat(self._gen_path(gens[-1]))
            if raw is not None:  # else pruned between listing and reading: list again
                return load_index(raw, self.url), gens[-1], raw
        raw = self._cat(self._p(INDEX_NAME))
        if raw is None:
            return None, 0, None
        index = load_index(raw, self.url)
        return index, int(index.get("generation", 0)), None

    def update_index(self, mutate: Mutator) -> dict[str, Any]:
        with guard(self.url, "update the index"):
            return self._update_local(mutate) if self.local else self._update_remote(mutate)

    def _update_local(self, mutate: Mutator) -> dict[str, Any]:
        root = Path(self.root)
        index_path = root / INDEX_NAME
        if root.exists() and not root.is_dir():
            raise HubError(f"hub path {root} is a file", "point --hub at a folder")
        # refuse early, before creating the lock file, then again under the lock (other pushers' temp files are
        # hidden and only exist while they hold the lock). List first, then look for the index: a concurrent
        # first push writes index.json before any version folder, so files seen before the index is checked
        # cannot be another pusher's (checking the index first raced with it: a push saw its peer's folder).
        if root.is_dir() and any(not p.name.startswith(".") for p in root.iterdir()) and not index_path.exists():
            raise _not_a_hub(root)
        root.mkdir(parents=True, exist_ok=True)
        with _flock(root / LOCK_NAME):
            raw = self._cat(str(index_path))
            if raw is None and any(p.name != LOCK_NAME for p in root.iterdir()):
                raise _not_a_hub(root)
            current = load_index(raw, self.url) if raw is not None else empty_index()
            new = mutate(bump(current))
            atomic_write_bytes(index_path, dumps(new))
            return new

    def _update_remote(self, mutate: Mutator) -> dict[str, Any]:
        for attempt in range(MAX_ATTEMPTS):
            current, gen, parent_raw = self._read_remote()
            new = mutate(bump(current or empty_index()))
            new["generation"] = gen + 1
            data = dumps(new)
            path = self._gen_path(gen + 1)
            if self._create_exclusive(path, data):
                if parent_raw is None or self._cat(self._gen_path(gen)) == parent_raw:
                    self.fs.pipe_file(self._p(INDEX_NAME), data)  # plain mirror for journal-unaware readers
                    self._prune(gen + 1)
                    return new
                with contextlib.suppress(Exception):  # our parent was pruned and re-created: stale
                    self.fs.rm_file(path)
            _backoff(attempt)
        raise HubError(f"could not update index.json on hub {self.url} after {MAX_ATTEMPTS} attempts "
                       "(too many concurrent writers)", "retry the push")

    def _create_exclusive(self, path: str, data: bytes) -> bool:
        lock = _MEMORY_LOCK if "memory" in _protocols(self.fs) else contextlib.nullcontext()
        with lock:
            try:
                with self.fs.open(path, "xb") as handle:
                    handle.write(data)
            except FileExistsError:
                return False
            except (ValueError, NotImplementedError):  # no exclusive mode: check-then-write (best effort)
                if self.fs.exists(path):
                    return False
                self.fs.pipe_file(path, data)
        return self._cat(path) == data  # write-then-verify

    def _prune(self, newest: int) -> None:
        with contextlib.suppress(Exception):
            for gen in self._journal():
                if gen < newest - JOURNAL_KEEP:
                    self.fs.rm_file(self._gen_path(gen))

    # --- versions -----------------------------------------------------------------------------
    def put_version(self, name: str, version: int, folder: Path) -> None:
        files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (p.name == "skewtune.json", str(p)))
        with guard(self.url, f"upload {name}@v{version}"):
            if self.local:
                final = Path(self._vdir(name, version))
                if final.exists():
                    raise HubError(f"{final} already exists on the hub", "push again (a new version is reserved)")
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.parent / f".v{version}.partial-{uuid.uuid4().hex[:8]}"
                try:
                    for path in files:
                        target = tmp / path.relative_to(folder)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(path, target)
                    os.rename(tmp, final)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
                return
            for path in files:
                self.fs.put_file(str(path), self._p(name, f"v{version}", path.relative_to(folder).as_posix()))

    def list_version(self, name: str, version: int) -> list[str]:
        if self.local:
            with guard(self.url, f"list {name}@v{version}"):
                rels = self._list_local(name, version)
        else:
            rels = self._list_remote(name, version)
        if not rels:
            raise HubError(f"the files of {name}@v{version} are missing on hub {self.url}",
                           "the hub is damaged; ask its owner to re-push the adapter")
        return sorted(rels)

    def _list_remote(self, name: str, version: int) -> list[str]:
        base = self.fs._strip_protocol(self._vdir(name, version)).rstrip("/")
        with guard(self.url, f"list {name}@v{version}"):
            self.fs.invalidate_cache()
            try:
                found = self.fs.find(base, detail=True)
            except FileNotFoundError:
                found = {}
        rels = []
        for item, info in sorted(found.items()):
            item = str(item)
            if not item.startswith(base + "/"):
                raise HubError(f"hub {self.url} listed {item} outside {name}@v{version}", "check the hub")
            rel = item[len(base) + 1:]
            info = info if isinstance(info, dict) else {}
            if info.get("type") != "file" or info.get("islink"):
                kind = "a symbolic link" if info.get("islink") else f"of type {info.get('type')!r}"
                raise _not_regular(self.url, name, version, rel, kind)
            rels.append(rel)
        return rels

    def _plain_dir(self, name: str, version: int) -> Path:
        """``<root>/<name>/v<N>`` after checking that neither folder is a link or special file."""
        folder = Path(self._vdir(name, version))
        for part in (folder.parent, folder):
            mode = os.lstat(part).st_mode
            if not stat.S_ISDIR(mode):
                raise _not_regular(self.url, name, version, part.name + "/", _kind(mode))
        return folder

    def _list_local(self, name: str, version: int) -> list[str]:
        try:
            base = self._plain_dir(name, version)
        except FileNotFoundError:
            return []
        rels = []
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            for entry in sorted([*dirnames, *filenames]):
                path = Path(dirpath) / entry
                mode = os.lstat(path).st_mode
                rel = path.relative_to(base).as_posix()
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    raise _not_regular(self.url, name, version, rel, _kind(mode))
                rels.append(rel)
        return rels

    def _open_local(self, name: str, version: int, rel: str) -> int:
        """A read-only descriptor of a regular file of the version; links and special files are refused."""
        base = self._plain_dir(name, version)
        path = base / rel
        if base.resolve() not in path.parent.resolve().parents and path.parent.resolve() != base.resolve():
            raise _not_regular(self.url, name, version, rel, "outside its version folder")
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise _not_regular(self.url, name, version, rel, _kind(mode))
        return fd

    def get_files(self, name: str, version: int, rels: list[str], dest: Path) -> None:
        with guard(self.url, f"download {name}@v{version}"):
            for rel in rels:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if not self.local:
                    self.fs.get_file(self._p(name, f"v{version}", rel), str(target))
                    continue
                try:
                    fd = self._open_local(name, version, rel)
                except OSError as exc:
                    raise _link_error(self.url, name, version, rel, exc) from exc
                with os.fdopen(fd, "rb") as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)

    def read_file(self, name: str, version: int, rel: str) -> bytes:
        with guard(self.url, f"read {name}@v{version}/{rel}"):
            if not self.local:
                return self.fs.cat_file(self._p(name, f"v{version}", rel))
            try:
                fd = self._open_local(name, version, rel)
            except OSError as exc:
                raise _link_error(self.url, name, version, rel, exc) from exc
            with os.fdopen(fd, "rb") as handle:
                return handle.read()

    def delete_version(self, name: str, version: int) -> None:
        with contextlib.suppress(Exception):
            self.fs.rm(self._vdir(name, version), recursive=True)


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return word
    return "not a regular file"


def _not_regular(url: str, name: str, version: int, rel: str, kind: str) -> HubError:
    return HubError(f"{name}@v{version} on hub {url} holds {rel}, which is {kind}, not a regular file; nothing was copied",
                    "a hub may hold only regular files; ask the hub owner to re-push the adapter")


def _link_error(url: str, name: str, version: int, rel: str, exc: OSError) -> BaseException:
    """ELOOP from ``O_NOFOLLOW`` means a symbolic link; other OS errors go to :func:`guard`."""
    import errno

    if exc.errno == errno.ELOOP:
        return _not_regular(url, name, version, rel, "a symbolic link")
    return exc


def _not_a_hub(root: Path) -> HubError:
    return HubError(f"{root} is not empty and holds no index.json, so it is not a skewtune hub",
                    "push to an empty or new folder, or to an existing hub")


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created if missing); released when the block ends."""
    import fcntl  # lazy: POSIX only; only local hubs lock

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class HfBackend(Backend):
    """``hf://<org>``: adapters are model repos ``<org>/<name>`` tagged ``v<N>``; index in a dataset repo."""

    def __init__(self, url: str, org: str, api: Any = None) -> None:
        self.url, self.org = url, org
        self.api = api if api is not None else hf_api()
        self.index_repo = f"{org}/{HF_INDEX_REPO}"

    def _repo(self, name: str) -> str:
        return f"{self.org}/{name}"

    def _read_state(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            sha = self.api.repo_info(self.index_repo, repo_type="dataset").sha
        except RepositoryNotFoundError:
            return None, None
        with tempfile.TemporaryDirectory(prefix="skewtune-hf-") as tmp:
            try:
                path = self.api.hf_hub_download(self.index_repo, INDEX_NAME, repo_type="dataset", revision=sha,
                                                local_dir=tmp)
            except EntryNotFoundError:
                return None, sha
            return load_index(Path(path).read_bytes(), self.url), sha

    def read_index(self) -> dict[str, Any] | None:
        with guard(self.url, "read the index"):
            return self._read_state()[0]

    def update_index(self, mutate: Mutator) -> dict[str, Any]:
        with guard(self.url, "update the index"):
            for attempt in range(MAX_ATTEMPTS):
                current, sha = self._read_state()
                if sha is None:
                    self.api.create_repo(self.index_repo, repo_type="dataset", exist_ok=True)
                    continue
                new = mutate(bump(current or empty_index()))
                try:
                    self.api.upload_file(path_or_fileobj=dumps(new), path_in_repo=INDEX_NAME, repo_id=self.index_repo,
                                         repo_type="dataset", parent_commit=sha,
                                         commit_message=f"skewtune index generation {new['generation']}")
                    return new
                except HfHubHTTPError as exc:
                    status = getattr(getattr(exc, "response", None), "status_code", None)
                    if status not in (409, 412):
                        raise
                _backoff(attempt)
        raise HubError(f"could not update the index on {self.url} after {MAX_ATTEMPTS} attempts", "retry the push")

    def put_version(self, name: str, version: int, folder: Path) -> None:
        with guard(self.url, f"upload {name}@v{version}"):
            repo = self._repo(name)
            self.api.create_repo(repo, exist_ok=True)
            commit = self.api.upload_folder(repo_id=repo, folder_path=str(folder), delete_patterns="*",
                                            commit_message=f"skewtune push {name}@v{version}")
            self.api.create_tag(repo, tag=f"v{version}", revision=commit.oid)

    def list_version(self, name: str, version: int) -> list[str]:
        with guard(self.url, f"list {name}@v{version}"):
            files = self.api.list_repo_files(self._repo(name), revision=f"v{version}")
        return sorted(f for f in files if f != ".gitattributes")

    def get_files(self, name: str, version: int, rels: list[str], dest: Path) -> None:
        with guard(self.url, f"download {name}@v{version}"), tempfile.TemporaryDirectory(prefix="skewtune-hf-") as tmp:
            self.api.snapshot_download(self._repo(name), revision=f"v{version}", local_dir=tmp, allow_patterns=list(rels))
            for rel in rels:
                _check_downloaded(Path(tmp), rel, self.url, name, version)
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / rel, target, follow_symlinks=False)

    def read_file(self, name: str, version: int, rel: str) -> bytes:
        with guard(self.url, f"read {name}@v{version}/{rel}"), tempfile.TemporaryDirectory(prefix="skewtune-hf-") as tmp:
            self.api.hf_hub_download(self._repo(name), rel, revision=f"v{version}", local_dir=tmp)
            _check_downloaded(Path(tmp), rel, self.url, name, version)
            return (Path(tmp) / rel).read_bytes()

    def delete_version(self, name: str, version: int) -> None:
        with contextlib.suppress(Exception):
            self.api.delete_tag(self._repo(name), tag=f"v{version}")


def _check_downloaded(root: Path, rel: str, url: str, name: str, version: int) -> None:
    """A downloaded file (and every folder above it, up to ``root``) must be a regular file / plain folder."""
    path = root / rel
    for part in [*reversed(path.relative_to(root).parents[:-1]), path.relative_to(root)]:
        mode = os.lstat(root / part).st_mode
        want = stat.S_ISREG if part == path.relative_to(root) else stat.S_ISDIR
        if not want(mode):
            raise _not_regular(url, name, version, rel, _kind(mode))


def hf_api() -> HfApi:
    """The ``huggingface_hub.HfApi`` used for ``hf://`` hubs (token from ``HF_TOKEN`` / ``hf auth login``)."""
    return HfApi()


UNKNOWN_SCHEME_HINT = "use a local folder, file://, memory://, s3://, gs:// (any fsspec URL) or hf://<user or org>"


def open_hub(url: str, storage_options: dict[str, Any] | None = None) -> Backend:
    """The backend for a hub URL: local path / ``file://``, any fsspec URL, or ``hf://<user or org>``."""
    if not isinstance(url, str) or not url.strip():
        raise HubError("no hub given", "pass --hub URL or set SKEWTUNE_HUB")
    url = url.strip()
    if "://" not in url:
        return _local(url, url)
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if scheme == "hf":
        org = rest.strip("/")
        if not HF_ORG_RE.fullmatch(org) or ".." in org:
            raise HubError(f"invalid Hugging Face hub URL {url}", "use hf://<user or org> (one name, no path)")
        return HfBackend(url, org)
    if scheme in ("file", "local"):
        return _local(rest, url)
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme) or scheme not in fsspec.available_protocols():
        raise HubError(f"unknown hub URL scheme '{scheme}://' in {url}", UNKNOWN_SCHEME_HINT)
    try:
        fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        raise HubError(f"hub URL {url} needs a package that is not installed ({_first_line(exc)})",
                       f"pip install the fsspec backend for {scheme}:// (e.g. s3fs, gcsfs)") from exc
    except Exception as exc:
        raise HubError(f"cannot open hub {url}: {type(exc).__name__}: {_first_line(exc)}", UNKNOWN_SCHEME_HINT) from exc
    if isinstance(fs, LocalFileSystem):
        return _local(root, url)
    return FsspecBackend(url, fs, root, local=False)


def _local(path: str, url: str) -> FsspecBackend:
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise HubError(f"hub path {root} is a file", "point --hub at a hub folder")
    return FsspecBackend(url, LocalFileSystem(), root.as_posix(), local=True)
