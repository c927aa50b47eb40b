"""A few-shot run: validate → one k-shot set per seed → train the method on each → test scores → the best adapter.

Everything is checked before anything is written (output folder, data, every seed's k-shot draw, backbone,
method); the adapter folder, ``metrics.json`` and ``config.json`` are written at the end, atomically.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from skewtune.adapters.io import render_card, write_manifest
from skewtune.backbones import base_fingerprint, load_tokenizer, resolve_backbone
from skewtune.backbones.modes import resolve_quantize_embeddings
from skewtune.data import PaddingCollator, load_dataset_splits, tokenize_split
from skewtune.evaluation import classification_report
from skewtune.fewshot.config import FewShotConfig
from skewtune.fewshot.methods import METHODS, FewShotContext, Trained
from skewtune.fewshot.sampling import KShotSample, mean_std, sample_k_shot, sample_subset
from skewtune.inference.logits import predict_logits
from skewtune.training.pipeline import accelerator_for, check_imbalance_names, check_output_dir
from skewtune.utils.io import atomic_dir, atomic_write_json, atomic_write_text

logger = logging.getLogger("skewtune")


@dataclass
class FewShotRun:
    cfg: FewShotConfig
    recipe: str
    output_dir: Path
    splits: Any
    ctx: FewShotContext
    samples: dict[int, KShotSample]
    test: Any  # TokenizedSplit of the fixed test subset
    validation: Any  # TokenizedSplit of the validation subset (selects the adapter to save)
    test_rows: list[int]
    results: list[dict[str, Any]] = field(default_factory=list)
    best: Trained | None = None
    best_result: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def draw_samples(splits: Any, cfg: FewShotConfig, seeds: list[int]) -> dict[int, KShotSample]:
    """Every seed's k-shot set (DataError naming the class sizes when k is too large)."""
    return {seed: sample_k_shot(splits.train_labels, cfg.shots, seed, distribution=cfg.shots_distribution,
                                classes=splits.labels) for seed in seeds}


def build_context(cfg: FewShotConfig, labels: list[str], accelerator: Any = None) -> FewShotContext:

    spec = resolve_backbone(cfg.backbone)
    tokenizer = load_tokenizer(spec)
    collator = PaddingCollator(tokenizer.pad_token_id, padding_side=getattr(tokenizer, "padding_side", "right"))
    load_kwargs: dict[str, Any] = {}
    if hasattr(cfg, "quantize_embeddings"):

        load_kwargs["quantize_embeddings"] = resolve_quantize_embeddings(cfg.quant, cfg.quantize_embeddings)
    return FewShotContext(cfg=cfg, spec=spec, tokenizer=tokenizer, collator=collator,
                          accelerator=accelerator or accelerator_for(cfg), labels=list(labels),
                          load_kwargs=load_kwargs)


def prepare(cfg: FewShotConfig, recipe: str = "few_shot") -> FewShotRun:
    """Validate and load (data, k-shot draws, tokenizer, evaluation subsets). Writes nothing."""
    cfg.validate()
    seeds = cfg.seed_list()
    output_dir = cfg.resolved_output_dir(recipe)
    check_output_dir(cfg, output_dir)
    splits = load_dataset_splits(
        cfg.dataset, seed=cfg.seed, text_column=cfg.text_column, label_column=cfg.label_column,
        validation_file=cfg.validation_file, test_file=cfg.test_file, max_train_samples=cfg.max_train_samples,
        max_eval_samples=cfg.max_eval_samples, skip_empty_texts=cfg.skip_empty_texts, encoding=cfg.encoding,
    )
    check_imbalance_names(cfg)
    method = METHODS.get(cfg.method)()
    method.adapter_kind(cfg)  # e.g. --adapter prefix with a LoRA method
    method.prompt_rows_for(splits.labels, cfg)  # labels that are not words need --label_words
    samples = draw_samples(splits, cfg, seeds)
    ctx = build_context(cfg, splits.labels)
    ids = splits.label2id
    test_rows = sample_subset(len(splits.test_texts), cfg.test_samples, cfg.seed)
    val_rows = sample_subset(len(splits.validation_texts), cfg.validation_samples, cfg.seed)
    test = tokenize_split(ctx.tokenizer, [splits.test_texts[i] for i in test_rows],
                          [ids[splits.test_labels[i]] for i in test_rows], cfg.max_length, "test")
    validation = tokenize_split(ctx.tokenizer, [splits.validation_texts[i] for i in val_rows],
                                [ids[splits.validation_labels[i]] for i in val_rows], cfg.max_length, "validation")
    return FewShotRun(cfg=cfg, recipe=recipe, output_dir=output_dir, splits=splits, ctx=ctx, samples=samples,
                      test=test, validation=validation, test_rows=test_rows)


