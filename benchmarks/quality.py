"""Quality side by side on one split: majority, tuned TF-IDF + LR, plain PEFT LoRA + Trainer, full fine-tuning +
Trainer, SetFit, skewtune's default and the best configuration of the default search.

    python benchmarks/quality.py                                   # every row, default grids and seeds (--help)
    python benchmarks/quality.py --datasets pang_lee --seeds 0     # one dataset, one seed
    python benchmarks/quality.py --quick                           # smoke run: 300 rows, tiny grids (outputs/)

Every model row uses the same backbone (the bundled all-MiniLM-L6-v2), the same splits (the main job's: corpus
deduplicated, 80/10/10 stratified with data seed 42, whatever the training seed) and is scored on the same test
split. A grid (learning rate, TF-IDF settings) is searched on the validation split with the first training seed;
the chosen point is then trained with every seed. Each run is a fresh child process; train time is the wall time
of training alone, with the process's CPU time beside it (robust to other load on the machine) and the load
average recorded. Partial results are kept in ``outputs/benchmarks/quality_partial.json``: an interrupted run
continues where it stopped (``--fresh`` starts over), and several invocations with ``--rows`` / ``--grid`` subsets
fill one cache that a last invocation over every row assembles into the table (the committed results record
their command).

Rows:
- majority: always the most frequent training label.
- TF-IDF + LR: word 1–2-grams, sublinear tf; min_df × C × class weight grid on validation macro-F1.
- plain PEFT: ``peft.get_peft_model`` LoRA r=8/alpha 16/dropout 0.1 on query/value (peft's SEQ_CLS defaults: the
  classifier trained too) on the fp32 backbone, ``transformers.Trainer`` with dynamic padding and length grouping,
  AdamW, linear schedule with 6% warmup, batch 32, max length 128; learning rate from a grid on validation.
- full fine-tuning: the same Trainer set-up, every weight trained; learning rate × epochs grid on validation.
- SetFit 1.2 (documented defaults) on k training texts per class (the full training set's sentence pairs do not fit
  the time budget: ``--setfit_k``).
- skewtune: ``recipes/lora_sentiment.py``'s defaults (``src/skewtune/configs/lora_sentiment.yaml``) and the
  configurations given with ``--skewtune name=flag=value,flag=value``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness  # beside this script

REPO = Path(__file__).resolve().parents[1]
PARTIAL = REPO / "outputs" / "benchmarks" / "quality_partial.json"
DATA_SEED = 42
VERSIONS = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "setfit", "scikit-learn")
TFIDF_GRID = {"min_df": (1, 2), "C": (0.5, 1.0, 2.0, 4.0, 8.0, 16.0), "class_weight": (None, "balanced")}
DEFAULTS: dict[str, Any] = {}  # the packaged YAML's values, read when the table is written
SEARCHED = ("target_modules", "lora_r", "lora_alpha", "learning_rate", "num_train_epochs", "per_device_train_batch_size",
            "max_tokens_per_batch", "sampler", "max_length", "loss")
LABELS = {"majority": "majority class", "tfidf": "TF-IDF + LR (tuned on validation)",
          "peft": "plain PEFT LoRA + Trainer", "full_ft": "full fine-tuning + Trainer", "setfit": "SetFit"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="tweets,pang_lee", help="comma list of registered corpora")
    p.add_argument("--seeds", default="42,1,2", help="training seeds; the grids are searched with the first")
    p.add_argument("--seeds_for", action="append", default=[], metavar="DATASET=SEEDS",
                   help="a dataset's own seeds, e.g. tweets=42 (repeatable)")
    p.add_argument("--grid_seeds_only", default="tweets", help="datasets on which only the first seed runs the "
                   "Trainer baselines and SetFit (a full fine-tuning epoch on tweets takes ~20 min on 2 cores)")
    p.add_argument("--peft_lrs", default="5e-4,1e-3,2e-3", help="plain PEFT learning-rate grid")
    p.add_argument("--full_ft_lrs", default="3e-5,5e-5,1e-4", help="full fine-tuning learning-rate grid")
    p.add_argument("--full_ft_epochs", default="1,2", help="full fine-tuning epochs grid")
    p.add_argument("--grid", action="append", default=[], metavar="DATASET:ROW=LIST",
                   help="a dataset's own grid, e.g. tweets:full_ft_lrs=5e-5, or for one epoch count only "
                        "tweets:full_ft_lrs_2ep=1e-4 (repeatable)")
    p.add_argument("--setfit_k", type=int, default=32, help="SetFit: training texts per class (its sentence pairs grow with k²; on the tweets k = 64 "
                   "had not finished after 14 min on 2 cores, k = 32 trains in about 4)")
    p.add_argument("--skewtune", action="append", default=[], metavar="NAME=FLAG=VALUE,…",
                   help="a skewtune configuration besides the default, e.g. "
                        "'r16=lora_r=16,learning_rate=2e-3' (repeatable); 'DATASET:NAME=…' runs it on that dataset "
                        "only")
    p.add_argument("--no_default", action="store_true",
                   help="run only the --skewtune configurations, not the packaged defaults as they are")
    p.add_argument("--rows", default="majority,tfidf,peft,full_ft,setfit,skewtune", help="which rows to run")
    p.add_argument("--threads", default="auto", help="torch threads per child (auto: every core when idle)")
    p.add_argument("--quick", action="store_true", help="smoke run: 300 training rows, tiny grids, outputs/")
    p.add_argument("--fresh", action="store_true", help="ignore the partial results of an interrupted run")
    p.add_argument("--name", default="quality", help="results file stem")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # child mode: one JSON row spec
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ the split
def load_splits(dataset: str, quick: bool) -> Any:
    from skewtune.data.datasets import load_dataset_splits

    limits = {"max_train_samples": 300, "max_eval_samples": 200} if quick else {}
    return load_dataset_splits(dataset, seed=DATA_SEED, **limits)


def report(predictions: list[int], references: list[int], id2label: dict[int, str]) -> dict[str, Any]:
    from skewtune.evaluation import classification_report

    r = classification_report(predictions, references, id2label)
    return {k: r[k] for k in ("macro_f1", "balanced_macro_f1", "accuracy")}


def label_ids(splits: Any, split: str) -> list[int]:
    labels = {"train": splits.train_labels, "validation": splits.validation_labels, "test": splits.test_labels}[split]
    return [splits.label2id[label] for label in labels]


class Timer:
    """Wall and process CPU seconds of a block, and the load average around it."""

    def __enter__(self) -> Timer:
        self.load_before = harness.load_average()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu
        self.load_after = harness.load_average()

    def record(self) -> dict[str, Any]:
        return {"train_seconds": round(self.wall, 1), "train_cpu_seconds": round(self.cpu, 1),
                "load_average_before": self.load_before, "load_average_after": self.load_after}


# ------------------------------------------------------------------------------------------------ the rows
def row_majority(spec: dict[str, Any], splits: Any) -> dict[str, Any]:
    from collections import Counter

    majority = splits.label2id[Counter(splits.train_labels).most_common(1)[0][0]]
    out = {}
    for split in ("validation", "test"):
        refs = label_ids(splits, split)
        out[split] = report([majority] * len(refs), refs, splits.id2label)
    return {**out, "trainable_params": 0, "train_seconds": 0.0, "train_cpu_seconds": 0.0}


def row_tfidf(spec: dict[str, Any], splits: Any) -> dict[str, Any]:
    """The whole grid, each point's validation score; the best point's test score."""
    import itertools

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from skewtune.evaluation.baselines import tfidf_baseline

    train, val, test = list(splits.train_texts), list(splits.validation_texts), list(splits.test_texts)
    grid = []
    with Timer() as timer:
        for min_df in TFIDF_GRID["min_df"]:
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df)
            x_train, x_val, x_test = vectorizer.fit_transform(train), vectorizer.transform(val), vectorizer.transform(test)
            for c, weight in itertools.product(TFIDF_GRID["C"], TFIDF_GRID["class_weight"]):
                model = LogisticRegression(C=c, class_weight=weight, max_iter=3000, random_state=spec["seed"])
                model.fit(x_train, splits.train_labels)
                ids = splits.label2id
                val_report = report([ids[x] for x in model.predict(x_val)], label_ids(splits, "validation"),
                                    splits.id2label)
                grid.append({"min_df": min_df, "C": c, "class_weight": weight, "validation": val_report,
                             "test": report([ids[x] for x in model.predict(x_test)], label_ids(splits, "test"),
                                            splits.id2label)})
    best = max(grid, key=lambda g: g["validation"]["macro_f1"])
    default = tfidf_baseline(train, splits.train_labels, val, splits.validation_labels, test, splits.test_labels,
                             seed=spec["seed"])  # the main job's own (smaller) grid
    return {"validation": best["validation"], "test": best["test"], "chosen": {k: best[k] for k in TFIDF_GRID},
            "grid": [{k: g[k] for k in TFIDF_GRID} | {"validation_macro_f1": g["validation"]["macro_f1"]}
                     for g in grid],
            "main_job_baseline": default, "trainable_params": None, **timer.record()}


def _tokenized(splits: Any, tokenizer: Any, max_length: int = 128) -> dict[str, Any]:
    from datasets import Dataset

    out = {}
    for split, texts in (("train", splits.train_texts), ("validation", splits.validation_texts),
                         ("test", splits.test_texts)):
        data = Dataset.from_dict({"text": list(texts), "label": label_ids(splits, split)})
        out[split] = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
                              remove_columns=["text"])
    return out


def row_trainer(spec: dict[str, Any], splits: Any) -> dict[str, Any]:
    """Plain PEFT LoRA or full fine-tuning through ``transformers.Trainer`` (fp32 backbone)."""
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from skewtune.backbones.registry import resolve_backbone

    path = resolve_backbone("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(path)
    data = _tokenized(splits, tokenizer)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(splits.label2id), id2label=dict(splits.id2label), label2id=dict(splits.label2id))
    if spec["kind"] == "peft":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1,
                                                 target_modules=["query", "value"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory(prefix="quality-trainer-") as tmp:
        args = TrainingArguments(
            output_dir=tmp, learning_rate=spec["lr"], num_train_epochs=spec.get("epochs", 1),
            per_device_train_batch_size=32, per_device_eval_batch_size=256, warmup_steps=0.06, weight_decay=0.01,
            lr_scheduler_type="linear", seed=spec["seed"], report_to="none", save_strategy="no",
            eval_strategy="no", logging_strategy="no", train_sampling_strategy="group_by_length",
            disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=model, args=args, train_dataset=data["train"],
                          data_collator=DataCollatorWithPadding(tokenizer))
        with Timer() as timer:
            trainer.train()
        out = {"trainable_params": trainable, **timer.record()}
        for split in ("validation", "test"):
            # the references come back with the predictions: with length grouping Trainer.predict also reorders rows
            predicted = trainer.predict(data[split])
            logits = predicted.predictions[0] if isinstance(predicted.predictions, tuple) else predicted.predictions
            references = predicted.label_ids.tolist()
            assert sorted(references) == sorted(label_ids(splits, split))
            out[split] = report(np.argmax(logits, -1).tolist(), references, splits.id2label)
    return out


def row_setfit(spec: dict[str, Any], splits: Any) -> dict[str, Any]:
    """SetFit's documented defaults on ``k`` texts per class drawn with the seed."""
    import random

    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from skewtune.backbones.registry import resolve_backbone

    rng = random.Random(spec["seed"])
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(splits.train_labels):
        by_label.setdefault(label, []).append(i)
    chosen = sorted(i for rows in by_label.values() for i in rng.sample(rows, min(spec["k"], len(rows))))
    texts = [splits.train_texts[i] for i in chosen]
    labels = [splits.label2id[splits.train_labels[i]] for i in chosen]
    model = SetFitModel.from_pretrained(resolve_backbone("minilm").path)
    with tempfile.TemporaryDirectory(prefix="quality-setfit-") as tmp:
        args = TrainingArguments(output_dir=tmp, seed=spec["seed"], report_to="none")
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        with Timer() as timer:
            trainer.train()
    out = {"trainable_params": sum(p.numel() for p in model.model_body.parameters() if p.requires_grad)
           + int(model.model_head.coef_.size + model.model_head.intercept_.size), "train_texts": len(texts),
           **timer.record()}
    for split in ("validation", "test"):
        texts = list(getattr(splits, f"{split}_texts"))
        predicted = [int(p) for p in model.predict(texts, batch_size=256, show_progress_bar=False)]
        out[split] = report(predicted, label_ids(splits, split), splits.id2label)
    return out


