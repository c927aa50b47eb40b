"""Shared helpers for the hub tests (no tests here): tiny adapter folders built without training."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from skewtune.adapters.io import render_card, write_manifest
from skewtune.utils.io import atomic_write_json, atomic_write_text

LABELS = {"0": "negative", "1": "neutral", "2": "positive"}


def _manifest(**over: Any) -> dict[str, Any]:
    manifest = {
        "task_type": "seq_cls",
        "backbone": "tiny-bert",
        "base_model": "tiny-bert",
        "base_fingerprint": {"config_sha256": "0" * 64, "weights_sha256": "1" * 64},
        "adapter_type": "lora",
        "quant": "none",
        "id2label": dict(LABELS),
        "languages": ["en"],
        "dataset": "tweets",
        "training": {"learning_rate": 0.001},
        "metrics": {"eval_macro_f1": 0.8, "eval_accuracy": 0.85},
        "imbalance": {"sampler": None, "loss": "ce", "augment": None, "post_hoc": None},
        "decision": None,
        "lineage": None,
    }
    manifest.update(over)
    return manifest


def make_fake_adapter(folder: Path, **manifest_over: Any) -> Path:
    """A structurally valid adapter folder (numpy safetensors, no torch): fast, not loadable by peft."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    save_file({"base_model.model.classifier.weight": rng.standard_normal((3, 8)).astype("float32")},
              str(folder / "adapter_model.safetensors"))
    atomic_write_json(folder / "adapter_config.json", {"peft_type": "LORA", "r": 2, "task_type": "SEQ_CLS"})
    manifest = _manifest(**manifest_over)
    atomic_write_text(folder / "README.md", render_card(manifest))
    write_manifest(folder, manifest)
    return folder


@functools.lru_cache(maxsize=1)
def real_adapter() -> tuple[Path, Path]:
    """(adapter folder, base folder): a tiny random BERT saved as the base, a peft LoRA on it, card + manifest.

    Built once per test session in a private temporary folder; copy it before changing anything.
    """
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import BertConfig, BertForSequenceClassification

    from skewtune.backbones import base_fingerprint

    root = Path(tempfile.mkdtemp(prefix="skewtune-hub-test-"))
    atexit.register(shutil.rmtree, root, True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=3,
                        id2label={int(k): v for k, v in LABELS.items()}, label2id={v: int(k) for k, v in LABELS.items()})
    base_dir = root / "base"
    BertForSequenceClassification(config).save_pretrained(base_dir)
    model = get_peft_model(BertForSequenceClassification.from_pretrained(base_dir),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=2, lora_alpha=4, target_modules=["query", "value"]))
    adapter_dir = root / "adapter"
    model.save_pretrained(adapter_dir)
    manifest = _manifest(backbone=str(base_dir), base_fingerprint=base_fingerprint(str(base_dir)))
    atomic_write_text(adapter_dir / "README.md", render_card(manifest))
    write_manifest(adapter_dir, manifest)
    return adapter_dir, base_dir


def copy_adapter(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `skewtune <argv>` in-process with only the hub command registered."""
    from skewtune.cli import main as cli_main

    monkeypatch.setattr(cli_main, "COMMAND_MODULES", ["skewtune.cli.hub"])
    capsys.readouterr()
    try:
        rc = cli_main.main(list(argv))
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
