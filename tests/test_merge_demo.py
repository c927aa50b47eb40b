"""``skewtune.merge.evaluate_adapter`` and the merge demo's plumbing, on tiny random backbones (light).

The real-data demo itself (benchmarks/merge_demo.py, MiniLM 8-bit, minutes of CPU) is not run here; its results
live in benchmarks/results/merge_demo.{json,md}.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from skewtune.adapters.io import read_manifest, verify_folder
from skewtune.cli.main import main as cli_main
from skewtune.errors import ConfigError, DataError
from skewtune.merge import evaluate_adapter
from tests.conftest import REPO, make_texts, tiny_args, write_csv


@pytest.fixture(scope="module")
def toy(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-class and a 3-class adapter trained by the pipeline on toy csv files (tiny BERT, fp32)."""
    root = tmp_path_factory.mktemp("demo")
    out: dict[str, Path] = {"root": root}
    for name, classes in (("polar", 2), ("tri", 3)):
        texts, labels = make_texts(240, seed=classes, classes=classes)
        data = write_csv(root / f"{name}.csv", texts, labels)
        run = root / f"run-{name}"
        assert cli_main(["train", *tiny_args(tiny_bert, data, run)]) == 0
        out[name], out[f"{name}_data"], out[f"{name}_run"] = run / "adapter", data, run
    return out


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_scores_match_training_pipeline(toy: dict[str, Path]) -> None:
    for name in ("polar", "tri"):
        result = evaluate_adapter(toy[name], str(toy[f"{name}_data"]))
        trained = _metrics(toy[f"{name}_run"])
        # the same deduplicated split (seed 42), the same test texts, the same metric module
        assert result["num_samples"] == trained["test_size"]
        assert result["macro_f1"] == pytest.approx(trained["eval_macro_f1"], abs=1e-9)
        assert result["accuracy"] == pytest.approx(trained["eval_accuracy"], abs=1e-9)
        assert result["task"] is None and result["split"] == "test" and result["labels"] == trained["labels"]
    small = evaluate_adapter(toy["tri"], str(toy["tri_data"]), max_eval_samples=12)
    assert small["num_samples"] == 12


def test_labels_are_mapped_by_name(toy: dict[str, Path], tmp_path: Path) -> None:
    """An adapter whose class ids are in another order scores the same: rows and labels permuted together."""
    from safetensors.torch import load_file, save_file

    from skewtune.adapters.io import read_manifest, render_card, write_manifest

    src = toy["tri"]
    perm = [2, 0, 1]
    dst = tmp_path / "permuted"
    dst.mkdir()
    for name in ("adapter_config.json", "README.md"):
        (dst / name).write_bytes((src / name).read_bytes())
    tensors = load_file(str(src / "adapter_model.safetensors"))
    heads = [k for k in tensors if ".classifier." in k]
    assert heads
    for key in heads:
        tensors[key] = tensors[key][perm].contiguous()
    save_file(tensors, str(dst / "adapter_model.safetensors"), metadata={"format": "pt"})
    manifest = read_manifest(src)
    old = manifest["id2label"]
    manifest["id2label"] = {str(i): old[str(p)] for i, p in enumerate(perm)}
    (dst / "README.md").write_text(render_card(manifest))
    write_manifest(dst, manifest)
    a = evaluate_adapter(src, str(toy["tri_data"]))
    b = evaluate_adapter(dst, str(toy["tri_data"]))
    assert a["macro_f1"] == pytest.approx(b["macro_f1"], abs=1e-9)
    assert a["confusion_matrix"] == b["confusion_matrix"]


def test_label_mismatch_and_bad_task_refused(toy: dict[str, Path]) -> None:
    with pytest.raises(DataError, match=r"\(negative, positive\) do not match .* \(negative, neutral, positive\)"):
        evaluate_adapter(toy["polar"], str(toy["tri_data"]))
    with pytest.raises(ConfigError, match="single-task adapter"):
        evaluate_adapter(toy["polar"], str(toy["polar_data"]), task="other")
    with pytest.raises(ConfigError, match="unknown split"):
        evaluate_adapter(toy["polar"], str(toy["polar_data"]), split="train")


def test_multitask_merge_scores_each_task(toy: dict[str, Path], tmp_path: Path) -> None:
    from skewtune.merge import merge_adapters

    # weight 0 on the 3-class source: the merged LoRA is the 2-class source's own, so its task scores exactly as
    # the source; the 3-class task then runs with its own head on that LoRA
    merged = merge_adapters([toy["polar"], toy["tri"]], method="task_arithmetic", weights=[1.0, 0.0],
                            output_dir=tmp_path / "m")
    tasks = json.loads((merged / "skewtune.json").read_text())["tasks"]
    assert set(tasks) == {"polar", "tri"}
    polar = evaluate_adapter(merged, str(toy["polar_data"]))  # task chosen by label set
    assert polar["task"] == "polar"
    assert polar["macro_f1"] == pytest.approx(evaluate_adapter(toy["polar"], str(toy["polar_data"]))["macro_f1"], abs=1e-9)
    tri = evaluate_adapter(merged, str(toy["tri_data"]), task="tri")
    assert tri["task"] == "tri" and 0.0 <= tri["macro_f1"] <= 1.0
    with pytest.raises(ConfigError, match="no task 'nope'"):
        evaluate_adapter(merged, str(toy["tri_data"]), task="nope")
    with pytest.raises(DataError, match="the labels of task 'polar'"):
        evaluate_adapter(merged, str(toy["tri_data"]), task="polar")


