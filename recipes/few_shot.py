"""Few-shot adapters: k examples per class, several seeds, mean ± std — skewtune's few-shot recipe.

    accelerate launch recipes/few_shot.py                                    # tweets, k=8, 5 seeds, prompt_allpairs_lora
    accelerate launch recipes/few_shot.py --dataset pang_lee --shots 16 --seeds 0,1,2 --method contrastive_lora
    accelerate launch recipes/few_shot.py --shots 8 --shots_distribution natural --loss weighted_ce --method lora_head
    python recipes/few_shot.py --quick                                      # smoke run: 2 seeds, small subsets, ~1 min

Each seed draws its own k-shot training set (the same rows for every method: comparisons are paired), trains
the adapter on it, and is scored on the same test rows; the summary gives mean ± std of accuracy and macro-F1
and the train wall time. The adapter of the seed with the best validation macro-F1 is saved as a standard
skewtune adapter folder (``<output_dir>/adapter``), with ``metrics.json`` (every seed) and ``config.json``.
Methods (``--method``): see ``skewtune.fewshot.METHODS`` — lora_head, prefix_head, contrastive_lora (SetFit-style
pairs + a sentence-transformers loss on LoRA, then a head), allpairs_lora, prompt_allpairs_lora (with label-word
prompts), prompt_probe, linear_probe. Settings: skewtune/configs/few_shot.yaml (package data) ← --config
YAML ← flags; --quick applies the QUICK profile below to the settings not given on the command line.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from skewtune.cli.main import ArgumentParser, run_guarded
from skewtune.utils.console import quiet_libraries, recipe_exit_code

if __name__ == "__main__":
    # before the imports below: they import peft → bitsandbytes, which logs its CPU kernel lookup while importing
    quiet_libraries()

from skewtune.fewshot import FewShotConfig, runner  # noqa: E402
from skewtune.training import add_config_arguments, config_from_args  # noqa: E402
from skewtune.training.pipeline import hold_output_dir  # noqa: E402

# --quick: a smoke run (checks that the recipe runs end to end; its scores are not measurements), applied to the
# settings the command line does not give. About a minute on 2 cores (README: measured figure).
QUICK: dict[str, Any] = {
    "seeds": "2", "shots": 4, "test_samples": 200, "validation_samples": 32, "allpairs_steps": 4,
    "num_train_epochs": 2.0, "body_epochs": 1, "max_length": 64,
}


def build_parser() -> ArgumentParser:
    """Every FewShotConfig flag, defaults from the packaged few_shot.yaml; bad flags → one line, exit 2."""
    parser = ArgumentParser(prog="recipes/few_shot.py", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run, about a minute on 2 cores: " + ", ".join(f"--{k} {v}" for k, v in QUICK.items())
                             + " (for the settings not given on the command line); its scores are not measurements")
    add_config_arguments(parser, FewShotConfig, defaults="few_shot")
    return parser


def apply_quick(args: argparse.Namespace) -> argparse.Namespace:
    """The QUICK profile on the settings ``args`` leaves unset (flags given on the command line win)."""
    for key, value in QUICK.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        apply_quick(args)

    def run() -> int:
        # 1. settings: skewtune/configs/few_shot.yaml ← --config ← flags (shots, seeds, method, …)
        cfg = config_from_args(args, FewShotConfig)
        cfg.output_dir = str(cfg.resolved_output_dir("few_shot"))  # fixed once: the lock and the run name one folder
        # 2. lock the output folder (one writer at a time) and validate it, load + split the data, draw every seed's
        #    k-shot set (k too large for a class, k < 2 for a contrastive method, zero seeds: one error line,
        #    nothing written), tokenizer
        with hold_output_dir(cfg.resolved_output_dir("few_shot")):
            run = runner.prepare(cfg, recipe="few_shot")
            # 3. per seed: backbone (8-bit) + adapter, the method's training, validation and test scores
            runner.run_all(run)
            # 4. the best seed's adapter/ (PEFT + card + skewtune.json), metrics.json (all seeds), config.json
            runner.save(run)
        runner.print_summary(run)
        return 0

    return run_guarded(run, debug=args.debug)


if __name__ == "__main__":
    # a bad flag is the parser's one line (exit 2); under `accelerate launch` the output ends with that line, not
    # accelerate's CalledProcessError traceback
    sys.exit(recipe_exit_code(main))
