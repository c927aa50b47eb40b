"""Checkpoints through Accelerate's ``save_state``/``load_state``, written atomically, last K kept.

A checkpoint holds the trainable parameters only (adapter + head; a save-state pre-hook drops the frozen,
possibly quantized base), optimizer, scheduler, every process's RNG states, and ``skewtune_state.json``
(epoch, step, position in the epoch, history, config fingerprint). It is built in ``.step-N.tmp`` and renamed
to ``step-N`` only once complete, so a reader (or a resumed run after ``kill -9``) never sees a partial one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from skewtune.errors import OutputError
from skewtune.training.loop import FitState
from skewtune.utils.io import _os_error, atomic_write_json

logger = logging.getLogger("skewtune")
STATE_FILE = "skewtune_state.json"


def _install_hooks(accelerator: Any) -> None:
    if getattr(accelerator, "_skewtune_hooks", False):
        return

    def keep_trainable(models: list[Any], weights: list[dict[str, Any]], output_dir: str) -> None:
        for i, model in enumerate(models):
            weights[i] = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator._skewtune_hooks = True


def save(run: Any, state: FitState) -> Path:
    """Save a complete checkpoint ``<output_dir>/checkpoints/step-N`` (all processes must call)."""
    from skewtune.training.pipeline import CHECKPOINTS, config_fingerprint

    accelerator = run.accelerator
    _install_hooks(accelerator)
    root = run.output_dir / CHECKPOINTS
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
            atomic_write_json(tmp / STATE_FILE, {
                **_counters(state), "config_fingerprint": config_fingerprint(run.cfg),
                "num_processes": accelerator.num_processes,
            })
            tmp.rename(final)
            prune(root, run.cfg.keep_checkpoints)
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


def _counters(state: FitState) -> dict[str, Any]:
    return {
        "epoch": state.epoch, "global_step": state.global_step, "step_in_epoch": state.step_in_epoch,
        "history": state.history, "batches_in_epoch": state.batches_in_epoch, "loss_sum": state.loss_sum,
        "loss_count": state.loss_count, "skipped_batches": state.skipped_batches,
    }


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


def load(run: Any, folder: Path) -> FitState:
    """Restore adapter, optimizer, scheduler and RNG states; return the counters to continue from."""
    accelerator = run.accelerator
    _install_hooks(accelerator)
    accelerator.load_state(str(folder), strict=False)
    saved = json.loads((folder / STATE_FILE).read_text())
    return FitState(epoch=saved["epoch"], global_step=saved["global_step"], step_in_epoch=saved["step_in_epoch"],
                    history=saved.get("history", []), batches_in_epoch=saved.get("batches_in_epoch", 0),
                    loss_sum=saved.get("loss_sum", 0.0), loss_count=saved.get("loss_count", 0),
                    skipped_batches=saved.get("skipped_batches", 0))


class StopRequested(Exception):
    """Raised at a step boundary after SIGINT/SIGTERM."""


class InterruptFlag:
    """Set by the first SIGINT/SIGTERM; the loop stops at the next step boundary (a second signal stops now)."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def check(self) -> None:
        if self.signals:
            raise StopRequested


@contextlib.contextmanager
def graceful_interrupt(run: Any, current_state: Callable[[], FitState], flag: InterruptFlag) -> Iterator[InterruptFlag]:
    """On SIGINT/SIGTERM: stop at the next step boundary, save a checkpoint, exit 130 with a resume hint."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        flag.signals.append(signum)
        if len(flag.signals) > 1:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not in the main thread
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
        flag.check()  # a signal during the last epoch's evaluation: stop here too, do not carry on
    except (StopRequested, KeyboardInterrupt) as exc:
        state = current_state()
        path = None
        if isinstance(exc, StopRequested) and state.global_step > 0:
            path = save(run, state)
        where = f"checkpoint {path}" if path else "the last complete checkpoint"
        sys.stderr.write(
            f"interrupted: saved {where}; resume with the same command plus --resume_from_checkpoint latest "
            f"--output_dir {run.output_dir}\n"
        )
        raise SystemExit(130) from None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
