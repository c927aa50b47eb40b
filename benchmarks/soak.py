"""Kill -9 soak: train the real recipe (MiniLM, 8-bit, tweets), SIGKILL it at random steps, resume, repeat.

    python benchmarks/soak.py                  # 20 kills, 800 train / 200 eval tweets (21 min measured at load 9-12)
    python benchmarks/soak.py --kills 2 --max_train_samples 300 --name soak-smoke     # a quick check
    python benchmarks/soak.py --max_train_samples 3000 --checkpoint_every_steps 4   # bigger, on a faster machine
    python benchmarks/soak.py --fresh_processes   # every run a cold `python recipes/lora_sentiment.py`

Every run is ``recipes/lora_sentiment.py``'s ``main`` with the same flags (``--checkpoint_every_steps`` small), in
its own process. By default each process is forked from this script after it has imported the libraries (and
done nothing else), so a restart costs model loading but not the ~15-40 s of imports on a busy 2-core box;
``--fresh_processes`` starts each one cold instead. ``cold_start_import_s`` (measured once) is what a real restart
adds per kill.

Schedule: ``--kills`` target steps drawn with ``--seed`` (distinct, sorted); run *i* is killed once a complete
checkpoint at or past its target (and past the step it resumed from) is on disk, after a further random delay of
up to one step's time, so kills land mid-step, mid-checkpoint and mid-prune. Each rerun is the same command: it
resumes from the newest complete checkpoint by itself. After the last kill one run finishes.

The uninterrupted reference (same flags, same seed) runs first. Written to ``benchmarks/results/<name>.json``:
kills, per kill the step resumed from and the steps lost (estimated: seconds between the newest complete
checkpoint's appearance and the kill, over the reference's seconds per step, capped at the checkpoint interval;
plus the progress bar's last value as a lower bound), total wall-clock overhead vs the reference, final macro-F1
of both, and the max abs difference between the two adapters' tensors. A watcher polls the output folder all
along; any checkpoint or adapter folder seen incomplete under its final name is counted (must be 0).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import harness  # beside this script

REPO = harness.REPO
RECIPE = REPO / "recipes" / "lora_sentiment.py"
CKPT_FILES = {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "skewtune_state.json"}
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "README.md", "skewtune.json"}
VOLATILE = {"train_runtime_s", "train_samples_per_second", "peak_rss_mb"}


def recipe_flags(args: argparse.Namespace, out: Path) -> list[str]:
    return [
        "--dataset", "tweets", "--backbone", "minilm", "--quant", "8bit",
        "--max_train_samples", str(args.max_train_samples), "--max_eval_samples", str(args.max_eval_samples),
        "--num_train_epochs", str(args.epochs), "--checkpoint_every_steps", str(args.checkpoint_every_steps),
        "--seed", str(args.train_seed), "--baselines", "false", "--report_plots", "false", "--output_dir", str(out),
    ]


# ------------------------------------------------------------------------------------------------ processes


class Runner:
    """Starts one recipe run as a process: forked from this pre-imported script, or a cold subprocess."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self.recipe_main = None
        if not fresh:
            import importlib.util

            # import everything a run imports (no torch op runs here: forking afterwards is safe)
            import accelerate  # noqa: F401
            import bitsandbytes  # noqa: F401
            import peft  # noqa: F401
            import sklearn.model_selection  # noqa: F401
            import transformers  # noqa: F401

            import skewtune.training  # noqa: F401

            spec = importlib.util.spec_from_file_location("lora_sentiment_recipe", RECIPE)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self.recipe_main = module.main

    def start(self, argv: list[str], log: Path) -> Proc:
        if self.fresh:
            handle = open(log, "ab")
            popen = subprocess.Popen([sys.executable, str(RECIPE), *argv], stdout=handle, stderr=subprocess.STDOUT,
                                     cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1"))
            handle.close()
            return Proc(popen.pid, popen)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child: output to the log, run the recipe, leave without running the parent's cleanup
            code = 1
            try:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = int(self.recipe_main(argv) or 0)
            except SystemExit as exc:
                code = int(exc.code or 0)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        return Proc(pid, None)


class Proc:
    def __init__(self, pid: int, popen: subprocess.Popen | None) -> None:
        self.pid, self.popen, self.returncode = pid, popen, None

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.popen is not None:
                self.returncode = self.popen.poll()
            else:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"process {self.pid} still running after {timeout:.0f} s")
            time.sleep(0.05)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            while self.poll() is None:
                time.sleep(0.01)


