"""``skewtune merge``: merge LoRA adapters; ``skewtune merge-into-base``: fold one into its backbone.

Heavy imports (torch, peft) happen inside the handlers so ``skewtune --help`` stays fast.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# kept in step with skewtune.merge.methods.MERGE_METHODS (tests check it); unknown names fail with the list
METHOD_NAMES = ("cat", "dare_linear", "dare_ties", "linear", "magnitude_prune", "svd", "task_arithmetic", "ties")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("merge", help="merge LoRA adapters (linear, ties, dare, svd, …) into one adapter")
    parser.add_argument("--adapters", nargs="+", required=True,
                        help="two or more adapter folders (or NAME[@vN] refs on --hub)")
    parser.add_argument("--hub", default=None, help="hub URL for adapter refs (default: $SKEWTUNE_HUB)")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="one weight per adapter (default 1/n; 1 for task_arithmetic, ties, dare_ties)")
    parser.add_argument("--method", default="ties",
                        help="how the LoRA updates are combined: linear / task_arithmetic / cat add them "
                             "exactly, svd adds them and re-factorises to --target_rank, ties / dare_ties / "
                             "dare_linear / magnitude_prune drop small or random entries (ties, dare_ties also "
                             "elect signs) to reduce interference between tasks "
                             f"(choices: {', '.join(METHOD_NAMES)}; default: ties)")
    parser.add_argument("--density", type=float, default=0.5,
                        help="share of each update's entries kept by ties, dare_* and magnitude_prune, "
                             "in (0, 1]")
    parser.add_argument("--scale", type=float, default=1.0, help="λ multiplying the merged update (task arithmetic)")
    parser.add_argument("--target_rank", type=int, default=None,
                        help="LoRA rank of the merged adapter for svd, ties, dare_* and magnitude_prune "
                             "(truncated SVD); default: svd the largest source rank, the others the sum of the "
                             "source ranks")
    parser.add_argument("--seed", type=int, default=0, help="seed of DARE's random drop")
    parser.add_argument("--majority_sign_method", default="total", choices=["total", "frequency"],
                        help="TIES sign election: by summed magnitude (total) or by count (frequency)")
    parser.add_argument("--head_method", default=None,
                        help="merge method for the classifier heads of sources with the same labels "
                             "(choices: as --method; default: --method)")
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="one task name per adapter, in --adapters order, for a multi-task merge of "
                             "adapters with different label sets (default: each source's dataset, else its "
                             "folder name)")
    parser.add_argument("--name", default=None, help="name recorded in the manifest and card (default: merge-<method>)")
    parser.add_argument("--output_dir", default=None,
                        help="folder to write the merged adapter to (default: ./merged-<method>-<hash>)")
    parser.add_argument("--eval", nargs="+", action="extend", default=None, metavar="TASK=DATASET",
                        help="score each source and the merge on DATASET's test split for TASK (repeatable); "
                             "progress on stderr, scores saved in the merged manifest's metrics")
    parser.set_defaults(func=_run_merge)

    fold = subparsers.add_parser("merge-into-base", help="fold an adapter into its backbone (transformers folder)")
    fold.add_argument("--adapter", required=True,
                      help="adapter folder saved by skewtune, to fold into its backbone")
    fold.add_argument("--base", required=True,
                      help="backbone name or folder the adapter was trained on (its fingerprint is checked)")
    fold.add_argument("--output_dir", required=True, help="folder for the merged transformers model")
    fold.add_argument("--quant", choices=["none", "8bit"], default="none",
                      help="weights of the merged model: fp32 (none) or LLM.int8 (8bit)")
    fold.add_argument("--task", default=None, help="task of a multi-task adapter (default: its default task)")
    fold.add_argument("--no_verify", action="store_true", help="skip the logits check against the unmerged model")
    fold.set_defaults(func=_run_merge_into_base)


def parse_evals(items: list[str] | None) -> list[tuple[str, str]]:
    """``["task=dataset", …]`` → pairs; ConfigError on a malformed item."""
    from skewtune.errors import ConfigError

    pairs = []
    for item in items or []:
        task, sep, dataset = item.partition("=")
        if not sep or not task.strip() or not dataset.strip():
            raise ConfigError(f"--eval item '{item}' is not TASK=DATASET", "pass e.g. --eval sentiment=tweets")
        pairs.append((task.strip(), dataset.strip()))
    return pairs


def eval_hook() -> Callable[..., dict[str, Any]]:
    """``skewtune.merge.evaluate_adapter(adapter_dir, dataset_name) -> dict``, or ConfigError if absent."""
    from skewtune.errors import ConfigError

    try:
        from skewtune.merge import evaluate_adapter
    except ImportError as exc:
        raise ConfigError("--eval needs skewtune.merge.evaluate_adapter, which this version lacks",
                          "drop --eval and evaluate the merged adapter separately") from exc
    return evaluate_adapter


def _score(metrics: dict[str, Any]) -> str:
    for key in ("macro_f1", "eval_macro_f1", "f1_macro", "accuracy", "eval_accuracy"):
        if isinstance(metrics.get(key), int | float):
            return f"{key}={metrics[key]:.4f}"
    numeric = [(k, v) for k, v in metrics.items() if isinstance(v, int | float)]
    return ", ".join(f"{k}={v:.4f}" for k, v in numeric[:3]) or json.dumps(metrics, default=str)[:80]


def error_note(lineage: dict[str, Any]) -> str:
    """The factorisation error of a merge, in words: what is compared, relative to what, what is acceptable."""
    layers = lineage.get("layers") or {}
    worst = max((v.get("rel_fro_error", 0.0) for v in layers.values()), default=0.0)
    exact = (lineage.get("parameters") or {}).get("storage") in ("concat", "compact")
    how = ("exact re-factorisation" if exact else
           f"truncated SVD to the per-layer rank of the {lineage['method']} merge; --target_rank sets it")
    verdict = ("float rounding only" if worst < 1e-4 else "small" if worst < 0.05 else "large")
    return (f"factorisation error ({how}): the stored low-rank factors B·A differ from the exact merged update ΔW by "
            f"at most {lineage['max_abs_error']:.3g} in any weight, and by {100 * worst:.2g}% of ‖ΔW‖ (Frobenius) in "
            f"the worst layer — {verdict}."
            + ("" if exact else "\n  Rule of thumb: under 5% rarely changes a prediction; above it raise --target_rank, "
               "and --eval measures the effect. Per layer: skewtune.json → lineage.layers."))


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _evaluate(evaluate: Callable[..., dict[str, Any]], folder: Path, dataset: str, task: str | None) -> dict[str, Any]:
    try:
        accepts_task = "task" in inspect.signature(evaluate).parameters
    except (TypeError, ValueError):
        accepts_task = False
    if accepts_task and task is not None:
        return evaluate(str(folder), dataset, task=task)
    return evaluate(str(folder), dataset)


def _run_merge(args: argparse.Namespace) -> int:
    evals = parse_evals(args.eval)
    evaluate = eval_hook() if evals else None
    from skewtune.merge.api import merge_adapters

    out = merge_adapters(
        adapters=args.adapters,
        weights=args.weights,
        method=args.method,
        density=args.density,
        scale=args.scale,
        target_rank=args.target_rank,
        seed=args.seed,
        output_dir=args.output_dir,
        majority_sign_method=args.majority_sign_method,
        head_method=args.head_method,
        tasks=args.tasks,
        name=args.name,
        hub_url=args.hub,
    )
    manifest = json.loads((out / "skewtune.json").read_text(encoding="utf-8"))
    lineage = manifest["lineage"]
    tasks = manifest.get("tasks") or {}
    print(f"wrote {lineage['method']} merge of {len(lineage['sources'])} adapters to {out}"
          + (f" (tasks: {', '.join(tasks)})" if tasks else ""))
    print(error_note(lineage))
    if evaluate is not None:
        from skewtune.merge.api import record_scores

        names = [src["name"] for src in lineage["sources"]]
        # two sources may share a name (a manifest name, or a folder name such as "adapter"): number the repeats
        unique = {i: name if names.count(name) == 1 else f"{name}#{i + 1}" for i, name in enumerate(names)}
        plan = []
        for task, dataset in evals:
            members = [i for i, s in enumerate(lineage["sources"]) if s.get("task") == task] or range(len(names))
            plan += [(task, dataset, unique[i], Path(lineage["sources"][i]["path"]), None, False) for i in members]
            plan.append((task, dataset, out.name, out, task if task in tasks else None, True))
        _progress(f"scoring {len(plan)} adapters (each source, then the merge, per task) on their datasets' test "
                  "splits; each loads the backbone and predicts every test row")
        print("task\tadapter\tscore")
        scores: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        for i, (task, dataset, name, folder, merged_task, merged) in enumerate(plan, 1):
            label = f"{name} (merged)" if merged else name
            _progress(f"[{i}/{len(plan)}] scoring {label} on {dataset} for task {task}…")
            t0 = time.perf_counter()
            result = _evaluate(evaluate, folder, dataset, merged_task)
            _progress(f"[{i}/{len(plan)}] {label}: {_score(result)} ({time.perf_counter() - t0:.0f} s; "
                      f"{time.perf_counter() - started:.0f} s so far)")
            print(f"{task}\t{label}\t{_score(result)}", flush=True)
            entry = scores.setdefault(task, {"dataset": dataset, "sources": {}})
            if merged:
                entry["merged"] = result
            else:
                entry["sources"][name] = result
        record_scores(out, scores)
        print(f"scores saved in {out / 'skewtune.json'} (metrics)")
    return 0


def _run_merge_into_base(args: argparse.Namespace) -> int:
    from skewtune.merge.base import merge_into_base

    out = merge_into_base(args.adapter, args.base, args.output_dir, quant=args.quant, task=args.task,
                          verify=not args.no_verify)
    info = json.loads((out / "skewtune_merge.json").read_text(encoding="utf-8"))
    check = info.get("verified")
    note = f"; max |Δlogit| vs unmerged {check['max_abs_logit_diff']:.3g}" if check else ""
    print(f"wrote merged {args.quant} model to {out}{note}")
    return 0
