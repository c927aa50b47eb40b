"""Option strings (--loss_options, --post_hoc_options) and the priors the losses see under a sampler."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from skewtune.errors import ConfigError
from skewtune.training import TrainConfig
from skewtune.training.pipeline import training_class_counts
from skewtune.utils.registry import parse_options


def test_parse_options_types() -> None:
    assert parse_options("tau=1.5, drw_start=none,grid_size=41,mode=auto,flag=true", "--x") == {
        "tau": 1.5, "drw_start": None, "grid_size": 41, "mode": "auto", "flag": True}
    assert parse_options(None, "--x") == {} and parse_options("", "--x") == {}


@pytest.mark.parametrize("text, message", [("tau", "invalid --x item 'tau'"), ("=1", "invalid --x item"),
                                           ("tau=", "invalid --x item"), ("tau=1,tau=2", "sets 'tau' twice")])
def test_parse_options_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_options(text, "--x")


def _run(sampler: str | None) -> SimpleNamespace:
    labels = [0] * 30 + [1] * 6 + [2] * 3
    splits = SimpleNamespace(train_texts=[f"text {i}" for i in range(len(labels))],
                             class_counts=lambda: [labels.count(c) for c in range(3)])
    return SimpleNamespace(cfg=TrainConfig(sampler=sampler, seed=0), splits=splits,
                           tokenized={"train": SimpleNamespace(labels=labels)}, row_indices=None)


def test_priors_follow_the_sampler() -> None:
    assert training_class_counts(_run(None)) == [30, 6, 3]
    assert training_class_counts(_run("random_over")) == [30, 30, 30]  # oversampled to balance
    under = training_class_counts(_run("random_under"))
    assert under == [3, 3, 3]
    balanced = training_class_counts(_run("class_balanced"))  # one epoch's class-balanced draw
    assert sum(balanced) == 39 and max(balanced) - min(balanced) <= 0.5 * max(balanced)


def test_none_on_the_command_line_switches_an_optional_default_off(tmp_path) -> None:
    import argparse

    from skewtune.training.config import add_config_arguments, config_from_args

    defaults = tmp_path / "d.yaml"
    defaults.write_text("sampler: random_over\nmax_steps: 5\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    off = config_from_args(parser.parse_args(["--sampler", "none", "--max_steps", "None"]), defaults_file=defaults)
    assert off.sampler is None and off.max_steps is None
    kept = config_from_args(parser.parse_args([]), defaults_file=defaults)
    assert kept.sampler == "random_over" and kept.max_steps == 5
