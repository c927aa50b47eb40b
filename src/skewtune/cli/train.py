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
    cfg = config_from_args(args)  # bad flags and YAML fail here, before torch and the backbone load
    from skewtune.training.pipeline import run_training  # lazy: keeps `skewtune --help` and flag errors fast

    run_training(cfg, recipe="train")
    return 0
