"""The steps of a training run, composed by recipes and by ``skewtune train`` / ``train-tokens``.

``prepare`` validates everything (output folder, data, backbone) before writing anything, then loads;
``train`` optimises through the engine (:func:`skewtune.training.engine.train_module`) with checkpoints;
``evaluate_split`` scores a split; ``finish_metrics`` adds test scores and baselines; ``save_outputs`` writes
the adapter folder, metrics.json and the confusion matrix, each atomically. What differs between tasks
(data, tokenization, loss, scores) is the :class:`~skewtune.tasks.Task` object's.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import resource
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from accelerate.utils import set_seed
from rich.console import Console
from rich.table import Table
from safetensors import SafetensorError
from torch.utils.data import DataLoader

from skewtune.adapters import AdapterSettings, build_adapter
from skewtune.adapters.io import render_card, write_manifest
from skewtune.adapters.layers import parse_layers
from skewtune.backbones import (
    base_fingerprint,
    count_parameters,
    load_backbone,
    load_tokenizer,
    resolve_backbone,
)
from skewtune.backbones.modes import resolve_quantize_embeddings
from skewtune.backbones.quant import prepare_for_kbit_training
from skewtune.backbones.registry import (  # noqa: F401  (ABSOLUTE_POSITIONS: re-exported)
    ABSOLUTE_POSITIONS,
    check_max_length,
    head_module_names,
    set_backbone_dropout,
)
from skewtune.data import PaddingCollator
from skewtune.data.streaming import StreamingBatches, StreamingTrain, expected_counts, oversampling_rates
from skewtune.errors import ConfigError, OutputError
from skewtune.evaluation.baselines import majority_macro_f1, pair_view, tfidf_baseline
from skewtune.evaluation.plots import plot_confusion_matrix
from skewtune.evaluation.report import write_report
from skewtune.imbalance import (
    AUGMENTERS,
    LOSSES,
    POST_HOC,
    SAMPLERS,
    augment_minority,
    build_sampler,
    fit_post_hoc,
)
from skewtune.imbalance import build_loss as build_imbalance_loss
from skewtune.imbalance.multilabel import ml_ros
from skewtune.inference.logits import predict_logits
from skewtune.tasks import Task, sequence_task
from skewtune.training import checkpoint as ckpt
from skewtune.training.config import TrainConfig
from skewtune.training.engine import (
    Checkpointing,
    Optimization,
    batch_loader,
    build_accelerator,
    train_module,
)
from skewtune.training.lr_finder import PLOT_NAME as LR_PLOT_NAME
from skewtune.training.lr_finder import find_learning_rate
from skewtune.training.memory import memory_warning
from skewtune.training.presets import get_preset, official_metrics
from skewtune.training.state import FitState
from skewtune.training.tracking import (
    TRACKING_DIR,
    TRACKING_PROJECT,
    RunLog,
    resolve_trackers,
    tracker_config,
)
from skewtune.utils.io import (
    _os_error,
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_no_overlap,
    check_writable_dir,
    is_leftover,
    remove_stale_leftovers,
)
from skewtune.utils.locks import OutputLock, is_lock_file

if TYPE_CHECKING:
    from accelerate import Accelerator
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from skewtune.backbones.registry import BackboneSpec

logger = logging.getLogger("skewtune")


@dataclass
class Run:
    """Everything one run holds; recipes read and extend it."""

    cfg: TrainConfig
    recipe: str
    task: Task
    output_dir: Path
    accelerator: Accelerator
    splits: Any  # Splits (sequence) or TokenSplits (token) — the task's
    spec: BackboneSpec
    tokenizer: PreTrainedTokenizerBase
    model: PeftModel
    tokenized: dict[str, Any]
    collator: PaddingCollator
    resume_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    state: FitState = field(default_factory=FitState)
    loss_fn: Any = None
    decision: dict[str, Any] | None = None
    row_indices: list[int] | None = None  # one row-resampler draw serves every epoch (and the loss's priors)
    log: RunLog | None = None  # scalars, evaluations, best model (skewtune.training.tracking), set by train()
    test_logits: Any = None  # decided test logits (sequence tasks), for report.html
    lock: OutputLock | None = None  # the output folder's writer lock (main process; see take_output_lock)

    def close(self) -> None:
        """Release the output folder's lock (idempotent); ``with prepare(...) as run:`` does it on the way out."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def config_fingerprint(cfg: TrainConfig) -> str:
    """Hash of the settings that must match for a checkpoint to be resumed."""
    keep = {k: v for k, v in cfg.to_dict().items() if k not in (
        "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "report_plots", "baselines",
        "checkpoint_every_steps", "keep_checkpoints", "on_nan", "eval_every_epoch", "num_threads", "ddp_timeout",
        "report_to", "logging_steps", "eval_steps", "metric_for_best_model", "load_best_model_at_end",
        "early_stopping_patience",
        "gradient_checkpointing")}  # checkpointing changes memory, not results: a resume may switch it
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _has_content(output_dir: Path) -> bool:
    """Anything besides the hidden temporary leftovers of a killed run (``checkpoints/.step-N.tmp``, …)?"""
    def leftover(p: Path) -> bool:
        return is_leftover(p.name) or is_lock_file(p)

    for entry in output_dir.iterdir():
        if leftover(entry):
            continue
        if entry.name == ckpt.CHECKPOINTS and entry.is_dir() and all(leftover(p) for p in entry.iterdir()):
            continue
        if entry.name == TRACKING_DIR and entry.is_dir():  # a run's tracker files alone are no result to protect
            continue
        return True
    return False