def row_skewtune(spec: dict[str, Any], splits: Any) -> dict[str, Any]:
    """skewtune's pipeline (the recipe's defaults + ``spec['flags']``) on the shared splits."""
    from skewtune.training.config import TrainConfig, recipe_defaults
    from skewtune.training.pipeline import evaluate_split, finish_metrics, prepare, train

    values = recipe_defaults("lora_sentiment", TrainConfig)
    values.update(spec.get("flags", {}))
    with tempfile.TemporaryDirectory(prefix="quality-skewtune-") as tmp:
        values.update(dataset=spec["dataset"], seed=spec["seed"], output_dir=tmp, baselines=False)
        if spec.get("quick"):
            values.update(max_train_samples=300, max_eval_samples=200)
        cfg = TrainConfig(**values)
        with prepare(cfg, recipe="lora_sentiment", splits=splits) as run:
            with Timer() as timer:
                train(run)
            metrics = finish_metrics(run)
            validation = evaluate_split(run, "validation")
    return {"validation": {k: validation[k] for k in ("macro_f1", "balanced_macro_f1", "accuracy")},
            "test": {"macro_f1": metrics["eval_macro_f1"], "balanced_macro_f1": metrics["eval_balanced_macro_f1"],
                     "accuracy": metrics["eval_accuracy"]},
            "trainable_params": metrics["trainable_params"], "engine_train_seconds": metrics["train_runtime_s"],
            "config": {k: getattr(cfg, k) for k in SEARCHED}, **timer.record()}


