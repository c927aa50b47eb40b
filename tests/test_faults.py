"""Faults (issue 9): kill -9 at random steps and resume, SIGTERM/SIGINT, NaN loss, read-only and full disks.

The kill test runs the real recipe in subprocesses on the tiny backbone and SIGKILLs it at seeded random moments
(watching the checkpoints folder to pick them), reruns the same command each time, and checks the end result
against an uninterrupted run with the same seed: adapter tensors within ``WEIGHT_TOL`` (1e-6; on CPU with the
same thread count they come out identical) and metrics.json equal except wall-clock fields. A watcher thread
polls the output folder all along: no checkpoint or adapter folder may ever be visible incomplete under its
final name (they are built under hidden ``.….tmp`` names and renamed).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from skewtune.cli.main import main as cli_main
from tests.conftest import REPO, tiny_args

RECIPE = REPO / "recipes" / "lora_sentiment.py"
CKPT_FILES = {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "skewtune_state.json"}
ADAPTER_FILES = {"adapter_config.json", "adapter_model.safetensors", "README.md", "skewtune.json"}
TOP_LEVEL = {"checkpoints", "adapter", "metrics.json", "config.json", "confusion_matrix.png", "tracking", "report.html"}
VOLATILE_METRICS = {"train_runtime_s", "train_samples_per_second", "peak_rss_mb", "log_history",  # log_history: samples/s
                    "data_timings_s", "tokenize_cache_reused", "peak_rss_children_mb"}  # a re-run reads the cache
WEIGHT_TOL = 1e-6
KILLS = 4


def kill_flags(tiny_bert: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """20 epochs x 12 steps on the toy data, a checkpoint every 2 steps: long enough (a few seconds even on an
    idle machine) that kills land at the chosen steps."""
    return tiny_args(tiny_bert, data, out, "--checkpoint_every_steps", "2", "--num_train_epochs", "20", *extra)


def recipe_in_process(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("lora_sentiment_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.main(argv)


def start_recipe(argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, str(RECIPE), *argv], stdout=handle, stderr=subprocess.STDOUT,
                                cwd=REPO, env=env, **kwargs)


def complete_steps(out: Path) -> list[int]:
    folder = out / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.iterdir()
                  if re.fullmatch(r"step-\d+", p.name) and (p / "skewtune_state.json").is_file())


class PartialWatcher(threading.Thread):
    """Polls an output folder; records any folder or file visible under its final name while incomplete."""

    def __init__(self, out: Path, interval: float = 0.03) -> None:
        super().__init__(daemon=True)
        self.out, self.interval = out, interval
        self.problems: list[str] = []
        self.scans = 0
        self.seen: set[str] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.scan()
            self.scans += 1
            time.sleep(self.interval)

    def stop(self) -> list[str]:
        self._stop_event.set()
        self.join(timeout=10)
        self.scan()
        return self.problems

    def scan(self) -> None:
        try:
            entries = os.listdir(self.out)
        except FileNotFoundError:
            return
        for name in entries:
            if not name.startswith(".") and name not in TOP_LEVEL:
                self.problems.append(f"unexpected {name} in the output folder")
        try:
            checkpoints = os.listdir(self.out / "checkpoints")
        except (FileNotFoundError, NotADirectoryError):
            checkpoints = []
        for name in checkpoints:
            if name.startswith("."):
                continue  # hidden temporary names: .step-N.tmp (being built), .step-N.old (being deleted)
            if not re.fullmatch(r"step-\d+", name):
                self.problems.append(f"unexpected checkpoints/{name}")
                continue
            self.seen.add(name)
            self._complete(self.out / "checkpoints" / name, CKPT_FILES, json_file="skewtune_state.json")
        if "adapter" in entries:
            self.seen.add("adapter")
            self._complete(self.out / "adapter", ADAPTER_FILES, json_file="skewtune.json")
        for name in ("metrics.json", "config.json"):
            try:
                json.loads((self.out / name).read_text())
            except FileNotFoundError:
                pass
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self.problems.append(f"partial {name}: {exc}")

    def _complete(self, folder: Path, required: set[str], json_file: str) -> None:
        try:
            inode = os.stat(folder).st_ino
            names = set(os.listdir(folder))
            if not required - names:
                json.loads((folder / json_file).read_text())
                return
        except FileNotFoundError:
            return  # renamed away as a whole between two calls (pruned, or replaced by a newer copy)
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
        try:  # still there under the same name and the same inode, and still incomplete: a real partial folder
            if os.stat(folder).st_ino == inode and (required - set(os.listdir(folder)) or not _json_ok(folder / json_file)):
                self.problems.append(f"partial {folder.relative_to(self.out)}: has {sorted(os.listdir(folder))}")
        except FileNotFoundError:
            return


def _json_ok(path: Path) -> bool:
    try:
        json.loads(path.read_text())
        return True
    except (OSError, ValueError):
        return False


def adapter_tensors(out: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def max_weight_diff(a: Path, b: Path) -> float:
    ta, tb = adapter_tensors(a), adapter_tensors(b)
    assert ta.keys() == tb.keys()
    return max((ta[k].double() - tb[k].double()).abs().max().item() for k in ta)


def assert_same_metrics(a: Path, b: Path, rel: float = 1e-6) -> None:
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert ma.keys() == mb.keys()

    def same(x, y, where: str) -> None:
        if isinstance(x, float) or isinstance(y, float):
            assert math.isclose(x, y, rel_tol=rel, abs_tol=1e-9), (where, x, y)
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y)):
                same(u, v, f"{where}[{i}]")
        else:
            assert x == y, (where, x, y)

    for key in ma.keys() - VOLATILE_METRICS:
        same(ma[key], mb[key], key)


@pytest.fixture(scope="module")
def reference(tiny_bert: Path, toy_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run (same recipe, same flags, same seed), in-process."""
    out = tmp_path_factory.mktemp("reference") / "out"
    assert recipe_in_process(kill_flags(tiny_bert, toy_csv, out)) == 0
    return out