def check_output_dir(cfg: TrainConfig, output_dir: Path) -> Path | None:
    """Refuse a non-empty output folder unless overwriting or resuming, or one that overlaps what the run reads
    (:func:`check_output_reads`); returns the checkpoint to resume."""
    check_writable_dir(output_dir)
    check_output_reads(cfg, output_dir)
    if (output_dir / "metrics.json").is_file() and (output_dir / "adapter").is_dir() and not cfg.overwrite_output_dir:
        raise OutputError(f"the run in {output_dir} is already complete (adapter/ and metrics.json are there)",
                          "pass --overwrite_output_dir to train it again, or choose another --output_dir")
    if cfg.resume_from_checkpoint and cfg.resume_from_checkpoint != "latest":
        path = Path(cfg.resume_from_checkpoint)
        if not (path / ckpt.STATE_FILE).is_file():
            raise OutputError(f"{path} is not a skewtune checkpoint", "pass a folder under <output_dir>/checkpoints or 'latest'")
        return ckpt.check(path)
    if not output_dir.exists() or not _has_content(output_dir):
        if cfg.resume_from_checkpoint == "latest":
            raise OutputError(f"no checkpoint to resume in {output_dir}", "drop --resume_from_checkpoint or fix --output_dir")
        return None
    checkpoint = ckpt.latest(output_dir)
    if checkpoint is not None and not cfg.overwrite_output_dir:
        saved = ckpt.read_state(checkpoint, counters=False)
        if saved.get("config_fingerprint") == config_fingerprint(cfg) or cfg.resume_from_checkpoint == "latest":
            return ckpt.check(checkpoint)
        raise OutputError(
            f"{output_dir} holds a checkpoint of a run with different settings",
            "use the same settings to resume, pass --overwrite_output_dir, or choose another --output_dir",
        )
    if cfg.resume_from_checkpoint == "latest":
        raise OutputError(f"no checkpoint to resume in {output_dir}", "drop --resume_from_checkpoint or fix --output_dir")
    if not cfg.overwrite_output_dir:
        raise OutputError(
            f"output folder {output_dir} already exists and is not empty",
            "pass --overwrite_output_dir or choose another --output_dir",
        )
    return None


def check_output_reads(cfg: Any, output_dir: Path, backbone_path: str | Path | None = None) -> None:
    """Refuse an output folder that is, holds or lies inside a file or folder the run reads: the data files,
    a local backbone folder (``backbone_path``: the resolved one, once known). Nothing is written."""
    reads: dict[str, Any] = {}
    for flag in ("dataset", "validation_file", "test_file", "backbone"):
        value = getattr(cfg, flag, None)
        if not isinstance(value, str) or not value or not Path(value).expanduser().exists():  # a name, not a path
            continue
        if flag == "backbone" and not (Path(value).expanduser() / "config.json").is_file():
            continue  # not a model folder: resolving it says so (then backbone_path is checked)
        reads[f"the --{flag} {'folder' if Path(value).expanduser().is_dir() else 'file'}"] = value
    if backbone_path is not None:
        reads["the backbone folder"] = backbone_path
    check_no_overlap(output_dir, reads, "--output_dir")


def is_main_process() -> bool:
    """Is this the main process of a (possibly multi-process) launch? Read from the launcher's environment, so
    it is known before the Accelerator exists (the ranks Accelerate reads: torchrun's RANK, MPI's)."""
    import os

    for name in ("RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMI_RANK"):
        value = os.environ.get(name, "").strip()
        if value:
            return value == "0"
    return True


def take_output_lock(output_dir: Path, command: str | None = None) -> OutputLock | None:
    """The writer lock of ``output_dir`` for one run (None on non-main processes), with the folder's stale
    leftovers of killed runs removed.

    One process per launch takes it: the main process, the only one that writes the output folder (checkpoint
    folders, adapter, metrics); under ``accelerate launch`` the other ranks take none, so they cannot block one
    another, and a second launch on the same folder fails on its main process, which stops its launcher. Raises
    :class:`OutputError` naming the holder when another run holds the folder.
    """
    if not is_main_process():
        return None
    check_writable_dir(output_dir)  # an unwritable place reads as such, not as a lock-file error
    lock = OutputLock(output_dir, flag="--output_dir", command=command).acquire()
    # under the lock no live writer is inside: every temporary leftover is a killed run's
    for folder in (output_dir, output_dir / ckpt.CHECKPOINTS):
        remove_stale_leftovers(folder, min_age_s=0)
    return lock


@contextlib.contextmanager
def hold_output_dir(output_dir: Path, command: str | None = None) -> Iterator[OutputLock | None]:
    """Hold ``output_dir``'s writer lock (:func:`take_output_lock`) for the ``with`` block: for recipes that
    write a folder outside :func:`prepare` (few-shot, cross-lingual)."""
    lock = take_output_lock(Path(output_dir), command)
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()


def accelerator_for(cfg: TrainConfig, output_dir: Path | None = None) -> Accelerator:
    """The run's Accelerator from its flags (accumulation, mixed precision, trackers under
    ``output_dir/tracking``)."""
    threads = None if cfg.num_threads is None or str(cfg.num_threads).lower() == "auto" else int(cfg.num_threads)
    trackers = resolve_trackers(getattr(cfg, "report_to", "none")) if output_dir is not None else []
    return build_accelerator(cfg.gradient_accumulation_steps, cfg.mixed_precision, num_threads=threads,
                             ddp_timeout=getattr(cfg, "ddp_timeout", None), log_with=trackers,
                             project_dir=output_dir / TRACKING_DIR if trackers else None)


