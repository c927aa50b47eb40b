"""Issue 23, classes 5-7, beyond the one-command cases of ``tests/redteam_inputs.py``: the YAML loader, checkpoint
checks on a real run, a full disk during the final save, the confusion-matrix cap, the CLI guard for unexpected
exceptions, strict JSON from predict, the boolean-label rule and the merge bounds through the library."""

from __future__ import annotations

import errno
import json
import math
import os
import resource
import shutil
import signal
import time
from pathlib import Path

import pytest

from skewtune.cli.main import main as cli_main
from skewtune.errors import AdapterError, ConfigError, DataError, MergeError, OutputError
from tests.conftest import make_texts, tiny_args
from tests.hostile_support import World, isolated_cache  # noqa: F401  (isolated_cache: an autouse fixture)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "(fix: " in lines[0], err[-3000:]
    assert "Traceback" not in err
    return lines[0]


def _last_line(err: str) -> str:
    """The error line after a run's own log lines and progress bars: the last one, nothing after it."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and "(fix: " in lines[-1], err[-3000:]
    assert "Traceback" not in err and sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


def _strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------------------------------------ class 5: YAML


def test_yaml_loader_refuses_alias_bombs_quickly_and_keeps_plain_configs() -> None:
    from skewtune.training.config import safe_yaml_load

    levels = ['&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"&l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]  # 9 ** 9 once expanded
    start = time.perf_counter()
    with pytest.raises(Exception, match="anchors and aliases"):
        safe_yaml_load("dataset: [" + ", ".join(levels) + "]\n")
    assert time.perf_counter() - start < 2
    with pytest.raises(Exception, match="merge keys|anchors and aliases"):
        safe_yaml_load("base: &b {seed: 1}\nother:\n  <<: *b\n")
    with pytest.raises(Exception, match="duplicate key 'seed'"):
        safe_yaml_load("seed: 1\nlora_r: 4\nseed: 2\n")
    assert safe_yaml_load("seed: 1\nlearning_rate: 1e-3\ndataset: tweets\n") == {
        "seed": 1, "learning_rate": "1e-3", "dataset": "tweets"}


@pytest.mark.parametrize("text,expect", [
    ("per_device_train_batch_size: 2.7\n", "must be a whole number, got 2.7"),
    ("per_device_train_batch_size: 2.0\n", "must be a whole number, got 2.0"),
    ("lora_r: true\n", "must be a whole number, got True"),
    ("lora_r: eight\n", "must be a whole number, got 'eight'"),
    ("weight_decay: false\n", "must be a number, got False"),
    ("target_modules: {a: 1}\n", "must be a single value"),
])
def test_yaml_integer_and_scalar_flags_are_not_coerced(tmp_path: Path, text: str, expect: str) -> None:
    from skewtune.cli.main import build_parser
    from skewtune.training.config import config_from_args

    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        config_from_args(build_parser().parse_args(["train", "--config", str(config)]))
    assert expect in info.value.one_line()


def test_yaml_accepts_what_the_command_line_accepts(tmp_path: Path) -> None:
    """Quoted whole numbers ("3") and YAML's 1e-3-as-text are read as the command line reads them."""
    from skewtune.cli.main import build_parser
    from skewtune.training.config import config_from_args

    config = tmp_path / "c.yaml"
    config.write_text('per_device_train_batch_size: "3"\nweight_decay: 1e-2\nmax_steps: 5\nbaselines: no\n')
    cfg = config_from_args(build_parser().parse_args(["train", "--config", str(config)]))
    assert cfg.per_device_train_batch_size == 3 and cfg.weight_decay == 0.01 and cfg.max_steps == 5
    assert cfg.baselines is False


def test_command_line_refuses_fractional_integers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["train", "--per_device_train_batch_size", "2.7"])
    assert info.value.code == 2
    assert "invalid int value: '2.7'" in _one_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------ class 6: checkpoints


