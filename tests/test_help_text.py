"""Every flag of every ``skewtune`` command and recipe explains itself in ``--help`` (issue 18, interop).

The parsers are built in-process (``build_parser()`` and each recipe's ``build_parser()``) and walked:
each flag's help, as ``--help`` prints it, must say what the flag does in a few words beyond
``(default: …)``, and a flag that takes a value from a fixed set (argparse ``choices``, a config
``choice(...)`` field, a registry: backbones, merge and few-shot methods) must name every value.
Flags added later are checked the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

from skewtune.cli.main import build_parser
from skewtune.training.config import TokenTrainConfig, TrainConfig, field_choices
from tests.test_help_and_defaults import RECIPES, all_parsers, config_class, load_recipe, subparser

MIN_WORDS = 3  # words of explanation beyond "(default: …)"
# a trailing "(default: …)" or "(choices: …; default: …)" (nested parentheses allowed), or a lone "default: …"
_DEFAULT_TAIL = re.compile(r"\s*\((?:choices: [^;]*; )?default: (?:[^()]|\([^()]*\))*\)\s*$")
_DEFAULT_ONLY = re.compile(r"^default: .*$")


def rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help exactly as ``--help`` prints it (the HelpFormatter's appended default included)."""
    formatter = parser._get_formatter()
    return " ".join(formatter._expand_help(action).split()) if action.help else ""


def explanation(text: str) -> str:
    """``text`` without its default: what is left must say what the flag does."""
    return _DEFAULT_ONLY.sub("", _DEFAULT_TAIL.sub("", text)).strip()


def documented_actions() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    found = []
    for path, parser in all_parsers():
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                found.append((path, parser, action))
    return found


def name(path: str, action: argparse.Action) -> str:
    return f"{path} {'/'.join(action.option_strings) or action.dest}"


def config_class_of(path: str) -> type | None:
    """The config dataclass whose fields a parser's flags are generated from (None: hand-written flags)."""
    if path.startswith("recipes/"):
        return config_class(path.removeprefix("recipes/").removesuffix(".py"))
    return {"skewtune train": TrainConfig, "skewtune train-tokens": TokenTrainConfig}.get(path)


# -------------------------------------------------- the checker itself
def test_explanation_strips_only_the_default() -> None:
    assert explanation("hub URL (default: $SKEWTUNE_HUB)") == "hub URL"
    assert explanation("default: ./merged-<method>-<hash>") == ""
    assert explanation("PEFT method (choices: lora, dora; default: lora)") == "PEFT method"
    assert explanation("dropout, none keeps the backbone's own (BERT: 0.1) (default: 0.0)") == (
        "dropout, none keeps the backbone's own (BERT: 0.1)")
    assert explanation("torch threads (default: torch's choice (one per core))") == "torch threads"


def test_every_parser_of_every_command_and_recipe_is_walked() -> None:
    paths = {path for path, _ in all_parsers()}
    commands = ["train", "train-tokens", "predict", "backbones list", "backbones convert", "plan", "serve",
                "hub push", "hub pull", "hub ls", "hub search", "hub info", "hub verify",
                "merge", "merge-into-base"]
    expected = {"skewtune", *(f"skewtune {c}" for c in commands), *(f"recipes/{r}.py" for r in RECIPES)}
    assert expected <= paths, expected - paths
    assert len(documented_actions()) > 300


# -------------------------------------------------- every flag explained
def test_every_flag_explains_what_it_does_beyond_its_default() -> None:
    terse = {}
    for path, parser, action in documented_actions():
        words = re.findall(r"[^\W\d_]{2,}", explanation(rendered_help(parser, action)))
        if len(words) < MIN_WORDS:
            terse[name(path, action)] = rendered_help(parser, action)
    assert terse == {}, "flags whose --help says too little: " + "; ".join(f"{k}: {v!r}"
                                                                          for k, v in terse.items())


def test_every_help_page_renders_with_every_flag() -> None:
    for path, parser in all_parsers():
        page = parser.format_help()  # a stray % in a help text would raise here
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in page, f"{path}: {flag} missing from --help"