def prepare(cfg: TrainConfig, recipe: str = "train", task: Task | None = None, splits: Any = None) -> Run:
    """Take the output folder's writer lock, validate, then load data, tokenizer and backbone with its adapter.
    Writes nothing else.

    ``task``: a :class:`~skewtune.tasks.Task` (default sequence classification); ``splits``: ready-made splits
    of that task instead of ``cfg.dataset``. The returned run holds the lock until :meth:`Run.close` (use
    ``with prepare(...) as run:``); a failure here releases it, leaving nothing behind.
    """
    task = task or sequence_task(cfg)
    cfg.validate()
    task.check_config(cfg)
    output_dir = cfg.resolved_output_dir(recipe)
    check_writable_dir(output_dir)
    check_output_reads(cfg, output_dir)
    lock = take_output_lock(output_dir)
    try:
        return _prepare_locked(cfg, recipe, task, splits, output_dir, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _prepare_locked(cfg: TrainConfig, recipe: str, task: Task, splits: Any, output_dir: Path,
                    lock: OutputLock | None) -> Run:
    resume_dir = check_output_dir(cfg, output_dir)
    splits = task.load_splits(cfg) if splits is None else splits
    timings = dict(getattr(splits, "info", {}).get("timings_s", {}))  # read, check_dedup, split (or scan)
    if getattr(task, "problem_type", "single_label") == "single_label":  # the other tasks check their own
        check_imbalance_names(cfg)
    if cfg.augment:
        augment_training_split(splits, cfg)
    spec = resolve_backbone(cfg.backbone)
    check_output_reads(cfg, output_dir, backbone_path=spec.path)
    accelerator = accelerator_for(cfg, output_dir)
    if (config_file := Path(spec.path) / "config.json").is_file():  # a local folder: check before the weights load
        with contextlib.suppress(ValueError, OSError):
            local_config = json.loads(config_file.read_text(encoding="utf-8"))
            if isinstance(local_config, dict):
                check_max_length(cfg.max_length, SimpleNamespace(**local_config), spec.name)
    if accelerator.is_main_process and (line := memory_warning(spec.path, cfg)):
        logger.warning("%s", line)  # the estimate of `skewtune plan`; training goes on
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(spec)
    started = time.perf_counter()
    tokenized = {split: task.tokenize(cfg, tokenizer, splits, split) for split in ("train", "validation", "test")}
    timings["tokenize"] = time.perf_counter() - started
    quantize_embeddings = resolve_quantize_embeddings(cfg.quant, cfg.quantize_embeddings)
    model = load_backbone(spec, task=task.name, num_labels=len(splits.labels), id2label=splits.id2label,
                          quant=cfg.quant, quantize_embeddings=quantize_embeddings)
    if cfg.backbone_dropout is not None:
        set_backbone_dropout(model, cfg.backbone_dropout)
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model, quantized=cfg.quant != "none")
    check_max_length(cfg.max_length, model.config, spec.name)
    heads = [h.split(".")[0] for h in head_module_names(model.config.model_type, task.name)]
    present = {name.split(".")[-1] for name, _ in model.named_modules()}
    settings = AdapterSettings(
        rank=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=cfg.target_modules,
        num_virtual_tokens=cfg.num_virtual_tokens, modules_to_save=[h for h in dict.fromkeys(heads) if h in present],
        layers_to_transform=parse_layers(cfg.lora_layers, int(getattr(model.config, "num_hidden_layers", 0) or 0)),
    )
    model = build_adapter(model, cfg.adapter, settings, task=task.name)
    pairs = getattr(splits, "pairs", None) is not None
    segments = pairs and int(getattr(model.config, "type_vocab_size", 1) or 1) >= 2  # BERT's token_type_ids
    collator = PaddingCollator(tokenizer.pad_token_id, padding_side=getattr(tokenizer, "padding_side", "right"),
                               segment_sep_id=tokenizer.sep_token_id if segments else None)
    return Run(cfg=cfg, recipe=recipe, task=task, output_dir=output_dir, accelerator=accelerator, splits=splits,
               spec=spec, tokenizer=tokenizer, model=model, tokenized=tokenized, collator=collator,
               resume_dir=resume_dir, lock=lock,
               metrics={"quantize_embeddings": quantize_embeddings, "gradient_checkpointing": cfg.gradient_checkpointing,
                        "data_timings_s": {k: round(v, 3) for k, v in timings.items()},
                        "tokenize_cache_reused": sorted(k for k, t in tokenized.items() if getattr(t, "reused_cache", False))})


def enable_gradient_checkpointing(model: Any, quantized: bool) -> None:
    """Non-reentrant gradient checkpointing on the backbone's blocks (before the adapter wraps it), in place.

    Activation memory per block falls from ``B·T·h·f`` (everything autograd keeps) to the block input ``B·T·h``; the
    backward pass reruns each block's forward. Quantized backbones go through
    :func:`~skewtune.backbones.quant.prepare_for_kbit_training`. The input embeddings' output requires grad so the
    recomputed blocks see a graph even when only deep layers are adapted. Exact: losses equal the plain run's.
    """
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ConfigError(f"the {type(model).__name__} backbone does not support gradient checkpointing",
                          "drop --gradient_checkpointing")
    if quantized:
        prepare_for_kbit_training(model, gradient_checkpointing=True)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def check_imbalance_names(cfg: TrainConfig) -> None:
    """Unknown loss/sampler/augment/post-hoc names fail before anything loads."""
    LOSSES.get(cfg.loss)
    if cfg.sampler:
        SAMPLERS.get(cfg.sampler)
        if cfg.sampler in ("smote", "adasyn", "borderline_smote"):
            raise ConfigError(f"--sampler {cfg.sampler} interpolates sentence embeddings, not texts",
                              "use it on embeddings (skewtune.imbalance.EmbeddingSMOTE) or pick a text sampler")
    if cfg.augment:
        AUGMENTERS.get(cfg.augment)
    if cfg.post_hoc:
        POST_HOC.get(cfg.post_hoc)
    # options: fail before the backbone loads (unknown keywords and out-of-range values, on a tiny stand-in)
    if cfg.loss_options:
        build_imbalance_loss(cfg.loss, [2, 1], **cfg.loss_kwargs())
    if cfg.post_hoc_options:
        if not cfg.post_hoc:
            raise ConfigError("--post_hoc_options needs --post_hoc", "add e.g. --post_hoc logit_adjustment")
        fit_post_hoc(cfg.post_hoc, [[0.0, 1.0], [1.0, 0.0]], [1, 0], class_counts=[2, 1],
                     **cfg.post_hoc_kwargs())


