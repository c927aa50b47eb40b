"""Shared machinery of the hostile-input tests: the read-only fixture world, the case record, the CLI runner and the
write check. Case lists live in ``tests/test_hostile_inputs.py`` (issue 9) and ``tests/redteam_*.py`` (issue 23);
``tests/test_hostile_inputs.py`` runs them all and writes docs/bad_inputs.md from their actual output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from skewtune.cli.main import main as cli_main
from tests.conftest import REPO, make_texts, tiny_args


@dataclass
class World:
    """Shared, read-only inputs: tiny backbone, toy data, adapters, a hub; built once per module."""

    root: Path
    tiny_bert: Path
    data: Path
    adapter: Path  # real peft LoRA on a tiny 3-label BERT (base: adapter_base)
    adapter_base: Path
    other_base: Path  # hidden size 24: the adapter does not fit it
    fake: Path  # structurally valid adapter, base fingerprint of nothing real
    hub: Path  # local hub holding fake as demo@v1
    twin: Path  # a second LoRA on adapter_base (for merges)
    alien: Path  # the adapter with another base fingerprint (for merges)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKEWTUNE_CACHE", str(tmp_path.parent / f"{tmp_path.name}-cache"))
    monkeypatch.delenv("SKEWTUNE_HUB", raising=False)


# ------------------------------------------------------------------------------------------------ helpers


def train(w: World, tmp: Path, data: Path | str, *extra: str) -> list[str]:
    return ["train", *tiny_args(w.tiny_bert, Path(data), tmp / "out"), *extra]


def csv_file(tmp: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def good_rows(n: int = 60) -> str:
    texts, labels = make_texts(n)
    return "".join(f"{t},{lab}\n" for t, lab in zip(texts, labels))


def jsonl(tmp: Path, lines: list[str], name: str = "d.jsonl") -> Path:
    texts, labels = make_texts(60)
    good = [json.dumps({"text": t, "label": lab}) for t, lab in zip(texts, labels)]
    path = tmp / name
    path.write_text("\n".join(good[:30] + lines + good[30:]) + "\n", encoding="utf-8")
    return path


def predict(adapter: Path, tmp: Path, text: str = "a fine day\nthe worst film\n") -> list[str]:
    (tmp / "in.txt").write_text(text, encoding="utf-8")
    return ["predict", "--adapter", str(adapter), "--input", str(tmp / "in.txt"), "--output", str(tmp / "preds.jsonl")]


def altered(w: World, tmp: Path, change: Callable[[Path], None], rehash: bool = True) -> Path:
    """A copy of the real adapter, changed; ``rehash`` recomputes the manifest hashes (a consistent but bad folder)."""
    from skewtune.adapters.io import read_manifest, write_manifest

    folder = shutil.copytree(w.adapter, tmp / "adapter")
    change(folder)
    if rehash and (folder / "skewtune.json").is_file():
        write_manifest(folder, read_manifest(folder))
    return folder


def _wrong_shapes(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "adapter_model.safetensors"))
    key = next(k for k in tensors if "lora_A" in k)
    tensors[key] = torch.zeros(5, 7)
    save_file(tensors, str(folder / "adapter_model.safetensors"))


def _truncate(folder: Path) -> None:
    path = folder / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:40])


def _manifest_edit(**changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / "skewtune.json").read_text())
        manifest.update(changes)
        (folder / "skewtune.json").write_text(json.dumps(manifest))
    return edit


def _hub_copy(w: World, tmp: Path, index_text: str | None = None) -> Path:
    hub = shutil.copytree(w.hub, tmp / "hub")
    if index_text is not None:
        (hub / "index.json").write_text(index_text)
    return hub


def merge(*adapters: Path | str, tmp: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["merge", "--adapters", *map(str, adapters), "--method", "linear", "--output_dir", str(tmp / "merged"), *extra]




# ------------------------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    what: str
    expect: str  # a substring of the error line
    build: Callable[[World, Path], list[str]]
    subprocess: bool = False



def _bytes(tmp: Path, text: str, encoding: str, name: str = "d.csv") -> Path:
    path = tmp / name
    path.write_bytes(text.encode(encoding))
    return path


def _raw(tmp: Path, data: bytes, name: str = "d.csv") -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def _prefilled(tmp: Path) -> bool:
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("precious")
    return True


def _foreign_checkpoint(tmp: Path) -> bool:
    step = tmp / "out" / "checkpoints" / "step-3"
    step.mkdir(parents=True)
    (step / "skewtune_state.json").write_text(json.dumps({"config_fingerprint": "0" * 16, "global_step": 3}))
    return True


def _without_weights(w: World, tmp: Path) -> Path:
    folder = shutil.copytree(w.fake, tmp / "no-weights")
    (folder / "adapter_model.safetensors").unlink()
    return folder


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path with its size and mtime (folders: their entries; the output check's write probe, a hidden
    file created and removed at once, touches a folder's mtime but leaves nothing)."""
    state: dict[str, tuple] = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.lstat()
            if path.is_dir() and not path.is_symlink():
                state[str(path)] = ("dir", tuple(sorted(os.listdir(path))))
            else:
                state[str(path)] = ("file", st.st_size, st.st_mtime_ns)
    return state


def normalise(line: str, *pairs: tuple[Path, str]) -> str:
    for path, name in sorted(pairs, key=lambda p: -len(str(p[0]))):
        line = line.replace(str(path), name)
    return line


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str], in_subprocess: bool) -> tuple[int, str]:
    if in_subprocess:
        env = dict(os.environ)
        proc = subprocess.run([sys.executable, "-m", "skewtune.cli.main", *argv], capture_output=True, text=True,
                              timeout=300, cwd=REPO, env=env)
        return proc.returncode, proc.stderr
    capsys.readouterr()
    try:
        code = cli_main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err