# -------------------------------------------------- choices named
def test_argparse_choices_are_shown_in_help_or_usage() -> None:
    missing = {}
    for path, parser, action in documented_actions():
        if not action.choices:
            continue
        usage = parser._get_formatter()._format_action_invocation(action)  # e.g. --quant {8bit,4bit,none}
        shown = f"{rendered_help(parser, action)} {usage}"
        absent = [str(c) for c in action.choices if str(c) not in shown]
        if absent:
            missing[name(path, action)] = absent
    assert missing == {}


def test_config_choice_fields_list_every_value_in_their_help() -> None:
    missing = {}
    for path, parser in all_parsers():
        cls = config_class_of(path)
        if cls is None:
            generated = any("--config" in a.option_strings for a in parser._actions)
            assert not generated, f"{path}: flags generated from a config class this test does not know"
            continue
        flags = {a.dest: a for a in parser._actions}
        for field in dataclasses.fields(cls):
            choices, _ = field_choices(cls, field.name)
            text = rendered_help(parser, flags[field.name])
            absent = [c for c in choices if c not in text]
            if absent:
                missing[f"{path} --{field.name}"] = absent
    assert missing == {}


def test_registry_backed_flags_name_every_registered_value() -> None:
    from skewtune.adapters import ADAPTERS
    from skewtune.backbones.registry import BACKBONES
    from skewtune.fewshot.methods import METHODS
    from skewtune.imbalance import AUGMENTERS, LOSSES, POST_HOC, SAMPLERS
    from skewtune.merge.methods import MERGE_METHODS

    registries = {"--loss": LOSSES.names(), "--sampler": SAMPLERS.names(), "--augment": AUGMENTERS.names(),
                  "--post_hoc": POST_HOC.names(), "--backbone": BACKBONES.names()}
    generated = [(path, parser) for path, parser in all_parsers() if config_class_of(path) is not None]
    assert len(generated) == 2 + len(RECIPES)
    checked = 0
    for path, parser in [*generated, ("skewtune plan", subparser(build_parser(), "plan"))]:
        for flag, names in registries.items():
            action = next((a for a in parser._actions if flag in a.option_strings), None)
            if action is None:
                continue
            text = rendered_help(parser, action)
            assert [n for n in names if n not in text] == [], f"{path} {flag}: {text}"
            checked += 1
        if config_class_of(path) is not None:  # --adapter is the PEFT method here (elsewhere: a folder)
            text = rendered_help(parser, next(a for a in parser._actions if "--adapter" in a.option_strings))
            assert [n for n in ADAPTERS.names() if n not in text] == [], f"{path} --adapter: {text}"
    assert checked >= 5 * len(generated) + 1
    merge = subparser(build_parser(), "merge")
    method = rendered_help(merge, next(a for a in merge._actions if "--method" in a.option_strings))
    assert [n for n in MERGE_METHODS.names() if n not in method] == [], method
    few = load_recipe("few_shot").build_parser()
    method = rendered_help(few, next(a for a in few._actions if "--method" in a.option_strings))
    assert [n for n in METHODS.names() if n not in method] == [], method


@pytest.mark.parametrize("argv,flag,needles", [
    (["hub", "pull"], "--hub", ["s3://", "hf://", "$SKEWTUNE_HUB"]),
    (["merge"], "--output_dir", ["folder", "merged-<method>-<hash>"]),
    (["backbones", "convert"], "--output_dir", ["folder", "<user cache>/backbones"]),
    (["predict"], "--quant", ["LLM.int8", "NF4", "as trained"]),
    (["predict"], "--dtype", ["fp16", "bf16", "default: auto"]),
])
def test_formerly_terse_flags_now_explain_themselves(argv: list[str], flag: str, needles: list[str]) -> None:
    parser = subparser(build_parser(), *argv)
    text = rendered_help(parser, next(a for a in parser._actions if flag in a.option_strings))
    assert all(n in text for n in needles), text
