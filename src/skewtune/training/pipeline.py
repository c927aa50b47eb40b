"""The steps of a classification run, composed by recipes and by ``skewtune train``.

``prepare`` validates everything (output folder, data, backbone) before writing anything, then loads;
``train`` runs the Accelerate loop with checkpoints; ``evaluate_split`` scores a split; ``save_outputs``
writes the adapter folder, metrics.json and the confusion matrix, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skewtune.errors import ConfigError, OutputError
from skewtune.training.config import TrainConfig
from skewtune.training.loop import (
    FitState,
    Timer,
    configure_threads,
    fit,
    predict_logits,
    resolve_mixed_precision,
)

logger = logging.getLogger("skewtune")

CHECKPOINTS = "checkpoints"


@dataclass
class Run:
    """Everything one run holds; recipes read and extend it."""

    cfg: TrainConfig
    recipe: str
    output_dir: Path
    accelerator: Any
    splits: Any
    spec: Any
    tokenizer: Any
    model: Any
    tokenized: dict[str, Any]
    collator: Any
    resume_dir: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    state: FitState = field(default_factory=FitState)
    loss_fn: Any = None
    decision: dict[str, Any] | None = None
    task: str = "seq_cls"  # or "token_cls" (skewtune.training.token)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (notebooks and test captures swap it; a stream bound
    once would go stale and every later message would become a "--- Logging error ---" traceback)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def quiet_libraries() -> None:
    """Keep the console to skewtune's own progress and summary."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    warnings.filterwarnings("ignore", message=".*MatMul8bitLt.*")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    for name in ("bitsandbytes", "accelerate", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def config_fingerprint(cfg: TrainConfig) -> str:
    """Hash of the settings that must match for a checkpoint to be resumed."""
    keep = {k: v for k, v in cfg.to_dict().items() if k not in (
        "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "report_plots", "baselines",
        "checkpoint_every_steps", "keep_checkpoints", "on_nan", "eval_every_epoch")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def latest_checkpoint(output_dir: Path) -> Path | None:
    folder = output_dir / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / "skewtune_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def _has_content(output_dir: Path) -> bool:
    """Anything besides the hidden temporary leftovers of a killed run (``checkpoints/.step-N.tmp``, …)?"""
    def leftover(p: Path) -> bool:
        return p.name.startswith(".") and p.name.endswith((".tmp", ".old"))

    for entry in output_dir.iterdir():
        if leftover(entry):
            continue
        if entry.name == CHECKPOINTS and entry.is_dir() and all(leftover(p) for p in entry.iterdir()):
            continue
        return True
    return False


def check_output_dir(cfg: TrainConfig, output_dir: Path) -> Path | None:
    """Refuse a non-empty output folder unless overwriting or resuming; returns the checkpoint to resume."""
    from skewtune.utils.io import check_writable_dir

    check_writable_dir(output_dir)
    if cfg.resume_from_checkpoint and cfg.resume_from_checkpoint != "latest":
        path = Path(cfg.resume_from_checkpoint)
        if not (path / "skewtune_state.json").is_file():
            raise OutputError(f"{path} is not a skewtune checkpoint", "pass a folder under <output_dir>/checkpoints or 'latest'")
        return path
    if not output_dir.exists() or not _has_content(output_dir):
        if cfg.resume_from_checkpoint == "latest":
            raise OutputError(f"no checkpoint to resume in {output_dir}", "drop --resume_from_checkpoint or fix --output_dir")
        return None
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None and not cfg.overwrite_output_dir:
        saved = json.loads((checkpoint / "skewtune_state.json").read_text())
        if saved.get("config_fingerprint") == config_fingerprint(cfg) or cfg.resume_from_checkpoint == "latest":
            return checkpoint
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


def build_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # `accelerate launch --multi_gpu` (torchrun) on a machine without GPUs: accelerate only forms a gloo
    # process group (MULTI_CPU) when asked for the CPU, otherwise every worker silently trains alone.
    cpu_ddp = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(
        cpu=cpu_ddp,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(cfg.mixed_precision),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    configure_threads(accelerator)
    return accelerator


def prepare(cfg: TrainConfig, recipe: str = "train", task: str = "seq_cls", splits: Any = None) -> Run:
    """Validate, then load data, tokenizer and backbone with its adapter. Writes nothing.

    ``splits``: ready-made splits (``Splits``, or ``TokenSplits`` for ``task="token_cls"``) instead of
    ``cfg.dataset``; token classification is documented in :mod:`skewtune.training.token`.
    """
    from accelerate.utils import set_seed

    from skewtune.adapters import AdapterSettings, build_adapter
    from skewtune.backbones import load_backbone, load_tokenizer, resolve_backbone
    from skewtune.backbones.registry import head_module_names
    from skewtune.data import PaddingCollator, load_dataset_splits, tokenize_split

    quiet_libraries()
    cfg.validate()
    output_dir = cfg.resolved_output_dir(recipe)
    resume_dir = check_output_dir(cfg, output_dir)
    if task == "token_cls":
        from skewtune.training import token

        splits = token.load_splits(cfg) if splits is None else splits
    elif splits is None:
        splits = load_dataset_splits(
            cfg.dataset, seed=cfg.seed, text_column=cfg.text_column, label_column=cfg.label_column,
            validation_file=cfg.validation_file, test_file=cfg.test_file, max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples, skip_empty_texts=cfg.skip_empty_texts, encoding=cfg.encoding,
        )
    check_imbalance_names(cfg)
    if cfg.augment:
        augment_training_split(splits, cfg)
    spec = resolve_backbone(cfg.backbone)
    accelerator = build_accelerator(cfg)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(spec)
    if task == "token_cls":
        tokenized = {split: token.tokenize(cfg, tokenizer, getattr(splits, split), splits.label2id, split)
                     for split in ("train", "validation", "test")}
    else:
        tokenized = {
            split: tokenize_split(tokenizer, getattr(splits, f"{split}_texts"), splits.ids(split), cfg.max_length, split)
            for split in ("train", "validation", "test")
        }
    from skewtune.backbones.quant import resolve_quantize_embeddings

    quantize_embeddings = resolve_quantize_embeddings(cfg.quant, cfg.quantize_embeddings)
    model = load_backbone(spec, task=task, num_labels=len(splits.labels), id2label=splits.id2label, quant=cfg.quant,
                          quantize_embeddings=quantize_embeddings)
    if cfg.backbone_dropout is not None:
        from skewtune.backbones.registry import set_backbone_dropout

        set_backbone_dropout(model, cfg.backbone_dropout)
    check_max_length(cfg.max_length, model.config, spec.name)
    heads = [h.split(".")[0] for h in head_module_names(model.config.model_type, task)]
    present = {name.split(".")[-1] for name, _ in model.named_modules()}
    settings = AdapterSettings(
        rank=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=cfg.target_modules,
        num_virtual_tokens=cfg.num_virtual_tokens, modules_to_save=[h for h in dict.fromkeys(heads) if h in present],
        layers_to_transform=top_layers(model.config, cfg.lora_layers),
    )
    model = build_adapter(model, cfg.adapter, settings, task=task)
    collator = PaddingCollator(tokenizer.pad_token_id, padding_side=getattr(tokenizer, "padding_side", "right"))
    return Run(cfg=cfg, recipe=recipe, output_dir=output_dir, accelerator=accelerator, splits=splits, spec=spec,
               tokenizer=tokenizer, model=model, tokenized=tokenized, collator=collator, resume_dir=resume_dir,
               metrics={"quantize_embeddings": quantize_embeddings}, task=task)


def top_layers(config: Any, count: int | None) -> list[int] | None:
    """Indices of the top ``count`` transformer layers (gradients then stop below them: less backward work)."""
    if not count:
        return None
    total = int(getattr(config, "num_hidden_layers", 0) or 0)
    if count < 1 or total and count > total:
        raise ConfigError(f"--lora_layers {count} is outside 1..{total}", f"pass a number of layers from 1 to {total}")
    return list(range(total - count, total)) if total else None


# encoders with learned absolute positions: a longer input indexes past the position table (IndexError mid-run)
ABSOLUTE_POSITIONS = {"bert": 0, "distilbert": 0, "electra": 0, "albert": 0, "roberta": 2, "xlm-roberta": 2,
                      "camembert": 2, "mpnet": 2}


def check_max_length(max_length: int, config: Any, backbone: str) -> None:
    offset = ABSOLUTE_POSITIONS.get(getattr(config, "model_type", ""))
    limit = getattr(config, "max_position_embeddings", None)
    if offset is None or not isinstance(limit, int) or max_length <= limit - offset:
        return
    raise ConfigError(f"--max_length {max_length} exceeds the {limit - offset} positions of backbone '{backbone}'",
                      f"pass --max_length {limit - offset} or less")


def check_imbalance_names(cfg: TrainConfig) -> None:
    """Unknown loss/sampler/augment/post-hoc names fail before anything loads."""
    from skewtune.imbalance import AUGMENTERS, LOSSES, POST_HOC, SAMPLERS

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
    from skewtune.imbalance import build_loss as build_imbalance_loss
    from skewtune.imbalance import fit_post_hoc

    if cfg.loss_options:
        build_imbalance_loss(cfg.loss, [2, 1], **cfg.loss_kwargs())
    if cfg.post_hoc_options:
        if not cfg.post_hoc:
            raise ConfigError("--post_hoc_options needs --post_hoc", "add e.g. --post_hoc logit_adjustment")
        fit_post_hoc(cfg.post_hoc, [[0.0, 1.0], [1.0, 0.0]], [1, 0], class_counts=[2, 1],
                     **cfg.post_hoc_kwargs())


def augment_training_split(splits: Any, cfg: TrainConfig) -> None:
    """Minority-only augmentation of the training split (validation and test are never touched)."""
    from skewtune.imbalance import augment_minority

    rows = augment_minority(splits.train_texts, splits.train_labels, target_ratio=cfg.augment_ratio,
                            method=cfg.augment, seed=cfg.seed, classes=splits.labels)
    splits.train_texts, splits.train_labels = list(rows.texts), list(rows.labels)
    splits.info["augmented_rows"] = int(rows.num_added)


def resampled_indices(run: Run, epoch: int) -> list[int] | None:
    """Training row indices for ``epoch`` under ``--sampler`` (None: every row once)."""
    cfg = run.cfg
    if not cfg.sampler:
        return None
    from skewtune.imbalance import build_sampler

    labels = run.tokenized["train"].labels
    if cfg.sampler in ("class_balanced", "sqrt_frequency"):
        # one shared draw per epoch; Accelerate then shards the length-grouped batches across processes
        sampler = build_sampler(cfg.sampler, labels=labels, seed=cfg.seed, num_replicas=1, rank=0)
        sampler.set_epoch(epoch)
        return sampler.global_indices().tolist()
    if getattr(run, "_row_indices", None) is not None:  # one draw serves every epoch (and the loss's priors)
        return run._row_indices
    resampler = build_sampler(cfg.sampler, ratio=cfg.sampler_ratio, seed=cfg.seed)
    resampler.fit_resample(run.splits.train_texts, labels)
    run._row_indices = resampler.sample_indices_.tolist()
    return run._row_indices


def fit_decision_rule(run: Run) -> None:
    """``--post_hoc``: fit a logit adjustment / per-class bias on validation logits (applied to test + predict)."""
    if not run.cfg.post_hoc:
        return
    from skewtune.imbalance import fit_post_hoc

    logits = predict_logits(run.accelerator.unwrap_model(run.model), run.tokenized["validation"], run.collator,
                            run.cfg.per_device_eval_batch_size, run.accelerator.device, accelerator=run.accelerator)
    run.decision = fit_post_hoc(run.cfg.post_hoc, logits, run.tokenized["validation"].labels,
                                class_counts=training_class_counts(run),
                                **run.cfg.post_hoc_kwargs())
    run.metrics["post_hoc"] = run.decision


def training_class_counts(run: Run) -> list[int]:
    """Rows per label id *as the model sees them*: after ``--sampler`` resampling (epoch 0's draw), so that
    prior-based losses and post-hoc rules do not correct a skew the sampler already removed."""
    counts = run.splits.class_counts()
    indices = resampled_indices(run, 0)
    if indices is None:
        return counts
    import numpy as np

    labels = np.asarray(run.tokenized["train"].labels)
    return np.bincount(labels[np.asarray(indices)], minlength=len(counts)).tolist()


def build_loss(run: Run):
    """The training loss from the imbalance registry (``ce`` = plain cross-entropy)."""
    if run.task == "token_cls":
        from skewtune.training.token import TokenCrossEntropy

        return TokenCrossEntropy()
    if run.cfg.loss == "ce" and not run.cfg.loss_options:
        return torch.nn.CrossEntropyLoss()
    from skewtune.imbalance.losses import build_loss as _build

    return _build(run.cfg.loss, training_class_counts(run), **run.cfg.loss_kwargs())


def trainable_parameters(model: Any) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def train(run: Run) -> FitState:
    """Optimise the adapter with AdamW + warmup schedule; checkpoints and resume through Accelerate."""
    from torch.utils.data import DataLoader
    from transformers import get_scheduler

    from skewtune.data import LengthGroupedBatchSampler

    cfg, accelerator = run.cfg, run.accelerator
    train_split = run.tokenized["train"]
    batch_sampler = LengthGroupedBatchSampler(
        train_split.lengths, cfg.per_device_train_batch_size, max_tokens=cfg.max_tokens_per_batch, seed=cfg.seed,
        indices=resampled_indices(run, 0),
    )
    if cfg.sampler:
        batch_sampler.resample = lambda epoch: resampled_indices(run, epoch)
    # a private generator: creating a DataLoader iterator otherwise draws from the global torch RNG, which would
    # shift dropout masks after a resume (the resumed run creates one more iterator)
    loader = DataLoader(train_split, batch_sampler=batch_sampler, collate_fn=run.collator, num_workers=0,
                        generator=torch.Generator().manual_seed(cfg.seed))
    lr = cfg.learning_rate_value()
    if lr is None:
        from skewtune.training.lr_finder import find_learning_rate

        lr = find_learning_rate(run, loader)
        run.metrics["learning_rate_auto"] = lr
    run.metrics["learning_rate"] = lr
    optimizer = torch.optim.AdamW(trainable_parameters(run.model), lr=lr, weight_decay=cfg.weight_decay)
    # Units: ``loader`` is the whole epoch here; after ``prepare`` each of the N processes iterates 1/N of it, and
    # Accelerate's scheduler wrapper steps the schedule N times per optimizer step. So the schedule counts whole-data
    # steps, while ``max_steps`` (the flag, and fit's stopping point) counts optimizer steps of one process.
    processes = accelerator.num_processes
    updates_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    num_epochs = max(1, math.ceil(cfg.num_train_epochs))
    total_steps = cfg.max_steps * processes if cfg.max_steps else max(1, int(updates_per_epoch * cfg.num_train_epochs))
    scheduler_name = {"constant": "constant_with_warmup"}.get(cfg.lr_scheduler_type, cfg.lr_scheduler_type)
    scheduler = get_scheduler(scheduler_name, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(run.model, optimizer, loader, scheduler)
    local_updates_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)  # this process's share
    if cfg.max_steps is None and cfg.num_train_epochs != num_epochs:
        cfg_max_steps = max(1, int(local_updates_per_epoch * cfg.num_train_epochs))
    else:
        cfg_max_steps = cfg.max_steps
    run.model = model
    run.loss_fn = build_loss(run)
    if hasattr(run.loss_fn, "to"):
        run.loss_fn = run.loss_fn.to(accelerator.device)
    state = FitState()
    from skewtune.training import checkpoint as ckpt

    if run.resume_dir is not None:
        state = ckpt.load(run, run.resume_dir)
        if accelerator.is_main_process:
            logger.info("resuming from %s (step %d)", run.resume_dir, state.global_step)

    interrupt = ckpt.InterruptFlag()

    def on_step_end(s: FitState) -> None:
        interrupt.check()
        if cfg.checkpoint_every_steps and s.global_step % cfg.checkpoint_every_steps == 0:
            ckpt.save(run, s)

    def on_epoch_end(s: FitState) -> None:
        if cfg.eval_every_epoch:
            scores = evaluate_split(run, "validation")
            s.history[-1].update({f"eval_{k}": v for k, v in scores.items() if k in ("accuracy", "macro_f1")})
            if accelerator.is_main_process:
                logger.info("epoch %d: train_loss %.4f  eval_accuracy %.4f  eval_macro_f1 %.4f", s.epoch,
                            s.history[-1]["train_loss"], scores["accuracy"], scores["macro_f1"])
        ckpt.save(run, s)

    with ckpt.graceful_interrupt(run, lambda: state, interrupt), Timer() as timer:
        state = fit(
            model=model, optimizer=optimizer, scheduler=scheduler, train_loader=loader, batch_sampler=batch_sampler,
            accelerator=accelerator, loss_fn=run.loss_fn, num_epochs=num_epochs, max_steps=cfg_max_steps,
            max_grad_norm=cfg.max_grad_norm, state=state, on_epoch_end=on_epoch_end, on_step_end=on_step_end,
            on_nan=cfg.on_nan,
        )
    run.state = state
    samples = len(train_split) * min(cfg.num_train_epochs, state.global_step / max(local_updates_per_epoch, 1))
    run.metrics["train_runtime_s"] = timer.seconds
    run.metrics["train_samples_per_second"] = samples / max(timer.seconds, 1e-9)
    run.metrics["train_steps"] = state.global_step
    if cfg.on_nan == "skip":
        run.metrics["skipped_nan_batches"] = state.skipped_batches
    run.metrics["history"] = state.history
    return state


def evaluate_split(run: Run, split: str) -> dict[str, Any]:
    """Score ``split`` (validation/test) with the offline classification metric module."""
    if run.task == "token_cls":
        from skewtune.training.token import evaluate_token_split

        return evaluate_token_split(run, split)
    from skewtune.evaluation import classification_report

    logits = predict_logits(
        run.accelerator.unwrap_model(run.model), run.tokenized[split], run.collator,
        run.cfg.per_device_eval_batch_size, run.accelerator.device, accelerator=run.accelerator,
    )
    if run.decision:
        from skewtune.imbalance.decision import apply_decision

        logits = apply_decision(logits, run.decision)
    predictions = logits.argmax(-1).tolist()
    return classification_report(predictions, run.tokenized[split].labels, run.splits.id2label)


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def finish_metrics(run: Run) -> dict[str, Any]:
    """Test scores, parameter counts, memory and baselines, in the metrics.json contract."""
    cfg = run.cfg
    test = evaluate_split(run, "test")
    model = run.accelerator.unwrap_model(run.model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    metrics = run.metrics
    metrics.update({
        "eval_split": "test",
        "eval_accuracy": test["accuracy"],
        "eval_macro_f1": test["macro_f1"],
        "eval_weighted_f1": test["weighted_f1"],
        "eval_per_class_f1": test["per_class_f1"],
        "eval_per_class_precision": test["per_class_precision"],
        "eval_per_class_recall": test["per_class_recall"],
        "confusion_matrix": test["confusion_matrix"],
        "labels": run.splits.labels,
        "trainable_params": trainable,
        "all_params": total,
        "backbone_bytes": int(base.get_memory_footprint()),
        "peak_rss_mb": peak_rss_mb(),
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
    for key in ("balanced_accuracy", "balanced_macro_f1"):  # sequence classification (the token metric has none)
        if key in test:
            metrics[f"eval_{key}"] = test[key]
    val_history = [h for h in run.state.history if "eval_macro_f1" in h]
    if val_history:
        metrics["validation_macro_f1"] = val_history[-1]["eval_macro_f1"]
    if cfg.baselines and run.task == "seq_cls" and run.accelerator.is_main_process:
        from skewtune.evaluation.baselines import majority_macro_f1, tfidf_macro_f1

        s = run.splits
        metrics["baseline_majority_macro_f1"] = majority_macro_f1(s.train_labels, s.test_labels)
        metrics["baseline_tfidf_macro_f1"] = tfidf_macro_f1(s.train_texts, s.train_labels, s.test_texts, s.test_labels, cfg.seed)
    return metrics


def save_outputs(run: Run) -> Path:
    """Write ``adapter/`` (PEFT + card + manifest), ``metrics.json``, ``confusion_matrix.png`` (main process)."""
    from skewtune.adapters.io import render_card, write_manifest
    from skewtune.backbones import base_fingerprint
    from skewtune.utils.io import atomic_dir, atomic_write_json, atomic_write_text

    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return run.output_dir
    out = run.output_dir
    model = accelerator.unwrap_model(run.model)
    cfg = run.cfg
    manifest = {
        "name": f"{run.splits.name}-{cfg.backbone}-{cfg.adapter}".replace("/", "_"),
        "task_type": run.task,
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
    with atomic_dir(out / "adapter") as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        atomic_write_text(tmp / "README.md", render_card(manifest))
        write_manifest(tmp, manifest)
    atomic_write_json(out / "metrics.json", run.metrics)
    atomic_write_json(out / "config.json", cfg.to_dict())
    if cfg.report_plots and "confusion_matrix" in run.metrics:
        from skewtune.evaluation.plots import plot_confusion_matrix

        plot_confusion_matrix(run.metrics["confusion_matrix"], run.splits.labels, out / "confusion_matrix.png",
                              title=f"{run.splits.name} test — macro-F1 {run.metrics['eval_macro_f1']:.3f}")
    return out


def print_summary(run: Run) -> None:
    """A rich table of the headline figures (main process only)."""
    if not run.accelerator.is_main_process:
        return
    from rich.console import Console
    from rich.table import Table

    m = run.metrics
    table = Table(title=f"skewtune {run.recipe}: {run.splits.name} on {run.cfg.backbone} ({run.cfg.adapter}, {run.cfg.quant})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("test accuracy", f"{m['eval_accuracy']:.4f}"),
        ("test macro-F1", f"{m['eval_macro_f1']:.4f}"),
        *[(f"  F1 {label}", f"{value:.4f}") for label, value in m["eval_per_class_f1"].items()],
    ]
    if "baseline_tfidf_macro_f1" in m:
        rows += [("baseline TF-IDF+LR macro-F1", f"{m['baseline_tfidf_macro_f1']:.4f}"),
                 ("baseline majority macro-F1", f"{m['baseline_majority_macro_f1']:.4f}")]
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
    Console(stderr=False).print(table)
