"""The Accelerate training loop: dynamic padding, length-grouped batches, accumulation, clipping, warmup.

Device-agnostic: one CPU, CPU DDP over gloo, one or many GPUs — whatever ``accelerate launch`` configured.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from skewtune.errors import TrainingError

logger = logging.getLogger("skewtune")

def configure_threads(accelerator: Any) -> None:
    """On CPU give each process its share of the cores.

    ``accelerate launch`` exports ``OMP_NUM_THREADS=1`` unless ``--num_cpu_threads_per_process`` is given, which
    halves training speed on a 2-core machine; skewtune replaces that default with cores ÷ local processes.
    A user's own ``OMP_NUM_THREADS`` (outside accelerate launch) or ``SKEWTUNE_NUM_THREADS`` is respected.
    """
    if accelerator.device.type != "cpu":
        return
    explicit = os.environ.get("SKEWTUNE_NUM_THREADS")
    if explicit:
        torch.set_num_threads(max(1, int(explicit)))
        return
    launched_by_accelerate = any(key.startswith("ACCELERATE_") for key in os.environ)
    if os.environ.get("OMP_NUM_THREADS") and not launched_by_accelerate:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes if accelerator.num_processes > 1 else 1))
    torch.set_num_threads(max(1, cores // max(1, local)))


def resolve_mixed_precision(requested: str) -> str:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, no mixed precision on CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


@dataclass
class FitState:
    """Counters that a checkpoint restores."""

    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    best_metric: float = -math.inf
    history: list[dict[str, Any]] = field(default_factory=list)
    # position and running loss inside the current epoch, so a resumed run skips exactly the batches already
    # consumed (including ones skipped under --on_nan skip) and reports the same epoch train_loss
    batches_in_epoch: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    skipped_batches: int = 0  # non-finite batches dropped under --on_nan skip (whole run)


def logits_of(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return model(**inputs).logits


@torch.inference_mode()
def predict_logits(model: Any, split: Any, collator: Any, batch_size: int, device: torch.device,
                   accelerator: Any | None = None, max_tokens: int | None = None,
                   progress: bool = False) -> torch.Tensor:
    """Logits for every example of ``split`` in input order.

    Batches are sorted by length (little padding) and, under several processes, each process scores every
    n-th batch and the results are gathered with ``gather_object`` (exact, no duplicated samples).
    """
    from skewtune.data.batching import LengthGroupedBatchSampler

    was_training = model.training
    model.eval()
    sampler = LengthGroupedBatchSampler(split.lengths, batch_size, shuffle=False, max_tokens=max_tokens)
    batches = list(sampler)
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    mine = batches[rank::world]
    outputs: list[tuple[list[int], torch.Tensor]] = []
    iterator = mine
    if progress and rank == 0:
        from tqdm.auto import tqdm

        iterator = tqdm(mine, desc="predict", unit="batch", leave=False)
    for indices in iterator:
        batch = collator([split[i] for i in indices])
        batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        outputs.append((indices, logits_of(model, batch).float().cpu()))
    if world > 1:
        from accelerate.utils import gather_object

        outputs = gather_object(outputs)
    if was_training:
        model.train()
    if not outputs:
        return torch.empty(0)
    first = outputs[0][1]
    result = torch.empty((len(split), *first.shape[1:]), dtype=first.dtype) if first.dim() == 2 else None
    if result is None:  # token classification: variable lengths → list of tensors padded to max
        longest = max(t.shape[1] for _, t in outputs)
        result = torch.full((len(split), longest, first.shape[-1]), float("nan"))
        for indices, logits in outputs:
            result[indices, : logits.shape[1]] = logits
        return result
    for indices, logits in outputs:
        result[indices] = logits
    return result


def check_finite(loss: torch.Tensor, step: int, what: str = "loss") -> bool:
    return bool(torch.isfinite(loss).all())


def fit(
    *,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    train_loader: Any,
    batch_sampler: Any,
    accelerator: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_epochs: int,
    max_steps: int | None,
    max_grad_norm: float,
    state: FitState,
    on_epoch_end: Callable[[FitState], None] | None = None,
    on_step_end: Callable[[FitState], None] | None = None,
    on_nan: str = "stop",
    progress: bool = True,
) -> FitState:
    """Train until ``num_epochs`` or ``max_steps`` optimizer steps; resumes from ``state`` counters."""
    from tqdm.auto import tqdm

    steps_per_epoch = math.ceil(len(train_loader) / accelerator.gradient_accumulation_steps)
    total = max_steps or steps_per_epoch * num_epochs
    bar = tqdm(total=total, initial=state.global_step, desc="train", unit="step",
               disable=not (progress and accelerator.is_local_main_process), mininterval=1.0)
    try:
        model.train()
        start_epoch = state.epoch
        for epoch in range(start_epoch, num_epochs):
            state.epoch = epoch
            # Accelerate's DataLoaderShard re-seeds its batch sampler with its own iteration count on __iter__;
            # pin it to the epoch so a resumed run (fresh loader, count 0) draws the same batches.
            for target in (batch_sampler, train_loader):
                if hasattr(target, "set_epoch"):
                    target.set_epoch(epoch)
            loader = train_loader
            skip_batches = state.batches_in_epoch or state.step_in_epoch * accelerator.gradient_accumulation_steps
            if skip_batches:
                loader = accelerator.skip_first_batches(train_loader, skip_batches)
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
            else:
                state.loss_sum, state.loss_count = 0.0, 0
            state.batches_in_epoch = skip_batches
            for batch in loader:
                state.batches_in_epoch += 1
                if hasattr(loss_fn, "set_progress"):  # LDAM's deferred re-weighting
                    loss_fn.set_progress(state.global_step / total)
                with accelerator.accumulate(model):
                    logits = logits_of(model, batch)
                    loss = loss_fn(logits, batch["labels"])
                    if not check_finite(loss.detach(), state.global_step):
                        if on_nan == "skip":
                            _skip_batch(optimizer, state, f"loss became {loss.item()}")
                            continue
                        raise TrainingError(
                            f"loss became {loss.item()} at step {state.global_step + 1} (epoch {epoch + 1})",
                            "lower --learning_rate, check the data, or pass --on_nan skip; the last good checkpoint is kept",
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        if max_grad_norm:
                            norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                            if norm is not None and not torch.isfinite(torch.as_tensor(norm)):
                                if on_nan == "skip":
                                    _skip_batch(optimizer, state, f"gradient norm became {float(norm)}")
                                    continue
                                raise TrainingError(
                                    f"gradient norm became {float(norm)} at step {state.global_step + 1} (epoch {epoch + 1})",
                                    "lower --learning_rate or pass --on_nan skip; the last good checkpoint is kept",
                                )
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                state.loss_sum += float(loss.detach())
                state.loss_count += 1
                if accelerator.sync_gradients:
                    state.global_step += 1
                    state.step_in_epoch += 1
                    bar.update(1)
                    if state.global_step % 20 == 0:
                        bar.set_postfix(loss=f"{state.loss_sum / max(state.loss_count, 1):.4f}", epoch=epoch + 1,
                                        refresh=False)
                    if on_step_end is not None:
                        on_step_end(state)
                    if max_steps and state.global_step >= max_steps:
                        break
            state.history.append({"epoch": epoch + 1, "train_loss": state.loss_sum / max(state.loss_count, 1),
                                  "step": state.global_step})
            state.batches_in_epoch, state.loss_sum, state.loss_count = 0, 0.0, 0
            state.step_in_epoch = 0
            state.epoch = epoch + 1
            if on_epoch_end is not None:
                on_epoch_end(state)
            if max_steps and state.global_step >= max_steps:
                break
    finally:
        bar.close()  # before any error line, so the message is the last thing on the console
    return state


def _skip_batch(optimizer: Any, state: FitState, what: str) -> None:
    """``--on_nan skip``: drop this batch's gradients, count it, say so once per batch."""
    optimizer.zero_grad(set_to_none=True)
    state.skipped_batches += 1
    logger.warning("%s at step %d; batch skipped (--on_nan skip)", what, state.global_step + 1)


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
