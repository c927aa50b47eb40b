"""The one training core: every skewtune trainer optimises through :func:`train_module`.

Given a module, its data (a ``DataLoader`` over a :class:`~skewtune.data.LengthGroupedBatchSampler`), a loss
and an :class:`Optimization`, the engine owns the rest: AdamW over the trainable parameters, the warmup schedule
(``transformers.get_scheduler``), the step accounting (:func:`plan_steps`), ``accelerator.prepare``, gradient
accumulation, clipping, the non-finite-loss policy, checkpoints and resume (:class:`Checkpointing`), stopping at
a step boundary on SIGINT/SIGTERM, the progress bar and the hooks (``on_step_end``, ``on_epoch_end``).

Device-agnostic: one CPU, CPU DDP over gloo, one or many GPUs — whatever ``accelerate launch`` configured.

Step accounting (one definition for every trainer). With ``B`` batches in an epoch, ``P`` processes and
``A`` accumulation steps, each process iterates ``⌈B / P⌉`` batches per epoch (Accelerate's even sharding) and
takes ``U = ⌈⌈B / P⌉ / A⌉`` optimizer steps per epoch. The run takes ``T = max_steps`` or ``⌊U · epochs⌋``
optimizer steps per process, over ``⌈T / U⌉`` epochs. Accelerate steps a prepared scheduler once per process
for each optimizer step, so the schedule is built for ``T · P`` steps with ``⌊warmup_ratio · T · P⌋`` warmup.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_scheduler

from skewtune.data.batching import LengthGroupedBatchSampler
from skewtune.errors import ConfigError, SkewtuneError, TrainingError, TrainingInterrupted
from skewtune.inference.logits import logits_of
from skewtune.training import checkpoint as ckpt
from skewtune.training.state import FitState

if TYPE_CHECKING:
    from torch.utils.data import Dataset

logger = logging.getLogger("skewtune")

SCHEDULES = ("linear", "cosine", "constant")  # all with linear warmup
NAN_POLICIES = ("stop", "skip")


@dataclass
class Optimization:
    """What the optimizer and its schedule do (AdamW, linear warmup then ``lr_scheduler_type``)."""

    learning_rate: float
    num_epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps of one process; overrides num_epochs
    weight_decay: float = 0.0
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0  # 0 disables clipping
    on_nan: str = "stop"  # stop: raise TrainingError; skip: drop the batch and count it

    @classmethod
    def from_config(cls, cfg: Any, learning_rate: float | None = None) -> Optimization:
        """The optimisation fields of a :class:`~skewtune.training.config.TrainConfig` (or a subclass)."""
        return cls(learning_rate=cfg.learning_rate_value() if learning_rate is None else learning_rate,
                   num_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps, weight_decay=cfg.weight_decay,
                   lr_scheduler_type=cfg.lr_scheduler_type, warmup_ratio=cfg.warmup_ratio,
                   max_grad_norm=cfg.max_grad_norm, on_nan=cfg.on_nan)

    def __post_init__(self) -> None:
        if self.lr_scheduler_type not in SCHEDULES:
            raise ConfigError(f"unknown lr_scheduler_type '{self.lr_scheduler_type}'", f"use one of: {', '.join(SCHEDULES)}")
        if self.on_nan not in NAN_POLICIES:
            raise ConfigError(f"unknown on_nan '{self.on_nan}'", f"use one of: {', '.join(NAN_POLICIES)}")


@dataclass(frozen=True)
class StepPlan:
    """The step accounting of one run (see the module docstring for the formulas)."""

    processes: int
    accumulation: int
    batches_per_epoch: int  # one process's share of an epoch's batches
    updates_per_epoch: int  # optimizer steps of one process per epoch
    total_updates: int  # optimizer steps of one process over the run
    epochs: int  # epochs the loop enters
    scheduler_steps: int  # total_updates × processes
    warmup_steps: int


def plan_steps(num_batches: int, processes: int, accumulation: int, opt: Optimization) -> StepPlan:
    """Step accounting for ``num_batches`` batches per epoch over all processes."""
    processes, accumulation = max(1, processes), max(1, accumulation)
    local = math.ceil(num_batches / processes)
    per_epoch = max(1, math.ceil(local / accumulation))
    total = opt.max_steps or max(1, int(per_epoch * opt.num_epochs))
    scheduler_steps = total * processes
    return StepPlan(processes=processes, accumulation=accumulation, batches_per_epoch=local,
                    updates_per_epoch=per_epoch, total_updates=total, epochs=max(1, math.ceil(total / per_epoch)),
                    scheduler_steps=scheduler_steps, warmup_steps=int(opt.warmup_ratio * scheduler_steps))


@dataclass
class Checkpointing:
    """Where and how often the engine saves resumable checkpoints (``<output_dir>/checkpoints/step-N``)."""

    output_dir: Path
    fingerprint: str  # settings that must match for a checkpoint to be resumed
    every_steps: int = 0  # 0: at epoch ends only
    keep: int = 2
    resume_from: Path | None = None


@dataclass
class TrainResult:
    model: Any  # the prepared module (``accelerator.unwrap_model`` gives the plain one)
    state: FitState  # ``state.train_seconds``: loop time summed over every segment of a resumed run
    plan: StepPlan
    seconds: float  # loop time of this call


@dataclass(frozen=True)
class ThreadChoice:
    """How many torch threads a process takes, and why (one line for the run log)."""

    threads: int
    reason: str

    def log_line(self) -> str:
        plural = "s" if self.threads != 1 else ""
        return f"threads: {self.threads} torch thread{plural} per process ({self.reason}; set --num_threads to override)"


def choose_threads(affinity: int, quota: float | None = None, busy: float = 0.0, processes: int = 1) -> ThreadChoice:
    """The thread count for one of ``processes`` local processes: the CPUs this process may use (``affinity``,
    capped by a cgroup CPU ``quota`` in CPUs) less those other jobs keep ``busy``, shared out, at least 1.

    OpenMP threads wait for each other at every operation: one thread more than the free cores makes every step
    wait for a descheduled thread (on a loaded 2-core machine 2 threads ran 3× slower than 1).
    """
    processes = max(1, int(processes))
    usable = max(1, int(affinity))
    why = [f"{usable} CPU{'s' if usable != 1 else ''} in the affinity mask"]
    if quota is not None and quota > 0 and int(quota) < usable:
        usable = max(1, int(quota))
        why.append(f"cgroup quota {quota:g} CPUs")
    busy = max(0.0, float(busy))
    free = max(1, min(usable, int(usable - busy + 0.5)))
    if busy >= 0.5:
        why.append(f"{busy:.1f} busy with other jobs")
    threads = max(1, free // processes)
    if processes > 1:
        why.append(f"{processes} local processes")
    return ThreadChoice(threads, "auto: " + ", ".join(why))


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this cgroup in CPUs (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cfs_period_us``); None: no limit."""
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        if fields:
            return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def busy_cpus(cpus: set[int] | None = None, interval: float = 0.1) -> float:
    """CPUs kept busy by other jobs: the non-idle share of ``cpus`` over ``interval`` seconds (``/proc/stat``,
    this process sleeping meanwhile); the 1-minute load average where ``/proc/stat`` cannot be read."""
    def sample() -> dict[str, tuple[int, int]]:
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                ticks = [int(v) for v in values[:8]]
                out[name] = (sum(ticks), ticks[3] + ticks[4])  # total, idle + iowait
        return out

    try:
        before = sample()
        time.sleep(interval)
        after = sample()
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:
            return 0.0
    names = [f"cpu{i}" for i in sorted(cpus)] if cpus else list(after)
    busy = 0.0
    for name in names:
        if name in before and name in after:
            total = after[name][0] - before[name][0]
            idle = after[name][1] - before[name][1]
            busy += (total - idle) / total if total > 0 else 0.0
    return busy