def evaluate(ctx: FewShotContext, model: Any, split: Any, progress: bool = False) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores of ``model`` on a tokenized split (offline metric module);
    ``progress``: a progress bar over the batches (main process)."""
    logits = predict_logits(model, split, ctx.collator, ctx.cfg.per_device_eval_batch_size, ctx.accelerator.device,
                            accelerator=ctx.accelerator, progress=progress)
    return classification_report(logits.argmax(-1).tolist(), list(split.labels), ctx.id2label)


def train_seed(ctx: FewShotContext, splits: Any, sample: KShotSample, method: str) -> Trained:
    ids = splits.label2id
    texts = sample.take(splits.train_texts)
    labels = [ids[y] for y in sample.take(splits.train_labels)]
    return METHODS.get(method)().train(ctx, texts, labels, sample.seed)


def run_all(run: FewShotRun) -> dict[str, Any]:
    """Train every seed, score validation (selection) and test, keep the best adapter; returns the metrics."""
    cfg, ctx = run.cfg, run.ctx
    main = ctx.accelerator.is_main_process
    started = time.perf_counter()
    for n, (seed, sample) in enumerate(run.samples.items(), 1):
        if main:
            logger.info("seed %d (%d of %d): training on %d examples", seed, n, len(run.samples), len(sample.indices))
        trained = train_seed(ctx, run.splits, sample, cfg.method)
        if main:
            logger.info("seed %d: scoring %d validation + %d test rows", seed, len(run.validation), len(run.test))
        val = evaluate(ctx, trained.model, run.validation, progress=main)
        test = evaluate(ctx, trained.model, run.test, progress=main)
        result = {
            "seed": seed, "train_size": len(sample.indices), "class_counts": sample.counts,
            "train_seconds": trained.train_seconds, "load_seconds": trained.load_seconds,
            "trainable_params": trained.trainable_params,
            "validation_macro_f1": val["macro_f1"], "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
            "test_per_class_f1": test["per_class_f1"], "info": trained.info,
        }
        run.results.append(result)
        if main:
            logger.info("seed %d: %d examples, train %.1fs, test accuracy %.4f, macro-F1 %.4f", seed, len(sample.indices),
                        trained.train_seconds, test["accuracy"], test["macro_f1"])
        if run.best_result is None or val["macro_f1"] > run.best_result["validation_macro_f1"]:
            run.best, run.best_result = trained, {**result, "test_report": test}
        else:
            del trained
        gc.collect()
    run.metrics = summarize(run)
    run.metrics["wall_seconds_total"] = time.perf_counter() - started
    return run.metrics


def summarize(run: FewShotRun) -> dict[str, Any]:
    cfg, results = run.cfg, run.results
    summary: dict[str, Any] = {
        "method": cfg.method, "dataset": run.splits.name, "backbone": cfg.backbone, "quant": cfg.quant,
        "shots": cfg.shots, "shots_distribution": cfg.shots_distribution, "seeds": [r["seed"] for r in results],
        "test_size": len(run.test), "validation_size": len(run.validation), "labels": run.splits.labels,
    }
    for key in ("test_accuracy", "test_macro_f1", "train_seconds"):
        mean, std = mean_std([r[key] for r in results])
        summary[f"{key}_mean"], summary[f"{key}_std"] = mean, std
    summary["trainable_params"] = results[0]["trainable_params"] if results else None
    best = run.best_result or {}
    summary["saved_seed"] = best.get("seed")
    summary["saved_selected_by"] = "validation macro-F1"
    summary["per_seed"] = results
    if best:
        report = best["test_report"]
        summary.update({"eval_accuracy": report["accuracy"], "eval_macro_f1": report["macro_f1"],
                        "eval_per_class_f1": report["per_class_f1"], "confusion_matrix": report.get("confusion_matrix")})
    return summary


def save(run: FewShotRun) -> Path:
    """``adapter/`` (PEFT + card + skewtune.json with pooling and the k-shot provenance), metrics.json, config.json."""
    accelerator = run.ctx.accelerator
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process or run.best is None:
        return run.output_dir
    cfg, out, best = run.cfg, run.output_dir, run.best
    adapter_type = METHODS.get(cfg.method)().adapter_kind(cfg)
    m = run.metrics
    best_seed = run.best_result["seed"]
    sample = run.samples[best_seed]
    manifest = {
        "name": f"{run.splits.name}-{cfg.backbone}-{cfg.method}-{cfg.shots}shot".replace("/", "_"),
        "task_type": "seq_cls",
        "backbone": cfg.backbone,
        "base_model": run.ctx.spec.hf_id,
        "base_path": run.ctx.spec.path,
        "base_fingerprint": base_fingerprint(run.ctx.spec.path) if Path(run.ctx.spec.path).is_dir() else None,
        "adapter_type": adapter_type,
        "quant": cfg.quant,
        "id2label": {str(k): v for k, v in run.ctx.id2label.items()},
        "languages": [run.splits.language],
        "dataset": run.splits.name,
        "training": {k: v for k, v in cfg.to_dict().items() if k not in ("output_dir", "overwrite_output_dir")},
        "metrics": {"eval_accuracy": m["eval_accuracy"], "eval_macro_f1": m["eval_macro_f1"],
                    "eval_accuracy_mean_over_seeds": m["test_accuracy_mean"],
                    "eval_macro_f1_mean_over_seeds": m["test_macro_f1_mean"],
                    "validation_macro_f1": run.best_result["validation_macro_f1"]},
        "imbalance": {"sampler": cfg.sampler, "loss": cfg.loss, "augment": cfg.augment, "post_hoc": None},
        "decision": None,
        "lineage": None,
        "pooling": best.pooling,
        "few_shot": {"method": cfg.method, "shots": cfg.shots, "distribution": cfg.shots_distribution,
                     "seed": best_seed, "seeds": m["seeds"], "train_rows": sample.indices,
                     "class_counts": sample.counts, "selected_by": "validation macro-F1"},
        "tags": ["few-shot", cfg.method],
    }
    with atomic_dir(out / "adapter") as tmp:
        best.model.save_pretrained(str(tmp), safe_serialization=True)
        atomic_write_text(tmp / "README.md", render_card(manifest))
        write_manifest(tmp, manifest)
    atomic_write_json(out / "metrics.json", m)
    atomic_write_json(out / "config.json", cfg.to_dict())
    return out


def print_summary(run: FewShotRun) -> None:
    if not run.ctx.accelerator.is_main_process:
        return

    m = run.metrics
    table = Table(title=f"skewtune {run.recipe}: {m['method']} on {m['dataset']}, k={m['shots']} "
                        f"({m['shots_distribution']}), {len(m['seeds'])} seeds, {run.cfg.backbone} {run.cfg.quant}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("test accuracy (mean ± std)", f"{m['test_accuracy_mean']:.4f} ± {m['test_accuracy_std']:.4f}"),
        ("test macro-F1 (mean ± std)", f"{m['test_macro_f1_mean']:.4f} ± {m['test_macro_f1_std']:.4f}"),
        ("train time per seed (s)", f"{m['train_seconds_mean']:.1f} ± {m['train_seconds_std']:.1f}"),
        ("wall time, all seeds (s)", f"{m['wall_seconds_total']:.1f}"),
        ("trainable params", f"{m['trainable_params']:,}"),
        ("test rows", str(m["test_size"])),
        ("saved adapter", f"seed {m['saved_seed']} (best validation macro-F1), test macro-F1 {m['eval_macro_f1']:.4f}"),
        ("output", str(run.output_dir)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