def augment_training_split(splits: Any, cfg: TrainConfig) -> None:
    """Minority-only augmentation of the training split (validation and test are never touched)."""
    rows = augment_minority(splits.train_texts, splits.train_labels, target_ratio=cfg.augment_ratio,
                            method=cfg.augment, seed=cfg.seed, classes=splits.labels)
    splits.train_texts, splits.train_labels = list(rows.texts), list(rows.labels)
    if splits.tables:  # the augmented rows are tokenized from the lists
        splits.tables.pop("train", None)
    splits.info["augmented_rows"] = int(rows.num_added)


def problem_type_of(run: Any) -> str:
    """The run's problem type: single_label, multi_label or regression (token tasks: single_label)."""
    return getattr(getattr(run, "task", None), "problem_type", None) or "single_label"


def resampled_indices(run: Run, epoch: int) -> list[int] | None:
    """Training row indices for ``epoch`` under ``--sampler`` (None: every row once)."""
    cfg = run.cfg
    problem_type = problem_type_of(run)
    if not cfg.sampler or problem_type == "regression":  # the default random_over has no classes to balance
        return None
    labels = run.tokenized["train"].labels
    if problem_type == "multi_label":  # ML-ROS (random_over, the default, means it for multi-label data)
        if run.row_indices is None:
            run.row_indices = ml_ros(np.asarray(labels) > 0.5, seed=cfg.seed).tolist()
        return run.row_indices
    if cfg.sampler in ("class_balanced", "sqrt_frequency"):
        # one shared draw per epoch; Accelerate then shards the length-grouped batches across processes
        sampler = build_sampler(cfg.sampler, labels=labels, seed=cfg.seed, num_replicas=1, rank=0)
        sampler.set_epoch(epoch)
        return sampler.global_indices().tolist()
    if run.row_indices is None:
        resampler = build_sampler(cfg.sampler, ratio=cfg.sampler_ratio, seed=cfg.seed)
        # row indices stand for the rows: only samplers that find neighbours read the texts (TF-IDF features)
        rows = run.splits.train_texts if getattr(resampler, "needs_features", True) else np.arange(len(labels))
        resampler.fit_resample(rows, labels)
        run.row_indices = resampler.sample_indices_.tolist()
    return run.row_indices


def training_class_counts(run: Run) -> list[int]:
    """Rows per label id *as the model sees them*: after ``--sampler`` resampling (epoch 0's draw; a stream's
    expected repetitions), so that prior-based losses and post-hoc rules do not correct a skew the sampler
    already removed."""
    counts = run.splits.class_counts()
    if isinstance(run.tokenized["train"], StreamingTrain):
        return expected_counts(counts, oversampling_rates(counts, run.cfg.sampler, run.cfg.sampler_ratio))
    if problem_type_of(run) == "multi_label":
        targets = np.asarray(run.tokenized["train"].labels) > 0.5
        indices = resampled_indices(run, 0)
        return (targets[np.asarray(indices)] if indices is not None else targets).sum(axis=0).astype(int).tolist()
    indices = resampled_indices(run, 0)
    if indices is None:
        return counts
    labels = np.asarray(run.tokenized["train"].labels)
    return np.bincount(labels[np.asarray(indices)], minlength=len(counts)).tolist()


class TrainingCounts:
    """``counts()``: :func:`training_class_counts`; ``counts.rows``: the training rows the model sees per epoch
    (after resampling) — the priors of a loss."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __call__(self) -> list[int]:
        return training_class_counts(self.run)

    @property
    def rows(self) -> int:
        indices = resampled_indices(self.run, 0)
        return len(indices) if indices is not None else len(self.run.tokenized["train"])


def build_loss(run: Run) -> Any:
    """The task's training loss (priors, where a loss needs them: :class:`TrainingCounts`)."""
    return run.task.loss(run.cfg, TrainingCounts(run))


def fit_decision_rule(run: Run) -> None:
    """``--post_hoc``: fit a logit adjustment / per-class bias on validation logits (applied to test + predict);
    multi-label (``--multilabel_thresholds tuned``): per-label thresholds on validation probabilities."""
    if getattr(run.task, "problem_type", None) == "multi_label":
        if run.cfg.multilabel_thresholds == "tuned":
            validation = run.tokenized["validation"]
            probabilities = run.task.probabilities(run.accelerator.unwrap_model(run.model), validation, run.collator,
                                                   run.cfg.per_device_eval_batch_size, run.accelerator)
            run.decision = run.task.fit_decision(probabilities, validation.labels)
            run.metrics["post_hoc"] = run.decision
        return
    if not run.cfg.post_hoc:
        return
    logits = predict_logits(run.accelerator.unwrap_model(run.model), run.tokenized["validation"], run.collator,
                            run.cfg.per_device_eval_batch_size, run.accelerator.device, accelerator=run.accelerator)
    run.decision = fit_post_hoc(run.cfg.post_hoc, logits, run.tokenized["validation"].labels,
                                class_counts=training_class_counts(run), **run.cfg.post_hoc_kwargs())
    run.metrics["post_hoc"] = run.decision


