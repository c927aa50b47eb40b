"""skewtune.hub against a real S3-compatible server: moto's standalone server on loopback, through s3fs."""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

import fsspec  # noqa: E402
from test_hub_support import assert_one_line_error, cli, make_fake_adapter  # noqa: E402

import skewtune.hub as hub  # noqa: E402
from skewtune.errors import HubError  # noqa: E402

BUCKET = "skewtune-hub"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server._port}"
    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


@pytest.fixture
def s3(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """storage_options for the server; also installed as fsspec's s3 config (what the CLI picks up)."""
    monkeypatch.setenv("SKEWTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SKEWTUNE_HUB", raising=False)
    options = {"key": "testing", "secret": "testing", "endpoint_url": endpoint,
               "client_kwargs": {"region_name": "us-east-1"}}
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    return options


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    return make_fake_adapter(tmp_path / "fake")


def _url() -> str:
    return f"s3://{BUCKET}/hub-{uuid.uuid4().hex[:8]}"


def test_s3_push_ls_search_pull_info_verify(s3: dict[str, Any], fake: Path, tmp_path: Path) -> None:
    url = _url()
    with pytest.raises(HubError, match="no skewtune hub"):
        hub.ls(url, storage_options=s3)
    assert hub.push(fake, url, "s3-lora", storage_options=s3) == "s3-lora@v1"
    assert hub.push(fake, url, "s3-lora", languages=["es"], storage_options=s3) == "s3-lora@v2"
    assert [(r["ref"], r["versions"]) for r in hub.ls(url, storage_options=s3)] == [("s3-lora@v2", [1, 2])]
    assert [r["ref"] for r in hub.search(url, language="es", storage_options=s3)] == ["s3-lora@v2"]
    assert hub.search(url, language="es", base_model="other", storage_options=s3) == []
    pulled = hub.pull("s3-lora@v1", url, tmp_path / "v1", storage_options=s3)
    assert (pulled / "adapter_model.safetensors").read_bytes() == (fake / "adapter_model.safetensors").read_bytes()
    assert hub.info("s3-lora", url, storage_options=s3)["manifest"]["languages"] == ["es"]
    assert hub.verify("s3-lora@v2", url, storage_options=s3)["files"]

    fs = fsspec.filesystem("s3", **s3)
    root = url.removeprefix("s3://")
    fs.invalidate_cache()
    assert sorted(fs.ls(f"{root}/s3-lora", detail=False)) == [f"{root}/s3-lora/v1", f"{root}/s3-lora/v2"]
    assert json.loads(fs.cat_file(f"{root}/index.json"))["generation"] == 4
    assert fs.ls(f"{root}/.index", detail=False)[-1].endswith("g000000000004.json")


def test_s3_tampering_refused(s3: dict[str, Any], fake: Path, tmp_path: Path) -> None:
    url = _url()
    hub.push(fake, url, "t", storage_options=s3)
    fs = fsspec.filesystem("s3", **s3)
    weights = f"{url.removeprefix('s3://')}/t/v1/adapter_model.safetensors"
    data = bytearray(fs.cat_file(weights))
    data[-1] ^= 0x01
    fs.pipe_file(weights, bytes(data))
    with pytest.raises(HubError, match=r"adapter_model\.safetensors changed"):
        hub.pull("t", url, tmp_path / "t", storage_options=s3)
    assert not (tmp_path / "t").exists()
    fs.pipe_file(f"{url.removeprefix('s3://')}/t/v1/run.txt", b"extra")
    with pytest.raises(HubError, match="not in its manifest: run.txt"):
        hub.pull("t", url, tmp_path / "t", storage_options=s3)


def test_s3_concurrent_pushes_use_conditional_create(s3: dict[str, Any], fake: Path) -> None:
    url = _url()
    refs: list[str] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            refs.append(hub.push(fake, url, "busy", storage_options=s3))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(refs) == sorted(f"busy@v{i}" for i in range(1, 7))
    row = hub.ls(url, storage_options=s3)[0]
    assert row["versions"] == list(range(1, 7))


def test_s3_cli_and_unreachable_server(s3: dict[str, Any], fake: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url = _url()
    rc, out, _ = cli(monkeypatch, capsys, "hub", "push", str(fake), "--hub", url, "--name", "cli-s3")
    assert rc == 0 and "cli-s3@v1" in out
    rc, out, _ = cli(monkeypatch, capsys, "hub", "ls", "--hub", url)
    assert rc == 0 and "cli-s3@v1" in out
    rc, out, _ = cli(monkeypatch, capsys, "hub", "pull", "cli-s3", "--hub", url, "--dest", str(tmp_path / "p"))
    assert rc == 0 and (tmp_path / "p" / "skewtune.json").is_file()
    rc, _, err = cli(monkeypatch, capsys, "hub", "pull", "cli-s3@v2", "--hub", url, "--dest", str(tmp_path / "q"))
    assert_one_line_error(rc, err, "no version v2")

    closed = {"key": "testing", "secret": "testing", "endpoint_url": f"http://127.0.0.1:{_free_port()}",
              "client_kwargs": {"region_name": "us-east-1"}, "config_kwargs": {"retries": {"max_attempts": 1},
                                                                               "connect_timeout": 1}}
    monkeypatch.setitem(fsspec.config.conf, "s3", closed)
    rc, _, err = cli(monkeypatch, capsys, "hub", "pull", "cli-s3", "--hub", url, "--dest", str(tmp_path / "r"))
    assert_one_line_error(rc, err, "cannot read the index on hub", url)
    assert not (tmp_path / "r").exists()