ROWS = {"majority": row_majority, "tfidf": row_tfidf, "peft": row_trainer, "full_ft": row_trainer,
        "setfit": row_setfit, "skewtune": row_skewtune}


def child(spec: dict[str, Any]) -> None:
    """Child mode: one row in this fresh process; its result as the last stdout line."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(spec["threads"])
    hf_logging.set_verbosity_error()
    splits = load_splits(spec["dataset"], spec.get("quick", False))
    start = time.perf_counter()
    result = ROWS[spec["kind"]](spec, splits)
    result.update(wall_seconds=round(time.perf_counter() - start, 1), threads=spec["threads"],
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  sizes={"train": len(splits.train_labels), "validation": len(splits.validation_labels),
                         "test": len(splits.test_labels)})
    gc.collect()
    harness.emit(result)


# ------------------------------------------------------------------------------------------------ the run
def row_key(spec: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in spec.items() if k not in ("threads",)}, sort_keys=True)


def run_row(spec: dict[str, Any], partial: dict[str, Any], partial_path: Path, threads_arg: str) -> dict[str, Any]:
    key = row_key(spec)
    if key in partial:
        return partial[key]
    spec = {**spec, "threads": harness.choose_threads(threads_arg)}
    print(f"[quality] {spec['dataset']} {spec['kind']} {({k: v for k, v in spec.items() if k not in ('dataset', 'kind')})}",
          flush=True)
    result = harness.run_child(__file__, "--row", json.dumps(spec), what=f"{spec['kind']} on {spec['dataset']}")
    result["spec"] = spec
    partial[key] = result
    partial_path.parent.mkdir(parents=True, exist_ok=True)
    partial_path.write_text(json.dumps(partial, indent=1))
    t = result.get("test", {})
    print(f"    test macro-F1 {t.get('macro_f1', float('nan')):.4f}  validation "
          f"{result.get('validation', {}).get('macro_f1', float('nan')):.4f}  train {result.get('train_seconds')} s",
          flush=True)
    return result


def grid_value(args: argparse.Namespace, dataset: str, name: str, fallback: str | None = None) -> list[float]:
    """A grid's values for ``dataset``: its ``--grid DATASET:name=…``, else ``fallback``'s, else the flag's."""
    for item in args.grid:
        where, _, rest = item.partition(":")
        key, _, values = rest.partition("=")
        if where == dataset and key == name:
            return [float(v) for v in values.split(",")]
    if fallback:
        return grid_value(args, dataset, fallback)
    return [float(v) for v in getattr(args, name).split(",")]