def cold_import_seconds() -> float:
    code = "import accelerate, bitsandbytes, peft, sklearn.model_selection, transformers, skewtune.training"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ watching


def complete_steps(out: Path) -> list[int]:
    folder = out / "checkpoints"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    return sorted(int(n.split("-")[1]) for n in names
                  if re.fullmatch(r"step-\d+", n) and (folder / n / "skewtune_state.json").is_file())


class Watcher(threading.Thread):
    """Polls the output folder: when each checkpoint first appears, and any incomplete folder under a final name."""

    def __init__(self, out: Path, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.out, self.interval = out, interval
        self.first_seen: dict[int, float] = {}
        self.problems: list[str] = []
        self.scans = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.scan()
            time.sleep(self.interval)

    def scan(self) -> None:
        self.scans += 1
        now = time.monotonic()
        for step in complete_steps(self.out):
            self.first_seen.setdefault(step, now)
        folder = self.out / "checkpoints"
        try:
            names = [n for n in os.listdir(folder) if not n.startswith(".")]
        except FileNotFoundError:
            names = []
        for name in names:
            self._check(folder / name, CKPT_FILES)
        if (self.out / "adapter").exists():
            self._check(self.out / "adapter", ADAPTER_FILES)

    def _check(self, folder: Path, required: set[str]) -> None:
        try:
            inode = os.stat(folder).st_ino
            if not required - set(os.listdir(folder)):
                return
            if os.stat(folder).st_ino == inode and required - set(os.listdir(folder)):
                self.problems.append(f"{folder.name}: {sorted(os.listdir(folder))}")
        except FileNotFoundError:
            return  # renamed away as a whole (pruned / replaced)


def last_bar_step(log: Path) -> int:
    found = re.findall(r"train:\s+\d+%\|[^|]*\|\s*(\d+)/\d+", log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def resumed_step(log: Path) -> int:
    found = re.findall(r"resuming from .* \(step (\d+)\)", log.read_text(errors="replace"))
    return int(found[-1]) if found else 0


# ------------------------------------------------------------------------------------------------ the soak


def adapter_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    ta = load_file(str(a / "adapter" / "adapter_model.safetensors"))
    tb = load_file(str(b / "adapter" / "adapter_model.safetensors"))
    assert ta.keys() == tb.keys(), "adapters hold different tensors"
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)


def metrics_equal(a: dict[str, Any], b: dict[str, Any], rel: float = 1e-6) -> bool:
    def same(x: Any, y: Any) -> bool:
        if isinstance(x, float) or isinstance(y, float):
            return abs(x - y) <= max(1e-9, rel * max(abs(x), abs(y)))
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a.keys() - VOLATILE)


