"""LoRA sentiment classification on an 8-bit backbone — skewtune's main recipe.

    accelerate launch recipes/lora_sentiment.py                       # bundled defaults: tweets on MiniLM
    accelerate launch recipes/lora_sentiment.py --config recipes/configs/lora_sentiment.yaml --seed 1
    accelerate launch --config_file recipes/configs/accelerate_cpu_ddp.yaml recipes/lora_sentiment.py

Read it top to bottom and copy it: every step is one call into the skewtune library.
Flags override the YAML config beside this file (recipes/configs/lora_sentiment.yaml).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skewtune.cli.main import run_guarded
from skewtune.training import (
    add_config_arguments,
    config_from_args,
    finish_metrics,
    fit_decision_rule,
    prepare,
    print_summary,
    save_outputs,
    train,
)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "lora_sentiment.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_config_arguments(parser)
    args = parser.parse_args(argv)

    def run() -> int:
        # 1. settings: defaults ← recipes/configs/lora_sentiment.yaml ← --config ← flags
        cfg = config_from_args(args, defaults_file=DEFAULT_CONFIG)
        # 2. validate the output folder, load + deduplicate + split the data, load the 8-bit backbone,
        #    wrap it with the adapter (nothing is written before this succeeds)
        run = prepare(cfg, recipe="lora_sentiment")
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
    sys.exit(main())
