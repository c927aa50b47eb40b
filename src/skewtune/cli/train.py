"""``skewtune train``: the classification run of recipes/lora_sentiment.py as a command."""

from __future__ import annotations

import argparse

from skewtune.training.config import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an adapter for text classification")
    add_config_arguments(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from skewtune.training import run_training

    run_training(config_from_args(args), recipe="train")
    return 0