def work_lost(per_kill: list[dict[str, Any]]) -> dict[str, Any]:
    """What the kills cost in training work: completed steps redone, and seconds of partial steps thrown away."""
    seconds = [k["seconds_since_newest_checkpoint"] for k in per_kill]
    return {
        "seconds_since_newest_checkpoint": {"mean": round(sum(seconds) / max(len(seconds), 1), 2),
                                            "max": round(max(seconds, default=0.0), 2)},
        "kills_while_a_checkpoint_was_being_written": sum(bool(k["partial_checkpoint_at_kill"]) for k in per_kill),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    # sized for 2 busy cores, where one 8-bit MiniLM step of 32 tweets takes 5-15 s (bitsandbytes has no fast CPU
    # int8 kernel here): 800 tweets = 25 steps, one checkpoint per step, 20 kills
    parser.add_argument("--max_train_samples", type=int, default=800)
    parser.add_argument("--max_eval_samples", type=int, default=200)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--checkpoint_every_steps", type=int, default=1)
    parser.add_argument("--train_seed", type=int, default=42, help="the recipe's --seed")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the kill schedule")
    parser.add_argument("--fresh_processes", action="store_true", help="cold subprocess per run instead of fork")
    parser.add_argument("--timeout", type=float, default=600, help="seconds any one run may take")
    parser.add_argument("--name", default="soak", help="results file name (benchmarks/results/<name>.json)")
    parser.add_argument("--workdir", default=None, help="keep run folders here (default: a temporary folder)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="skewtune-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = harness.load_average()
    cold_import = cold_import_seconds()
    runner = Runner(args.fresh_processes)
    print(f"soak in {work}: cold import {cold_import:.1f} s", flush=True)

    # the uninterrupted reference
    ref_out = work / "reference"
    t0 = time.perf_counter()
    code = runner.start(recipe_flags(args, ref_out), work / "reference.log").wait(args.timeout)
    ref_wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"reference run failed ({code}): see {work / 'reference.log'}")
    ref_metrics = json.loads((ref_out / "metrics.json").read_text())
    total_steps = int(ref_metrics["train_steps"])
    sec_per_step = ref_metrics["train_runtime_s"] / max(total_steps, 1)
    print(f"reference: {total_steps} steps, {ref_wall:.1f} s wall, macro-F1 {ref_metrics['eval_macro_f1']:.4f}", flush=True)

    every = args.checkpoint_every_steps
    candidates = list(range(every, total_steps - every))
    if len(candidates) < args.kills:
        raise SystemExit(f"{total_steps} steps leave room for {len(candidates)} kills; lower --kills or add data")
    rng = random.Random(args.seed)
    targets = sorted(rng.sample(candidates, args.kills))

    out = work / "soak"
    flags = recipe_flags(args, out)
    watcher = Watcher(out)
    watcher.start()
    per_kill: list[dict[str, Any]] = []
    resume_from = 0
    t0 = time.perf_counter()
    try:
        for number, target in enumerate(targets):
            log = work / f"run{number:02d}.log"
            proc = runner.start(flags, log)
            started_run = time.monotonic()
            goal = max(target, resume_from + 1)
            while proc.poll() is None and max(complete_steps(out), default=0) < goal:
                if time.monotonic() - started_run > args.timeout:
                    proc.kill()
                    raise SystemExit(f"run {number} made no progress in {args.timeout:.0f} s: see {log}")
                time.sleep(0.02)
            if proc.poll() is not None:
                raise SystemExit(f"run {number} ended ({proc.returncode}) before step {goal}: see {log}")
            time.sleep(rng.uniform(0.0, sec_per_step))
            proc.kill()
            killed_at = time.monotonic()
            watcher.scan()
            steps = complete_steps(out)
            newest = steps[-1] if steps else 0
            since = killed_at - watcher.first_seen.get(newest, killed_at)
            tmp_partial = sorted(p.name for p in (out / "checkpoints").glob(".step-*.tmp"))
            entry = {
                "run": number, "target_step": target, "resumed_from": resume_from, "newest_checkpoint": newest,
                "seconds_since_newest_checkpoint": round(since, 3),
                # a half-written .step-N.tmp means steps up to N were done: exactly N - newest lost
                "steps_lost_est": (max(int(n.split("-")[1].split(".")[0]) for n in tmp_partial) - newest
                                   if tmp_partial else min(every, int(since / sec_per_step))),
                "bar_step_at_kill": last_bar_step(log), "partial_checkpoint_at_kill": tmp_partial,
                "run_wall_s": round(killed_at - started_run, 2),
            }
            entry["steps_lost_bar_lower_bound"] = max(0, entry["bar_step_at_kill"] - newest)
            per_kill.append(entry)
            print(f"kill {number + 1}/{len(targets)}: step ≥{target}, newest checkpoint {newest}, "
                  f"{since:.2f} s after it", flush=True)
            resume_from = newest
        final_log = work / "final.log"
        proc = runner.start(flags, final_log)
        code = proc.wait(args.timeout)
        if code != 0:
            raise SystemExit(f"final run failed ({code}): see {final_log}")
    finally:
        watcher.halt.set()
        watcher.join(timeout=10)
    soak_wall = time.perf_counter() - t0
    watcher.scan()
    # each rerun resumed from the newest complete checkpoint the previous kill left
    logs = [work / f"run{i:02d}.log" for i in range(1, len(targets))] + [work / "final.log"]
    resumed_ok = all(resumed_step(log) == kill["newest_checkpoint"] for log, kill in zip(logs, per_kill))

    soak_metrics = json.loads((out / "metrics.json").read_text())
    lost = [k["steps_lost_est"] for k in per_kill]
    result = {
        "name": args.name,
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "settings": {**{k: v for k, v in vars(args).items() if k not in ("workdir",)},
                     "recipe": "recipes/lora_sentiment.py", "flags": recipe_flags(args, Path("<out>"))},
        "machine": {**harness.machine(), "cpus": os.cpu_count(), "load_average_start": load_start,
                    "load_average_end": harness.load_average()},
        "restarts": "fresh subprocesses" if args.fresh_processes else "forked from a pre-imported parent",
        "cold_start_import_s": round(cold_import, 2),
        "reference": {"wall_s": round(ref_wall, 2), "train_steps": total_steps,
                      "train_runtime_s": round(ref_metrics["train_runtime_s"], 2), "seconds_per_step": round(sec_per_step, 4),
                      "eval_macro_f1": ref_metrics["eval_macro_f1"], "eval_accuracy": ref_metrics["eval_accuracy"]},
        "soak": {"kills": len(per_kill), "runs": len(per_kill) + 1, "wall_s": round(soak_wall, 2),
                 "train_steps": soak_metrics["train_steps"], "eval_macro_f1": soak_metrics["eval_macro_f1"],
                 "eval_accuracy": soak_metrics["eval_accuracy"],
                 "every_rerun_resumed_from_newest_checkpoint": resumed_ok},
        "steps_lost_per_kill": {"estimated": lost, "mean": round(sum(lost) / max(len(lost), 1), 2), "max": max(lost, default=0),
                                "total": sum(lost), "checkpoint_every_steps": every},
        "work_lost_per_kill": work_lost(per_kill),
        "overhead_vs_uninterrupted": {
            "wall_s": round(soak_wall - ref_wall, 2), "ratio": round(soak_wall / ref_wall, 3),
            "per_kill_s": round((soak_wall - ref_wall) / max(len(per_kill), 1), 2),
            "with_cold_restarts_est_s": round(soak_wall - ref_wall + (0 if args.fresh_processes else len(per_kill) * cold_import), 1),
        },
        "final_macro_f1": {"uninterrupted": ref_metrics["eval_macro_f1"], "soak": soak_metrics["eval_macro_f1"],
                           "diff": soak_metrics["eval_macro_f1"] - ref_metrics["eval_macro_f1"]},
        "max_abs_adapter_weight_diff": adapter_diff(ref_out, out),
        "metrics_equal_except_runtime": metrics_equal(ref_metrics, soak_metrics),
        "partial_folders_seen": len(watcher.problems),
        "partial_folder_examples": watcher.problems[:5],
        "watcher_scans": watcher.scans,
        "per_kill": per_kill,
        "total_wall_s": round(time.perf_counter() - started, 1),
    }
    path = harness.write_results(harness.results_path(args.name), result)[0]
    print(json.dumps({k: result[k] for k in ("soak", "steps_lost_per_kill", "overhead_vs_uninterrupted", "final_macro_f1",
                                             "max_abs_adapter_weight_diff", "metrics_equal_except_runtime",
                                             "partial_folders_seen")}, indent=2))
    print(f"wrote {path}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result["partial_folders_seen"] == 0 and resumed_ok else 1


if __name__ == "__main__":
    sys.exit(main())
