"""``skewtune serve`` under load: one backbone shared by many adapters vs one model per adapter vs no batching.

A real server process (``skewtune serve --port 0`` on 127.0.0.1, one fresh process per configuration) and a bounded,
closed-loop load generator (httpx async; each client sends one request, waits for the answer, sends the next) in
one run. Configurations, all on the same 8-bit MiniLM base:

* ``shared`` engine (default: one backbone, mixed-adapter dynamic batches) with 1, 8 and 32 adapters;
* ``per_adapter`` engine (baseline a: one ``skewtune predict``-style model per adapter in memory), 8 and 32 adapters;
* ``shared`` engine with ``--batching none`` (baseline b: every request alone, one forward pass each), 8 adapters.

Each configuration is loaded with 1, 8 and 32 concurrent clients (``--clients``), adapters drawn per request
uniformly or Zipf-skewed (s=1.1, the first adapter the most popular), seeded; every point runs ``--duration``
seconds after a ``--warmup`` that is not counted. Reported per point: requests/s, texts/s, p50/p95/p99 latency,
errors (non-200, exceptions, or a 200 answer with the wrong number of predictions or a label outside the adapter's
labels) and the server's RSS (``/proc/PID/status`` VmRSS after the load, VmHWM the peak). Every server is stopped
with SIGTERM and must exit 0.

Adapters: the hub's two trained adapters on 8-bit MiniLM (adapters/tweets-sentiment-minilm-lora/v1, 3 labels, and
adapters/pang-lee-polarity-minilm-lora/v1, 2 labels) are adapters 1 and 2; adapters 3..32 are derived copies of
them (alternately), their lora_B tensors perturbed with small seeded noise and renamed, the manifest rewritten with
skewtune's own functions so that ``verify_folder`` passes. Texts: real tweets (the first ``--n_texts`` test tweets
of the ``tweets`` dataset), ``--texts_per_request`` per request (default 1: online serving).

    python benchmarks/serve.py            # about 12 minutes on 2 CPU cores → benchmarks/results/serve.{json,md}
    python benchmarks/serve.py --quick    # a few seconds per point, fewer points → outputs/benchmarks/serve.*
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness  # beside this script

TRAINED = (harness.REPO / "adapters" / "tweets-sentiment-minilm-lora" / "v1",
           harness.REPO / "adapters" / "pang-lee-polarity-minilm-lora" / "v1")
READY_RE = re.compile(r"skewtune serve: ready on (http://[0-9.]+:(\d+)) \((\d+) adapters?\)")
ZIPF_S = 1.1
NOISE = 0.05  # lora_B noise, relative to each tensor's standard deviation
#          engine         batching   adapters  distributions
CONFIGS = [("shared", "dynamic", 1, ("uniform",)),
           ("shared", "dynamic", 8, ("uniform", "zipf")),
           ("shared", "dynamic", 32, ("uniform", "zipf")),
           ("per_adapter", "dynamic", 8, ("uniform", "zipf")),
           ("per_adapter", "dynamic", 32, ("uniform",)),
           ("shared", "none", 8, ("uniform",)),
           ("merged", "dynamic", 1, ("uniform",))]
QUICK_CONFIGS = [("shared", "dynamic", 1, ("uniform",)),
                 ("shared", "dynamic", 8, ("uniform", "zipf")),
                 ("shared", "dynamic", 32, ("uniform",)),
                 ("per_adapter", "dynamic", 8, ("uniform",)),
                 ("shared", "none", 8, ("uniform",))]


@dataclass
class Adapter:
    name: str
    path: Path
    labels: frozenset[str]
    derived_from: str | None = None


# ------------------------------------------------------------------------------------------------- adapters
def derive_adapters(count: int, work: Path, seed: int) -> list[Adapter]:
    """The two trained adapters, then ``count - 2`` derived ones: alternate copies with lora_B perturbed (seeded)
    and a distinct name; manifest (file hashes, own hash) rewritten by skewtune and checked by ``verify_folder``."""
    import torch
    from safetensors.torch import load_file, save_file

    from skewtune.adapters.io import read_manifest, render_card, verify_folder, write_manifest

    out: list[Adapter] = []
    for i in range(count):
        source = TRAINED[i % 2]
        manifest = verify_folder(source)
        labels = frozenset(str(v) for v in manifest["id2label"].values())
        if i < len(TRAINED):
            out.append(Adapter(manifest["name"], source, labels))
            continue
        name = f"{manifest['name']}-d{i + 1:02d}"
        folder = work / name
        if folder.exists():
            shutil.rmtree(folder)
        shutil.copytree(source, folder)
        weights = folder / "adapter_model.safetensors"
        tensors = load_file(weights)
        generator = torch.Generator().manual_seed(seed * 1000 + i)
        for key, tensor in tensors.items():
            if "lora_B" in key:
                noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
                tensors[key] = (tensor + NOISE * tensor.std() * noise).contiguous()
        save_file(tensors, weights, metadata={"format": "pt"})
        derived = read_manifest(folder)
        derived["name"] = name
        derived["tags"] = sorted({*(derived.get("tags") or []), "benchmark-derived"})
        derived.pop("reference", None)  # describes the trained adapter's run, not this copy
        (folder / "README.md").write_text(render_card(derived) + f"\nDerived for benchmarks/serve.py from "
                                          f"{manifest['name']}: lora_B + {NOISE} × std × N(0, 1) noise (seed "
                                          f"{seed * 1000 + i}).\n", encoding="utf-8")
        write_manifest(folder, derived)
        verify_folder(folder)
        out.append(Adapter(name, folder, labels, derived_from=manifest["name"]))
    return out


# ------------------------------------------------------------------------------------------------- server
@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    startup_s: float
    cpu_start: float = field(default=0.0)


def start_server(adapters: list[Adapter], engine: str, batching: str, threads: int, log_dir: Path,
                 timeout_s: float, extra: list[str]) -> Server:
    """``skewtune serve --port 0`` in a fresh process; waits for its ready line (stdout goes to a file, so a busy
    server never blocks on a full pipe)."""
    tag = f"{engine}-{batching}-{len(adapters)}"
    out, log = log_dir / f"{tag}.stdout", log_dir / f"{tag}.stderr"
    cmd = [sys.executable, "-m", "skewtune.cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
           "--engine", engine, "--batching", batching, "--threads", str(threads), *extra]
    for adapter in adapters:
        cmd += ["--adapter", f"{adapter.name}={adapter.path}"]
    start = time.perf_counter()
    with open(out, "wb") as stdout, open(log, "wb") as stderr:
        env = harness.child_env()
        env.pop("SKEWTUNE_API_KEY", None)  # the load generator sends no key
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env)
    while True:
        match = READY_RE.search(out.read_text(encoding="utf-8", errors="replace"))
        if match:
            if int(match.group(3)) != len(adapters):
                stop_server(proc)
                raise RuntimeError(f"{tag}: server says {match.group(3)} adapters, {len(adapters)} were given")
            return Server(proc, match.group(1), log, time.perf_counter() - start)
        if proc.poll() is not None:
            raise RuntimeError(f"{tag}: server exited {proc.returncode} before it was ready:\n{tail(log)}")
        if time.perf_counter() - start > timeout_s:
            stop_server(proc)
            raise RuntimeError(f"{tag}: server not ready after {timeout_s:.0f} s:\n{tail(log)}")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int | None:
    """SIGTERM (the server drains and exits 0); SIGKILL after ``timeout_s``. The exit status, None when killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
    return proc.returncode


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (a server that starts worker processes is measured with them)."""
    found, stack = [], [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            stack += kids
    return found


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of ``pid`` plus its descendants, in MB (MiB)."""
    total = {"rss_mb": 0.0, "hwm_mb": 0.0}
    for one in [pid, *children(pid)]:
        try:
            lines = Path(f"/proc/{one}/status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                total["rss_mb" if key == "VmRSS" else "hwm_mb"] += int(value.split()[0]) / 1024
    return {k: round(v, 1) for k, v in total.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------- load
def adapter_weights(count: int, distribution: str) -> list[float]:
    if distribution == "uniform":
        return [1.0] * count
    return [1.0 / (rank + 1) ** ZIPF_S for rank in range(count)]


async def load_point(url: str, adapters: list[Adapter], distribution: str, clients: int, texts: list[str],
                     texts_per_request: int, warmup_s: float, duration_s: float, seed: int) -> dict[str, Any]:
    """``clients`` closed-loop clients for ``warmup_s + duration_s``; only answers that arrive inside the measured
    window count for throughput and latency; errors count over the whole point (warm-up and drain included).

    Each client has its own ``httpx.AsyncClient`` (one keep-alive connection, as independent callers would): one
    client shared by 32 tasks spends about 3× the CPU per request in its connection pool, and the load generator
    shares the machine with the server."""
    import httpx

    weights = adapter_weights(len(adapters), distribution)
    latencies: list[float] = []
    texts_done = 0
    errors: dict[str, int] = {"total": 0, "in_window": 0}
    samples: list[str] = []
    per_adapter = [0] * len(adapters)
    loop = asyncio.get_running_loop()
    # made before the clock starts: each client builds an SSL context (about 20 ms of CPU) even for plain http
    sessions = [httpx.AsyncClient(timeout=httpx.Timeout(120.0)) for _ in range(clients)]
    begin = loop.time()
    window = (begin + warmup_s, begin + warmup_s + duration_s)

    def error(message: str, now: float) -> None:
        errors["total"] += 1
        errors["in_window"] += window[0] <= now <= window[1]
        if len(samples) < 5:
            samples.append(message[:300])

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal texts_done
        rng = random.Random(f"{seed}-{distribution}-{clients}-{index}")
        while loop.time() < window[1]:
            choice = rng.choices(range(len(adapters)), weights)[0]
            adapter = adapters[choice]
            first = rng.randrange(len(texts))
            batch = [texts[(first + k) % len(texts)] for k in range(texts_per_request)]
            sent = loop.time()
            try:
                response = await http.post(f"{url}/v1/predict", json={"adapter": adapter.name, "texts": batch})
                status, body = response.status_code, (response.json() if response.status_code == 200 else None)
                text = "" if status == 200 else response.text
            except Exception as exc:  # noqa: BLE001 - every failure is an error of the point
                error(f"{type(exc).__name__}: {exc}", loop.time())
                await asyncio.sleep(0.05)  # a dead server must not turn the clients into a busy loop
                continue
            done = loop.time()
            if status != 200:
                error(f"HTTP {status}: {text}", done)
                continue
            predictions = body.get("predictions") if isinstance(body, dict) else None
            if not isinstance(predictions, list) or len(predictions) != len(batch):
                error(f"{adapter.name}: {len(predictions or [])} predictions for {len(batch)} texts", done)
                continue
            wrong = [p.get("label") for p in predictions if not isinstance(p, dict) or p.get("label")
                     not in adapter.labels]
            if wrong or body.get("adapter") != adapter.name:
                error(f"{adapter.name}: answer for adapter {body.get('adapter')!r}, labels {wrong[:3]} outside "
                      f"{sorted(adapter.labels)}", done)
                continue
            if window[0] <= done <= window[1]:
                latencies.append(done - sent)
                texts_done += len(batch)
                per_adapter[choice] += 1

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        await asyncio.gather(*(client(i, http) for i, http in enumerate(sessions)))
    finally:
        for http in sessions:
            await http.aclose()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    ms = sorted(1000 * x for x in latencies)
    return {"requests": len(ms), "requests_per_s": len(ms) / duration_s, "texts_per_s": texts_done / duration_s,
            "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99),
            "mean_ms": sum(ms) / len(ms) if ms else None, "errors": errors["in_window"],
            "errors_total": errors["total"], "error_samples": samples,
            "adapters_hit": sum(1 for n in per_adapter if n), "top_adapter_share": max(per_adapter) / max(1, len(ms)),
            "client_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
            "wall_s": loop.time() - begin}


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default) of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def batch_counters(url: str) -> tuple[float, float] | None:
    """``(forward passes, texts in them)`` so far, from /metrics (``skewtune_batch_texts``); None without them."""
    import httpx

    try:
        text = httpx.get(f"{url}/metrics", timeout=30).text
    except httpx.HTTPError:
        return None
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("skewtune_batch_texts_count", "skewtune_batch_texts_sum"):
            found[name] = float(value)
    if len(found) < 2:
        return None
    return found["skewtune_batch_texts_count"], found["skewtune_batch_texts_sum"]


def check_listing(url: str, adapters: list[Adapter]) -> str | None:
    """GET /v1/adapters must list every loaded adapter with its labels; a problem in words, else None."""
    import httpx

    listed = {a["name"]: a for a in httpx.get(f"{url}/v1/adapters", timeout=30).json()["adapters"]}
    problems = [a.name for a in adapters if a.name not in listed
                or set(map(str, listed[a.name].get("labels") or [])) != set(a.labels)]
    return f"/v1/adapters lists wrong or no labels for {', '.join(problems[:5])}" if problems else None


# ------------------------------------------------------------------------------------------------- run
def run_config(engine: str, batching: str, adapters: list[Adapter], distributions: tuple[str, ...],
               args: argparse.Namespace, texts: list[str], threads: int, log_dir: Path,
               load: bool = True) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One fresh server: its load points, RSS after ready and after the load, SIGTERM exit status."""
    tag = f"{engine}/{batching}/{len(adapters)} adapters"
    summary: dict[str, Any] = {"engine": engine, "batching": batching, "adapters": len(adapters),
                               "load_measured": load}
    rows: list[dict[str, Any]] = []
    print(f"--- {tag}: starting server", flush=True)
    try:
        server = start_server(adapters, engine, batching, threads, log_dir, args.startup_timeout, args.server_args)
    except RuntimeError as exc:
        print(f"!!! {exc}", file=sys.stderr, flush=True)
        summary["failure"] = str(exc)
        return summary, rows
    pid = server.proc.pid
    try:
        summary["startup_s"] = round(server.startup_s, 1)
        summary.update({f"ready_{k}": v for k, v in memory_mb(pid).items()})
        summary["listing_problem"] = check_listing(server.url, adapters)
        print(f"    ready in {server.startup_s:.1f} s, RSS {summary['ready_rss_mb']} MB", flush=True)
        for distribution in distributions if load else ():
            for clients in args.clients:
                cpu0, batches0 = cpu_seconds(pid), batch_counters(server.url)
                point = asyncio.run(load_point(server.url, adapters, distribution, clients, texts,
                                               args.texts_per_request, args.warmup, args.duration,
                                               args.seed))
                point["server_cpu_s"] = cpu_seconds(pid) - cpu0
                batches1 = batch_counters(server.url)
                if batches0 and batches1 and batches1[0] > batches0[0]:  # whole point: warm-up and drain included
                    point["forward_batches"] = batches1[0] - batches0[0]
                    point["mean_texts_per_batch"] = (batches1[1] - batches0[1]) / point["forward_batches"]
                row = {"engine": engine, "batching": batching, "adapters": len(adapters),
                       "distribution": distribution, "clients": clients, **point, **memory_mb(pid)}
                rows.append(row)
                print(f"    {distribution:7s} {clients:2d} clients: {row['requests_per_s']:7.1f} req/s "
                      f"{row['texts_per_s']:7.1f} texts/s p50 {fmt(row['p50_ms'])} p95 {fmt(row['p95_ms'])} "
                      f"p99 {fmt(row['p99_ms'])} ms, errors {row['errors_total']}, RSS {row['rss_mb']} MB, "
                      f"{fmt(row.get('mean_texts_per_batch'))} texts/batch",
                      flush=True)
                for sample in row["error_samples"]:
                    print(f"      error: {sample}", flush=True)
                if server.proc.poll() is not None:
                    raise RuntimeError(f"{tag}: server died (exit {server.proc.returncode}):\n{tail(server.log)}")
        summary.update({f"after_load_{k}": v for k, v in memory_mb(pid).items()})
    except (RuntimeError, OSError) as exc:
        print(f"!!! {exc}", file=sys.stderr, flush=True)
        summary["failure"] = str(exc)
    finally:
        start = time.perf_counter()
        summary["exit_status"] = stop_server(server.proc)
        summary["stop_s"] = round(time.perf_counter() - start, 1)
        if summary["exit_status"] != 0:
            summary["stderr_tail"] = tail(server.log)
            print(f"!!! {tag}: exit status {summary['exit_status']} after SIGTERM\n{summary['stderr_tail']}",
                  file=sys.stderr, flush=True)
    return summary, rows


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def find(rows: list[dict[str, Any]], engine: str, batching: str, adapters: int, distribution: str,
         clients: int) -> dict[str, Any] | None:
    return next((r for r in rows if (r["engine"], r["batching"], r["adapters"], r["distribution"], r["clients"])
                 == (engine, batching, adapters, distribution, clients)), None)


def server_rss(servers: list[dict[str, Any]], engine: str, adapters: int) -> float | None:
    one = next((s for s in servers if (s["engine"], s["batching"], s["adapters"]) == (engine, "dynamic", adapters)
                and "failure" not in s), None)
    return None if one is None else one.get("after_load_rss_mb", one.get("ready_rss_mb"))


def ratios(rows: list[dict[str, Any]], servers: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """The acceptance figures: mixed vs single-adapter and vs unbatched texts/s, RSS of 32 adapters vs 1, RSS of one
    model per adapter vs the shared engine."""
    def div(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else a / b

    def tps(*key: Any) -> float | None:
        row = find(rows, *key)
        return None if row is None else row["texts_per_s"]

    mixed = tps("shared", "dynamic", 8, "uniform", clients)
    out = {"clients": clients,
           "mixed8_vs_single": div(mixed, tps("shared", "dynamic", 1, "uniform", clients)),
           "mixed8_vs_unbatched": div(mixed, tps("shared", "none", 8, "uniform", clients)),
           "mixed8_zipf_vs_single": div(tps("shared", "dynamic", 8, "zipf", clients),
                                        tps("shared", "dynamic", 1, "uniform", clients)),
           "rss_shared32_vs_shared1": div(server_rss(servers, "shared", 32), server_rss(servers, "shared", 1))}
    for count in (8, 32):
        out[f"rss_per_adapter{count}_vs_shared{count}"] = div(server_rss(servers, "per_adapter", count),
                                                              server_rss(servers, "shared", count))
    errors = sum(r["errors_total"] for r in rows)
    exits = [s.get("exit_status") for s in servers]
    out["acceptance"] = {
        "rss_shared32_le_1.5x_shared1": None if out["rss_shared32_vs_shared1"] is None
        else out["rss_shared32_vs_shared1"] <= 1.5,
        "mixed8_ge_0.8x_single": None if out["mixed8_vs_single"] is None else out["mixed8_vs_single"] >= 0.8,
        "mixed8_ge_3x_unbatched": None if out["mixed8_vs_unbatched"] is None else out["mixed8_vs_unbatched"] >= 3,
        "zero_errors": errors == 0 and not any("failure" in s for s in servers),
        "all_servers_exit_0_on_sigterm": all(code == 0 for code in exits),
        "p99_reported": bool(rows) and all(r["p99_ms"] is not None for r in rows)}
    return out


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"Closed-loop load on `skewtune serve` (127.0.0.1, one fresh server per configuration): "
             f"{s['duration_s']:g} s per point after {s['warmup_s']:g} s warm-up, {s['texts_per_request']} "
             f"text(s) per request from the first {s['n_texts']} test tweets, adapters drawn uniformly or Zipf "
             f"(s={ZIPF_S}); server torch threads {s['threads']}, load generator in the benchmark process.", "",
             "| engine | batching | adapters | distribution | clients | req/s | texts/s | p50 ms | p95 ms | p99 ms | "
             "errors | RSS MB |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['engine']} | {r['batching']} | {r['adapters']} | {r['distribution']} | {r['clients']} | "
                     f"{r['requests_per_s']:.1f} | {r['texts_per_s']:.1f} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | "
                     f"{fmt(r['p99_ms'])} | {r['errors_total']} | {r['rss_mb']:.0f} |")
    if result["rows"]:
        client = max(r["client_cpu_s"] / r["wall_s"] for r in result["rows"])
        server = max(r["server_cpu_s"] / r["wall_s"] for r in result["rows"])
        lines += ["", f"CPU at the busiest point: load generator {client:.2f} cores, server {server:.2f} cores "
                  f"(of {result['machine']['cores_available']}; both on the same machine)."]
    lines += ["", "| engine | batching | adapters | startup s | RSS ready MB | RSS after load MB | peak RSS MB | "
              "exit on SIGTERM | note |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for v in result["servers"]:
        failure = [line for line in v.get("failure", "").splitlines() if line.strip()]
        note = "; ".join(x for x in (" ".join(dict.fromkeys(failure[:1] + failure[-1:])).replace("|", "/"),
                                     v.get("listing_problem") or "",
                                     "" if v["load_measured"] else "RSS only, no load") if x)
        lines.append(f"| {v['engine']} | {v['batching']} | {v['adapters']} | {fmt(v.get('startup_s'))} | "
                     f"{fmt(v.get('ready_rss_mb'), 0)} | {fmt(v.get('after_load_rss_mb'), 0)} | "
                     f"{fmt(v.get('after_load_hwm_mb', v.get('ready_hwm_mb')), 0)} | {v.get('exit_status')} | "
                     f"{note} |")
    q = result["ratios"]
    c = q["clients"]
    lines += ["", f"Ratios ({c} clients; RSS = VmRSS after the load):", "",
              f"* mixed traffic over 8 adapters (uniform) ÷ single adapter, texts/s: {fmt(q['mixed8_vs_single'], 2)} "
              "(acceptance ≥ 0.8)",
              f"* the same, Zipf-skewed over 8 adapters ÷ single adapter: {fmt(q['mixed8_zipf_vs_single'], 2)}",
              f"* mixed 8 adapters, dynamic batching ÷ `--batching none`, texts/s: {fmt(q['mixed8_vs_unbatched'], 2)} "
              "(acceptance ≥ 3)",
              f"* RSS, 32 adapters ÷ 1 adapter (shared engine): {fmt(q['rss_shared32_vs_shared1'], 2)} "
              "(acceptance ≤ 1.5)",
              f"* RSS, one model per adapter ÷ shared engine: 8 adapters {fmt(q['rss_per_adapter8_vs_shared8'], 2)}, "
              f"32 adapters {fmt(q['rss_per_adapter32_vs_shared32'], 2)}",
              "* acceptance: " + ", ".join(f"{k} {'–' if v is None else ('yes' if v else 'NO')}"
                                           for k, v in q["acceptance"].items()),
              "", result["adapters"]["note"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="development run: short points, fewer configurations (→ outputs/benchmarks/)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per point (default 20; 3 quick)")
    parser.add_argument("--warmup", type=float, default=None, help="uncounted seconds per point (default 3; 1 quick)")
    parser.add_argument("--clients", type=int, nargs="+", default=None,
                        help="concurrent clients per point (default 1 8 32; 1 32 quick)")
    parser.add_argument("--texts_per_request", type=int, default=1)
    parser.add_argument("--n_texts", type=int, default=2000, help="test tweets the requests draw from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", default="auto",
                        help="server torch threads (auto: every core but one, which the load generator needs; 1 "
                             "when other processes keep the machine busy)")
    parser.add_argument("--only", nargs="+", default=None, metavar="ENGINE/BATCHING/ADAPTERS",
                        help="run only these configurations, e.g. shared/dynamic/8 shared/none/8")
    parser.add_argument("--per_adapter_32", choices=["load", "rss", "skip"], default="load",
                        help="the 32-model per_adapter baseline: load points, RSS only, or not at all")
    parser.add_argument("--startup_timeout", type=float, default=900.0, help="seconds a server may take to be ready")
    parser.add_argument("--server_args", nargs=argparse.REMAINDER, default=[],
                        help="extra 'skewtune serve' arguments for every server (last on the command line)")
    parser.add_argument("--work_dir", default=None, help="folder for derived adapters and server logs (default: temp)")
    args = parser.parse_args(argv)
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 20.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.clients = args.clients or ([1, 32] if args.quick else [1, 8, 32])
    configs = QUICK_CONFIGS if args.quick else CONFIGS
    if args.only:
        configs = [c for c in configs if f"{c[0]}/{c[1]}/{c[2]}" in args.only]
    if not configs:
        parser.error("no configuration left to run (see --only, --per_adapter_32)")
    if args.per_adapter_32 == "skip":
        configs = [c for c in configs if (c[0], c[2]) != ("per_adapter", 32)]

    from skewtune.data import load_dataset_splits

    texts = load_dataset_splits("tweets", seed=42).test_texts[:args.n_texts]
    threads = harness.choose_threads(args.threads)
    if args.threads == "auto":
        threads = min(threads, max(1, harness.cores() - 1))
    described = harness.machine()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="skewtune-serve-bench-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        adapters = derive_adapters(max(c[2] for c in configs), work, args.seed)
        print(f"{len(adapters)} adapters ({len(adapters) - 2} derived) in {work}; {len(texts)} tweets; "
              f"server threads {threads}", flush=True)
        servers, rows = [], []
        for engine, batching, count, distributions in configs:
            load = not (engine == "per_adapter" and count == 32 and args.per_adapter_32 == "rss")
            summary, config_rows = run_config(engine, batching, adapters[:count], distributions, args, texts,
                                              threads, work / "logs", load=load)
            servers.append(summary)
            rows += config_rows
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "clients": args.clients,
                     "texts_per_request": args.texts_per_request, "n_texts": len(texts), "seed": args.seed,
                     "threads": threads, "zipf_s": ZIPF_S, "quick": args.quick, "server_args": args.server_args,
                     "per_adapter_32": args.per_adapter_32, "only": args.only, "wall_s": round(time.perf_counter() - started, 1)},
        "adapters": {"trained": [str(p.relative_to(harness.REPO)) for p in TRAINED],
                     "names": [a.name for a in adapters], "derived": len(adapters) - len(TRAINED),
                     "note": f"Adapters 1-2 are the trained hub adapters {TRAINED[0].parent.name} (3 labels) and "
                             f"{TRAINED[1].parent.name} (2 labels), both on 8-bit MiniLM; adapters 3..{len(adapters)} "
                             f"are derived: alternate copies of those two with lora_B + {NOISE} × std × N(0, 1) "
                             "seeded noise and a new name (manifests rewritten and verified by skewtune)."},
        "servers": servers, "rows": rows, "ratios": ratios(rows, servers, max(args.clients)),
        "machine": described}
    text = markdown(result)
    paths = harness.write_results(harness.results_path("serve", quick=args.quick), result, text)
    print(text)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0 if result["ratios"]["acceptance"]["zero_errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
