"""What every benchmark here shares: thread policy, machine description, child processes, results files.

Import it as ``import harness`` (a script's own folder is on ``sys.path`` when it runs; code that loads a
benchmark by path puts ``benchmarks/`` there first).

* threads — :func:`choose_threads`: ``auto`` gives every core on an idle machine and 1 thread when other
  processes keep at least half a core busy (measured from ``/proc/stat``, the load average where that is
  missing): on a contended 2-core CPU two torch threads mostly wait on each other;
* machine — :func:`machine` (CPU name and its native bf16 units, cores, platform, Python and library versions),
  recorded in every results file so a figure always says where it was measured;
* child processes — :func:`run_child` runs ``python <script> <args>`` and returns the JSON object the child
  printed last (:func:`emit`); :func:`child_pool` is a one-worker ``forkserver`` pool, one task per fresh child,
  for configurations run as function calls (peak RSS per configuration, libraries imported once);
* results — :func:`results_path` (``benchmarks/results/<name>``; a ``--quick`` run goes to ``outputs/benchmarks/``
  and never replaces a measured result) and :func:`write_results` (JSON + markdown written atomically, readable by
  everyone, the machine recorded in both).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
QUICK_RESULTS = REPO / "outputs" / "benchmarks"
VERSIONS = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")


# ----------------------------------------------------------------------------------------------------- threads
def cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):  # pragma: no cover - not Unix
        return None


def busy_cores(window_s: float = 0.25) -> float | None:
    """Cores kept busy by *other* processes right now (``/proc/stat`` over ``window_s`` while this process idles;
    unlike the load average it does not count a child that just finished). None where ``/proc/stat`` is missing."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(x) for x in handle.readline().split()[1:9]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(window_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return None
    total = total1 - total0
    return None if total <= 0 else cores() * (1.0 - (idle1 - idle0) / total)


def choose_threads(requested: str | int = "auto") -> int:
    """Torch threads for the next measurement: ``requested`` when it is a number, else (``auto``) every core, or 1
    when other processes keep ≥ half a core busy."""
    if str(requested) != "auto":
        return max(1, int(requested))
    busy = busy_cores()
    if busy is None:
        busy = (load_average() or [0.0])[0]
    return 1 if busy >= 0.5 else cores()


# ----------------------------------------------------------------------------------------------------- machine
def library_versions(names: Sequence[str] = VERSIONS) -> dict[str, str]:
    """Python's and the installed distributions' versions ("?" for one that is not installed)."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "?"
    return out


def cpu_description() -> str:
    """The CPU's name and its native bf16 units, e.g. ``AMD EPYC 9R14 (avx512_bf16)`` (what ``dtype=auto`` picks for
    merged prediction depends on them)."""
    import torch

    from skewtune.inference.precision import NATIVE_BF16_UNITS

    get = getattr(torch.cpu, "get_capabilities", None)
    caps = get() if get else {}
    units = [name for name in NATIVE_BF16_UNITS if caps.get(name)] or ["no native bf16"]
    return f"{caps.get('cpu_name') or platform.processor() or platform.machine()} ({', '.join(units)})"


def machine(versions: Sequence[str] = VERSIONS) -> dict[str, Any]:
    """Where a result was measured: CPU (name, bf16 units), cores, platform, Python and ``versions``."""
    return {"cpu": cpu_description(), "cpu_count": os.cpu_count(), "cores_available": cores(),
            "platform": platform.platform(), **library_versions(versions)}


def machine_line(described: dict[str, Any]) -> str:
    return f"Machine: {described['cpu']}, {described['cpu_count']} cores."


# ----------------------------------------------------------------------------------------------- child processes
def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child, tokenizers' own threads off, plus ``extra``."""
    return dict(os.environ, TOKENIZERS_PARALLELISM="false", **extra)


def emit(result: dict[str, Any]) -> None:
    """Child side of :func:`run_child`: the result as one JSON line on stdout (the last line printed)."""
    print(json.dumps(result), flush=True)


def run_child(script: str | Path, *args: str, env: dict[str, str] | None = None, what: str = "") -> dict[str, Any]:
    """``python script *args`` in a fresh process; the JSON object of its last stdout line. A failing child stops the
    benchmark with the tail of its stderr."""
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env=env if env is not None else child_env())
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{what or ' '.join(args)} failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_pool(preload: Sequence[str]) -> concurrent.futures.ProcessPoolExecutor:
    """One worker at a time, each task in a fresh child forked from a ``forkserver`` that imported ``preload``."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    return concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1)


# ----------------------------------------------------------------------------------------------------- results
def results_path(name: str, quick: bool = False) -> Path:
    """``benchmarks/results/<name>`` (no suffix: add ``.json`` / ``.md``); ``outputs/benchmarks/<name>`` for a quick
    run. One current file per benchmark: the machine is recorded inside, never in the name."""
    return (QUICK_RESULTS if quick else RESULTS) / name


def write_results(stem: str | Path, result: dict[str, Any], markdown: str | None = None) -> list[Path]:
    """Write ``<stem>.json`` (``result``, with ``machine`` added when missing) and ``<stem>.md`` (``markdown`` plus a
    machine line) atomically, mode 0644; returns the paths."""
    from skewtune.utils.io import atomic_write_json, atomic_write_text

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if "machine" not in result:
        result["machine"] = machine()
    written = [atomic_write_json(stem.parent / f"{stem.name}.json", result)]
    if markdown is not None:
        text = markdown.rstrip("\n") + "\n\n" + machine_line(result["machine"]) + "\n"
        written.append(atomic_write_text(stem.parent / f"{stem.name}.md", text))
    for path in written:  # mkstemp makes 0600 files; results are for everyone to read
        with contextlib.suppress(OSError):
            os.chmod(path, 0o644)
    return [Path(p) for p in written]


__all__ = ["QUICK_RESULTS", "REPO", "RESULTS", "VERSIONS", "busy_cores", "child_env", "child_pool", "choose_threads",
           "cores", "cpu_description", "emit", "library_versions", "load_average", "machine", "machine_line",
           "results_path", "run_child", "write_results"]