def test_sigkill_at_random_steps_resumes_to_the_same_adapter(reference: Path, tiny_bert: Path, toy_csv: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "killed"
    argv = kill_flags(tiny_bert, toy_csv, out)
    rng = random.Random(9)
    targets = sorted(rng.sample(range(4, 200, 2), KILLS))  # of 240 steps
    watcher = PartialWatcher(out)
    watcher.start()
    kills: list[dict] = []
    proc: subprocess.Popen | None = None
    try:
        for number, target in enumerate(targets):
            log = tmp_path / f"run{number}.log"
            # the plain rerun resumes automatically; one rerun asks for it explicitly
            extra = ["--resume_from_checkpoint", "latest"] if number == 2 else []
            proc = start_recipe(argv + extra, log)
            deadline = time.monotonic() + 150
            # at or past the target, and at least one new checkpoint past the one this run resumed from
            goal = max(target, kills[-1]["resume_step"] + 2 if kills else 0)
            while proc.poll() is None and max(complete_steps(out), default=0) < goal:
                assert time.monotonic() < deadline, f"run {number} made no progress: {log.read_text()[-2000:]}"
                time.sleep(0.05)
            assert proc.poll() is None, f"run {number} ended before step {goal}: {log.read_text()[-2000:]}"
            time.sleep(rng.uniform(0.0, 0.05))  # land anywhere: mid-step, mid-checkpoint, mid-prune
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
            kills.append({"target": target, "resume_step": max(complete_steps(out), default=0), "log": log})
        final_log = tmp_path / "final.log"
        proc = start_recipe(argv, final_log)
        assert proc.wait(timeout=300) == 0, final_log.read_text()[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        problems = watcher.stop()

    assert len(kills) == KILLS
    logs = [k["log"] for k in kills[1:]] + [final_log]
    for kill, log in zip(kills, logs):
        # each rerun picked up the newest complete checkpoint that the kill left behind
        assert f"(step {kill['resume_step']})" in log.read_text(), (kill, log.read_text()[-2000:])
        assert kill["resume_step"] >= kill["target"]
    assert not problems, problems[:5]
    assert watcher.scans > 100 and "adapter" in watcher.seen and len(watcher.seen) > 5
    diff = max_weight_diff(reference, out)
    assert diff < WEIGHT_TOL, diff
    assert_same_metrics(reference, out)
    assert json.loads((out / "metrics.json").read_text())["train_steps"] == 240


def test_sigterm_saves_a_checkpoint_exits_130_and_resumes(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "term"
    argv = tiny_args(tiny_bert, toy_csv, out, "--checkpoint_every_steps", "2", "--num_train_epochs", "1")
    log = tmp_path / "term.log"
    proc = start_recipe(argv, log)
    deadline = time.monotonic() + 150
    while proc.poll() is None and not complete_steps(out):
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, log.read_text()[-2000:]
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted: saved checkpoint ") and "--resume_from_checkpoint latest" in lines[-1]
    assert "Traceback" not in log.read_text()
    steps = complete_steps(out)
    assert steps and f"step-{steps[-1]}" in lines[-1]
    assert not (out / "adapter").exists() and not (out / "metrics.json").exists()
    # the command the message gives
    assert recipe_in_process([*argv, "--resume_from_checkpoint", "latest", "--output_dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_steps"] == 12 and (out / "adapter" / "adapter_model.safetensors").is_file()


def test_sigint_in_process_stops_at_a_step_boundary(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C: a real SIGINT, delivered right after the first checkpoint (deterministic), to the real handler."""
    from skewtune.training import checkpoint

    real_save = checkpoint.save
    sent = []

    def save_then_interrupt(accelerator, output_dir, state, **kwargs):
        path = real_save(accelerator, output_dir, state, **kwargs)
        if not sent:
            sent.append(state.global_step)
            os.kill(os.getpid(), signal.SIGINT)
        return path

    monkeypatch.setattr(checkpoint, "save", save_then_interrupt)
    out = tmp_path / "int"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--checkpoint_every_steps", "2")]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].startswith("interrupted: saved checkpoint") and "--resume_from_checkpoint latest" in err[-1]
    # stopped at the next step boundary: the step after the checkpoint that raised the signal
    assert complete_steps(out)[-1] == sent[0] + 1
    assert not (out / "adapter").exists()


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), err[-2000:]
    assert "Traceback" not in err
    return lines[-1]


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A learning rate of 1e30 makes the loss NaN within a few steps, for real (no patching)."""
    out = tmp_path / "nan"
    code = cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--learning_rate", "1e30",
                                         "--checkpoint_every_steps", "1")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    found = re.match(r"error: loss became (nan|inf|-inf) at step (\d+) \(epoch 1\)", line)
    assert found, line
    assert "--on_nan skip" in line and "last good checkpoint is kept" in line
    step = int(found.group(2))  # 2 or 3 depending on warmup: the first update after warmup starts blows up
    assert step in (2, 3)
    assert complete_steps(out)[-1] == step - 1  # every finished step was checkpointed, the failing one was not
    assert CKPT_FILES <= {p.name for p in (out / "checkpoints" / f"step-{step - 1}").iterdir()}
    assert not (out / "adapter").exists() and not (out / "metrics.json").exists()


def test_on_nan_skip_drops_the_batch_and_continues(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The loss of the 3rd batch is made NaN; stop names step 3, skip drops that batch and finishes."""
    import torch

    from skewtune.training import pipeline

    real_build = pipeline.build_loss

    def nan_on_third_batch(run):
        loss_fn, calls = real_build(run), []

        def loss(logits, labels):
            calls.append(1)
            value = loss_fn(logits, labels)
            return value * float("nan") if len(calls) == 3 else value
        return loss

    monkeypatch.setattr(pipeline, "build_loss", nan_on_third_batch)
    stop = tmp_path / "stop"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, stop, "--num_train_epochs", "1",
                                         "--checkpoint_every_steps", "2")]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith("error: loss became nan at step 3 (epoch 1)")
    assert complete_steps(stop) == [2]

    skip = tmp_path / "skip"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, skip, "--num_train_epochs", "1", "--on_nan", "skip")]) == 0
    err = capsys.readouterr().err
    assert "loss became nan at step 3; batch skipped (--on_nan skip)" in err and "Traceback" not in err
    metrics = json.loads((skip / "metrics.json").read_text())
    assert metrics["skipped_nan_batches"] == 1 and metrics["train_steps"] == 11  # 12 batches, one dropped
    assert all(torch.isfinite(t).all() for t in adapter_tensors(skip).values())


def test_read_only_output_dir_fails_before_anything(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Tests run as root, which ignores permission bits: use places no one can write (sysfs, a path through a file)."""
    target = Path("/sys") / f"skewtune-test-{os.getpid()}" / "out"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, target)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"cannot write to {target} (read-only or permission denied)" in line
    assert not target.parent.exists()

    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    out = blocker / "run1"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out)]) == 2
    assert f"runs through {blocker}, which is a file" in _one_error_line(capsys.readouterr().err)
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_disk_full_while_saving_the_adapter(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """ENOSPC at the final rename of the adapter folder: clear error, no adapter, no leftovers; the rerun resumes."""
    out = tmp_path / "full"
    argv = ["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1")]
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name in ("adapter", "metrics.json") and Path(dst).parent == out:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert cli_main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"error: no space left on device while writing {out / 'adapter'}" in line
    # no adapter, no metrics, no temporary folder (the trackers' event files of the run stay)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "tracking"]
    assert complete_steps(out) == [12]
    monkeypatch.setattr(os, "replace", real_replace)
    assert cli_main(argv) == 0  # space freed: the same command resumes from the final checkpoint and saves
    assert "resuming from" in capsys.readouterr().err
    assert ADAPTER_FILES <= {p.name for p in (out / "adapter").iterdir()}


def test_file_size_limit_mid_checkpoint(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A real OS-level write failure inside torch.save / safetensors (RLIMIT_FSIZE: EFBIG), not a patched call."""
    out = tmp_path / "capped"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # model.safetensors fits, optimizer.bin does not
    try:
        code = cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--checkpoint_every_steps", "2")])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith(f"error: could not write checkpoint {out / 'checkpoints' / 'step-2'}: "), line
    assert "free disk space" in line
    assert [p.name for p in (out / "checkpoints").iterdir()] == []  # the partial .step-2.tmp was removed
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "tracking"]  # + the trackers' event files
