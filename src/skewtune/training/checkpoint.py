"""Checkpoints through Accelerate's ``save_state``/``load_state``, written atomically, last K kept.

A checkpoint holds the trainable parameters only (adapter + head; a save-state pre-hook drops the frozen,
possibly quantized base), optimizer, scheduler, every process's RNG states, and ``skewtune_state.json``
(epoch, step, position in the epoch, history, config fingerprint). It is built in ``.step-N.tmp`` and renamed
to ``step-N`` only once complete, so a reader (or a resumed run after ``kill -9``) never sees a partial one.
"""

from __future__ import annotations

import json
import logging
import shutil
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
            raise _os_error(exc, tmp) from exc
        cause = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise OutputError(f"could not write checkpoint {final}: {cause}",
                          "free disk space or choose another --output_dir; the last complete checkpoint is kept") from exc
    accelerator.wait_for_everyone()
    return final


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


def load(accelerator: Accelerator, folder: Path) -> FitState:
    """Restore adapter, optimizer, scheduler and RNG states; return the counters to continue from."""
    _install_hooks(accelerator)
    accelerator.load_state(str(folder), strict=False)
    return FitState.from_counters(json.loads((Path(folder) / STATE_FILE).read_text()))


def latest(output_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``<output_dir>/checkpoints``."""
    folder = Path(output_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / STATE_FILE).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)