def skewtune_configs(args: argparse.Namespace, dataset: str) -> dict[str, dict[str, Any]]:
    """The skewtune configurations to run on ``dataset``: name → flags."""
    from skewtune.training.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    configs: dict[str, dict[str, Any]] = {} if args.no_default else {"default": {}}
    for item in args.skewtune:
        name, _, flags = item.partition("=")
        only, _, name = name.rpartition(":")
        if only and only != dataset:
            continue
        values = {}
        for pair in flags.split(","):
            key, _, value = pair.partition("=")
            if key not in names:
                raise SystemExit(f"error: --skewtune {item}: {key} is not a skewtune train flag")
            values[key] = parse_flag(key, value)
        configs[name] = values
    return configs


def parse_flag(key: str, value: str) -> Any:
    """``value`` parsed as ``skewtune train --key value`` parses it."""
    from skewtune.training.config import NONE_GIVEN, TrainConfig, add_config_arguments

    parser = argparse.ArgumentParser(prog=f"--skewtune {key}")
    add_config_arguments(parser, TrainConfig)
    given = getattr(parser.parse_args([f"--{key}={value}"]), key)
    return None if given is NONE_GIVEN else given


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.row:
        child(json.loads(args.row))
        return 0
    if args.quick:
        args.peft_lrs, args.full_ft_lrs, args.full_ft_epochs, args.setfit_k = "1e-3", "5e-5", "1", 4
        args.seeds = args.seeds.split(",")[0]
    partial_path = PARTIAL.with_name(f"{args.name}{'_quick' if args.quick else ''}_partial.json")
    partial = {} if args.fresh or not partial_path.exists() else json.loads(partial_path.read_text())
    rows = args.rows.split(",")
    seeds_for = dict(item.split("=", 1) for item in args.seeds_for)
    for dataset in args.datasets.split(","):  # a bad --skewtune flag stops the run before any row
        skewtune_configs(args, dataset)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    for dataset in args.datasets.split(","):
        base = {"dataset": dataset, "quick": args.quick}
        seeds = [int(s) for s in seeds_for.get(dataset, args.seeds).split(",")]
        trainer_seeds = seeds[:1] if dataset in args.grid_seeds_only.split(",") else seeds
        table: dict[str, Any] = {}
        if "majority" in rows:
            table["majority"] = {"runs": [run_row({**base, "kind": "majority", "seed": seeds[0]}, partial, partial_path,
                                                  args.threads)]}
        if "tfidf" in rows:
            table["tfidf"] = {"runs": [run_row({**base, "kind": "tfidf", "seed": s}, partial, partial_path, args.threads)
                                       for s in seeds]}
        for kind, points in (("peft", [{"lr": lr} for lr in grid_value(args, dataset, "peft_lrs")]),
                             ("full_ft", [{"lr": lr, "epochs": int(e)} for e in grid_value(args, dataset, "full_ft_epochs")
                                          for lr in grid_value(args, dataset, f"full_ft_lrs_{int(e)}ep", "full_ft_lrs")])):
            if kind not in rows:
                continue
            grid = [run_row({**base, "kind": kind, "seed": seeds[0], **p}, partial, partial_path, args.threads)
                    for p in points]
            for point, result in zip(points, grid):
                result["point"] = point
            if kind == "full_ft":  # the 1-epoch grid's best point is a row of its own (the acceptance's reference)
                for epochs in sorted({p["epochs"] for p in points}):
                    sub = [r for r in grid if r["point"]["epochs"] == epochs]
                    best = max(sub, key=lambda r: r["validation"]["macro_f1"])
                    runs = [best] + [run_row({**base, "kind": kind, "seed": s, **best["point"]}, partial, partial_path,
                                             args.threads) for s in trainer_seeds[1:]]
                    table[f"full_ft_{epochs}ep"] = {"runs": runs, "chosen": best["point"],
                                                    "grid": [summary_point(r) for r in sub]}
            else:
                best = max(grid, key=lambda r: r["validation"]["macro_f1"])
                runs = [best] + [run_row({**base, "kind": kind, "seed": s, **best["point"]}, partial, partial_path,
                                         args.threads) for s in trainer_seeds[1:]]
                table[kind] = {"runs": runs, "chosen": best["point"], "grid": [summary_point(r) for r in grid]}
        if "setfit" in rows:
            table["setfit"] = {"runs": [run_row({**base, "kind": "setfit", "seed": s, "k": args.setfit_k}, partial,
                                                partial_path, args.threads) for s in trainer_seeds],
                               "chosen": {"k": args.setfit_k}}
        if "skewtune" in rows:
            for name, flags in skewtune_configs(args, dataset).items():
                table[f"skewtune_{name}"] = {
                    "runs": [run_row({**base, "kind": "skewtune", "seed": s, "flags": flags}, partial, partial_path,
                                     args.threads) for s in seeds], "chosen": flags}
        for entry in table.values():
            entry["summary"] = summarize(entry["runs"])
        results[dataset] = table
    result = {"benchmark": args.name, "quick": args.quick, "data_seed": DATA_SEED,
              "seeds": {d: seeds_for.get(d, args.seeds) for d in args.datasets.split(",")},
              "grid_seeds_only": args.grid_seeds_only.split(","), "rows": results,
              "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "total_seconds_this_invocation": round(time.perf_counter() - started, 1),
              "machine": harness.machine(VERSIONS)}
    stem = harness.results_path(args.name, args.quick)
    markdown = render_markdown(result)
    harness.write_results(stem, result, markdown)
    plot(result, Path(stem).with_suffix(".png"))
    print(markdown)
    return 0


