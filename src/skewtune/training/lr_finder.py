"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", §3.3).

``--learning_rate auto``: :func:`find_learning_rate` trains the adapter for ``N`` optimizer steps while the
learning rate grows exponentially, ``lr_i = lr_min · (lr_max / lr_min)^(i / (N − 1))`` (default 1e-6 → 1),
records the loss, then puts every trainable weight, the RNG states and the model's train/eval mode back exactly
as they were (the run then trains as if started with ``--learning_rate <chosen>``).

* ``N = min(200, optimizer steps of the run)``: the test never costs more than the training (loops over the
  loader when it is short); fewer than 8 steps → TrainingError (too little data to read a curve).
* Same optimizer (AdamW, ``weight_decay``), loss (``--loss``), gradient accumulation, clipping and mixed precision
  as the run, on the not-yet-prepared model (``pipeline.train`` calls this before the engine prepares it); the
  optimizer is thrown away afterwards.
* Smoothing: bias-corrected exponential moving average ``a_i = β·a_{i−1} + (1 − β)·loss_i``,
  ``s_i = a_i / (1 − β^(i+1))`` with a window ``w = max(2, N // 20)`` steps, ``β = 1 − 1/w``.
* Divergence: stop when ``s_i > 4 · min_{j≤i} s_j`` or the loss is not finite.
* Choice (documented rule): on the smoothed curve up to its minimum (the descent before divergence), skipping the
  first ``w`` points (EMA warm-up) and the minimum itself (one-sided difference, at the edge of divergence), take
  the learning rate where ``ds/d log10(lr)`` (central differences) is most negative — the steepest descent —
  but at most ``lr_at_min / 10`` (the "minimum / 10" rule of fastai's ``lr_find``). That cap matters on a curve
  that stays flat and falls only at its cliff edge, right before divergence: its steepest point sits next to the
  minimum, where training diverges.
  When there is no descent (the slope is never negative, or the minimum comes within the first ``w`` points),
  or the steepest point lies above the cap, take ``lr_at_min / 10``.

Under several processes every process runs the same test on the same batches (the loader is not sharded yet);
the main process's value is broadcast and only it writes ``lr_finder.png``.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch.utils.data import DataLoader

from skewtune.errors import TrainingError
from skewtune.inference.logits import logits_of
from skewtune.training.engine import Optimization, plan_steps, trainable_parameters
from skewtune.utils.io import atomic_write_bytes

LR_MIN = 1e-6
LR_MAX = 1.0
MAX_STEPS = 200
MIN_STEPS = 8
DIVERGENCE = 4.0
PLOT_NAME = "lr_finder.png"


def exponential_ramp(lr_min: float, lr_max: float, steps: int) -> list[float]:
    """``lr_i = lr_min · (lr_max / lr_min)^(i / (steps − 1))``, ``i = 0 … steps − 1``."""
    if steps < 2:
        return [lr_min]
    ratio = lr_max / lr_min
    return [lr_min * ratio ** (i / (steps - 1)) for i in range(steps)]


def smooth(losses: list[float], window: int) -> list[float]:
    """Bias-corrected EMA with ``β = 1 − 1/window`` (see module docstring)."""
    beta = 1.0 - 1.0 / max(window, 1)
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


def choose_learning_rate(lrs: list[float], smoothed: list[float], skip: int) -> tuple[float, str]:
    """The steepest-descent rule of the module docstring, capped at ``lr_at_min / 10``; returns (lr, which rule
    applied)."""
    if not smoothed:
        raise TrainingError("the learning-rate range test recorded no loss", "pass a number to --learning_rate")
    best = int(np.argmin(smoothed))
    if best - skip >= 2:
        log_lr = np.log10(np.asarray(lrs[: best + 1]))
        slope = np.gradient(np.asarray(smoothed[: best + 1]), log_lr)
        index = skip + int(np.argmin(slope[skip:best]))  # central differences, the minimum itself excluded
        if slope[index] < 0 and lrs[index] <= lrs[best] / 10.0:
            return float(lrs[index]), "steepest_descent"
    return float(lrs[best]) / 10.0, "min_loss_div_10"


def _snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _restore(model: Any, saved: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in saved:
                p.copy_(saved[name])
            p.grad = None


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _place(model: Any, device: torch.device) -> None:
    """Move a non-quantized model to ``device`` (Accelerate would do the same in ``prepare``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(base, "hf_quantizer", None) is not None or getattr(base, "is_quantized", False):
        return  # bitsandbytes models are placed at load time (device_map)
    first = next(model.parameters(), None)
    if first is not None and first.device != device:
        model.to(device)


def _batches(loader: Any, per_step: int, steps: int):
    """``steps`` groups of ``per_step`` batches, cycling over ``loader`` (epoch-0 order) when it is short."""
    stream = itertools.chain.from_iterable(itertools.repeat(loader))
    for _ in range(steps):
        yield list(itertools.islice(stream, per_step))


def find_learning_rate(model: torch.nn.Module, loader: DataLoader, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       accelerator: Accelerator, opt: Optimization, *, plot_path: Path | None = None,
                       lr_min: float = LR_MIN, lr_max: float = LR_MAX, max_steps: int = MAX_STEPS) -> tuple[float, dict[str, Any]]:
    """Run the range test on ``model`` over ``loader``; return the chosen rate and the record (curve and rule).

    ``opt`` gives the run's weight decay, clipping and step count (:func:`~skewtune.training.engine.plan_steps`
    on the unsharded loader). Writes the plot to ``plot_path`` (main process). Trainable weights, RNG states and
    the train/eval mode of the model are restored exactly.
    """
    accum = max(1, accelerator.gradient_accumulation_steps)
    run_steps = plan_steps(len(loader), 1, accum, opt).total_updates
    steps = min(max_steps, run_steps)
    if steps < MIN_STEPS:
        raise TrainingError(
            f"--learning_rate auto needs at least {MIN_STEPS} optimizer steps for a range test, this run has {steps}",
            "pass a number to --learning_rate, or train on more data / more epochs",
        )
    device = accelerator.device
    _place(model, device)
    was_training = model.training
    saved, rng = _snapshot(model), _rng_state()
    generator = getattr(loader, "generator", None)
    generator_state = generator.get_state() if generator is not None else None
    lrs = exponential_ramp(lr_min, lr_max, steps)
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=lrs[0], weight_decay=opt.weight_decay)
    if hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(device)
    scaler = torch.amp.GradScaler(device.type) if accelerator.mixed_precision == "fp16" else None
    window = max(2, steps // 20)
    losses: list[float] = []
    smoothed: list[float] = []
    stopped = "completed"
    model.train()
    try:
        for lr, group in zip(lrs, _batches(loader, accum, steps), strict=False):
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            total = 0.0
            for batch in group:
                batch = {k: v.to(device) for k, v in batch.items()}
                with accelerator.autocast():
                    loss = loss_fn(logits_of(model, batch), batch["labels"]) / len(group)
                (scaler.scale(loss) if scaler else loss).backward()
                total += float(loss.detach())
            if not math.isfinite(total):
                stopped = "non_finite_loss"
                break
            if opt.max_grad_norm:
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, opt.max_grad_norm)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(total)
            smoothed = smooth(losses, window)
            if smoothed[-1] > DIVERGENCE * min(smoothed):
                stopped = "diverged"
                break
    finally:
        del optimizer
        _restore(model, saved)
        _set_rng_state(rng)
        if generator is not None:
            generator.set_state(generator_state)
        model.train(was_training)
    chosen, rule = choose_learning_rate(lrs[: len(smoothed)], smoothed, skip=window)
    chosen = _broadcast(accelerator, chosen)
    best = min(range(len(smoothed)), key=smoothed.__getitem__)
    record = {
        "learning_rate": chosen, "rule": rule, "steps": len(losses), "planned_steps": steps, "stopped": stopped,
        "lr_min": lr_min, "lr_max": lr_max, "smoothing_window": window, "divergence_factor": DIVERGENCE,
        "lr_at_min_loss": lrs[best], "learning_rates": lrs[: len(losses)], "losses": losses, "smoothed": smoothed,
    }
    if plot_path is not None and accelerator.is_main_process:
        write_plot(record, plot_path)
    return chosen, record


def _broadcast(accelerator: Accelerator, value: float) -> float:
    if accelerator.num_processes <= 1:
        return value
    return float(broadcast_object_list([value])[0])


def write_plot(record: dict[str, Any], path: Any) -> None:
    """Loss vs learning rate (log x), raw and smoothed, the choice marked; written atomically as PNG."""
    import matplotlib  # lazy: plotting is optional work, and pyplot is slow to import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        lrs = record["learning_rates"]
        ax.plot(lrs, record["losses"], color="0.7", linewidth=1, label="loss")
        ax.plot(lrs, record["smoothed"], color="C0", linewidth=2, label="smoothed")
        ax.axvline(record["learning_rate"], color="C3", linestyle="--",
                   label=f"chosen {record['learning_rate']:.2e} ({record['rule'].replace('_', ' ')})")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        low, high = min(record["smoothed"]), max(record["smoothed"][:1] + [min(record["smoothed"]) * DIVERGENCE])
        ax.set_ylim(low - 0.1 * abs(low), high)
        ax.set_title(f"LR range test ({record['steps']} steps, {record['stopped'].replace('_', ' ')})")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