def train(run: Run) -> FitState:
    """Optimise the adapter through the engine: AdamW + warmup schedule, checkpoints, resume, validation per epoch."""
    cfg, accelerator = run.cfg, run.accelerator
    train_split = run.tokenized["train"]
    threads = getattr(accelerator, "thread_choice", None)
    if threads is not None and accelerator.is_main_process:
        logger.info("%s", threads.log_line())
    if isinstance(train_split, StreamingTrain):
        loader = streaming_loader(run)
    else:
        first = resampled_indices(run, 0)
        loader = batch_loader(train_split, train_split.lengths, cfg.per_device_train_batch_size, run.collator,
                              seed=cfg.seed, max_tokens=cfg.max_tokens_per_batch, indices=first,
                              resample=(lambda epoch: resampled_indices(run, epoch)) if first is not None else None)
    run.loss_fn = build_loss(run)
    lr = cfg.learning_rate_value()
    if lr is None:
        lr, record = find_learning_rate(run.model, loader, run.loss_fn, accelerator, Optimization.from_config(cfg, 1.0),
                                        plot_path=run.output_dir / LR_PLOT_NAME)
        run.metrics.update(learning_rate_auto=lr, lr_finder=record)
        if accelerator.is_main_process:
            logger.info("learning rate: auto chose %.3g (learning-rate range test, plot %s)", lr,
                        run.output_dir / LR_PLOT_NAME)
    run.metrics["learning_rate"] = lr

    best_metric = run.task.best_metric(cfg) if hasattr(run.task, "best_metric") else cfg.metric_for_best_model
    shown = getattr(run.task, "summary_keys", ("accuracy", "macro_f1"))
    log = RunLog(accelerator, logging_steps=cfg.logging_steps, batch_size=cfg.per_device_train_batch_size,
                 metric=best_metric, patience=cfg.early_stopping_patience,
                 keep_best=cfg.load_best_model_at_end, model=run.model)
    run.log = log
    if log.tracking:
        accelerator.init_trackers(TRACKING_PROJECT, config=tracker_config(cfg, lr))

    def validate(s: FitState) -> dict[str, Any]:
        scores = evaluate_split(run, "validation")
        if log.evaluation(scores, s):
            s.should_stop = True
            if accelerator.is_main_process:
                logger.info("early stopping at step %d: validation %s did not improve for %d evaluations (best "
                            "%.4f at step %d)", s.global_step, best_metric, cfg.early_stopping_patience,
                            log.best_metric, log.best_step)
        return scores

    def on_step_end(s: FitState) -> None:
        log.step(s)
        if cfg.eval_steps and s.global_step % cfg.eval_steps == 0:
            scores = validate(s)
            if accelerator.is_main_process:
                logger.info("step %d: %s", s.global_step, score_line(scores, shown))

    def on_epoch_end(s: FitState) -> None:  # no second scoring of a step just scored, or after an early stop
        if cfg.eval_every_epoch and not s.should_stop and not (cfg.eval_steps and s.global_step % cfg.eval_steps == 0):
            scores = validate(s)
            s.history[-1].update({f"eval_{k}": v for k, v in scores.items() if k in shown})
            if accelerator.is_main_process:
                logger.info("epoch %d: train_loss %.4f  %s", s.epoch, s.history[-1]["train_loss"],
                            score_line(scores, shown))

    checkpoints = Checkpointing(run.output_dir, config_fingerprint(cfg), every_steps=cfg.checkpoint_every_steps,
                                keep=cfg.keep_checkpoints, resume_from=run.resume_dir)
    try:
        result = train_module(run.model, loader, run.loss_fn, Optimization.from_config(cfg, lr), accelerator,
                              checkpoints=checkpoints, on_step_end=on_step_end, on_epoch_end=on_epoch_end,
                              progress=True)
    finally:  # the trackers' files are closed; not accelerator.end_training(): it also destroys the process
        for tracker in getattr(accelerator, "trackers", []):  # group, which evaluation and saving still use
            tracker.finish()
    run.model, run.state = result.model, result.state
    state = result.state
    if log.restore_best(state.global_step) and accelerator.is_main_process:
        logger.info("restored the adapter of step %d (best validation %s %.4f; --load_best_model_at_end)",
                    log.best_step, cfg.metric_for_best_model, log.best_metric)
    run.metrics.update(log.summary())
    if isinstance(train_split, StreamingTrain):
        samples = state.global_step * cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * \
            accelerator.num_processes
    else:
        samples = len(train_split) * min(cfg.num_train_epochs, state.global_step / result.plan.updates_per_epoch)
    run.metrics["train_runtime_s"] = state.train_seconds  # every segment of a resumed run, not just the last
    run.metrics["train_samples_per_second"] = samples / max(state.train_seconds, 1e-9)
    run.metrics["train_steps"] = state.global_step
    if cfg.on_nan == "skip":
        run.metrics["skipped_nan_batches"] = state.skipped_batches
    run.metrics["history"] = state.history
    return state


def score_line(scores: dict[str, Any], keys: tuple[str, ...]) -> str:
    """``eval_accuracy 0.7869  eval_macro_f1 0.7749`` for the task's headline scores."""
    return "  ".join(f"eval_{k} {scores[k]:.4f}" for k in keys if isinstance(scores.get(k), int | float))