def summary_point(result: dict[str, Any]) -> dict[str, Any]:
    return {**result["point"], "validation_macro_f1": result["validation"]["macro_f1"],
            "test_macro_f1": result["test"]["macro_f1"], "train_seconds": result.get("train_seconds")}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation (n − 1; 0 for one run) over seeds of each test metric and of the train time."""
    out: dict[str, Any] = {"seeds": len(runs)}
    for metric in ("macro_f1", "balanced_macro_f1", "accuracy"):
        values = [r["test"][metric] for r in runs]
        out[metric] = statistics.fmean(values)
        out[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    validation = [r["validation"]["macro_f1"] for r in runs if "validation" in r]
    out["validation_macro_f1"] = statistics.fmean(validation) if len(validation) == len(runs) else None
    for key in ("train_seconds", "train_cpu_seconds"):
        values = [r.get(key) or 0.0 for r in runs]
        out[key] = statistics.fmean(values)
    out["trainable_params"] = runs[0].get("trainable_params")
    return out


def describe(name: str, entry: dict[str, Any]) -> str:
    if name.startswith("full_ft_"):
        return f"full fine-tuning + Trainer, {entry['chosen']['epochs']} epoch(s), lr {entry['chosen']['lr']:g}"
    if name == "peft":
        return f"plain PEFT LoRA + Trainer, lr {entry['chosen']['lr']:g}"
    if name == "setfit":
        return f"SetFit, {entry['chosen']['k']} texts per class"
    if name == "tfidf":
        c = entry["runs"][0]["chosen"]
        return f"TF-IDF + LR (min_df {c['min_df']}, C {c['C']:g}, class weight {c['class_weight']})"
    if name.startswith("skewtune_"):
        flags = entry["chosen"]
        described = " ".join(f"--{k} {'none' if v is None else v}" for k, v in flags.items())
        if all(DEFAULTS.get(k) == v for k, v in flags.items()):  # the packaged YAML's values: the default job
            return "**skewtune default**" + (f" ({described})" if described else "")
        return f"skewtune {described}"
    return LABELS.get(name, name)


def render_markdown(result: dict[str, Any]) -> str:
    from skewtune.training.config import TrainConfig, recipe_defaults

    DEFAULTS.clear()
    DEFAULTS.update(recipe_defaults("lora_sentiment", TrainConfig))
    def pm(s: dict[str, Any], metric: str) -> str:
        return f"{s[metric]:.4f}" + (f" ± {s[metric + '_std']:.4f}" if s["seeds"] > 1 else "")

    title = ("Quality side by side" if result.get("benchmark", "quality") == "quality"
             else f"{result['benchmark']}: configurations side by side")
    lines = [f"# {title} (`{result['command']}`)", "",
             f"Same splits for every row (data seed {result['data_seed']}); test scores, mean ± std over the seeds "
             "run (column 'seeds'; validation macro-F1: the mean over them); grids searched on validation with the first seed. Train time: wall seconds of "
             "training alone (CPU seconds of the process beside it).", ""]
    for dataset, table in result["rows"].items():
        sizes = next((r["sizes"] for e in table.values() for r in e["runs"] if "sizes" in r), {})
        lines += [f"## {dataset} ({sizes.get('train', '?')} train / {sizes.get('validation', '?')} validation / "
                  f"{sizes.get('test', '?')} test)", "",
                  "| method | test macro-F1 | balanced macro-F1 | accuracy | validation macro-F1 | train s (CPU s) | "
                  "trainable params | seeds |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, entry in table.items():
            s = entry["summary"]
            params = f"{s['trainable_params']:,}" if s.get("trainable_params") is not None else "–"
            val = f"{s['validation_macro_f1']:.4f}" if s.get("validation_macro_f1") is not None else "–"
            lines.append(f"| {describe(name, entry)} | {pm(s, 'macro_f1')} | {pm(s, 'balanced_macro_f1')} | "
                         f"{pm(s, 'accuracy')} | {val} | {s['train_seconds']:.0f} ({s['train_cpu_seconds']:.0f}) | {params} | "
                         f"{s['seeds']} |")
        for name, entry in table.items():
            if "grid" in entry:
                points = "; ".join(
                    ", ".join(f"{k} {v:g}" for k, v in p.items() if k in ("lr", "epochs"))
                    + f": validation {p['validation_macro_f1']:.4f}" for p in entry["grid"])
                lines.append(f"\n{describe(name, entry)} — grid (first seed): {points}")
        lines.append("")
    return "\n".join(lines)  # harness.write_results adds the machine line


def plot(result: dict[str, Any], path: Path) -> Path:
    """Test macro-F1 (mean ± std over seeds) against train seconds (log x), one panel per dataset; the majority
    class as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skewtune.utils.io import atomic_write_bytes

    datasets = list(result["rows"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for name, entry in result["rows"][dataset].items():
            s = entry["summary"]
            label = describe(name, entry).replace("**", "")
            if name == "majority":
                ax.axhline(100 * s["macro_f1"], color="grey", linestyle="--", label=label)
                continue
            marker = "*" if name.startswith("skewtune_") else "o"
            ax.errorbar([max(s["train_seconds"], 0.1)], [100 * s["macro_f1"]], yerr=[100 * s["macro_f1_std"]],
                        marker=marker, markersize=12 if marker == "*" else 7, capsize=3, linestyle="none",
                        label=label)
        ax.set_xscale("log")
        ax.set_xlabel("train seconds (wall, log scale)")
        ax.set_ylabel("test macro-F1 (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Quality vs training cost ({result['machine'].get('cpu', '')})", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


if __name__ == "__main__":
    sys.exit(main())
