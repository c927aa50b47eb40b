"""``skewtune train``: the classification run of recipes/lora_sentiment.py as a command."""

from __future__ import annotations

import argparse

from skewtune.training.config import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train an adapter for text classification",
        description="Train an adapter for text classification: the run of recipes/lora_sentiment.py as a command. "
                    "Both start from the packaged skewtune/configs/lora_sentiment.yaml, so the same flags give the "
                    "same run. Writes <output_dir>/adapter/, metrics.json and confusion_matrix.png.")
    add_config_arguments(parser, defaults="lora_sentiment")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # bad flags and YAML fail here, before torch loads
    # lazy: keeps `skewtune --help` fast; the task reads the data before the training stack (peft, accelerate)
    # imports, so a data error is reported without waiting for them
    from skewtune.tasks import sequence_task

    task = sequence_task(cfg)
    cfg.validate()
    task.check_config(cfg)
    splits = task.load_splits(cfg)
    from skewtune.training.pipeline import run_training

    run_training(cfg, recipe="train", task=task, splits=splits)
    return 0
