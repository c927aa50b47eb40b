"""The README's first hour, in order, on small data: the front door stays true.

train (``skewtune train``) → predict on a file (``skewtune predict``) → ``skewtune.load_adapter(...).predict`` →
hub push / ls / pull / verify into a temporary hub → merge two adapters (``skewtune merge``) → ``--help`` of every
command and recipe. The default run uses the tiny random backbone of ``tests/conftest.py`` on toy csv data (about
20 s on 2 busy cores); ``-m slow`` adds the same walk on the real ``minilm`` 8-bit backbone and a 200-row subset of
the real tweets (about a minute on 2 busy cores).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import skewtune
from skewtune.adapters.io import read_manifest, verify_folder
from skewtune.cli.main import COMMAND_MODULES, build_parser
from skewtune.cli.main import main as cli_main
from tests.conftest import REPO, make_texts, tiny_args, write_csv

TEXTS = ["what a great day, love it", "awful service, I hate waiting", "the song was so good"]
RECIPES = ("lora_sentiment.py", "few_shot.py", "cross_lingual.py")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, (argv, err)
    return out, err


def _predict_file(capsys: pytest.CaptureFixture[str], adapter: Path, folder: Path, labels: set[str],
                  *extra: str) -> None:
    """``skewtune predict`` on a .txt file: one prediction per line, labels the adapter's own."""
    texts = folder / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    preds = folder / "preds.jsonl"
    _run(capsys, "predict", "--adapter", str(adapter), "--input", str(texts), "--output", str(preds), *extra)
    rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == len(TEXTS)
    assert {row["label"] for row in rows} <= labels


def _load_and_predict(adapter: Path, labels: set[str], **kwargs: str) -> None:
    """``skewtune.load_adapter(folder).predict(texts)``: one dict per text, probabilities summing to 1."""
    clf = skewtune.load_adapter(str(adapter), **kwargs)
    answers = clf.predict(TEXTS)
    assert len(answers) == len(TEXTS)
    for answer in answers:
        assert answer["label"] in labels
        assert set(answer["probabilities"]) == labels
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_first_hour_on_tiny_backbone(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a default output lands here, never in the repository
    monkeypatch.delenv("SKEWTUNE_HUB", raising=False)
    labels = {"negative", "positive"}
    # 1. train two adapters (same labels, different data) with a small --max_train_samples
    runs = {}
    for name, seed in (("first", 1), ("second", 2)):
        texts, ys = make_texts(200, seed=seed)
        data = write_csv(tmp_path / f"{name}.csv", texts, ys)
        run = tmp_path / f"run-{name}"
        _run(capsys, "train", *tiny_args(tiny_bert, data, run, "--max_train_samples", "120", "--num_train_epochs", "2"))
        metrics = json.loads((run / "metrics.json").read_text())
        assert 0.0 <= metrics["eval_macro_f1"] <= 1.0 and metrics["train_size"] == 120
        manifest = verify_folder(run / "adapter", read_manifest(run / "adapter"))
        assert set(manifest["id2label"].values()) == labels
        runs[name] = run / "adapter"
    first = runs["first"]
    # 2. predict on a file; 3. the Python API
    _predict_file(capsys, first, tmp_path, labels)
    _load_and_predict(first, labels)
    # 4. the hub: push → ls → pull → verify
    hub = tmp_path / "hub"
    hub.mkdir()
    out, _ = _run(capsys, "hub", "push", str(first), "--hub", str(hub), "--name", "toy-sentiment")
    assert "toy-sentiment" in out
    out, _ = _run(capsys, "hub", "ls", "--hub", str(hub))
    assert "toy-sentiment" in out
    pulled = tmp_path / "pulled"
    _run(capsys, "hub", "pull", "toy-sentiment@v1", "--hub", str(hub), "--dest", str(pulled))
    assert (pulled / "adapter_model.safetensors").read_bytes() == (first / "adapter_model.safetensors").read_bytes()
    _run(capsys, "hub", "verify", str(pulled))
    _run(capsys, "hub", "verify", "toy-sentiment", "--hub", str(hub))
    # a pushed manifest keeps no local path: a base that is a local folder (not a registered name) is named again
    _load_and_predict(pulled, labels, backbone=str(tiny_bert))
    # 5. merge the two adapters, scored on the first one's data; the scores land in the merged manifest
    merged = tmp_path / "merged"
    out, err = _run(capsys, "merge", "--adapters", str(first), str(runs["second"]), "--method", "linear",
                    "--output_dir", str(merged), "--eval", f"toy={tmp_path / 'first.csv'}")
    assert "wrote linear merge of 2 adapters" in out and "exact merged update ΔW" in out
    assert "[3/3]" in err  # progress: two sources, then the merge
    manifest = verify_folder(merged, read_manifest(merged))
    assert 0.0 <= manifest["metrics"]["eval_macro_f1"] <= 1.0
    sources = manifest["metrics"]["merge_eval"]["toy"]["sources"]
    assert len(sources) == 2 and all(0.0 <= r["macro_f1"] <= 1.0 for r in sources.values())
    _load_and_predict(merged, labels)


def _recipe(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"first_hour_{name[:-3]}", REPO / "recipes" / name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def test_help_of_every_command_and_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` of the console script, each command and each recipe: usage, exit 0, no traceback."""
    with pytest.raises(SystemExit) as done:
        cli_main(["--help"])
    assert done.value.code == 0
    top = capsys.readouterr().out
    assert top.startswith("usage: skewtune")
    commands = _subcommands(build_parser())
    assert {"train", "train-tokens", "predict", "backbones", "hub", "merge", "merge-into-base"} <= set(commands)
    assert len(commands) >= len(COMMAND_MODULES)
    for command, parser in commands.items():
        argvs = [[command, "--help"]] + [[command, action, "--help"] for action in _subcommands(parser)]
        for argv in argvs:
            with pytest.raises(SystemExit) as done:
                cli_main(argv)
            assert done.value.code == 0, argv
            assert f"usage: skewtune {' '.join(argv[:-1])}" in capsys.readouterr().out, argv
    for recipe in RECIPES:  # in process (a subprocess per recipe costs ~10 s of imports on 2 busy cores)
        module = _recipe(recipe)
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        assert done.value.code == 0, recipe
        text = capsys.readouterr().out
        assert text.startswith(f"usage: recipes/{recipe}"), recipe
        if recipe != "lora_sentiment.py":
            assert "--quick" in text, recipe


@pytest.mark.slow
def test_first_hour_on_minilm_and_tweets(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's main job on a 200-row subset of the real tweets, 8-bit MiniLM; then predict both ways."""
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    _run(capsys, "train", "--max_train_samples", "200", "--max_eval_samples", "100", "--baselines", "false",
         "--report_plots", "false", "--output_dir", str(run))
    metrics = json.loads((run / "metrics.json").read_text())
    labels = {"negative", "neutral", "positive"}
    assert set(metrics["labels"]) == labels and metrics["train_size"] == 200
    assert 0.0 <= metrics["eval_macro_f1"] <= 1.0
    manifest = verify_folder(run / "adapter", read_manifest(run / "adapter"))
    assert manifest["backbone"] == "minilm" and manifest["quant"] == "8bit"
    _predict_file(capsys, run / "adapter", tmp_path, labels)
    _load_and_predict(run / "adapter", labels)
