"""Checkpoints through Accelerate's ``save_state``/``load_state``, written atomically, last K kept.

A checkpoint holds the trainable parameters only (adapter + head; a save-state pre-hook drops the frozen,
possibly quantized base), optimizer, scheduler, every process's RNG states, and ``skewtune_state.json``
(epoch, step, position in the epoch, history, config fingerprint). It is built in ``.step-N.tmp`` and renamed
to ``step-N`` only once complete, so a reader (or a resumed run after ``kill -9``) never sees a partial one.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from skewtune.errors import OutputError
from skewtune.training.state import FitState
from skewtune.utils.io import _os_error, atomic_write_json

logger = logging.getLogger("skewtune")
STATE_FILE = "skewtune_state.json"
CHECKPOINTS = "checkpoints"

if TYPE_CHECKING:
    from accelerate import Accelerator


def _install_hooks(accelerator: Accelerator) -> None:
    if getattr(accelerator, "_skewtune_hooks", False):
        return

    def keep_trainable(models: list[Any], weights: list[dict[str, Any]], output_dir: str) -> None:
        for i, model in enumerate(models):
            weights[i] = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator._skewtune_hooks = True


def save(accelerator: Accelerator, output_dir: Path, state: FitState, *, fingerprint: str, keep: int) -> Path:
    """Save a complete checkpoint ``<output_dir>/checkpoints/step-N`` (all processes must call)."""
    _install_hooks(accelerator)
    root = Path(output_dir) / CHECKPOINTS
    final = root / f"step-{state.global_step}"
    if final.exists():
        return final
    tmp = root / f".step-{state.global_step}.tmp"
    try:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            atomic_write_json(tmp / STATE_FILE, {**state.counters(), "config_fingerprint": fingerprint,
                                                 "num_processes": accelerator.num_processes})
            tmp.rename(final)
            prune(root, keep)
    except (OSError, RuntimeError, SafetensorError, OutputError) as exc:
        # disk full / read-only mid-run (torch.save reports write failures as RuntimeError): no partial
        # checkpoint stays behind, the previous complete ones are untouched
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OutputError):
            raise
        if isinstance(exc, OSError):
            error = _os_error(exc, tmp)
            raise OutputError(error.message, f"{error.hint}; {kept_note(output_dir)}") from exc
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise OutputError(f"could not write checkpoint {final}: {cause}",
                          f"free disk space or choose another --output_dir; {kept_note(output_dir)}") from exc
    accelerator.wait_for_everyone()
    return final


def kept_note(output_dir: Path) -> str:
    """What a failed save leaves to resume from: the last complete checkpoint, or none yet."""
    last = latest(Path(output_dir))
    if last is None:
        return "no checkpoint was saved before this one, so a rerun starts from the beginning"
    return f"the last complete checkpoint {last.name} is kept and the same command resumes from it"


def prune(root: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; drop stale temporary folders."""
    done = sorted((p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-")),
                  key=lambda p: int(p.name.split("-")[1]))
    for old in done[: max(0, len(done) - max(keep, 1))]:
        # rename first: a kill during the deletion must not leave a half-deleted folder under a checkpoint name
        doomed = root / f".{old.name}.old"
        shutil.rmtree(doomed, ignore_errors=True)
        old.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    for stale in [*root.glob(".step-*.tmp"), *root.glob(".step-*.old")]:
        shutil.rmtree(stale, ignore_errors=True)


# what Accelerate's save_state writes with safe_serialization=True (weights in safetensors; optimizer, scheduler,
# sampler and RNG states as torch zip archives, read back with torch.load(weights_only=True): tensors and plain
# containers only, no arbitrary objects)
_WEIGHT_FILE = re.compile(r"model(_\d+)?\.safetensors")
_STATE_FILES = re.compile(r"(optimizer|scheduler|sampler|dl_state_dict)(_\d+)?\.bin|random_states_\d+\.pkl|scaler\.pt")
_RESUME_HINT = "resume from another checkpoint (--resume_from_checkpoint <folder>) or start afresh with --overwrite_output_dir"


def _broken(folder: Path, problem: str) -> OutputError:
    return OutputError(f"checkpoint {folder} cannot be resumed: {problem}", _RESUME_HINT)


def read_state(folder: Path, *, counters: bool = True) -> dict[str, Any]:
    """``<folder>/skewtune_state.json``, checked: a JSON object (with whole-number counters when ``counters``)."""
    path = Path(folder) / STATE_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _broken(Path(folder), f"{STATE_FILE} is not readable JSON ({type(exc).__name__})") from exc
    if not isinstance(saved, dict):
        raise _broken(Path(folder), f"{STATE_FILE} is not a JSON object")
    if not counters:
        return saved
    for key in ("epoch", "global_step", "step_in_epoch"):
        value = saved.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise _broken(Path(folder), f"{STATE_FILE} has no valid '{key}' (got {str(value)[:40]!r})")
    if not isinstance(saved.get("history", []), list):
        raise _broken(Path(folder), f"{STATE_FILE} 'history' is not a list")
    return saved


def check(folder: Path) -> Path:
    """Refuse a checkpoint that cannot be resumed safely, before any work; returns ``folder``.

    The weights must be safetensors (a pickled ``pytorch_model.bin`` is refused, never unpickled); every other file
    must be one Accelerate writes, each a readable torch archive of plain data; the counters must parse.
    """
    from safetensors import safe_open

    folder = Path(folder)
    read_state(folder)
    names = sorted(p.name for p in folder.iterdir())
    unexpected = [n for n in names if n != STATE_FILE and not _WEIGHT_FILE.fullmatch(n) and not _STATE_FILES.fullmatch(n)]
    if unexpected:
        pickled = [n for n in unexpected if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]
        what = f"{', '.join(pickled)} (pickle files are not loaded)" if pickled else ", ".join(unexpected)
        raise _broken(folder, f"it holds files a skewtune checkpoint does not: {what[:300]}")
    weights = [n for n in names if _WEIGHT_FILE.fullmatch(n)]
    if not weights:
        raise _broken(folder, "model.safetensors is missing")
    for name in weights:
        try:
            with safe_open(str(folder / name), framework="pt") as handle:
                handle.keys()
        except (OSError, SafetensorError, ValueError, RuntimeError) as exc:
            raise _broken(folder, f"{name} is not a readable safetensors file") from exc
    for name in names:
        if _STATE_FILES.fullmatch(name):
            path = folder / name
            if not zipfile.is_zipfile(path):  # torch.save archives are zip files; anything else is refused unread
                raise _broken(folder, f"{name} is not a torch state archive (corrupt or foreign)")
            try:
                _weights_only_load(path)
            except (pickle.UnpicklingError, RuntimeError, ValueError, OSError, EOFError, KeyError,
                    AttributeError, TypeError, zipfile.BadZipFile) as exc:
                raise _broken(folder, f"{name} is corrupt or holds objects other than tensors and plain data "
                                      f"(not loaded)") from exc
    return folder


def _weights_only_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (tensors, numbers, containers; no code) as Accelerate loads states."""
    from accelerate.utils import load as accelerate_load

    return accelerate_load(str(path), map_location="cpu", weights_only=True)


def load(accelerator: Accelerator, folder: Path) -> FitState:
    """Restore adapter, optimizer, scheduler and RNG states; return the counters to continue from.

    The folder is checked first (:func:`check`); states load with ``weights_only=True``; a failure is one
    :class:`OutputError`.
    """
    _install_hooks(accelerator)
    folder = check(Path(folder))
    try:
        accelerator.load_state(str(folder), load_kwargs={"weights_only": True}, strict=False)
    except (pickle.UnpicklingError, RuntimeError, ValueError, OSError, EOFError, KeyError, TypeError,
            SafetensorError, zipfile.BadZipFile) as exc:
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise _broken(folder, f"{type(exc).__name__}: {cause}") from exc
    return FitState.from_counters(read_state(folder))


def latest(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``<output_dir>/checkpoints``."""
    folder = Path(output_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)
