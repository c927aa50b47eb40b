"""Shared fixtures: a tiny random BERT backbone (real MiniLM tokenizer, random 2-layer weights) and small data."""

from __future__ import annotations

import csv
import importlib.util
import os
import random
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.hostile_support import World

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent


def load_benchmark(script: str, module_name: str) -> ModuleType:
    """``benchmarks/<script>`` imported as a module, its folder on ``sys.path`` (it imports ``harness.py`` beside it
    as a script would) and the module registered (its dataclasses resolve their module)."""
    if str(REPO / "benchmarks") not in sys.path:
        sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(module_name, REPO / "benchmarks" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module

POSITIVE = ["great", "love", "wonderful", "happy", "excellent", "fantastic", "good", "nice", "amazing", "best"]
NEGATIVE = ["awful", "hate", "terrible", "sad", "horrible", "bad", "worst", "poor", "ugly", "angry"]
FILLER = ["the", "movie", "car", "phone", "day", "service", "food", "weather", "team", "song", "is", "was", "so"]


def make_texts(n: int, seed: int = 0, classes: int = 2) -> tuple[list[str], list[str]]:
    """Separable toy sentiment: each text holds one cue word of its class among filler words."""
    rng = random.Random(seed)
    texts, labels = [], []
    cues = [NEGATIVE, POSITIVE, ["okay", "fine", "average", "neutral", "normal"]][:classes]
    names = ["negative", "positive", "neutral"][:classes]
    for i in range(n):
        c = i % classes
        words = rng.sample(FILLER, 4) + [rng.choice(cues[c])]
        rng.shuffle(words)
        texts.append(" ".join(words) + f" {i}")
        labels.append(names[c])
    return texts, labels


def write_csv(path: Path, texts: list[str], labels: list[str] | None, text_col: str = "text", label_col: str = "label") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([text_col, label_col] if labels is not None else [text_col])
        for i, text in enumerate(texts):
            writer.writerow([text, labels[i]] if labels is not None else [text])
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with MiniLM's real tokenizer, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    from skewtune.backbones import resolve_backbone

    folder = tmp_path_factory.mktemp("tiny-bert")
    source = Path(resolve_backbone("minilm").path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128)
    model = BertModel(config)
    # "pretrain" one feature: cue words of each class share an embedding direction, as in a real encoder
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    direction = torch.randn(config.hidden_size)
    direction /= direction.norm()
    with torch.no_grad():
        for sign, words in ((1.0, POSITIVE), (-1.0, NEGATIVE)):
            for word in words:
                for token_id in tokenizer(word, add_special_tokens=False)["input_ids"]:
                    model.embeddings.word_embeddings.weight[token_id] += 2.0 * sign * direction
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts, labels = make_texts(240, seed=1)
    return write_csv(tmp_path_factory.mktemp("data") / "toy.csv", texts, labels)


# The model settings these tests were written and tuned for: `skewtune train`'s defaults before they became the
# recipe's (skewtune/configs/lora_sentiment.yaml: no dropout, attention only, random_over, eval batch 256).
# Pinned so no threshold moves silently; a test's own flags come later and win.
TINY_MODEL_SETTINGS = ("--lora_dropout", "0.1", "--backbone_dropout", "none", "--target_modules", "all",
                       "--sampler", "none", "--per_device_eval_batch_size", "128")


def tiny_args(tiny_bert: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """Flags for a fast run on the tiny backbone."""
    return [
        "--dataset", str(data), "--backbone", str(tiny_bert), "--output_dir", str(out), "--quant", "none",
        "--num_train_epochs", "3", "--learning_rate", "1e-2", "--per_device_train_batch_size", "16",
        "--baselines", "false", "--report_plots", "false", *TINY_MODEL_SETTINGS, *extra,
    ]


# the hostile-input tests' read-only world (tests/hostile_support.py), built once per module that asks for it
@pytest.fixture(scope="module")
def world(tiny_bert: Path, toy_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    from transformers import BertConfig, BertForSequenceClassification

    import skewtune.hub as hub
    from skewtune.adapters.io import read_manifest, write_manifest
    from tests import hostile_support
    from tests.test_hub_support import make_fake_adapter, real_adapter

    root = tmp_path_factory.mktemp("hostile-world")
    adapter_src, base_src = real_adapter()
    base = shutil.copytree(base_src, root / "base")
    adapter = shutil.copytree(adapter_src, root / "adapter")
    manifest = read_manifest(adapter)
    manifest["backbone"] = str(base)
    write_manifest(adapter, manifest)
    other = root / "other-base"
    BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=32, num_labels=3)).save_pretrained(other)
    twin = shutil.copytree(adapter, root / "twin")
    twin_manifest = read_manifest(twin)
    twin_manifest["name"] = "twin"
    write_manifest(twin, twin_manifest)
    alien = shutil.copytree(adapter, root / "alien")
    alien_manifest = read_manifest(alien)
    alien_manifest["base_fingerprint"] = {"config_sha256": "0" * 64, "weights_sha256": "1" * 64}
    write_manifest(alien, alien_manifest)  # a consistent manifest (its own hash updated)
    fake = make_fake_adapter(root / "fake")
    hub.push(fake, str(root / "hub"), "demo")
    return hostile_support.World(root, tiny_bert, toy_csv, adapter, base, other, fake, root / "hub", twin, alien)
