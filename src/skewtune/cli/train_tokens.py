"""``skewtune train-tokens``: token classification (POS tagging, NER) from CoNLL files or registered corpora."""

from __future__ import annotations

import argparse

from skewtune.training.config import TokenTrainConfig, add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-tokens", help="train an adapter for token classification (CoNLL input, e.g. NER or POS tags)",
        description="Train a token-classification adapter. --dataset: a CoNLL file (word ... TAG per line, blank "
                    "line between sentences; CoNLL-U recognised) or a registered corpus (upos_en, en_wsj, "
                    "de_tiger, nl_twnc, es_wikicorpus, it_wacky). Defaults: the dataclass "
                    "skewtune.training.TokenTrainConfig (no packaged YAML).")
    add_config_arguments(parser, TokenTrainConfig)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, TokenTrainConfig)  # bad flags and YAML fail here, before torch loads
    # lazy: keeps `skewtune --help` fast; the task reads the data before the training stack (peft, accelerate)
    # imports, so a data error is reported without waiting for them
    from skewtune.tasks import TokenClassification

    task = TokenClassification()
    cfg.validate()
    task.check_config(cfg)
    splits = task.load_splits(cfg)
    from skewtune.training.pipeline import run_training

    run_training(cfg, recipe="train_tokens", task=task, splits=splits)
    return 0
