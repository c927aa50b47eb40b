"""Bad input: one clear line on stderr, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skewtune.cli.main import main as cli_main
from tests.conftest import make_texts, tiny_args, write_csv


def _check(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str, out: Path | None = None) -> str:
    code = cli_main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert lines and lines[-1].startswith("error: "), captured.err
    assert "Traceback" not in captured.err
    assert expect.lower() in lines[-1].lower(), lines[-1]
    assert "(fix: " in lines[-1]
    if out is not None:
        assert not out.exists(), "nothing may be written on bad input"
    return lines[-1]


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


def test_missing_dataset_file(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, tmp_path / "nope.csv", out)], "does not exist", out)


def test_missing_text_and_label_columns(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    texts, labels = make_texts(30)
    data = write_csv(tmp_path / "d.csv", texts, labels, text_col="sentence")
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, data, out)], "text column 'text' not found", out)
    _check(capsys, ["train", *tiny_args(tiny_bert, data, out, "--text_column", "sentence", "--label_column", "y")],
           "label column 'y' not found", out)


def test_label_unseen_in_training(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    texts, labels = make_texts(60)
    train = write_csv(tmp_path / "train.csv", texts, labels)
    val = write_csv(tmp_path / "val.csv", ["a new text", "another one"], ["positive", "surprise"])
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, train, out, "--validation_file", str(val))],
           "never in training", out)


def test_empty_split_and_empty_file(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    texts, labels = make_texts(60)
    train = write_csv(tmp_path / "train.csv", texts, labels)
    val = write_csv(tmp_path / "val.csv", [], [])
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, train, out, "--validation_file", str(val))], "holds no rows", out)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    _check(capsys, ["train", *tiny_args(tiny_bert, empty, out)], "is empty", out)


def test_class_too_small_to_stratify(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    texts, labels = make_texts(60)
    data = write_csv(tmp_path / "d.csv", [*texts, "lonely"], [*labels, "rare"])
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, data, out)], "'rare' (1)", out)


def test_unknown_backbone(capsys, tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    line = _check(capsys, ["train", *tiny_args(tiny_bert, toy_csv, out, "--backbone", "no-such-model")],
                  "neither a known name nor an existing folder", out)
    assert "minilm" in line
    _check(capsys, ["train", *tiny_args(tiny_bert, toy_csv, out, "--backbone", str(tmp_path))], "no config.json", out)


def test_non_utf8_file(capsys, tiny_bert: Path, tmp_path: Path) -> None:
    data = tmp_path / "latin.csv"
    data.write_bytes("text,label\ncaf\xe9 au lait,positive\n".encode("latin-1") * 3)
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, data, out)], "not valid utf-8", out)


def test_existing_output_dir_not_overwritten(capsys, tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code = cli_main(["train", *tiny_args(tiny_bert, toy_csv, out)])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite_output_dir" in err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("flag,value,expect", [
    ("--quant", "3bit", "unknown quant mode '3bit'"),
    ("--adapter", "lorax", "unknown adapter 'lorax'"),
    ("--loss", "magic", "unknown loss"),
    ("--learning_rate", "fast", "is not a number"),
    ("--target_modules", "nonexistent_proj", "match no module"),
])
def test_unknown_names_list_valid_ones(capsys, tiny_bert: Path, toy_csv: Path, tmp_path: Path, flag, value, expect) -> None:
    out = tmp_path / "out"
    _check(capsys, ["train", *tiny_args(tiny_bert, toy_csv, out, flag, value)], expect, out)


def test_predict_bad_inputs(capsys, tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    _check(capsys, ["predict", "--adapter", str(tmp_path / "none"), "--input", str(tmp_path / "x.txt"),
                    "--output", str(out)], "does not exist", out)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    inputs = tmp_path / "in.txt"
    inputs.write_text("hello\n")
    _check(capsys, ["predict", "--adapter", str(adapter), "--input", str(inputs), "--output", str(out)],
           "pickle weights", out)


def test_console_script_exit_status_and_one_line(tmp_path: Path) -> None:
    """The installed entry point itself: status 2, one line, no traceback."""
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "skewtune.cli.main", "train", "--dataset", str(tmp_path / "x.csv"),
                           "--output_dir", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert not out.exists()