def test_a_real_checkpoint_passes_and_a_corrupted_one_is_one_line(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from skewtune.training import checkpoint

    out = tmp_path / "run"
    argv = ["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1", "--max_steps", "2",
                                "--checkpoint_every_steps", "2", "--eval_every_epoch", "false")]
    assert cli_main(argv) == 0, capsys.readouterr().err[-2000:]
    step = out / "checkpoints" / "step-2"
    assert checkpoint.check(step) == step  # what Accelerate + skewtune write is accepted
    shutil.rmtree(out / "adapter")
    (out / "metrics.json").unlink()
    data = (step / "optimizer.bin").read_bytes()
    (step / "optimizer.bin").write_bytes(data[: len(data) // 2])
    before = sorted(p.name for p in out.rglob("*"))
    capsys.readouterr()
    assert cli_main([*argv, "--resume_from_checkpoint", "latest"]) == 2
    line = _last_line(capsys.readouterr().err)
    assert f"checkpoint {step} cannot be resumed: optimizer.bin" in line
    assert sorted(p.name for p in out.rglob("*")) == before


def test_checkpoint_loading_never_unpickles_objects(tmp_path: Path) -> None:
    """A pickle whose loading would create a file: refused by the check, and the file is never created."""
    import torch
    from safetensors.torch import save_file

    from skewtune.training import checkpoint

    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    folder = tmp_path / "step-1"
    folder.mkdir()
    (folder / "skewtune_state.json").write_text(json.dumps({"epoch": 0, "global_step": 1, "step_in_epoch": 1}))
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    torch.save({"x": Payload()}, folder / "random_states_0.pkl")
    with pytest.raises(OutputError, match="random_states_0.pkl is corrupt or holds objects"):
        checkpoint.check(folder)
    assert not marker.exists()


def test_pickled_backbone_is_refused_and_safetensors_preferred(tmp_path: Path) -> None:
    """A folder with only pytorch_model.bin is refused; with both, the pickle is never loaded."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForSequenceClassification

    from skewtune.backbones import load_backbone, resolve_backbone
    from skewtune.errors import BackboneError

    folder = tmp_path / "base"
    BertForSequenceClassification(BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=8, max_position_embeddings=16)).save_pretrained(folder)
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({**load_file(str(folder / "model.safetensors")), "evil": Payload()}, folder / "pytorch_model.bin")
    model = load_backbone(resolve_backbone(str(folder)), num_labels=2, quant="none")
    assert model is not None and not marker.exists()
    (folder / "model.safetensors").unlink()
    with pytest.raises(BackboneError, match="holds pickle weights"):
        resolve_backbone(str(folder))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ class 6: full disk


def test_file_size_limit_during_the_final_save_is_one_line_and_leaves_nothing(
        tiny_bert: Path, toy_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A real write failure (RLIMIT_FSIZE) inside safetensors while the final adapter is saved."""
    from skewtune.training import pipeline

    out = tmp_path / "capped"
    real_save = pipeline.save_outputs

    def capped_save(run):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))  # the JSON files fit, the weights do not
        try:
            return real_save(run)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    monkeypatch.setattr(pipeline, "save_outputs", capped_save)
    argv = ["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1", "--max_steps", "2",
                                "--eval_every_epoch", "false")]
    assert cli_main(argv) == 2
    line = _last_line(capsys.readouterr().err)
    assert line.startswith(f"error: could not write {out / 'adapter'}: ") and "File too large" in line, line
    assert "free disk space" in line and "resume" in line
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "tracking"]  # no adapter, metrics or temporary folder (the event files stay)
    monkeypatch.setattr(pipeline, "save_outputs", real_save)
    assert cli_main(argv) == 0  # space back: the same command resumes from the final checkpoint and saves
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_disk_full_on_metrics_removes_the_adapter_just_written(tiny_bert: Path, toy_csv: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "full"
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst) == out / "metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    argv = ["train", *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "1", "--max_steps", "2",
                                "--eval_every_epoch", "false")]
    assert cli_main(argv) == 2
    assert "no space left on device" in _last_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "tracking"]


# ------------------------------------------------------------------------------------------------ class 6: classes


def test_confusion_matrix_of_100000_classes_is_not_allocated(tmp_path: Path) -> None:
    from skewtune.evaluation.metrics_loader import classification_report
    from skewtune.evaluation.plots import plot_confusion_matrix

    id2label = {i: f"c{i}" for i in range(100_000)}
    report = classification_report([0, 1, 2, 3], [0, 1, 2, 99_999], id2label)
    assert report["confusion_matrix"] is None and report["accuracy"] == 0.75
    assert plot_confusion_matrix(None, list(id2label.values()), tmp_path / "cm.png") is None
    assert not (tmp_path / "cm.png").exists()
    small = classification_report([0, 1], [0, 1], {0: "a", 1: "b"})
    assert small["confusion_matrix"] == [[1, 0], [0, 1]]
    labels = [f"c{i}" for i in range(200)]
    path = plot_confusion_matrix([[1] * 200 for _ in range(200)], labels, tmp_path / "big.png")
    assert path is not None and path.stat().st_size < 5_000_000  # bounded figure, no per-cell text


# ------------------------------------------------------------------------------------------------ class 6: the guard


