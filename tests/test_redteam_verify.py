"""Issue 23, classes 1/3/4/6 (behaviour beyond the one-line cases of tests/redteam_verify.py): the manifest's own hash,
the base fingerprint on load, ``hub verify`` wording, regular files only on pull (local, fsspec, HF), no ``--dest``
over the hub, and manifest fields fuzzed through every reader.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import skewtune.hub as hub
from skewtune.adapters.io import (
    MANIFEST_HASH_KEY,
    check_base_fingerprint,
    manifest_digest,
    read_manifest,
    validate_manifest,
    verify_folder,
    write_manifest,
)
from skewtune.cli.main import main as cli_main
from skewtune.errors import AdapterError, HubError, OutputError, SkewtuneError
from skewtune.hub import backends
from tests.conftest import REPO
from tests.hostile_support import World, isolated_cache  # noqa: F401  (autouse: private cache, no $SKEWTUNE_HUB)
from tests.redteam_verify import _canonical_sha, _planted_symlink, _same_shaped_base
from tests.test_hub_support import make_fake_adapter


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli_main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "(fix: " in lines[0], err[-2000:]
    assert needle in lines[0], lines[0]


# --- class 3: the manifest covers itself ------------------------------------------------------------

def test_write_manifest_stamps_a_hash_over_the_canonical_manifest(tmp_path: Path) -> None:
    folder = make_fake_adapter(tmp_path / "a")
    manifest = read_manifest(folder)
    assert manifest[MANIFEST_HASH_KEY] == manifest_digest(manifest) == _canonical_sha(manifest)
    assert verify_folder(folder) == manifest
    # formatting does not matter (canonical form), content does
    (folder / "skewtune.json").write_text(json.dumps(manifest, indent=None, sort_keys=True))
    verify_folder(folder)
    for field, value in (("metrics", {"eval_macro_f1": 0.99}), ("id2label", {"0": "b", "1": "a", "2": "c"}),
                         ("base_fingerprint", None), ("created_at", "2030-01-01T00:00:00Z")):
        edited = {**manifest, field: value}
        (folder / "skewtune.json").write_text(json.dumps(edited))
        with pytest.raises(AdapterError, match="was edited after skewtune wrote it"):
            verify_folder(folder)
    write_manifest(folder, read_manifest(folder))  # re-saving with skewtune re-stamps it (a deliberate edit)
    verify_folder(folder)


def test_hub_verify_words_exactly_what_it_checked(tmp_path: Path, world: World,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["hub", "verify", str(world.adapter)], capsys)
    assert code == 0 and out.strip() == (f"ok: {world.adapter} (manifest and 3 files match their sha256; "
                                         "base fingerprint not checked (no base given))")
    code, out, _ = _run(["hub", "verify", str(world.adapter), "--base", str(world.adapter_base)], capsys)
    assert code == 0 and f"base fingerprint matches {world.adapter_base}" in out
    code, _, err = _run(["hub", "verify", str(world.adapter), "--base", str(_same_shaped_base(world, tmp_path))], capsys)
    _one_line(code, err, "base-model mismatch")
    # an older manifest (no manifest_sha256) is accepted, and the output says the manifest was not covered
    old = shutil.copytree(world.adapter, tmp_path / "old")
    data = json.loads((old / "skewtune.json").read_text())
    del data[MANIFEST_HASH_KEY]
    (old / "skewtune.json").write_text(json.dumps(data))
    code, out, _ = _run(["hub", "verify", str(old)], capsys)
    assert code == 0 and "3 files match their sha256; manifest not covered (older format" in out
    assert "verified" not in out


def test_hub_copy_of_a_manifest_is_checked_against_the_index_and_itself(tmp_path: Path, world: World,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    url = shutil.copytree(world.hub, tmp_path / "hub")
    code, out, _ = _run(["hub", "verify", "demo", "--hub", str(url)], capsys)
    assert code == 0 and "manifest and 3 files match their sha256" in out
    version = url / "demo" / "v1"
    data = json.loads((version / "skewtune.json").read_text())
    data["metrics"]["eval_macro_f1"] = 0.999  # the hub owner rewrites the manifest AND the index entry ...
    (version / "skewtune.json").write_text(json.dumps(data))
    index = json.loads((url / "index.json").read_text())
    index["adapters"]["demo"]["versions"][0]["manifest_sha256"] = hashlib.sha256(
        (version / "skewtune.json").read_bytes()).hexdigest()
    (url / "index.json").write_text(json.dumps(index))
    for argv in (["hub", "verify", "demo", "--hub", str(url)], ["hub", "info", "demo", "--hub", str(url)],
                 ["hub", "pull", "demo", "--hub", str(url), "--dest", str(tmp_path / "d")]):
        code, _, err = _run(argv, capsys)
        _one_line(code, err, "was edited after skewtune wrote it")  # ... but not the manifest's own hash
    assert not (tmp_path / "d").exists()


def test_push_stamps_an_older_format_manifest(tmp_path: Path, world: World) -> None:
    old = shutil.copytree(world.fake, tmp_path / "old")
    data = json.loads((old / "skewtune.json").read_text())
    del data[MANIFEST_HASH_KEY]
    (old / "skewtune.json").write_text(json.dumps(data))
    ref = hub.push(old, str(tmp_path / "hub"), "old")
    pulled = hub.pull(ref, str(tmp_path / "hub"), tmp_path / "pulled")
    assert read_manifest(pulled)[MANIFEST_HASH_KEY] == manifest_digest(read_manifest(pulled))


def test_reference_hub_manifests_are_covered() -> None:
    for manifest_path in sorted((REPO / "adapters").glob("*/v*/skewtune.json")):
        manifest = read_manifest(manifest_path.parent)
        assert manifest[MANIFEST_HASH_KEY] == manifest_digest(manifest), manifest_path
        verify_folder(manifest_path.parent)


# --- class 3: the base fingerprint on every load -----------------------------------------------------

def test_load_adapter_refuses_another_base_unless_forced(tmp_path: Path, world: World) -> None:
    from skewtune.inference.predictor import load_adapter

    look_alike = _same_shaped_base(world, tmp_path)
    with pytest.raises(AdapterError, match="base-model mismatch"):
        load_adapter(world.adapter, backbone=str(look_alike))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        classifier = load_adapter(world.adapter, backbone=str(look_alike), force_base=True)
    assert any("base-model mismatch" in str(w.message) for w in caught)
    assert len(classifier.predict(["a fine day"])) == 1
    assert load_adapter(world.adapter).labels  # its own base: loads


def test_load_adapter_checks_the_manifest_hash_even_without_file_verification(tmp_path: Path, world: World) -> None:
    from skewtune.inference.predictor import load_adapter

    folder = shutil.copytree(world.adapter, tmp_path / "a")
    data = json.loads((folder / "skewtune.json").read_text())
    data["id2label"] = {"0": "positive", "1": "neutral", "2": "negative"}
    (folder / "skewtune.json").write_text(json.dumps(data))
    for verify in (True, False):
        with pytest.raises(AdapterError, match="was edited after skewtune wrote it"):
            load_adapter(folder, verify=verify)


def test_predict_force_base_flag(tmp_path: Path, world: World, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.hostile_support import predict
    from tests.redteam_verify import _on_other_base

    argv = predict(_on_other_base(world, tmp_path), tmp_path)
    code, _, err = _run(argv, capsys)
    _one_line(code, err, "base-model mismatch")
    code, _, err = _run([*argv, "--force_base"], capsys)
    assert code == 0, err
    assert len((tmp_path / "preds.jsonl").read_text().splitlines()) == 2


def _reference_fingerprint(path: Path) -> dict[str, str]:
    """The fingerprint as skewtune computed it before (loads every tensor with safetensors)."""
    import torch
    from safetensors import safe_open

    from skewtune.utils.fingerprint import normalise_config

    config = path / "config.json"
    digest = hashlib.sha256()
    for weights in sorted(path.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            for key in sorted(handle.keys()):
                sliced = handle.get_slice(key)
                digest.update(key.encode())
                digest.update(str(sliced.get_dtype()).encode())
                digest.update(str(sliced.get_shape()).encode())
                tensor = handle.get_tensor(key).contiguous().view(-1)
                raw = tensor.view(dtype=torch.uint8).numpy().tobytes() if tensor.numel() else b""
                digest.update(raw[:4096])
                digest.update(raw[-4096:])
    return {"config_sha256": hashlib.sha256(normalise_config(config.read_bytes() if config.is_file() else b""))
            .hexdigest(), "weights_sha256": digest.hexdigest()}


def test_fingerprint_reads_headers_and_samples_but_matches_recorded_fingerprints(tmp_path: Path, world: World) -> None:
    import torch
    from safetensors.torch import save_file

    from skewtune.backbones import base_fingerprint

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_file({"big": torch.randn(3000, 5).to(torch.bfloat16), "empty": torch.zeros(0, 4), "scalar": torch.tensor(3.0),
               "ints": torch.arange(5000), "flags": torch.ones(5, dtype=torch.bool)}, str(mixed / "model-1.safetensors"))
    save_file({"second": torch.randn(7)}, str(mixed / "model-2.safetensors"))
    (mixed / "config.json").write_text(json.dumps({"hidden_size": 4, "transformers_version": "9"}))
    for folder in (world.adapter_base, world.tiny_bert, mixed):
        assert base_fingerprint(str(folder)) == _reference_fingerprint(folder)
    assert read_manifest(world.adapter)["base_fingerprint"] == base_fingerprint(str(world.adapter_base))


# --- class 4: regular files only on pull -----------------------------------------------------------

def _no_copy_of(secret: bytes, *roots: Path, allowed: set[Path]) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in allowed:
                assert path.read_bytes() != secret, f"{path} holds the secret"


def test_pull_of_a_planted_symlink_copies_nothing(tmp_path: Path, world: World) -> None:
    url = _planted_symlink(world, tmp_path)
    secret = tmp_path / "secret.txt"
    for dest in (tmp_path / "dest", None):
        with pytest.raises(HubError, match="notes.txt, which is a symbolic link, not a regular file"):
            hub.pull("demo", str(url), dest)
    with pytest.raises(HubError, match="symbolic link"):
        hub.verify("demo", str(url))
    assert not (tmp_path / "dest").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no half-written folder
    cache = Path(os.environ["SKEWTUNE_CACHE"])
    _no_copy_of(secret.read_bytes(), tmp_path, *([cache] if cache.exists() else []), allowed={secret})


@pytest.mark.timeout(120)
def test_pull_refuses_a_fifo_and_a_folder_where_a_file_belongs(tmp_path: Path, world: World) -> None:
    url = shutil.copytree(world.hub, tmp_path / "hub")
    version = url / "demo" / "v1"
    (version / "README.md").unlink()
    os.mkfifo(version / "README.md")  # reading it would block forever: run the pull in a child with a timeout
    proc = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "hub", "pull", "demo", "--hub", str(url),
                           "--dest", str(tmp_path / "d")], capture_output=True, text=True, timeout=90, cwd=REPO)
    _one_line(proc.returncode, proc.stderr, "README.md, which is a fifo, not a regular file")
    (version / "README.md").unlink()
    (version / "README.md").mkdir()
    (version / "README.md" / "x").write_text("x")
    with pytest.raises(HubError, match="README.md"):
        hub.pull("demo", str(url), tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_fsspec_listing_must_report_regular_files(tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "memory://rt-ver-links"
    hub.push(world.fake, url, "demo")
    backend = backends.open_hub(url)
    real_find = backend.fs.find

    def find(path: str, detail: bool = False, **kw: Any) -> Any:
        found = real_find(path, detail=detail, **kw)
        if detail:
            name = next(k for k in found if k.endswith("README.md"))
            found[name] = {**found[name], "type": "other", "islink": True}
        return found

    monkeypatch.setattr(type(backend.fs), "find", lambda self, path, **kw: find(path, **kw))
    with pytest.raises(HubError, match="README.md, which is a symbolic link, not a regular file"):
        hub.pull("demo", url, tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_hf_download_that_yields_a_symlink_is_refused(tmp_path: Path, world: World,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_hub import FakeHfApi

    secret = tmp_path / "secret.md"
    secret.write_bytes((world.fake / "README.md").read_bytes())  # same bytes: the hashes alone would pass

    class LinkingApi(FakeHfApi):
        def snapshot_download(self, repo_id: str, **kw: Any) -> str:
            folder = super().snapshot_download(repo_id, **kw)
            (Path(folder) / "README.md").unlink()
            (Path(folder) / "README.md").symlink_to(secret)
            return folder

    api = LinkingApi()
    monkeypatch.setattr(backends, "hf_api", lambda: api)
    hub.push(world.fake, "hf://team", "demo")
    with pytest.raises(HubError, match="README.md, which is a symbolic link, not a regular file"):
        hub.pull("demo", "hf://team", tmp_path / "d")
    assert not (tmp_path / "d").exists()


# --- class 1: pull --dest never overlaps the hub ------------------------------------------------------

def test_pull_dest_overlapping_the_hub_is_refused_and_the_hub_kept(tmp_path: Path, world: World) -> None:
    url = shutil.copytree(world.hub, tmp_path / "hub")
    before = sorted(p.relative_to(url) for p in url.rglob("*"))
    for dest in (url, url / "demo", url / "demo" / "v1", url / "new", tmp_path):
        with pytest.raises(OutputError, match="--dest"):
            hub.pull("demo", str(url), dest, force=True)
    assert sorted(p.relative_to(url) for p in url.rglob("*")) == before
    assert hub.pull("demo", str(url), tmp_path / "elsewhere", force=True).is_dir()


def test_push_of_a_version_folder_of_the_same_hub_keeps_it(tmp_path: Path, world: World) -> None:
    """Pushing ``<hub>/demo/v1`` back to that hub reads v1 and writes v2: nothing is lost, so it is allowed."""
    url = shutil.copytree(world.hub, tmp_path / "hub")
    before = {p: p.read_bytes() for p in (url / "demo" / "v1").iterdir()}
    assert hub.push(url / "demo" / "v1", str(url), "demo") == "demo@v2"
    assert {p: p.read_bytes() for p in (url / "demo" / "v1").iterdir()} == before
    hub.pull("demo@v1", str(url), tmp_path / "v1")


# --- class 6: manifest fields, fuzzed through every reader --------------------------------------------

_HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(0, 3), max_size=4),
    st.dictionaries(st.text(max_size=3), st.one_of(st.text(max_size=3), st.integers(-1, 4), st.none()), max_size=4),
    st.just({"0": "a", "1": "b", "3": "c"}), st.just({"logit_bias": ["x", 1, 2]}), st.just({"logit_bias": [1e308] * 3}),
    st.just({"t": {"id2label": []}}), st.just([[[[[[]]]]]]),
)
_FIELDS = ("id2label", "decision", "tasks", "default_task", "files", "metrics", "training", "languages", "tags",
           "base_fingerprint", "backbone", "pooling", "name", "format_version", MANIFEST_HASH_KEY)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(field=st.sampled_from(_FIELDS), value=_HOSTILE)
def test_fuzzed_manifest_fields_are_success_or_one_line(field: str, value: Any, world: World,
                                                        tmp_path_factory: pytest.TempPathFactory,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    folder = shutil.copytree(world.adapter, tmp / "adapter")
    data = json.loads((folder / "skewtune.json").read_text())
    data[field] = value
    if field != MANIFEST_HASH_KEY:
        data[MANIFEST_HASH_KEY] = _canonical_sha(data)
    (folder / "skewtune.json").write_text(json.dumps(data))
    (tmp / "in.txt").write_text("a fine day\nthe worst film\n")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for argv in (["hub", "verify", str(folder)], ["hub", "push", str(folder), "--hub", str(tmp / "hub"), "--name", "f"],
                 ["predict", "--adapter", str(folder), "--input", str(tmp / "in.txt"), "--output", str(tmp / "p.jsonl")]):
        code, _, err = _run(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert "Traceback" not in err and code in (0, 2), (argv[:2], field, value, err[-2000:])
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("error: ") and "(fix: " in lines[0], err[-2000:]
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_validate_manifest_accepts_what_skewtune_writes(tmp_path: Path, world: World) -> None:
    for folder in (world.adapter, world.fake, world.twin, world.alien):
        validate_manifest(read_manifest(folder))
    validate_manifest({"id2label": {}, "task_type": "mlm", "training": None, "lineage": None})  # language adapters
    with pytest.raises(SkewtuneError):
        write_manifest(make_fake_adapter(tmp_path / "bad"), {"id2label": {"0": "a", "2": "b"}})


def test_check_base_fingerprint_without_a_recorded_one(tmp_path: Path, world: World) -> None:
    manifest = {k: v for k, v in read_manifest(world.adapter).items() if k != "base_fingerprint"}
    with pytest.raises(AdapterError, match="records no base-model fingerprint"):
        check_base_fingerprint(manifest, world.adapter_base)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert check_base_fingerprint(manifest, world.adapter_base, require=False) is False
