"""Every ADAPTERS entry builds, trains, saves and reloads on a tiny random BERT; bad names are one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from skewtune.adapters.compat import load_trained_adapter
from skewtune.adapters.registry import ADAPTERS, AdapterSettings, build_adapter
from skewtune.errors import ConfigError

EXPECTED = {"lora", "rslora", "dora", "ia3", "prefix", "prompt"}


def tiny_bert(task: str) -> Any:
    import transformers as tf

    config = tf.BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=64, num_labels=3, initializer_range=0.2,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    cls = tf.BertForTokenClassification if task == "token_cls" else tf.BertForSequenceClassification
    return cls(config).eval()


def toy_batch(task: str) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, 96, (6, 8), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    ids[4, 6:], mask[4, 6:] = 0, 0
    labels = (ids % 3).masked_fill(mask == 0, -100) if task == "token_cls" else torch.tensor([0, 1, 2, 0, 1, 2])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def test_registry_has_the_whole_zoo() -> None:
    assert EXPECTED <= set(ADAPTERS.names())


@pytest.mark.parametrize("task", ["seq_cls", "token_cls"])
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_adapter_trains_saves_reloads(kind: str, task: str, tmp_path: Path) -> None:
    model = build_adapter(tiny_bert(task), kind, AdapterSettings(rank=4, num_virtual_tokens=4), task)
    batch = toy_batch(task)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and sum(p.numel() for p in trainable) < sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    model.train()
    losses = []
    for _ in range(3):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    model.eval()
    with torch.no_grad():
        expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    model.save_pretrained(str(tmp_path))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    reloaded = load_trained_adapter(tiny_bert(task), tmp_path)
    with torch.no_grad():
        got = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert (got - expected).abs().max().item() <= 1e-5


def test_unknown_adapter_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        build_adapter(tiny_bert("seq_cls"), "lorax")
    line = info.value.one_line()
    assert "unknown adapter 'lorax'" in line and "\n" not in line
    for name in EXPECTED:
        assert name in line


@pytest.mark.parametrize("kind", ["lora", "dora", "ia3"])
def test_target_modules_matching_nothing(kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_adapter(tiny_bert("seq_cls"), kind, AdapterSettings(target_modules="q_proj,nonexistent"))
    line = info.value.one_line()
    assert "q_proj" in line and "match no module" in line and "\n" not in line
