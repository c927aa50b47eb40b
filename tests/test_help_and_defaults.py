"""One set of defaults, one meaning per flag, every --help true (issues 17 and 24.3).

The packaged YAMLs (skewtune/configs/*.yaml) equal the config dataclasses' defaults; `skewtune train X` and
`recipes/lora_sentiment.py X` resolve to the same TrainConfig; every flag of every command and recipe says what it
does, its choices and the default that command uses; recipes report bad flags as the CLI does (one line, exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from skewtune.cli.main import build_parser, run_guarded
from skewtune.errors import ConfigError, TrainingInterrupted
from skewtune.training.config import (
    PACKAGED_CONFIGS,
    TokenTrainConfig,
    TrainConfig,
    config_from_args,
    recipe_config_path,
    recipe_defaults,
)
from tests.conftest import REPO

RECIPES = ("lora_sentiment", "few_shot", "cross_lingual")


def load_recipe(name: str):
    module_name = f"{name}_recipe_under_test"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[module_name] = module  # dataclasses and inspect.getsource look the module up by name
    spec.loader.exec_module(module)
    return module


def config_class(name: str) -> type:
    if name == "few_shot":
        from skewtune.fewshot import FewShotConfig

        return FewShotConfig
    if name == "cross_lingual":
        return load_recipe("cross_lingual").CrossLingualConfig  # the recipe holds the experiment's settings
    return TrainConfig


def subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def flag_help(parser: argparse.ArgumentParser, flag: str) -> str:
    action = next(a for a in parser._actions if flag in a.option_strings)
    return " ".join(parser._get_formatter()._expand_help(action).split())


def all_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    found = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found.append((path, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")

    walk(build_parser(), "skewtune")
    for name in RECIPES:
        walk(load_recipe(name).build_parser(), f"recipes/{name}.py")
    return found


# ------------------------------------------------------------------------------------------------ one set of defaults
@pytest.mark.parametrize("name", RECIPES)
def test_packaged_yaml_equals_the_dataclass_defaults(name: str) -> None:
    cls = config_class(name)
    assert recipe_config_path(name).is_file() and recipe_config_path(name).parent.name == "configs"
    values = recipe_defaults(name, cls)
    assert values, f"{name}.yaml is empty"
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    assert {k: v for k, v in values.items() if defaults[k] != v} == {}
    assert cls(**values) == cls()


def test_the_recipe_yamls_live_only_in_the_package() -> None:
    assert set(PACKAGED_CONFIGS) == set(RECIPES)
    for name in RECIPES:
        assert not (REPO / "recipes" / "configs" / f"{name}.yaml").exists(), "one copy only: src/skewtune/configs"
    assert (REPO / "recipes" / "configs" / "accelerate_cpu_ddp.yaml").is_file()
    package_data = next(line for line in (REPO / "pyproject.toml").read_text().splitlines()
                        if line.startswith("skewtune = ["))  # [tool.setuptools.package-data]
    assert '"configs/*.yaml"' in package_data  # shipped in the wheel, read with importlib.resources
    with pytest.raises(ConfigError, match="unknown packaged config"):
        recipe_config_path("nope")


@pytest.mark.parametrize("argv", [
    [],
    ["--max_train_samples", "3000", "--seed", "0", "--output_dir", "A"],
    ["--sampler", "none", "--lora_dropout", "0.1", "--backbone_dropout", "none", "--lora_layers", "top2"],
    "with-config",
])
def test_train_command_and_main_recipe_resolve_the_same_config(argv, tmp_path: Path) -> None:
    if argv == "with-config":
        config = tmp_path / "c.yaml"
        config.write_text("target_modules: all\nper_device_eval_batch_size: 64\nsampler: null\n")
        argv = ["--config", str(config), "--per_device_eval_batch_size", "32"]
    recipe = load_recipe("lora_sentiment")
    from_recipe = config_from_args(recipe.build_parser().parse_args(argv))
    from_command = config_from_args(build_parser().parse_args(["train", *argv]))
    strip = {"output_dir"}
    assert ({k: v for k, v in from_recipe.to_dict().items() if k not in strip}
            == {k: v for k, v in from_command.to_dict().items() if k not in strip})
    if not argv:
        assert from_command == TrainConfig()  # no flags: the dataclass defaults, which are the YAML's


def test_train_tokens_keeps_its_own_defaults() -> None:
    cfg = config_from_args(build_parser().parse_args(["train-tokens"]), TokenTrainConfig)
    assert cfg == TokenTrainConfig()
    assert (cfg.sampler, cfg.lora_dropout, cfg.backbone_dropout, cfg.target_modules) == (None, 0.1, None, "all")


# ------------------------------------------------------------------------------------------------ every --help true
def test_every_flag_of_every_command_and_recipe_has_a_description() -> None:
    missing = []
    for path, parser in all_parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            text = (action.help or "").strip()
            if not text or text.startswith("("):  # "(default: x)" alone says nothing about what the flag does
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_train_help_shows_the_defaults_train_uses() -> None:
    train = subparser(build_parser(), "train")
    assert flag_help(train, "--lora_dropout").endswith("(default: 0.0)")
    assert flag_help(train, "--sampler").endswith("default: random_over)")
    assert "random_under" in flag_help(train, "--sampler") and "none" in flag_help(train, "--sampler")
    assert flag_help(train, "--target_modules").endswith("(default: all)")
    assert flag_help(train, "--per_device_eval_batch_size").endswith("(default: 256)")
    assert flag_help(train, "--backbone_dropout").endswith("(default: 0.0)")
    assert "(choices: 8bit, 4bit, none; default: 8bit)" in flag_help(train, "--quant")
    assert "choices: linear, cosine, constant; default: linear" in flag_help(train, "--lr_scheduler_type")
    assert "focal" in flag_help(train, "--loss") and "ldam" in flag_help(train, "--loss")
    assert "top2" in flag_help(train, "--lora_layers") and "3,4,5" in flag_help(train, "--lora_layers")
    assert "lora_sentiment.yaml" in flag_help(train, "--config")
    # the same text and defaults in the recipe's --help
    recipe = load_recipe("lora_sentiment").build_parser()
    for flag in ("--lora_dropout", "--sampler", "--target_modules", "--learning_rate", "--quant"):
        assert flag_help(recipe, flag) == flag_help(train, flag)


def test_recipe_and_token_help_show_their_own_defaults() -> None:
    few = load_recipe("few_shot").build_parser()
    assert flag_help(few, "--learning_rate").endswith("(default: 2e-3)")
    assert flag_help(few, "--lora_dropout").endswith("(default: 0.1)")
    assert flag_help(few, "--sampler").endswith("default: none)")
    assert "choices: prompt_allpairs_lora" in flag_help(few, "--method")
    cross = load_recipe("cross_lingual").build_parser()
    assert flag_help(cross, "--upos_train_size").endswith("(default: 800)")
    assert flag_help(cross, "--k_shot_learning_rate").endswith("(default: 0.0003)")
    tokens = subparser(build_parser(), "train-tokens")
    assert flag_help(tokens, "--lora_dropout").endswith("(default: 0.1)")
    assert "en-ptb" in flag_help(tokens, "--tagset")


def test_top_level_and_predict_help(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert description.startswith("skewtune: ") and "Entry point" not in out and "``" not in out
    predict = subparser(build_parser(), "predict").format_help()
    assert "--hub" not in predict and "hub pull" in predict
    assert "(default: 128)" in " ".join(predict.split())


# ------------------------------------------------------------------------------------------------ choices enforced
def test_choice_names_match_the_registries() -> None:
    from skewtune.adapters import ADAPTERS
    from skewtune.backbones import registry as backbones
    from skewtune.data.tables import PROBLEM_TYPES
    from skewtune.data.upos import TAGSETS as UPOS_TAGSETS
    from skewtune.fewshot.config import METHOD_NAMES
    from skewtune.fewshot.methods import METHODS
    from skewtune.imbalance import AUGMENTERS, LOSSES, POST_HOC, SAMPLERS
    from skewtune.imbalance.multilabel import MULTILABEL_LOSSES
    from skewtune.tasks.regression import REGRESSION_LOSSES
    from skewtune.training import config as c

    assert set(c.ADAPTER_NAMES) == set(ADAPTERS.names())
    assert set(c.LOSS_NAMES) == set(LOSSES.names()) | set(MULTILABEL_LOSSES.names()) | set(REGRESSION_LOSSES)
    assert set(c.SAMPLER_NAMES) == set(SAMPLERS.names()) | {"ml_ros"}
    assert set(c.PROBLEM_TYPES) == set(PROBLEM_TYPES)
    assert set(c.AUGMENT_NAMES) == set(AUGMENTERS.names())
    assert set(c.POST_HOC_NAMES) == set(POST_HOC.names())
    assert set(c.QUANT_MODES) == set(backbones.QUANT_MODES)
    assert set(c.TAGSETS) == set(UPOS_TAGSETS)
    assert set(METHOD_NAMES) == set(METHODS.names())


@pytest.mark.parametrize("yaml_text,flags,expect", [
    ("lr_scheduler_type: bogus\n", [], "unknown lr_scheduler_type 'bogus'"),
    ("", ["--sampler", "smote_deluxe"], "unknown sampler 'smote_deluxe'"),
    ("", ["--augment", "shout"], "unknown augmentation method 'shout'"),
    ("baselines: maybe\n", [], "'baselines' must be true or false"),
    ("", ["--lora_layers", "2"], "--lora_layers 2 is ambiguous"),
])
def test_bad_values_in_flags_or_yaml_are_config_errors(tmp_path: Path, yaml_text, flags, expect) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml_text)
    args = build_parser().parse_args(["train", "--config", str(config), *flags])
    with pytest.raises(ConfigError) as info:
        config_from_args(args)
    assert expect in info.value.one_line() and "(fix: " in info.value.one_line()


# ------------------------------------------------------------------------------------------------ one meaning per flag
def test_lora_layers_has_one_syntax_everywhere() -> None:
    from skewtune.adapters.layers import parse_layers
    from skewtune.fewshot import FewShotConfig
    from skewtune.fewshot import config as fewshot_config

    assert fewshot_config.parse_layers is parse_layers
    assert parse_layers("top2", 6) == [4, 5] and parse_layers("3,4,5", 6) == [3, 4, 5]
    assert parse_layers(None, 6) is None and parse_layers("all", 6) is None and parse_layers("2,", 6) == [2]
    for cls in (TrainConfig, FewShotConfig):
        with pytest.raises(ConfigError) as info:
            cls(lora_layers="2").validate()
        assert "top2" in info.value.hint and "3,4,5" in info.value.hint
    for bad, match in (("top9", "has 6 layers"), ("6,", r"in 0\.\.5"), ("top", "not all, topN"), ("a,b", "comma")):
        with pytest.raises(ConfigError, match=match):
            parse_layers(bad, 6)


# ------------------------------------------------------------------------------------------------ recipes' bad flags
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_bad_flag_is_one_line_exit_2(name: str, capsys, tmp_path: Path) -> None:
    recipe = load_recipe(name)
    with pytest.raises(SystemExit) as exc:
        recipe.main(["--no_such_flag", "1"])
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and re.match(rf"error: .*--no_such_flag.* \(fix: see 'recipes/{name}.py --help'\)", err[0])
    out = tmp_path / "out"
    assert recipe.main(["--quant", "3bit", "--output_dir", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("Failed to load")]
    assert err == ["error: unknown quant mode '3bit' (fix: use one of: 4bit, 8bit, none)"] and not out.exists()


def test_run_guarded_returns_the_error_exit_code(capsys) -> None:
    def interrupted() -> int:
        raise TrainingInterrupted("training interrupted at step 3", "rerun the same command to resume")

    assert run_guarded(interrupted) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training interrupted at step 3" in err[0]
