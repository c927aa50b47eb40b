"""Seed spread of the cross-lingual sentiment zero-shot gap (issue: cross-lingual transfer).

One seed of ``recipes/cross_lingual.py`` scores 300 English and 150 / 91 / 150 French / German / Dutch test texts,
so a single gap figure moves by a few points with the training seed alone. This script keeps the data fixed
(the recipe's draw, ``--seed`` of the config) and retrains only the English sentiment task adapter with several
training seeds (initialisation, dropout, batch order) and learning rates, then scores English in-language and
zero-shot in each target language — the recipe's own steps, imported from ``recipes/cross_lingual.py``
(``build_task_data``, ``prepare_task`` → ``train`` → ``skewtune.crosslingual.score``). Writes ``benchmarks/results/cross_lingual_seeds.{json,md}``.

    python benchmarks/cross_lingual_seeds.py                                  # lr 1e-3 and 3e-3, seeds 42, 1, 2
    python benchmarks/cross_lingual_seeds.py --learning_rates 1e-3 --seeds 42,1
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import harness  # beside this script

REPO = harness.REPO
RECIPE = REPO / "recipes" / "cross_lingual.py"


def load_recipe():
    """``recipes/cross_lingual.py`` as a module (its settings, data and task-adapter steps)."""
    spec = importlib.util.spec_from_file_location("cross_lingual_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,1,2")
    parser.add_argument("--learning_rates", default="1e-3,3e-3")
    parser.add_argument("--name", default="cross_lingual_seeds")
    args = parser.parse_args(argv)
    xl = load_recipe()
    from skewtune.crosslingual import score
    from skewtune.training.config import recipe_defaults
    from skewtune.training.pipeline import train
    from skewtune.utils.console import quiet_libraries
    from skewtune.utils.stats import mean_std

    quiet_libraries()
    seeds = [int(s) for s in args.seeds.split(",")]
    rates = [r.strip() for r in args.learning_rates.split(",")]
    base = xl.CrossLingualConfig(**{**recipe_defaults("cross_lingual", xl.CrossLingualConfig), "tasks": "sentiment"})
    base.validate()
    data = xl.build_task_data(base, "sentiment")  # one fixed draw of every split
    started = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory(prefix="skewtune-xl-seeds-") as tmp:
        for rate in rates:
            for seed in seeds:
                cfg = dataclasses.replace(base, seed=seed, learning_rate=rate)
                start = time.perf_counter()
                run = xl.prepare_task(cfg, "sentiment", data, Path(tmp) / f"{rate}_{seed}")
                train(run)
                row = {"learning_rate": rate, "seed": seed, "en": score(run, "test")["accuracy"],
                       "train_loss": run.state.history[-1]["train_loss"] if run.state.history else None}
                for name in xl.add_target_splits(run, cfg, data):
                    row[name.removeprefix("test_")] = score(run, name)["accuracy"]
                targets = [row[lang] for lang in data.targets]
                row["target_mean"] = sum(targets) / len(targets)
                row["gap_points"] = 100 * (row["en"] - row["target_mean"])
                row["seconds"] = round(time.perf_counter() - start, 1)
                xl.release(run)
                runs.append(row)
                print(f"lr {rate} seed {seed}: EN {100 * row['en']:.1f}, targets {100 * row['target_mean']:.1f}, "
                      f"gap {row['gap_points']:+.1f} ({row['seconds']:.0f} s)", flush=True)
    languages = list(data.targets)
    summary = {}
    for rate in rates:
        rows = [r for r in runs if r["learning_rate"] == rate]
        summary[rate] = {key: dict(zip(("mean", "std"), mean_std([100 * r[key] for r in rows])))
                         for key in ("en", *languages, "target_mean")}
        summary[rate]["gap_points"] = dict(zip(("mean", "std"), mean_std([r["gap_points"] for r in rows])))
        summary[rate]["collapsed"] = sum(r["en"] < 0.6 for r in rows)
    result = {"command": "python benchmarks/cross_lingual_seeds.py" + "".join(
        f" --{k} {v}" for k, v in (("seeds", args.seeds), ("learning_rates", args.learning_rates))),
        "backbone": base.backbone, "quant": base.quant, "train_size": len(data.source.train_texts),
        "test_sizes": {"en": len(data.source.test_texts), **{k: len(v.test) for k, v in data.targets.items()}},
        "runs": runs, "summary": summary, "seconds_total": round(time.perf_counter() - started, 1),
        "machine": harness.machine()}
    head = "| lr | seed | EN | " + " | ".join(lang.upper() for lang in languages) + " | target mean | gap |"
    lines = [f"# Cross-lingual sentiment: zero-shot gap over training seeds (`{result['command']}`)", "",
             f"English task adapter (LoRA r=8, {base.backbone} {base.quant}) on {result['train_size']} English "
             f"sentences; data fixed, only the training seed varies. Accuracy × 100; test sizes "
             + ", ".join(f"{k.upper()} {v}" for k, v in result["test_sizes"].items()) + ".", "",
             head, "|" + " --- |" * (head.count("|") - 1)]
    for r in runs:
        lines.append(f"| {r['learning_rate']} | {r['seed']} | {100 * r['en']:.1f} | "
                     + " | ".join(f"{100 * r[lang]:.1f}" for lang in languages)
                     + f" | {100 * r['target_mean']:.1f} | {r['gap_points']:+.1f} |")
    lines += ["", "| lr | EN | target mean | gap (mean ± std) | runs at chance (EN < 60) |", "| --- | ---: | ---: | ---: | ---: |"]
    for rate, s in summary.items():
        lines.append(f"| {rate} | {s['en']['mean']:.1f} ± {s['en']['std']:.1f} | {s['target_mean']['mean']:.1f} ± "
                     f"{s['target_mean']['std']:.1f} | {s['gap_points']['mean']:+.1f} ± {s['gap_points']['std']:.1f} | "
                     f"{s['collapsed']} of {len(seeds)} |")
    lines += ["", f"{len(runs)} trainings, {result['seconds_total'] / 60:.1f} min on 2 CPU cores."]
    harness.write_results(harness.results_path(args.name), result, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
