"""The main recipe for real: bundled MiniLM in 8-bit on ~300 real tweets, and 2-process CPU DDP via accelerate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, tiny_args

RECIPE = REPO / "recipes" / "lora_sentiment.py"


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_recipe_on_real_tweets_with_8bit_minilm(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run([sys.executable, str(RECIPE), "--max_train_samples", "300", "--max_eval_samples", "200",
          "--num_train_epochs", "2", "--output_dir", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quant"] == "8bit" and metrics["backbone"] == "minilm" and metrics["train_size"] == 300
    # 300 real tweets already beat the majority baseline clearly
    assert metrics["eval_macro_f1"] > metrics["baseline_majority_macro_f1"] + 0.1
    assert metrics["backbone_bytes"] < 70e6  # int8 linear layers (fp32 MiniLM is 90.9 MB)
    assert (out / "confusion_matrix.png").is_file()

    # vanilla peft on the fp32 base reproduces skewtune's predictions (int8 vs fp32 base: tiny logit drift only)
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import skewtune
    from skewtune.backbones import resolve_backbone
    from skewtune.data import load_dataset_splits

    texts = load_dataset_splits("tweets", max_eval_samples=200).test_texts[:64]
    base_path = resolve_backbone("minilm").path
    ours = skewtune.load_adapter(out / "adapter", quant="none")
    vanilla = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(base_path, num_labels=3), str(out / "adapter")).eval()
    tok = AutoTokenizer.from_pretrained(base_path)
    with torch.inference_mode():
        expected = vanilla(**tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)).logits
    assert torch.allclose(ours.logits(texts), expected, atol=1e-4)
    int8 = skewtune.load_adapter(out / "adapter")
    agree = (int8.logits(texts).argmax(-1) == expected.argmax(-1)).float().mean().item()
    assert agree >= 0.95


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_cpu_ddp(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    config = REPO / "recipes" / "configs" / "accelerate_cpu_ddp.yaml"
    proc = _run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                 "--main_process_port", str(_free_port()), str(RECIPE),
                 *tiny_args(tiny_bert, toy_csv, out, "--num_train_epochs", "6")])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2, proc.stderr[-2000:]
    assert metrics["eval_macro_f1"] > 0.9
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    # each optimizer step consumed two shards: half the steps of a single process over the same data
    single = tmp_path / "single"
    _run([sys.executable, str(RECIPE), *tiny_args(tiny_bert, toy_csv, single, "--num_train_epochs", "6")])
    single_metrics = json.loads((single / "metrics.json").read_text())
    steps_single = single_metrics["train_steps"]
    assert metrics["train_steps"] == (steps_single + 1) // 2
    # throughput counts the samples of every process: both runs trained on 6 epochs of the same rows
    def samples(m: dict) -> float:
        return m["train_samples_per_second"] * m["train_runtime_s"]

    assert samples(metrics) == pytest.approx(samples(single_metrics), rel=1e-6)
    assert samples(single_metrics) == pytest.approx(6 * single_metrics["train_size"], rel=1e-6)