@pytest.mark.parametrize("exc,expect", [
    (ValueError("shapes (3,) and (4,) not aligned\nmore detail"), "error: unexpected ValueError: shapes (3,) and (4,) "
                                                                  "not aligned (fix: rerun with --debug"),
    (MemoryError(), "error: out of memory (MemoryError)"),
    (RecursionError("maximum recursion depth exceeded"), "error: an input is nested too deeply"),
    (KeyError("x"), "error: unexpected KeyError: 'x'"),
])
def test_guard_turns_unexpected_exceptions_into_one_line(exc: BaseException, expect: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from skewtune.cli.main import run_guarded

    def boom(_args=None) -> int:
        raise exc

    assert run_guarded(boom) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(expect), line
    assert run_guarded(boom, debug=True) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith(expect)


def test_guard_starts_the_error_on_a_fresh_line(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from skewtune.cli.main import run_guarded
    from skewtune.errors import DataError as Bad

    def bar_then_fail(_args=None) -> int:
        sys.stderr.write("predict:  50%|#####     | 1/2\r")
        raise Bad("a problem", "a fix")

    stderr = sys.stderr
    assert run_guarded(bar_then_fail) == 2
    assert sys.stderr is stderr  # restored
    err = capsys.readouterr().err
    assert err.endswith("\r\nerror: a problem (fix: a fix)\n")


# ------------------------------------------------------------------------------------------------ class 7: predict JSON


def test_predict_writes_null_for_nan_cells_and_strict_json(world: World, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    source = tmp_path / "in.parquet"
    pd.DataFrame({"id": [1.5, float("nan"), float("inf")], "text": ["a fine day", "the worst film", "ok"]}).to_parquet(source)
    out = tmp_path / "preds.jsonl"
    assert cli_main(["predict", "--adapter", str(world.adapter), "--input", str(source), "--output", str(out)]) == 0
    records = [_strict_json(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [1.5, None, None]
    assert all(math.isfinite(p) for r in records for p in r["probabilities"].values())
    source = tmp_path / "in.jsonl"  # Python's json reads NaN literals; they are written back as null
    source.write_text('{"text": "a fine day", "meta": {"score": NaN, "all": [Infinity, 1]}}\n')
    out = tmp_path / "preds2.jsonl"
    assert cli_main(["predict", "--adapter", str(world.adapter), "--input", str(source), "--output", str(out)]) == 0
    assert _strict_json(out.read_text())["meta"] == {"score": None, "all": [None, 1]}


def test_predict_refuses_non_finite_probabilities(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from skewtune.inference.predictor import AdapterClassifier, load_adapter

    classifier = load_adapter(world.adapter)
    monkeypatch.setattr(AdapterClassifier, "logits",
                        lambda self, texts, batch_size=128, progress=False, pairs=None: torch.full((len(texts), 3), float("nan")))
    with pytest.raises(AdapterError, match=r"non-finite \(NaN/inf\) probabilities for 2 of 2"):
        classifier.predict(["a", "b"])
    with pytest.raises(ConfigError, match="--batch_size must be a whole number"):
        classifier.predict(["a"], batch_size=0)


def test_predict_max_length_defaults_within_the_positions(world: World) -> None:
    from skewtune.inference.predictor import load_adapter

    assert load_adapter(world.adapter).max_length == 32  # trained at 128 (recorded or not), base has 32 positions
    with pytest.raises(ConfigError, match="exceeds the 32 positions"):
        load_adapter(world.adapter, max_length=33)


# ------------------------------------------------------------------------------------------------ class 7: labels


def test_boolean_labels_one_spelling_each_are_kept_as_written(tmp_path: Path) -> None:
    from skewtune.data.readers import check_boolean_spellings, read_table

    texts, labels = make_texts(20)
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": lab == labels[0]}) for t, lab in zip(texts, labels)))
    _, got = read_table(path)
    assert set(got) == {"true", "false"}  # a JSON boolean column: one class per value
    for fine in (["yes", "no"], ["0", "1", "2"], ["1", "0"], ["positive", "negative"]):
        check_boolean_spellings(fine, "x")
    for mixed in (["yes", "Yes"], ["0", "false"], ["y", "yes", "no"]):
        with pytest.raises(DataError, match="all mean"):
            check_boolean_spellings(mixed, "x")


def test_saved_datasets_folder_follows_the_same_label_rules(tmp_path: Path) -> None:
    import datasets

    from skewtune.data.datasets import load_dataset_splits

    texts, labels = make_texts(40)
    folder = tmp_path / "saved"
    mixed = ["True" if lab == labels[0] and i % 3 == 0 else ("true" if lab == labels[0] else "false")
             for i, lab in enumerate(labels)]
    datasets.Dataset.from_dict({"text": texts, "label": mixed}).save_to_disk(str(folder))
    with pytest.raises(DataError, match="all mean true"):
        load_dataset_splits(str(folder))


# ------------------------------------------------------------------------------------------------ class 6/7: merges


@pytest.mark.parametrize("kwargs,expect", [
    ({"weights": [1e308, 1.0]}, "weights must be finite, between"),
    ({"weights": [float("nan"), 1.0]}, "weights must be finite, between"),
    ({"scale": 1e308}, "scale must be finite, between"),
    ({"scale": -2e4}, "scale must be finite, between"),
])
def test_merge_coefficients_are_bounded_before_work(world: World, tmp_path: Path, kwargs: dict, expect: str) -> None:
    from skewtune.merge import plan_merge

    with pytest.raises(MergeError, match=expect):
        plan_merge([world.adapter, world.twin], method="linear", output_dir=tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()
