"""Issue 24, items 4, 8, 9, 10: multi-task prediction (``--task``), sharing without leaks (default hub name,
no local paths, readable ``hub info``, BrokenPipe), predict ergonomics (trained text column, kept columns, empty
texts counted) and cards / parameter counts. Tiny random BERTs from tests/test_merge.py (hidden 32, 2 layers)."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import skewtune
import skewtune.hub as hub
from skewtune.adapters.io import read_manifest, render_card, write_manifest
from skewtune.backbones import count_parameters, load_backbone, resolve_backbone
from skewtune.backbones.quant import NF4Embedding
from skewtune.cli import main as cli_main
from skewtune.errors import AdapterError, DataError, HubError
from skewtune.merge import MultiTaskClassifier, merge_adapters
from tests.test_merge import TEXTS, _make_adapter, _make_base


@pytest.fixture(scope="module")
def mt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-label 'tweets' and a 2-label 'polarity' adapter on one tiny base, and their multi-task merge."""
    root = tmp_path_factory.mktemp("first-hour")
    base = _make_base(root / "base", seed=0)
    tweets = _make_adapter(root, "tweets-a", base, seed=1).path
    polarity = _make_adapter(root, "polarity-a", base, labels=("neg", "pos"), dataset="polarity", seed=4).path
    merged = merge_adapters([tweets, polarity], method="linear", output_dir=root / "merged")
    return {"root": root, "base": base, "tweets": tweets, "polarity": polarity, "merged": merged}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = cli_main.main(list(argv))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def copy_with_manifest(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    manifest = read_manifest(dst)
    manifest.update(changes)
    (dst / "README.md").write_text(render_card(manifest))
    write_manifest(dst, manifest)
    return dst


# --- item 4: multi-task adapters predict the task asked for -----------------------------------------

def test_load_adapter_task_selects_each_head(mt: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    reference = MultiTaskClassifier.from_folder(mt["merged"], str(mt["base"]))
    with caplog.at_level(logging.WARNING, logger="skewtune"):
        default = skewtune.load_adapter(mt["merged"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "multi-task" in warnings[0] and "--task" in warnings[0]
    assert "\n" not in warnings[0] and "tweets, polarity" in warnings[0]
    assert default.task == "tweets" and default.tasks == ["tweets", "polarity"]
    assert default.labels == ["negative", "neutral", "positive"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="skewtune"):
        polarity = skewtune.load_adapter(mt["merged"], task="polarity")
    assert not caplog.records  # a chosen task: no warning
    assert polarity.task == "polarity" and polarity.labels == ["neg", "pos"]
    got = polarity.logits(TEXTS)
    assert got.shape == (len(TEXTS), 2)
    assert torch.allclose(got, reference.predict_logits(TEXTS, task="polarity"), atol=1e-5)
    assert {p["label"] for p in polarity.predict(TEXTS)} <= {"neg", "pos"}
    assert torch.allclose(default.logits(TEXTS), reference.predict_logits(TEXTS, task="tweets"), atol=1e-5)
    merged = skewtune.load_adapter(mt["merged"], task="polarity", merge=True, dtype="fp32")  # head swapped before folding
    assert torch.allclose(merged.logits(TEXTS), got, atol=1e-4)
    with pytest.raises(AdapterError, match="has no task 'nope'") as err:
        skewtune.load_adapter(mt["merged"], task="nope")
    assert err.value.hint == "use one of: tweets, polarity"
    with pytest.raises(AdapterError, match="single-task adapter; task 'other'"):
        skewtune.load_adapter(mt["tweets"], task="other")


def test_predict_cli_task_and_warning(mt: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "preds.jsonl"
    rc, _, err = run_cli(capsys, "predict", "--adapter", str(mt["merged"]), "--input", str(inputs),
                         "--output", str(out), "--task", "polarity")
    assert rc == 0 and "multi-task" not in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == TEXTS and all(set(r["probabilities"]) == {"neg", "pos"} for r in rows)
    rc, _, err = run_cli(capsys, "predict", "--adapter", str(mt["merged"]), "--input", str(inputs), "--output", str(out), "--overwrite")
    warning = [line for line in err.splitlines() if "multi-task" in line]
    assert rc == 0 and len(warning) == 1 and "default task 'tweets'" in warning[0] and "--task" in warning[0]
    assert all(set(json.loads(line)["probabilities"]) == {"negative", "neutral", "positive"}
               for line in out.read_text().splitlines())
    rc, _, err = run_cli(capsys, "predict", "--adapter", str(mt["merged"]), "--input", str(inputs),
                         "--output", str(tmp_path / "x.jsonl"), "--task", "nope")
    assert rc == 2 and err.count("\n") == 1 and "no task 'nope'" in err and "tweets, polarity" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_hub_info_lists_tasks_and_summarises(mt: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    url = str(tmp_path / "hub")
    assert hub.push(mt["merged"], url, "mt") == "mt@v1"
    rc, out, _ = run_cli(capsys, "hub", "info", "mt", "--hub", url)
    assert rc == 0 and not out.lstrip().startswith("{")
    assert re.search(r"^task\s+tweets \(default\): negative, neutral, positive$", out, re.M)
    assert re.search(r"^task\s+polarity: neg, pos$", out, re.M) and "--task" in out
    assert re.search(r"^adapter\s+mt@v1 \(versions: v1\)$", out, re.M) and re.search(r"^metrics\s+", out, re.M)
    rc, out, _ = run_cli(capsys, "hub", "info", "mt", "--hub", url, "--json")
    assert rc == 0 and set(json.loads(out)["manifest"]["tasks"]) == {"tweets", "polarity"}


# --- item 8: sharing without leaks, readable info, BrokenPipe ---------------------------------------

def test_push_default_name_and_no_local_paths(mt: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "home" / "me" / "data" / "reviews.csv"
    adapter = copy_with_manifest(mt["tweets"], tmp_path / "run" / "adapter", name="reviews-tiny-lora",
                                 base_path=str(mt["base"]),
                                 training={"dataset": str(data), "text_column": "text", "learning_rate": 0.01})
    assert str(mt["base"]) in (adapter / "README.md").read_text()  # the local card shows the local base
    url = str(tmp_path / "hub")
    rc, out, _ = run_cli(capsys, "hub", "push", str(adapter), "--hub", url)  # no --name
    assert rc == 0 and "reviews-tiny-lora@v1" in out and "adapter@v1" not in out
    pulled = hub.pull("reviews-tiny-lora", url, tmp_path / "pulled")
    manifest = read_manifest(pulled)
    assert "base_path" not in manifest and manifest["training"]["dataset"] == "reviews.csv"
    assert manifest["backbone"] == mt["base"].name and manifest["files"]  # hashes re-computed for the clean copy
    for name in ("skewtune.json", "README.md"):
        text = (pulled / name).read_text()
        assert str(tmp_path) not in text and str(mt["root"]) not in text
    assert not re.search(r'"(/|[A-Za-z]:\\\\)', (pulled / "skewtune.json").read_text())  # no absolute path left
    hub.verify("reviews-tiny-lora@v1", url)  # the hub's hashes agree with the stripped copy
    assert read_manifest(adapter)["base_path"] == str(mt["base"])  # the local folder is untouched


def test_default_name_rules(tmp_path: Path) -> None:
    from tests.test_hub_support import make_fake_adapter

    path_backbone = "/srv/models/tiny-bert"
    named = make_fake_adapter(tmp_path / "a" / "adapter", name="toy-_srv_models_tiny-bert-lora", backbone=path_backbone)
    assert hub.default_name(named) == "toy-tiny-bert-lora"
    assert hub.default_name(make_fake_adapter(tmp_path / "sentiment-v2")) == "sentiment-v2"  # folder name, not generic
    with pytest.raises(HubError, match="cannot derive a hub name") as err:
        hub.default_name(make_fake_adapter(tmp_path / "b" / "adapter"))
    assert err.value.hint == "pass --name NAME"


def test_broken_pipe_exits_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_hub_support import make_fake_adapter

    url = str(tmp_path / "hub")
    hub.push(make_fake_adapter(tmp_path / "fake"), url, "x")

    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli_main.main(["hub", "info", "x", "--hub", url]) == cli_main.EXIT_BROKEN_PIPE
    monkeypatch.undo()
    # for real: the reader is gone before skewtune writes (as `skewtune hub info x | head -0` would leave it)
    proc = subprocess.Popen([sys.executable, "-m", "skewtune.cli.main", "hub", "info", "x", "--hub", url, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err


# --- item 9: predict ergonomics ---------------------------------------------------------------------

def test_predict_csv_uses_trained_column_and_keeps_columns(mt: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    adapter = copy_with_manifest(mt["tweets"], tmp_path / "adapter", training={"text_column": "tweet"})
    table = tmp_path / "in.csv"
    table.write_text("id,tweet,label\n7,good movie,positive\n3,the plot was awful,negative\n9,\"ok, fine\",neutral\n")
    out = tmp_path / "preds.jsonl"
    rc, _, err = run_cli(capsys, "predict", "--adapter", str(adapter), "--input", str(table), "--output", str(out))
    assert rc == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["tweet"], r["input_label"]) for r in rows] == [
        ("7", "good movie", "positive"), ("3", "the plot was awful", "negative"), ("9", "ok, fine", "neutral")]
    assert list(rows[0]) == ["id", "tweet", "input_label", "label", "probabilities"]
    assert all(r["label"] in ("negative", "neutral", "positive") for r in rows)
    plain = tmp_path / "plain.csv"  # no 'tweet' column: falls back to 'text'
    plain.write_text("text,id\ngood movie,a\n")
    rc, _, _ = run_cli(capsys, "predict", "--adapter", str(adapter), "--input", str(plain), "--output", str(out), "--overwrite")
    assert rc == 0 and json.loads(out.read_text())["id"] == "a"
    other = tmp_path / "other.csv"
    other.write_text("body\ngood movie\n")
    rc, _, err = run_cli(capsys, "predict", "--adapter", str(adapter), "--input", str(other), "--output", str(out), "--overwrite")
    assert rc == 2 and "'text' nor 'tweet'" in err and "columns: body" in err and "--text_column" in err
    rc, _, _ = run_cli(capsys, "predict", "--adapter", str(adapter), "--input", str(other), "--output", str(out),
                       "--text_column", "body", "--overwrite")
    assert rc == 0 and json.loads(out.read_text())["body"] == "good movie"


def test_predict_empty_texts_are_counted(mt: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from skewtune.inference.predictor import read_prediction_inputs

    lines = tmp_path / "in.txt"
    lines.write_text("good movie\n\nbad plot\n   \nfine\n\n\n")  # trailing blank lines are not rows
    with pytest.raises(DataError, match=r"2 empty text\(s\) in .* \(row\(s\) 2, 4\)") as err:
        read_prediction_inputs(lines)
    assert "one per input row" in err.value.hint
    table = tmp_path / "in.csv"
    table.write_text('id,text\n1,good\n2,""\n3,fine\n')
    out = tmp_path / "p.jsonl"
    rc, _, err_text = run_cli(capsys, "predict", "--adapter", str(mt["tweets"]), "--input", str(table),
                              "--output", str(out))
    assert rc == 2 and "1 empty text(s)" in err_text and "row(s) 2" in err_text and not out.exists()
    lines.write_text("good movie\nbad plot\n\n")
    assert read_prediction_inputs(lines).texts == ["good movie", "bad plot"]


# --- item 10: cards and counts ----------------------------------------------------------------------

def test_card_snippet_loads_offline_with_real_labels(mt: dict[str, Path], tmp_path: Path) -> None:
    adapter = copy_with_manifest(mt["polarity"], tmp_path / "adapter", base_model="org/not-on-this-machine",
                                 base_path=str(mt["base"]))
    card = (adapter / "README.md").read_text()
    code = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert repr(str(mt["base"])) in code and "id2label = {0: 'neg', 1: 'pos'}" in code
    assert "org/not-on-this-machine" in code  # named in a comment, not loaded
    scope: dict = {}
    exec(code.replace("<this folder>", str(adapter)), scope)  # noqa: S102 - the card's own snippet, offline
    model = scope["model"]
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert model.config.id2label[int(model(torch.tensor([[2, 5, 6, 3]])).logits.argmax())] in ("neg", "pos")


def test_parameter_count_of_4bit_model_is_the_real_count(tiny_bert: Path) -> None:
    spec = resolve_backbone(str(tiny_bert))
    dense = load_backbone(spec, num_labels=2, quant="none")
    packed = load_backbone(spec, num_labels=2, quant="4bit")
    assert any(type(p).__name__ == "Params4bit" for p in packed.parameters())
    assert sum(p.numel() for p in packed.parameters()) < count_parameters(dense)  # what metrics.json used to say
    assert count_parameters(packed) == count_parameters(dense) == sum(p.numel() for p in dense.parameters())
    # the two packed kinds, in isolation
    emb = NF4Embedding(10, 8)
    assert emb.weight.numel() == 40 and count_parameters(emb) == 80
    layer = torch.nn.Linear(4, 4, bias=False)
    layer.weight.quant_state = SimpleNamespace(shape=torch.Size([8, 4]))
    assert count_parameters(layer) == 32 and count_parameters(layer, trainable_only=True) == 32
