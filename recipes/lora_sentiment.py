"""LoRA sentiment classification on an 8-bit backbone — skewtune's main recipe.

    accelerate launch recipes/lora_sentiment.py                       # packaged defaults: tweets on MiniLM
    accelerate launch recipes/lora_sentiment.py --config my.yaml --seed 1
    accelerate launch --config_file recipes/configs/accelerate_cpu_ddp.yaml recipes/lora_sentiment.py

Read it top to bottom and copy it: every step is one call into the skewtune library.
Settings: skewtune/configs/lora_sentiment.yaml (package data) ← --config YAML ← flags; `skewtune train` starts
from the same file, so the same flags give the same run.
"""

from __future__ import annotations

import sys

from skewtune.cli.main import ArgumentParser, run_guarded
from skewtune.utils.console import quiet_libraries, recipe_exit_code

if __name__ == "__main__":
    # before the import below: it imports peft → bitsandbytes, which logs its CPU kernel lookup while importing
    quiet_libraries()

from skewtune.training import (  # noqa: E402
    add_config_arguments,
    config_from_args,
    finish_metrics,
    fit_decision_rule,
    prepare,
    print_summary,
    save_outputs,
    train,
)


def build_parser() -> ArgumentParser:
    """Every TrainConfig flag, defaults from the packaged lora_sentiment.yaml; bad flags → one line, exit 2."""
    parser = ArgumentParser(prog="recipes/lora_sentiment.py", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_config_arguments(parser, defaults="lora_sentiment")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        # 1. settings: skewtune/configs/lora_sentiment.yaml ← --config ← flags
        cfg = config_from_args(args)
        # 2. lock the output folder (one writer at a time) and validate it, load + deduplicate + split the data,
        #    load the 8-bit backbone, wrap it with the adapter (nothing is written before this succeeds)
        with prepare(cfg, recipe="lora_sentiment") as run:  # the lock is released at the end of the block
            # 3. the Accelerate loop: length-grouped dynamic-padding batches, warmup + schedule, clipping,
            #    checkpoints every epoch, validation scores each epoch
            train(run)
            # 4. optional --post_hoc decision rule (logit adjustment / per-class bias) fitted on validation
            fit_decision_rule(run)
            # 5. test scores, baselines (majority, TF-IDF + LR), parameter counts, memory
            finish_metrics(run)
            # 6. adapter/ (PEFT folder + card + skewtune.json), metrics.json, confusion_matrix.png
            save_outputs(run)
        print_summary(run)
        return 0

    return run_guarded(run, debug=args.debug)


if __name__ == "__main__":
    # a bad flag is the parser's one line (exit 2); under `accelerate launch` the output ends with that line, not
    # accelerate's CalledProcessError traceback
    sys.exit(recipe_exit_code(main))