def streaming_loader(run: Run) -> DataLoader:
    """``--streaming``: a loader of exactly ``--max_steps`` optimizer steps of batches read from the stream
    (:class:`~skewtune.data.streaming.StreamingBatches`), oversampled per ``--sampler``."""
    cfg, train_split = run.cfg, run.tokenized["train"]
    rates = oversampling_rates(train_split.counts, cfg.sampler, cfg.sampler_ratio)
    batches = StreamingBatches(train_split, run.tokenizer, run.collator, batch_size=cfg.per_device_train_batch_size,
                               max_length=cfg.max_length, seed=cfg.seed, rates=rates,
                               max_tokens=cfg.max_tokens_per_batch,
                               num_batches=cfg.max_steps * cfg.gradient_accumulation_steps * run.accelerator.num_processes)
    return DataLoader(batches, batch_size=None, num_workers=0)


def evaluate_split(run: Run, split: str | Any) -> dict[str, Any]:
    """Scores of ``run.tokenized[split]`` (or of a tokenized split given directly), by the run's task."""
    data = run.tokenized[split] if isinstance(split, str) else split
    return run.task.evaluate(run.accelerator.unwrap_model(run.model), data, run.splits, run.collator,
                             run.cfg.per_device_eval_batch_size, run.accelerator, decision=run.decision)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def finish_metrics(run: Run) -> dict[str, Any]:
    """Test scores, parameter counts, memory and baselines, in the metrics.json contract."""
    cfg = run.cfg
    test = evaluate_split(run, "test")
    model = run.accelerator.unwrap_model(run.model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = count_parameters(model)  # packed 4-bit weights count as the weights they hold
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    metrics = run.metrics
    metrics.update({"eval_split": "test"})
    for key, name in (("accuracy", "eval_accuracy"), ("macro_f1", "eval_macro_f1"), ("weighted_f1", "eval_weighted_f1"),
                      ("per_class_f1", "eval_per_class_f1"), ("per_class_precision", "eval_per_class_precision"),
                      ("per_class_recall", "eval_per_class_recall"), ("confusion_matrix", "confusion_matrix")):
        if test.get(key) is not None:  # a regression scores none of these; a multi-label run no confusion matrix
            metrics[name] = test[key]
    metrics.update({
        "labels": run.splits.labels,
        "trainable_params": trainable,
        "all_params": total,
        "backbone_bytes": int(base.get_memory_footprint()),
        "peak_rss_mb": peak_rss_mb(),
        # the largest finished child process (datasets' tokenizing workers), not part of peak_rss_mb
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "train_size": len(run.tokenized["train"]),
        "validation_size": len(run.tokenized["validation"]),
        "test_size": len(run.tokenized["test"]),
        "truncated_texts": sum(t.truncated for t in run.tokenized.values()),
        "num_processes": run.accelerator.num_processes,
        "device": str(run.accelerator.device),
        "backbone": cfg.backbone,
        "adapter": cfg.adapter,
        "quant": cfg.quant,
        "seed": cfg.seed,
        "dataset": run.splits.name,
        "duplicates_removed": run.splits.info.get("duplicates_removed"),
        "empty_texts_skipped": run.splits.info.get("empty_texts_skipped", 0),
    })
    metrics.update(run.task.test_metrics(test))
    run.test_logits = test.get("logits")
    headline = getattr(run.task, "summary_keys", ("accuracy", "macro_f1"))[-1]
    val_history = [h for h in run.state.history if f"eval_{headline}" in h]
    if val_history:
        metrics[f"validation_{headline}"] = val_history[-1][f"eval_{headline}"]
    metrics["problem_type"] = getattr(run.task, "problem_type", None) or "single_label"
    if getattr(cfg, "task", None):  # a task preset's official metrics (GLUE: F1 for MRPC, Matthews for CoLA, …)
        metrics["official_metrics"] = official_metrics(get_preset(cfg.task), metrics)
    if cfg.baselines and run.task.baselines and getattr(run.splits, "stream", None) is not None:
        metrics["baselines_skipped"] = "streaming: the baselines train on every training text in memory"
        if run.accelerator.is_main_process:
            logger.info("baselines skipped: with --streaming the training texts are not held in memory")
    elif cfg.baselines and run.task.baselines and run.accelerator.is_main_process:
        s = run.splits
        metrics["baseline_majority_macro_f1"] = majority_macro_f1(s.train_labels, s.test_labels)
        tfidf = tfidf_baseline(
            pair_view(s.train_texts, s.pair_texts("train")), s.train_labels,
            pair_view(s.validation_texts, s.pair_texts("validation")), s.validation_labels,
            pair_view(s.test_texts, s.pair_texts("test")), s.test_labels, seed=cfg.seed)
        metrics["baseline_tfidf_macro_f1"] = tfidf["macro_f1"]
        metrics["baseline_tfidf_accuracy"] = tfidf["accuracy"]
        metrics["baseline_tfidf_settings"] = {k: tfidf[k] for k in ("C", "min_df", "class_weight")}
        metrics["baseline_majority_accuracy"] = majority_accuracy(s.train_labels, s.test_labels)
        for warning in below_baseline_warnings(metrics):
            logger.warning("%s", warning)
    if cfg.sampler and run.task.baselines:
        metrics["sampler_rows"] = sampler_rows(run)
    return metrics


def majority_accuracy(train_labels: list[str], test_labels: list[str]) -> float:
    """Test accuracy of always answering the most frequent training label."""
    if not train_labels or not test_labels:
        return 0.0
    majority = max(set(train_labels), key=train_labels.count)
    return sum(label == majority for label in test_labels) / len(test_labels)


def below_baseline_warnings(metrics: dict[str, Any]) -> list[str]:
    """One line per baseline the trained model does not beat on the test split (macro-F1 vs TF-IDF + LR,
    accuracy vs always answering the majority class)."""
    out = []
    tfidf, f1 = metrics.get("baseline_tfidf_macro_f1"), metrics.get("eval_macro_f1")
    if tfidf is not None and f1 is not None and f1 < tfidf:
        out.append(f"warning: test macro-F1 {f1:.4f} is below the TF-IDF + logistic regression baseline {tfidf:.4f} "
                   "(train longer, or try another --learning_rate or --sampler)")
    majority, accuracy = metrics.get("baseline_majority_accuracy"), metrics.get("eval_accuracy")
    if majority is not None and accuracy is not None and accuracy < majority:
        out.append(f"warning: test accuracy {accuracy:.4f} is below always answering the majority class "
                   f"({majority:.4f}); with an imbalanced test split, --sampler none may score higher accuracy")
    return out


def sampler_rows(run: Run) -> dict[str, Any]:
    """Training rows per class before and after ``--sampler`` (epoch 0's draw)."""
    labels = run.splits.labels
    before, after = run.splits.class_counts(), training_class_counts(run)
    return {"sampler": run.cfg.sampler, "before": dict(zip(labels, before, strict=True)),
            "after": dict(zip(labels, after, strict=True))}


def sampler_sentences(run: Run) -> list[str]:
    """What the sampler did (rows per class before → after) and, for the default oversampling, what
    ``--sampler none`` would change."""
    rows = run.metrics.get("sampler_rows")
    if not rows:
        return []
    before, after = rows["before"], rows["after"]
    change = ", ".join(f"{label} {before[label]:,} → {after[label]:,}" for label in before)
    lines = [f"sampler {rows['sampler']}: training rows per class {change} "
             f"({sum(before.values()):,} → {sum(after.values()):,} rows)."]
    if rows["sampler"] == "random_over":
        lines.append(f"--sampler none would train on the {sum(before.values()):,} rows as they are, in their natural "
                     "class mix: fewer steps, usually higher accuracy on a test split with the same mix, lower "
                     "recall on the minority classes.")
    return lines


def save_outputs(run: Run) -> Path:
    """Write ``adapter/`` (PEFT + card + manifest), ``metrics.json``, ``confusion_matrix.png`` (main process)."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return run.output_dir
    out = run.output_dir
    model = accelerator.unwrap_model(run.model)
    cfg = run.cfg
    manifest = {
        "name": f"{run.splits.name}-{cfg.backbone}-{cfg.adapter}".replace("/", "_"),
        "task_type": run.task.name,
        "problem_type": getattr(run.task, "problem_type", None) or "single_label",
        "text_pair_column": getattr(cfg, "text_pair_column", None) or (
            "text_pair" if getattr(run.splits, "pairs", None) is not None else None),  # a pair corpus's own
        "backbone": cfg.backbone,
        "base_model": run.spec.hf_id,
        "base_path": run.spec.path,
        "base_fingerprint": base_fingerprint(run.spec.path) if Path(run.spec.path).is_dir() else None,
        "adapter_type": cfg.adapter,
        "quant": cfg.quant,
        "id2label": {str(k): v for k, v in run.splits.id2label.items()},
        "languages": [run.splits.language],
        "dataset": run.splits.name,
        "training": {k: v for k, v in cfg.to_dict().items() if k not in ("output_dir", "overwrite_output_dir")},
        "metrics": {k: v for k, v in run.metrics.items() if k.startswith(("eval_", "baseline_", "validation_"))
                    and not isinstance(v, dict | list)},
        "imbalance": {"sampler": cfg.sampler, "loss": cfg.loss, "augment": cfg.augment, "post_hoc": cfg.post_hoc,
                      "loss_options": cfg.loss_kwargs(),
                      "post_hoc_options": cfg.post_hoc_kwargs()},
        "decision": run.decision,
        "lineage": None,
    }
    written: list[Path] = []  # all or nothing: a failed write removes what this save wrote before it
    try:
        with atomic_dir(out / "adapter") as tmp:
            model.save_pretrained(str(tmp), safe_serialization=True)
            atomic_write_text(tmp / "README.md", render_card(manifest))
            write_manifest(tmp, manifest)
        written.append(out / "adapter")
        for name, obj in (("metrics.json", run.metrics), ("config.json", cfg.to_dict())):
            atomic_write_json(out / name, obj)
            written.append(out / name)
        if cfg.report_plots and "confusion_matrix" in run.metrics:
            plot_confusion_matrix(run.metrics["confusion_matrix"], run.splits.labels, out / "confusion_matrix.png",
                                  title=f"{run.splits.name} test — macro-F1 {run.metrics['eval_macro_f1']:.3f}")
            written.append(out / "confusion_matrix.png")
        if cfg.report_plots and run.test_logits is not None:
            write_run_report(run, out / REPORT_NAME)
            written.append(out / REPORT_NAME)
    except (OSError, RuntimeError, SafetensorError, OutputError) as exc:
        _remove_written(written)
        raise _save_error(exc, out / "adapter") from exc
    return out


REPORT_NAME = "report.html"


def write_run_report(run: Run, path: Path) -> Path:
    """``report.html`` (:mod:`skewtune.evaluation.report`): settings, class counts before/after resampling,
    training curves (``log_history``), confusion matrix, per-class scores, calibration of the test probabilities,
    the most confident mistakes and the baselines."""
    import torch

    cfg, splits, metrics = run.cfg, run.splits, run.metrics
    labels = list(splits.labels)

    def counts(values: list[str]) -> dict[str, int]:
        return {label: values.count(label) for label in labels}

    class_counts = {"train (as loaded)": dict(zip(labels, splits.class_counts(), strict=True))}
    if run.row_indices is not None:
        class_counts["train (after resampling)"] = counts([splits.train_labels[i] for i in run.row_indices])
    class_counts.update({"validation": counts(splits.validation_labels), "test": counts(splits.test_labels)})
    per_class = {label: {"precision": metrics["eval_per_class_precision"][label],
                         "recall": metrics["eval_per_class_recall"][label],
                         "f1": metrics["eval_per_class_f1"][label], "support": class_counts["test"][label]}
                 for label in labels}
    baselines: dict[str, dict[str, Any]] = {}  # the page sets the run's own scores beside them
    if "baseline_majority_macro_f1" in metrics:
        baselines["majority class"] = {"macro_f1": metrics["baseline_majority_macro_f1"],
                                       "accuracy": metrics.get("baseline_majority_accuracy")}
    if "baseline_tfidf_macro_f1" in metrics:
        baselines["TF-IDF + logistic regression (C tuned on validation)"] = {
            "macro_f1": metrics["baseline_tfidf_macro_f1"], "accuracy": metrics.get("baseline_tfidf_accuracy")}
    probabilities = torch.softmax(run.test_logits.float(), dim=-1).tolist()
    return write_report(
        path, title=f"{splits.name}: {cfg.adapter} on {cfg.backbone} ({cfg.quant})", settings=cfg.to_dict(),
        class_counts=class_counts, scalars=metrics.get("log_history", []), labels=labels,
        confusion_matrix=metrics["confusion_matrix"], per_class=per_class, probabilities=probabilities,
        y_true=[splits.label2id[label] for label in splits.test_labels], texts=list(splits.test_texts),
        baselines=baselines,
        metrics={k: v for k, v in metrics.items() if isinstance(v, int | float | str) and not isinstance(v, bool)})


def _remove_written(paths: list[Path]) -> None:
    """Remove files and folders a failed final save wrote (the adapter folder is renamed away first)."""
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_dir():
                doomed = path.with_name(f".{path.name}.failed.old")
                shutil.rmtree(doomed, ignore_errors=True)
                path.rename(doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            else:
                path.unlink()


def _save_error(exc: BaseException, path: Path) -> OutputError:
    """One :class:`OutputError` for a failed final save (a full disk as such, whoever reported it)."""
    if isinstance(exc, OutputError):
        return exc
    if isinstance(exc, OSError) and exc.errno not in (errno.EFBIG, errno.EDQUOT):
        return _os_error(exc, path)
    text = str(exc)
    if isinstance(exc, OSError):
        text = exc.strerror or text
    if "No space left" in text or "os error 28" in text or "StorageFull" in text:
        return _os_error(OSError(errno.ENOSPC, "No space left on device"), path)
    cause = (text.strip().splitlines() or [type(exc).__name__])[0][:200]
    return OutputError(f"could not write {path}: {cause}",
                       "free disk space or choose another --output_dir; rerun the same command to resume from the "
                       "last checkpoint")


def print_summary(run: Run) -> None:
    """A rich table of the headline figures (main process only)."""
    if not run.accelerator.is_main_process:
        return
    m = run.metrics
    table = Table(title=f"skewtune {run.recipe}: {run.splits.name} on {run.cfg.backbone} ({run.cfg.adapter}, {run.cfg.quant})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    names = {"accuracy": "test accuracy", "macro_f1": "test macro-F1", "micro_f1": "test micro-F1",
             "samples_f1": "test samples-F1", "subset_accuracy": "test subset accuracy", "pearson": "test Pearson r",
             "spearman": "test Spearman ρ", "mse": "test MSE"}
    rows = [(title, f"{m[f'eval_{key}']:.4f}") for key, title in names.items()
            if isinstance(m.get(f"eval_{key}"), int | float)]
    rows += [(f"  F1 {label}", f"{value:.4f}") for label, value in (m.get("eval_per_class_f1") or {}).items()]
    if "baseline_tfidf_macro_f1" in m:
        rows += [("baseline TF-IDF+LR (C tuned on validation) macro-F1", f"{m['baseline_tfidf_macro_f1']:.4f}"),
                 ("baseline majority macro-F1", f"{m['baseline_majority_macro_f1']:.4f}")]
    if "learning_rate_auto" in m:
        rows.append(("learning rate (auto)", f"{m['learning_rate_auto']:.3g}"))
    rows += [
        ("train time (s)", f"{m['train_runtime_s']:.1f}"),
        ("train samples/s", f"{m['train_samples_per_second']:.1f}"),
        ("trainable / all params", f"{m['trainable_params']:,} / {m['all_params']:,}"),
        ("backbone bytes", f"{m['backbone_bytes'] / 1e6:.1f} MB"),
        ("peak RSS", f"{m['peak_rss_mb']:.0f} MB"),
        ("output", str(run.output_dir)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console = Console(stderr=False)
    console.print(table)
    for line in sampler_sentences(run):
        console.print(line, highlight=False)


def run_training(cfg: TrainConfig, recipe: str = "train", task: Task | None = None, splits: Any = None) -> Run:
    """prepare → train → decision rule → test metrics → save → summary (``skewtune train`` / ``train-tokens``),
    holding the output folder's lock throughout; ``splits``: already loaded splits of ``task`` (see :func:`prepare`)."""
    with prepare(cfg, recipe=recipe, task=task, splits=splits) as run:
        train(run)
        fit_decision_rule(run)
        finish_metrics(run)
        save_outputs(run)
    print_summary(run)
    return run
