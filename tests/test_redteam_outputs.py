"""Issue 23, classes 1, 2 and 8 (outputs), the behaviour that is more than one refused command: one writer per output
folder (a second process holding the lock, a killed holder, accelerate's non-main ranks, the recipes), leftovers of
killed writers cleaned by the next one, ``predict --overwrite``, an error line after a progress bar, and capped
lists in messages. The one-command refusals are cases in ``tests/redteam_outputs.py``.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skewtune.cli.main import main as cli_main
from skewtune.errors import OutputError, SkewtuneError
from tests.conftest import REPO, tiny_args
from tests.hostile_support import World, isolated_cache  # noqa: F401  (isolated_cache: an autouse fixture)

HOLD = ("import sys\n"
        "from skewtune.utils.locks import OutputLock\n"
        "lock = OutputLock(sys.argv[1], command='skewtune train --output_dir (test holder)').acquire()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n")


def _holder(folder: Path) -> subprocess.Popen[str]:
    """Another process holding ``folder``'s writer lock, as a running training would."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _error_line(err: str) -> str:
    lines = [line for line in err.split("\n") if "error:" in line]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def _load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ one writer


def test_a_held_folder_refuses_a_second_training_until_its_holder_dies(
        tiny_bert: Path, toy_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The second writer exits 2 naming the holder; kill -9 frees the lock; the next run cleans the killed writers'
    temporary leftovers, trains, and leaves no lock file."""
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1")]) == 2
        line = _error_line(capsys.readouterr().err)
        assert f"--output_dir {out} is in use by another skewtune run (pid {holder.pid} on " in line
        assert "skewtune train --output_dir (test holder)" in line and "(fix: wait for that run to end" in line
        assert sorted(p.name for p in out.iterdir()) == [".skewtune.lock"]  # the holder's, untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    # what killed writers leave: a half-built adapter, checkpoint and metrics file (no live writer holds them)
    (out / ".adapter.k1ll3d.tmp").mkdir()
    (out / ".adapter.k1ll3d.tmp" / "adapter_model.safetensors").write_bytes(b"partial")
    (out / "checkpoints" / ".step-9.tmp").mkdir(parents=True)
    (out / ".metrics.json.k1ll3d.tmp").write_text("{")
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1")]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["adapter", "checkpoints", "config.json", "metrics.json", "tracking"], names
    assert all(not p.name.startswith(".") for p in (out / "checkpoints").iterdir())


def test_lock_is_exclusive_released_on_exit_and_leaves_nothing(tmp_path: Path) -> None:
    from skewtune.utils.locks import OutputLock

    out = tmp_path / "a" / "b"
    with OutputLock(out, command="first") as lock:
        assert lock.held and (out / ".skewtune.lock").read_text().endswith(": first\n")
        with pytest.raises(OutputError, match=r"is in use by another skewtune run \(pid \d+ on .*: first\)"):
            OutputLock(out).acquire()
    assert not (tmp_path / "a").exists()  # the folders the lock made, empty again, are gone with it
    holder = _holder(out)
    holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the flock, the file stays
    holder.wait(timeout=10)
    assert (out / ".skewtune.lock").is_file()
    with OutputLock(out, command="second"):
        assert (out / ".skewtune.lock").read_text().endswith(": second\n")
    assert not (out / ".skewtune.lock").exists()


def test_the_lock_file_is_not_content_and_non_main_ranks_take_no_lock(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from skewtune.training.pipeline import _has_content, take_output_lock

    out = tmp_path / "out"
    monkeypatch.setenv("RANK", "1")  # accelerate launch: only the main process writes the folder, and locks it
    assert take_output_lock(out) is None and not out.exists()
    monkeypatch.setenv("RANK", "0")
    lock = take_output_lock(out)
    assert lock is not None and lock.held
    try:
        assert not _has_content(out)  # a run holding its own lock still sees an empty folder (fresh or resumable)
        monkeypatch.setenv("RANK", "1")
        assert take_output_lock(out) is None  # a second rank of the same launch does not wait on the first
    finally:
        lock.release()
    assert not out.exists()


@pytest.mark.parametrize("recipe", ["lora_sentiment", "few_shot"])
def test_recipes_refuse_a_held_folder(recipe: str, tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        argv = ["--dataset", str(toy_csv), "--backbone", str(tiny_bert), "--quant", "none", "--output_dir", str(out)]
        assert _load_recipe(recipe).main(argv) == 2
        assert f"is in use by another skewtune run (pid {holder.pid} " in _error_line(capsys.readouterr().err)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)


# ------------------------------------------------------------------------------------------------ leftovers


def test_atomic_writes_clean_stale_leftovers_of_their_name_only(tmp_path: Path) -> None:
    from skewtune.utils.io import STALE_AFTER_S, atomic_dir, atomic_write_text

    old = time.time() - 2 * STALE_AFTER_S
    stale_dir, fresh_dir, live_dir = (tmp_path / f".adapter.{k}.tmp" for k in ("stale", "fresh", "live"))
    for folder in (stale_dir, fresh_dir, live_dir):
        folder.mkdir()
        (folder / "part").write_text("x")
    stale_file = tmp_path / ".metrics.json.stale.tmp"
    stale_file.write_text("{")
    other = tmp_path / ".other.stale.tmp"
    other.mkdir()
    for path in (stale_dir, live_dir, stale_file, other):
        os.utime(path, (old, old))
    live = os.open(live_dir, os.O_RDONLY | os.O_DIRECTORY)  # a writer still building it holds its lock
    fcntl.flock(live, fcntl.LOCK_EX)
    try:
        with atomic_dir(tmp_path / "adapter") as tmp:
            (tmp / "a").write_text("new")
        atomic_write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.close(live)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".adapter.fresh.tmp", ".adapter.live.tmp", ".other.stale.tmp", "adapter", "metrics.json"]


def test_a_kill_between_the_two_renames_gets_the_previous_folder_back(tmp_path: Path) -> None:
    """atomic_dir moves the old folder to .<name>.X.old/x, then renames the new one in: a kill in between leaves
    no <name>; the next write to it puts the previous version back before replacing it."""
    from skewtune.utils.io import STALE_AFTER_S, atomic_dir, remove_stale_leftovers

    old = tmp_path / ".adapter.k1ll3d.old"
    (old / "x").mkdir(parents=True)
    (old / "x" / "weights").write_text("previous")
    os.utime(old, (time.time() - 2 * STALE_AFTER_S,) * 2)
    assert remove_stale_leftovers(tmp_path) == [old]
    assert (tmp_path / "adapter" / "weights").read_text() == "previous"
    with atomic_dir(tmp_path / "adapter") as tmp:
        (tmp / "weights").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


# ------------------------------------------------------------------------------------------------ messages


@pytest.mark.parametrize("fail_at", [2, 4])
def test_a_failed_checkpoint_says_which_checkpoint_is_kept(fail_at: int, tiny_bert: Path, toy_csv: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A full disk at the first checkpoint has nothing to keep; at a later one, the last complete one is named."""
    from accelerate import Accelerator

    real = Accelerator.save_state

    def save_state(self, output_dir=None, **kwargs):
        if Path(str(output_dir)).name == f".step-{fail_at}.tmp":
            raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")
        return real(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    out = tmp_path / "out"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--checkpoint_every_steps", "2")]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"error: could not write checkpoint {out / 'checkpoints' / f'step-{fail_at}'}: "), line
    if fail_at == 2:
        assert "last complete checkpoint" not in line and "no checkpoint was saved before this one" in line
    else:
        assert "the last complete checkpoint step-2 is kept and the same command resumes from it" in line
    assert not (out / ".skewtune.lock").exists()


def test_existing_predictions_need_overwrite(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.txt").write_text("a fine day\nthe worst film\n")
    out = tmp_path / "preds.jsonl"
    argv = ["predict", "--adapter", str(world.adapter), "--input", str(tmp_path / "in.txt"), "--output", str(out)]
    assert cli_main(argv) == 0
    first = out.read_text()
    out.write_text("kept\n")
    assert cli_main(argv) == 2
    assert f"error: --output {out} already exists (fix: pass --overwrite" in _error_line(capsys.readouterr().err)
    assert out.read_text() == "kept\n"
    assert cli_main([*argv, "--overwrite"]) == 0
    assert out.read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "preds.jsonl"]  # no lock file left


def test_an_error_after_the_progress_bar_starts_its_own_line(world: World, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import skewtune.utils.io as io

    def full_disk(path, text):
        raise io._os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), Path(path))

    monkeypatch.setattr(io, "atomic_write_text", full_disk)
    (tmp_path / "in.txt").write_text("a fine day\nthe worst film\n")
    argv = ["predict", "--adapter", str(world.adapter), "--input", str(tmp_path / "in.txt"),
            "--output", str(tmp_path / "preds.jsonl")]
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "predict" in err  # the bar was shown (stderr is not a terminal here: it stays, on its own line)
    assert _error_line(err).startswith("error: no space left on device while writing"), repr(err[-500:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_long_lists_in_messages_are_capped() -> None:
    from skewtune.errors import DataError, capped

    text = capped(f"class{i}" for i in range(100_000))
    assert text.startswith("class0, class1, ") and text.endswith("class9, … and 99,990 more")
    assert capped(["a", "b"]) == "a, b"
    huge = DataError("labels: " + ", ".join(map(str, range(300_000))), "fix " * 10_000).one_line()
    assert len(huge) < 5_000 and huge.startswith("error: labels: 0, 1") and huge.endswith(")")
    assert isinstance(DataError("x"), SkewtuneError)