def test_merge_cli_eval_prints_sources_and_merge(toy: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["merge", "--adapters", str(toy["polar"]), str(toy["tri"]), "--method", "ties",
                     "--output_dir", str(tmp_path / "ties"),
                     "--eval", f"polar={toy['polar_data']}", "--eval", f"tri={toy['tri_data']}"])
    assert code == 0
    captured = capsys.readouterr()
    printed, progress = captured.out, captured.err.splitlines()
    rows = [line.split("\t") for line in printed.splitlines() if line.count("\t") == 2]
    assert rows[0] == ["task", "adapter", "score"]
    body = rows[1:]
    assert [r[0] for r in body] == ["polar", "polar", "tri", "tri"]
    assert "(merged)" in body[1][1] and "(merged)" in body[3][1]
    assert all(r[2].startswith("macro_f1=") for r in body)
    # progress on stderr, one line before and after each scoring; the error explained in words
    assert "[1/4] scoring" in "\n".join(progress) and "[4/4]" in "\n".join(progress)
    assert "factors B·A differ from the exact merged update ΔW" in printed and "of ‖ΔW‖ (Frobenius)" in printed
    assert "Rule of thumb: under 5%" in printed  # ties: a truncated SVD, so the note says what is acceptable
    # scores saved in the merged manifest, its hashes still valid
    out = tmp_path / "ties"
    manifest = verify_folder(out, read_manifest(out))
    metrics = manifest["metrics"]
    merged_polar = float(body[1][2].removeprefix("macro_f1="))
    assert metrics["eval_polar_macro_f1"] == pytest.approx(merged_polar, abs=1e-4)
    assert 0.0 <= metrics["eval_tri_accuracy"] <= 1.0
    detail = metrics["merge_eval"]
    assert set(detail) == {"polar", "tri"} and set(detail["polar"]["sources"]) == {body[0][1]}
    assert detail["tri"]["merged"]["num_samples"] > 0
    assert "eval_polar_macro_f1" in (out / "README.md").read_text()


def test_same_label_merge_is_single_task(toy: dict[str, Path], tmp_path: Path) -> None:
    from skewtune.merge import merge_adapters

    copy = tmp_path / "tri-copy"  # merge refuses the same folder twice
    copy.mkdir()
    for item in toy["tri"].iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    merged = merge_adapters([toy["tri"], copy], method="ties", output_dir=tmp_path / "same")
    manifest = json.loads((merged / "skewtune.json").read_text())
    assert "tasks" not in manifest
    result = evaluate_adapter(merged, str(toy["tri_data"]))
    # TIES of an adapter with itself (density 0.5) keeps the larger half of each ΔW: still a working classifier
    assert result["task"] is None and result["macro_f1"] > 0.5


# ------------------------------------------------------------------------------------------------ demo script


def _demo():
    if str(REPO / "benchmarks") not in sys.path:  # the demo imports its harness.py as a script would
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("merge_demo", REPO / "benchmarks" / "merge_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_second_tweets_subset_is_disjoint(tmp_path: Path) -> None:
    from skewtune.data import load_dataset_splits
    from skewtune.data.datasets import normalise_for_dedup
    from skewtune.data.readers import read_table

    demo = _demo()
    flags = demo.disjoint_tweets({"seed": 42, "max_train_samples": 300, "num_train_epochs": 1}, 200, tmp_path)
    b_texts, b_labels = read_table(Path(flags["dataset"]), "text", "label")
    a = load_dataset_splits("tweets", seed=42, max_train_samples=300)
    assert len(b_texts) == 200 and set(b_labels) == set(a.labels)
    assert not {normalise_for_dedup(t) for t in b_texts} & {normalise_for_dedup(t) for t in a.train_texts}
    test_texts, _ = read_table(Path(flags["test_file"]), "text", "label")
    assert test_texts == a.test_texts  # B is scored on the canonical test split


def test_demo_markdown_tables() -> None:
    demo = _demo()
    single = {k: {"macro_f1": v, "n": 10} for k, v in (("tweets", 0.6), ("pang_lee", 0.8), ("tweets_b", 0.58))}
    row = {"parameters": {"weights": [1.0, 1.0]}, "tweets": {"macro_f1": 0.59, "kept": 0.59 / 0.6},
           "pang_lee": {"macro_f1": 0.78, "kept": 0.78 / 0.8}, "min_kept": 0.975}
    result = {
        "mode": "test", "eval": {"sizes": {"tweets": 10, "pang_lee": 10}}, "best_multi_task_method": "ties",
        "goal_met": True, "single": single, "multi_task": {"ties": row},
        "same_task": {"ties": {"parameters": {"weights": [1.0, 1.0]}, "tweets": {"macro_f1": 0.61},
                               "kept_vs_a": 0.61 / 0.6, "kept_vs_b": 0.61 / 0.58}},
        "sources": {k: {"dataset": k, "train_size": 10, "epochs": 1, "labels": ["a", "b"]} for k in single},
        "timings_s": {"total_s": 1.0, "sources_s": 0.5, "merge_eval_s": 0.5},
        "environment": {"cpus": 2, "torch": torch.__version__, "threads": 2},
    }
    text = demo.markdown(result)
    assert "| ties **(best)** | 1, 1 | 0.5900 | 98.3% | 0.7800 | 97.5% | 97.5% |" in text
    assert "**met**" in text and "| ties | 1, 1 | 0.6100 | 101.7% | 105.2% |" in text
