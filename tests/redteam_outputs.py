"""Red-team cases of issue 23, classes 1, 2 and 8 (outputs): an output that overlaps what the command reads
(predict's input, adapter or backbone folder; a training's data file or backbone folder), an existing predictions
file without --overwrite, an output folder another run holds, and a list of 100,000 classes in one message. Run by
``tests/test_hostile_inputs.py``; the behaviour that does not fit one refused command (two writers, leftovers of
killed runs, --overwrite, the line after a progress bar) is in ``tests/test_redteam_outputs.py``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from tests.hostile_support import Case, World, csv_file, good_rows, predict, train

# ------------------------------------------------------------------------------------------------ builders

# lock files held by the "held" cases' builders (this process holds them, as another run would); closed when the
# next such case is built, so at most one stays open
_HELD: list[int] = []
HOLDER = "pid 4242 on build-host since 2025-01-01T00:00:00+00:00: skewtune train --output_dir runs/a\n"


def _hold(folder: Path, lock_name: str = ".skewtune.lock") -> Path:
    """Hold ``folder``'s writer lock as another skewtune run would (fixed holder text: a stable message)."""
    while _HELD:
        os.close(_HELD.pop())
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / lock_name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, HOLDER.encode())
    _HELD.append(fd)
    return folder


def _predict_into(w: World, tmp: Path, output: Path | str, *extra: str) -> list[str]:
    argv = predict(w.adapter, tmp)
    return [*argv[:-1], str(output), *extra]


def _bert_copy(w: World, tmp: Path) -> Path:
    return shutil.copytree(w.tiny_bert, tmp / "bert")


def _many_classes(tmp: Path, n: int = 100_000) -> Path:
    """One row per class: every class is too small to split (the message used to list all of them)."""
    return csv_file(tmp, "text,label\n" + "".join(f"text number {i},class{i}\n" for i in range(n)))


# ------------------------------------------------------------------------------------------------ cases


CASES: list[Case] = [
    # --- class 1: an output that overlaps what the command reads
    Case("rt-out-predict-output-is-input", "outputs", "`predict --output` equal to `--input`",
         "is the --input file",
         lambda w, t: _predict_into(w, t, t / "in.txt", "--overwrite")),
    Case("rt-out-predict-output-in-adapter", "outputs", "`predict --output <adapter>/skewtune.json`",
         "lies inside the --adapter folder",
         lambda w, t: _predict_into(w, t, w.adapter / "skewtune.json", "--overwrite")),
    Case("rt-out-predict-output-in-backbone", "outputs", "`predict --output` inside the adapter's backbone folder",
         "lies inside the adapter's backbone folder",
         lambda w, t: _predict_into(w, t, w.adapter_base / "config.json", "--overwrite")),
    Case("rt-out-train-output-holds-dataset", "outputs",
         "`train --output_dir` the folder of its `--dataset` file, with `--overwrite_output_dir`",
         "contains the --dataset file",
         lambda w, t: [*train(w, t, csv_file(t, "text,label\n" + good_rows())), "--output_dir", str(t),
                       "--overwrite_output_dir"]),
    Case("rt-out-train-output-is-backbone", "outputs",
         "`train --output_dir` the `--backbone` folder, with `--overwrite_output_dir`", "is the --backbone folder",
         lambda w, t: [*train(w, t, w.data, "--backbone", str(_bert_copy(w, t))), "--output_dir", str(t / "bert"),
                       "--overwrite_output_dir"]),
    Case("rt-out-train-output-in-backbone", "outputs", "`train --output_dir` inside the `--backbone` folder",
         "lies inside the --backbone folder",
         lambda w, t: [*train(w, t, w.data, "--backbone", str(_bert_copy(w, t))), "--output_dir",
                       str(t / "bert" / "run")]),
    # --- class 2: one writer per output folder
    Case("rt-out-train-folder-held", "outputs", "`train` on an `--output_dir` another run holds",
         "is in use by another skewtune run (pid 4242 on build-host",
         lambda w, t: (_hold(t / "out"), train(w, t, w.data))[1]),
    Case("rt-out-predict-output-held", "outputs", "`predict --output` a file another predict is writing",
         "is in use by another skewtune run (pid 4242",
         lambda w, t: (_hold(t, ".preds.jsonl.skewtune.lock"), predict(w.adapter, t))[1]),
    # --- class 8: weak messages
    Case("rt-out-predict-output-exists", "outputs", "`predict --output` an existing file, without `--overwrite`",
         "already exists (fix: pass --overwrite",
         lambda w, t: (csv_file(t, "earlier predictions\n", "preds.jsonl"), predict(w.adapter, t))[1]),
    Case("rt-out-predict-output-folder", "outputs", "`predict --output` an existing folder", "is a folder",
         lambda w, t: ((t / "preds.jsonl").mkdir(), predict(w.adapter, t))[1]),
    Case("rt-out-many-classes", "outputs", "100,000 classes of one row each (the message lists the first 10)",
         "… and 99,990 more",
         lambda w, t: train(w, t, _many_classes(t))),
]