def _local_processes(accelerator: Accelerator) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes if accelerator.num_processes > 1 else 1))


def configure_threads(accelerator: Accelerator, num_threads: int | str | None = None, *,
                      log: bool = True) -> ThreadChoice | None:
    """On CPU give each process its share of the CPUs that are free; logs the choice (main process, ``log``).

    Precedence: ``num_threads`` (``--num_threads N``) › ``SKEWTUNE_NUM_THREADS`` › a user's own
    ``OMP_NUM_THREADS`` (outside ``accelerate launch``, which exports 1 unless ``--num_cpu_threads_per_process``
    is given) › :func:`choose_threads` from the affinity mask, the cgroup quota, the busy CPUs and the local
    processes.
    """
    if accelerator.device.type != "cpu":
        return None
    explicit = None if num_threads in (None, "auto") else num_threads
    if explicit is not None:
        choice = ThreadChoice(max(1, int(explicit)), f"--num_threads {explicit}")
    elif os.environ.get("SKEWTUNE_NUM_THREADS"):
        value = os.environ["SKEWTUNE_NUM_THREADS"]
        choice = ThreadChoice(max(1, int(value)), f"SKEWTUNE_NUM_THREADS={value}")
    elif os.environ.get("OMP_NUM_THREADS") and not any(key.startswith("ACCELERATE_") for key in os.environ):
        choice = ThreadChoice(torch.get_num_threads(), f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    else:
        affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        local = _local_processes(accelerator)
        # the other local ranks are this run's own: they are not "other jobs"
        busy = max(0.0, busy_cpus(affinity) - (local - 1))
        choice = choose_threads(len(affinity), cgroup_cpu_quota(), busy, local)
    torch.set_num_threads(choice.threads)
    if log and accelerator.is_main_process:
        logger.info("%s", choice.log_line())
    return choice


def resolve_mixed_precision(requested: str) -> str:
    """``auto``: bf16 on GPUs that support it, fp16 on other GPUs, no mixed precision on CPU."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def build_accelerator(gradient_accumulation_steps: int = 1, mixed_precision: str = "auto",
                      num_threads: int | str | None = None, ddp_timeout: float | None = None,
                      log_with: list[str] | None = None, project_dir: str | Path | None = None) -> Accelerator:
    """The run's Accelerator, with CPU DDP where ``accelerate launch``/torchrun started several CPU processes
    (on one machine or many). ``ddp_timeout``: seconds a collective (all-reduce, barrier) waits for the other
    processes before it fails (None: torch's default, 30 minutes); a failed collective becomes
    :func:`distributed_failure`'s one-line error. ``log_with`` / ``project_dir``: Accelerate trackers and the
    folder their files go to (:mod:`skewtune.training.tracking`)."""
    if ddp_timeout is not None and not ddp_timeout > 0:
        raise ConfigError(f"--ddp_timeout must be > 0 seconds, got {ddp_timeout}", "pass e.g. --ddp_timeout 600")
    # `accelerate launch --multi_gpu` (torchrun) on a machine without GPUs: accelerate only forms a gloo
    # process group (MULTI_CPU) when asked for the CPU, otherwise every worker silently trains alone.
    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    handlers: list[Any] = [DistributedDataParallelKwargs(find_unused_parameters=False)]
    if ddp_timeout is not None:
        handlers.append(InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=float(ddp_timeout))))
    accelerator = Accelerator(
        cpu=cpu_ddp,
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(mixed_precision),
        kwargs_handlers=handlers,
        log_with=log_with or None,
        project_dir=str(project_dir) if project_dir is not None else None,
    )
    # logged when training starts (pipeline.train), so that an error before it stays the run's only line
    accelerator.thread_choice = configure_threads(accelerator, num_threads, log=False)
    return accelerator


# what torch.distributed's backends say when a peer process is gone or silent (gloo, NCCL, the TCP store)
_PEER_LOST = re.compile(r"connection (closed|reset|refused)|broken pipe|timed out|timeout|peer|socket|"
                        r"nccl|gloo|unhandled system error|remote process exited|store", re.IGNORECASE)
_PEER_ADDRESS = re.compile(r"\[([0-9a-fA-F.:]*[0-9a-fA-F])\]:(\d{1,5})\b")  # gloo: [127.0.0.1]:15520


def distributed_failure(exc: BaseException) -> TrainingError | None:
    """The one-line :class:`TrainingError` for a collective that failed because another process of a
    multi-process run is gone (killed, crashed, its machine lost) or silent past ``--ddp_timeout``; None when
    ``exc`` is something else (or no process group is running).

    Names this process (rank, host) and the lost peer: the other rank of a two-process run, and the address the
    backend reports where it reports one.
    """
    if not isinstance(exc, RuntimeError):  # DistBackendError, DistNetworkError, DistStoreError are RuntimeErrors
        return None
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    text = " ".join(str(exc).split())
    if not (isinstance(exc, dist.DistError) or _PEER_LOST.search(text)):
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    peer = f"rank {1 - rank}" if world == 2 else f"one of the other {world - 1} processes"
    address = _PEER_ADDRESS.search(text)
    if address:
        peer += f" at {address.group(1)}:{address.group(2)}"
    timed_out = re.search(r"timed out|timeout", text, re.IGNORECASE) is not None
    how = "did not answer within --ddp_timeout" if timed_out else "stopped"
    # the backend's own words without its source location ("[…/gloo/…/pair.cc:537] Read error …")
    cause = re.sub(r"^\[[^\]]*\.(cc|cpp|h|hpp):\d+\]\s*", "", text).split(". ")[0][:200] or type(exc).__name__
    slow = "; if it is only slow (a long step, evaluation or save on one machine), raise --ddp_timeout" if timed_out else ""
    return TrainingError(
        f"lost {peer}: it {how} during a collective of this {world}-process run (this is rank {rank} on "
        f"{socket.gethostname()}; {type(exc).__name__}: {cause})",
        "see that process's log (killed, out of memory, machine or network lost), then start the same command "
        f"on every machine again: it resumes from the last checkpoint in --output_dir{slow}")


def batch_loader(dataset: Dataset, lengths: list[int], batch_size: int, collate: Callable[[list[Any]], Any], *,
                 seed: int, max_tokens: int | None = None, indices: list[int] | None = None,
                 resample: Callable[[int], list[int] | None] | None = None, private_rng: bool = True) -> DataLoader:
    """Length-grouped, shuffled batches over ``dataset`` (``indices``: the rows of epoch 0; ``resample(epoch)``:
    the rows of a later epoch), with dynamic padding by ``collate``. ``private_rng=False``: the loader's
    iterators draw their base seed from the global torch RNG, as a plain ``DataLoader`` does."""
    sampler = LengthGroupedBatchSampler(lengths, batch_size, max_tokens=max_tokens, seed=seed, indices=indices)
    if resample is not None:
        sampler.resample = resample
    # a private generator: creating a DataLoader iterator otherwise draws from the global torch RNG, which would
    # shift dropout masks after a resume (the resumed run creates one more iterator)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0,
                      generator=torch.Generator().manual_seed(seed) if private_rng else None)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train_module(
    model: torch.nn.Module,
    loader: DataLoader,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    opt: Optimization,
    accelerator: Accelerator,
    *,
    params: list[torch.nn.Parameter] | None = None,
    checkpoints: Checkpointing | None = None,
    on_step_end: Callable[[FitState], None] | None = None,
    on_epoch_end: Callable[[FitState], None] | None = None,
    progress: bool = False,
    release_model: bool = False,
) -> TrainResult:
    """Optimise ``params`` (default: the trainable parameters of ``model``) on ``loader`` with ``loss_fn``.

    ``model`` is prepared by ``accelerator`` unless it already was (a second phase on the same module). The
    optimizer, scheduler and loader are released from the accelerator afterwards (``release_model``: the model
    too), so many runs in one process hold no stale references. With ``checkpoints`` a checkpoint is saved
    every ``every_steps`` steps and at each epoch end (after ``on_epoch_end``), ``resume_from`` is restored
    first, and SIGINT/SIGTERM stop at the next step boundary with a checkpoint (:class:`TrainingInterrupted`).
    """
    plan = plan_steps(len(loader), accelerator.num_processes, accelerator.gradient_accumulation_steps, opt)
    optimizer = torch.optim.AdamW(params if params is not None else trainable_parameters(model),
                                  lr=opt.learning_rate, weight_decay=opt.weight_decay)
    scheduler = get_scheduler({"constant": "constant_with_warmup"}.get(opt.lr_scheduler_type, opt.lr_scheduler_type),
                              optimizer, num_warmup_steps=plan.warmup_steps, num_training_steps=plan.scheduler_steps)
    batch_sampler = loader.batch_sampler
    prepared = next((m for m in accelerator._models if m is model or accelerator.unwrap_model(m) is model), None)
    if prepared is not None:  # a later phase on a module the accelerator already holds
        optimizer, prepared_loader, scheduler = accelerator.prepare(optimizer, loader, scheduler)
    else:
        prepared, optimizer, prepared_loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    if hasattr(loss_fn, "to"):
        loss_fn = loss_fn.to(accelerator.device)
    state = FitState()
    if checkpoints is not None and checkpoints.resume_from is not None:
        state = ckpt.load(accelerator, checkpoints.resume_from)
        if accelerator.is_main_process:
            logger.info("resuming from %s (step %d)", checkpoints.resume_from, state.global_step)

    interrupt = _InterruptFlag()
    start, earlier_seconds = time.perf_counter(), state.train_seconds

    def clock(s: FitState) -> FitState:
        s.train_seconds = earlier_seconds + time.perf_counter() - start
        return s

    def step_end(s: FitState) -> None:
        interrupt.check()
        if checkpoints is not None and checkpoints.every_steps and s.global_step % checkpoints.every_steps == 0:
            _save(accelerator, checkpoints, clock(s))
        if on_step_end is not None:
            on_step_end(s)

    def epoch_end(s: FitState) -> None:
        if on_epoch_end is not None:
            on_epoch_end(s)
        if checkpoints is not None:
            _save(accelerator, checkpoints, clock(s))

    try:
        with _distributed_errors(), _graceful_interrupt(accelerator, checkpoints, lambda: clock(state), interrupt):
            state = _fit(model=prepared, optimizer=optimizer, scheduler=scheduler, loader=prepared_loader,
                         batch_sampler=batch_sampler, accelerator=accelerator, loss_fn=loss_fn, plan=plan,
                         max_grad_norm=opt.max_grad_norm, state=state, on_step_end=step_end,
                         on_epoch_end=epoch_end, on_nan=opt.on_nan, progress=progress)
    finally:
        _release(accelerator, optimizer, prepared_loader, scheduler, *([prepared] if release_model else []))
    clock(state)
    return TrainResult(model=prepared, state=state, plan=plan, seconds=time.perf_counter() - start)


@contextlib.contextmanager
def _distributed_errors() -> Iterator[None]:
    """A collective that failed because a peer process is lost becomes :func:`distributed_failure`'s error
    (also when a checkpoint save wrapped it as an :class:`OutputError`)."""
    try:
        yield
    except (RuntimeError, SkewtuneError) as exc:
        cause = exc if isinstance(exc, RuntimeError) else exc.__cause__
        error = distributed_failure(cause) if cause is not None else None
        if error is None:
            raise
        raise error from exc


def _save(accelerator: Accelerator, checkpoints: Checkpointing, state: FitState) -> Path:
    return ckpt.save(accelerator, checkpoints.output_dir, state, fingerprint=checkpoints.fingerprint,
                     keep=checkpoints.keep)


def _release(accelerator: Accelerator, *objects: Any) -> None:
    """Drop the references Accelerate keeps after ``prepare``."""
    for attr in ("_optimizers", "_dataloaders", "_schedulers", "_models"):
        items = getattr(accelerator, attr, None)
        if isinstance(items, list):
            items[:] = [o for o in items if all(o is not x for x in objects)]


def _fit(*, model: Any, optimizer: Any, scheduler: Any, loader: Any, batch_sampler: Any, accelerator: Accelerator,
         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], plan: StepPlan, max_grad_norm: float,
         state: FitState, on_step_end: Callable[[FitState], None], on_epoch_end: Callable[[FitState], None],
         on_nan: str, progress: bool) -> FitState:
    """The loop: ``plan.total_updates`` optimizer steps over ``plan.epochs`` epochs, continuing from ``state``."""
    total = plan.total_updates
    bar = tqdm(total=total, initial=state.global_step, desc="train", unit="step",
               disable=not (progress and accelerator.is_local_main_process), mininterval=1.0)
    try:
        model.train()
        for epoch in range(state.epoch, plan.epochs):
            state.epoch = epoch
            # Accelerate's DataLoaderShard re-seeds its batch sampler with its own iteration count on __iter__;
            # pin it to the epoch so a resumed run (fresh loader, count 0) draws the same batches.
            for target in (batch_sampler, loader):
                if hasattr(target, "set_epoch"):
                    target.set_epoch(epoch)
            epoch_loader = loader
            skip_batches = state.batches_in_epoch or state.step_in_epoch * accelerator.gradient_accumulation_steps
            if skip_batches:
                epoch_loader = accelerator.skip_first_batches(loader, skip_batches)
                if hasattr(epoch_loader, "set_epoch"):
                    epoch_loader.set_epoch(epoch)
            else:
                state.loss_sum, state.loss_count = 0.0, 0
            state.batches_in_epoch = skip_batches
            step_losses: list[float] = []
            for batch in epoch_loader:
                state.batches_in_epoch += 1
                if hasattr(loss_fn, "set_progress"):  # LDAM's deferred re-weighting
                    loss_fn.set_progress(state.global_step / total)
                with accelerator.accumulate(model):
                    loss = loss_fn(logits_of(model, batch), batch["labels"])
                    if not bool(torch.isfinite(loss.detach()).all()):
                        _non_finite(f"loss became {loss.item()}", on_nan, optimizer, state, epoch,
                                    "lower --learning_rate, check the data, or pass --on_nan skip")
                        continue
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and max_grad_norm:
                        norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                        if norm is not None and not torch.isfinite(torch.as_tensor(norm)):
                            _non_finite(f"gradient norm became {float(norm)}", on_nan, optimizer, state, epoch,
                                        "lower --learning_rate or pass --on_nan skip")
                            continue
                        state.last_grad_norm = float(norm) if norm is not None else None
                    if accelerator.sync_gradients:
                        state.last_learning_rate = float(optimizer.param_groups[0]["lr"])
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                value = float(loss.detach())
                state.loss_sum += value
                state.loss_count += 1
                step_losses.append(value)
                if accelerator.sync_gradients:
                    state.last_loss = sum(step_losses) / len(step_losses)
                    step_losses.clear()
                    state.global_step += 1
                    state.step_in_epoch += 1
                    bar.update(1)
                    if state.global_step % 20 == 0:
                        bar.set_postfix(loss=f"{state.loss_sum / max(state.loss_count, 1):.4f}", epoch=epoch + 1,
                                        refresh=False)
                    on_step_end(state)
                    if state.global_step >= total or state.should_stop:
                        break
            state.history.append({"epoch": epoch + 1, "train_loss": state.loss_sum / max(state.loss_count, 1),
                                  "step": state.global_step})
            state.batches_in_epoch, state.loss_sum, state.loss_count = 0, 0.0, 0
            state.step_in_epoch = 0
            state.epoch = epoch + 1
            on_epoch_end(state)
            if state.global_step >= total or state.should_stop:
                break
    finally:
        bar.close()  # before any error line, so the message is the last thing on the console
    return state


def _non_finite(what: str, on_nan: str, optimizer: Any, state: FitState, epoch: int, hint: str) -> None:
    """A non-finite loss or gradient norm. ``on_nan="skip"``: drop this batch's gradients, count it, say so once
    per batch (the caller moves on to the next batch); ``stop``: TrainingError naming the step."""
    if on_nan != "skip":
        raise TrainingError(f"{what} at step {state.global_step + 1} (epoch {epoch + 1})",
                            f"{hint}; the last good checkpoint is kept")
    optimizer.zero_grad(set_to_none=True)
    state.skipped_batches += 1
    logger.warning("%s at step %d; batch skipped (--on_nan skip)", what, state.global_step + 1)


class _StopRequested(Exception):
    """Raised at a step boundary after SIGINT/SIGTERM."""


class _InterruptFlag:
    """Set by the first SIGINT/SIGTERM; the loop stops at the next step boundary (a second signal stops now)."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def check(self) -> None:
        if self.signals:
            raise _StopRequested


@contextlib.contextmanager
def _graceful_interrupt(accelerator: Accelerator, checkpoints: Checkpointing | None,
                        current_state: Callable[[], FitState], flag: _InterruptFlag) -> Iterator[None]:
    """With checkpoints: on SIGINT/SIGTERM stop at the next step boundary, save, raise TrainingInterrupted.
    The previous handlers are put back on the way out."""
    if checkpoints is None:
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        flag.signals.append(signum)
        if len(flag.signals) > 1:
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not in the main thread
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
        flag.check()  # a signal during the last epoch's evaluation: stop here too, do not carry on
    except (_StopRequested, KeyboardInterrupt) as exc:
        state = current_state()
        path = _save(accelerator, checkpoints, state) if isinstance(exc, _StopRequested) and state.global_step else None
        kept = path or ckpt.latest(checkpoints.output_dir)
        if kept is None:
            raise TrainingInterrupted("no checkpoint was saved yet", "run the same command again to start afresh") from None
        raise TrainingInterrupted(f"saved checkpoint {path}" if path else f"the last complete checkpoint {kept} is kept",
                                  f"resume with the same command plus --resume_from_checkpoint latest "
                                  f"--output_dir {checkpoints.output_dir}") from None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = [
    "Checkpointing", "FitState", "Optimization", "StepPlan", "TrainResult", "batch_loader",
    "build_accelerator", "choose_threads", "configure_threads", "distributed_failure", "plan_steps", "resolve_mixed_precision", "train_module",
    "trainable_parameters",
]
