"""Prefix and prompt tuning on transformers 5 + peft 0.21 (skewtune.adapters.compat), on tiny random models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from skewtune.adapters.compat import load_trained_adapter, prefix_key_values
from skewtune.adapters.prefix import PrefixSettings
from skewtune.adapters.prompt import PromptSettings
from skewtune.adapters.registry import AdapterSettings, build_adapter
from skewtune.errors import AdapterError, ConfigError

COMMON = dict(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, num_labels=2,
              initializer_range=0.2)  # larger than default: the random attention mixes, toy tasks become learnable
N_VIRTUAL = 3


def tiny(family: str, task: str, seed: int = 0, attn: str = "sdpa") -> Any:
    """A tiny random BERT / XLM-R / Llama with a classification head (dropout off: deterministic steps)."""
    import transformers as tf

    if family == "bert":
        config = tf.BertConfig(max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **COMMON)
        classes = (tf.BertForSequenceClassification, tf.BertForTokenClassification)
    elif family == "xlm-roberta":
        config = tf.XLMRobertaConfig(max_position_embeddings=64, pad_token_id=1, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, **COMMON)
        classes = (tf.XLMRobertaForSequenceClassification, tf.XLMRobertaForTokenClassification)
    else:
        config = tf.LlamaConfig(num_key_value_heads=2, pad_token_id=0, **COMMON)  # GQA, pad token set
        classes = (tf.LlamaForSequenceClassification, tf.LlamaForTokenClassification)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return (classes[1] if task == "token_cls" else classes[0])(config).eval()


def toy_batch(model: Any, task: str) -> dict[str, torch.Tensor]:
    """Four sequences, two of them padded on the right; labels follow a learnable rule."""
    pad = model.config.pad_token_id or 0
    ids = torch.randint(3, COMMON["vocab_size"], (4, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    ids[2, 5:], mask[2, 5:] = pad, 0
    ids[3, 3:], mask[3, 3:] = pad, 0
    if task == "token_cls":
        labels = (ids % 2).masked_fill(mask == 0, -100)
    else:
        labels = torch.tensor([0, 1, 0, 1])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train(model: Any, batch: dict[str, torch.Tensor], steps: int = 4, lr: float = 1e-2) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
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


def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("kind", ["prefix", "prompt"])
@pytest.mark.parametrize("task", ["seq_cls", "token_cls"])
@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "llama"])
def test_train_save_reload_predict(family: str, task: str, kind: str, tmp_path: Path) -> None:
    model = build_adapter(tiny(family, task), kind, AdapterSettings(num_virtual_tokens=N_VIRTUAL), task)
    batch = toy_batch(model, task)
    before = model.prompt_encoder["default"].embedding.weight.detach().clone()
    model.train()
    model(**batch).loss.backward()
    grad = model.prompt_encoder["default"].embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0, "no gradient reaches the virtual tokens"
    model.zero_grad()
    losses = train(model, batch)
    assert losses[-1] < losses[0]
    assert not torch.equal(before, model.prompt_encoder["default"].embedding.weight)
    expected = logits(model, batch)
    if task == "token_cls":
        assert expected.shape[:2] == batch["input_ids"].shape  # virtual tokens are not in the output

    # padding invariance: the shortest row alone, unpadded, predicts the same
    alone = logits(model, {"input_ids": batch["input_ids"][3:, :3], "attention_mask": batch["attention_mask"][3:, :3]})
    reference = expected[3] if task == "seq_cls" else expected[3, :3]
    assert torch.allclose(alone[0], reference, atol=1e-5)

    model.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == ("PREFIX_TUNING" if kind == "prefix" else "PROMPT_TUNING")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "prompt_embeddings" in saved
    assert any("classifier" in k or "score" in k for k in saved)  # the fresh head travels with the adapter

    reloaded = load_trained_adapter(tiny(family, task), tmp_path)
    assert (logits(reloaded, batch) - expected).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_prefix_equals_transformers_cache_path(family: str) -> None:
    """Same logits as transformers' own cache path fed the prefix (with unshifted position ids)."""
    from transformers import DynamicCache

    model = build_adapter(tiny(family, "seq_cls"), "prefix", AdapterSettings(num_virtual_tokens=N_VIRTUAL), "seq_cls")
    with torch.no_grad():
        model.prompt_encoder["default"].embedding.weight.normal_()
    batch = toy_batch(model, "seq_cls")
    ours = logits(model, batch)
    cache = DynamicCache()
    for layer, (key, value) in enumerate(prefix_key_values(model, 4)):
        cache.update(key.detach().contiguous(), value.detach().contiguous(), layer)
    mask = torch.cat([torch.ones(4, N_VIRTUAL, dtype=torch.long), batch["attention_mask"]], dim=1)
    with torch.no_grad():
        reference = model.get_base_model()(
            input_ids=batch["input_ids"], attention_mask=mask, cache=cache,
            position_ids=torch.arange(7).expand(4, -1),
        ).logits
    assert (ours - reference).abs().max().item() < 1e-5
    with torch.no_grad():
        plain = model.get_base_model()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert (ours - plain).abs().max().item() > 1e-6  # the prefix does something


@pytest.mark.parametrize("projection", [False, True])
def test_prefix_layout_matches_peft_get_prompt(projection: bool) -> None:
    """The per-layer prefix equals what peft's own ``get_prompt`` builds (GQA Llama: kv heads)."""
    settings = PrefixSettings(num_virtual_tokens=N_VIRTUAL, prefix_projection=projection, encoder_hidden_size=8)
    model = build_adapter(tiny("llama", "seq_cls"), "prefix", settings, "seq_cls")
    with torch.no_grad():
        for param in model.prompt_encoder["default"].parameters():
            param.normal_()
        upstream = model.get_prompt(2)  # a transformers DynamicCache in peft 0.21 + transformers 5
        for layer, (key, value) in enumerate(prefix_key_values(model, 2)):
            assert key.shape == (2, 2, N_VIRTUAL, 8)
            assert torch.allclose(key, upstream.layers[layer].keys, atol=1e-6)
            assert torch.allclose(value, upstream.layers[layer].values, atol=1e-6)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_prefix_eager_matches_sdpa(family: str) -> None:
    outputs = []
    for attn in ("sdpa", "eager"):
        model = build_adapter(tiny(family, "seq_cls", attn=attn), "prefix", AdapterSettings(num_virtual_tokens=2), "seq_cls")
        with torch.no_grad():
            model.prompt_encoder["default"].embedding.weight.copy_(torch.linspace(-1, 1, model.prompt_encoder["default"].embedding.weight.numel()).view_as(model.prompt_encoder["default"].embedding.weight))
        outputs.append(logits(model, toy_batch(model, "seq_cls")))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)


@pytest.mark.parametrize("reentrant", [False, True])
def test_prefix_gradient_checkpointing_same_gradients(reentrant: bool) -> None:
    model = build_adapter(tiny("llama", "seq_cls"), "prefix", AdapterSettings(num_virtual_tokens=N_VIRTUAL), "seq_cls")
    batch = toy_batch(model, "seq_cls")
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.get_base_model().gradient_checkpointing_enable({"use_reentrant": reentrant})
        model.train()
        model.zero_grad()
        model(**batch).loss.backward()
        grads.append(model.prompt_encoder["default"].embedding.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-7)


def test_prefix_projection_roundtrip(tmp_path: Path) -> None:
    settings = PrefixSettings(num_virtual_tokens=N_VIRTUAL, prefix_projection=True, encoder_hidden_size=16)
    model = build_adapter(tiny("bert", "seq_cls"), "prefix", settings, "seq_cls")
    assert model.prompt_encoder["default"].transform is not None
    batch = toy_batch(model, "seq_cls")
    losses = train(model, batch)
    assert losses[-1] < losses[0]
    expected = logits(model, batch)
    model.save_pretrained(str(tmp_path))
    from safetensors.torch import load_file

    # peft saves the projected prefix: (virtual tokens, layers * 2 * hidden)
    assert tuple(load_file(str(tmp_path / "adapter_model.safetensors"))["prompt_embeddings"].shape) == (N_VIRTUAL, 2 * 2 * 32)
    reloaded = load_trained_adapter(tiny("bert", "seq_cls"), tmp_path)
    assert (logits(reloaded, batch) - expected).abs().max().item() <= 1e-5


def test_vanilla_peft_reads_the_folder(tmp_path: Path) -> None:
    """The folder is standard PEFT: vanilla ``PeftModel.from_pretrained`` restores the same weights."""
    from peft import PeftModel

    model = build_adapter(tiny("bert", "seq_cls"), "prefix", AdapterSettings(num_virtual_tokens=N_VIRTUAL), "seq_cls")
    batch = toy_batch(model, "seq_cls")
    train(model, batch, steps=2)
    model.save_pretrained(str(tmp_path))
    vanilla = PeftModel.from_pretrained(tiny("bert", "seq_cls"), str(tmp_path))
    assert torch.equal(vanilla.prompt_encoder["default"].embedding.weight, model.prompt_encoder["default"].embedding.weight)
    # upstream bug the shim works around (peft 0.21.2 looks for `past_key_values`, transformers 5 calls it `cache`)
    with pytest.raises(ValueError, match="past key values"):
        vanilla(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_prompt_encoder_seq_cls_matches_vanilla_peft(tmp_path: Path) -> None:
    """Where peft's own prompt forward is right (encoder, sequence classification) the shim changes nothing."""
    from peft import PeftModel

    model = build_adapter(tiny("xlm-roberta", "seq_cls"), "prompt", AdapterSettings(num_virtual_tokens=N_VIRTUAL), "seq_cls")
    batch = toy_batch(model, "seq_cls")
    train(model, batch, steps=2)
    model.save_pretrained(str(tmp_path))
    vanilla = PeftModel.from_pretrained(tiny("xlm-roberta", "seq_cls"), str(tmp_path))
    assert torch.allclose(logits(vanilla, batch), logits(model, batch), atol=1e-6)


def test_prompt_init_from_text(tmp_path: Path) -> None:
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "great", "awful", "movie", "review"]
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(str(tmp_path / "tok"))
    base = tiny("bert", "seq_cls")
    settings = PromptSettings(num_virtual_tokens=4, init_text="great movie", tokenizer_path=str(tmp_path / "tok"))
    model = build_adapter(base, "prompt", settings, "seq_cls")
    ids = torch.tensor([2, 5, 7, 3])  # [CLS] great movie [SEP]
    expected = model.word_embeddings.weight[ids]
    assert torch.allclose(model.prompt_encoder["default"].embedding.weight, expected)
    with pytest.raises(ConfigError, match="tokenizer"):
        build_adapter(tiny("bert", "seq_cls"), "prompt", PromptSettings(init_text="great", tokenizer_path=str(tmp_path / "none")))


def test_prefix_8bit_bert(tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from transformers import BertForSequenceClassification

    from skewtune.backbones.registry import BackboneSpec, head_module_names, load_backbone

    tiny("bert", "seq_cls").save_pretrained(str(tmp_path / "base"))
    spec = BackboneSpec(name="tiny-bert", path=str(tmp_path / "base"), hf_id="tiny-bert")
    model = load_backbone(spec, num_labels=2, quant="8bit")
    assert isinstance(model, BertForSequenceClassification)
    assert type(model.bert.encoder.layer[0].attention.self.query).__name__ == "Linear8bitLt"
    settings = AdapterSettings(num_virtual_tokens=N_VIRTUAL, modules_to_save=head_module_names("bert", "seq_cls"))
    model = build_adapter(model, "prefix", settings, "seq_cls")
    batch = toy_batch(model, "seq_cls")
    losses = train(model, batch)
    assert losses[-1] < losses[0]
    expected = logits(model, batch)
    model.save_pretrained(str(tmp_path / "adapter"))
    reloaded = load_trained_adapter(load_backbone(spec, num_labels=2, quant="8bit"), tmp_path / "adapter")
    assert (logits(reloaded, batch) - expected).abs().max().item() <= 1e-5


def _tiny_other(kind: str) -> Any:
    import transformers as tf

    if kind == "distilbert":
        return tf.DistilBertForSequenceClassification(tf.DistilBertConfig(vocab_size=96, dim=32, n_layers=2, n_heads=4, hidden_dim=37))
    return tf.GPT2ForSequenceClassification(tf.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, pad_token_id=0))


@pytest.mark.parametrize("arch", ["distilbert", "gpt2"])
def test_prefix_unsupported_architecture_is_one_line_config_error(arch: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_adapter(_tiny_other(arch), "prefix", AdapterSettings(num_virtual_tokens=N_VIRTUAL))
    line = info.value.one_line()
    assert "\n" not in line and "prefix adapters are not supported" in line and arch in line


def test_prefix_needs_eager_or_sdpa() -> None:
    model = tiny("bert", "seq_cls")
    model.config._attn_implementation = "flex_attention"
    with pytest.raises(ConfigError, match="eager or sdpa"):
        build_adapter(model, "prefix", AdapterSettings(num_virtual_tokens=N_VIRTUAL))


def test_zero_virtual_tokens_is_config_error() -> None:
    for kind in ("prefix", "prompt"):
        with pytest.raises(ConfigError, match="num_virtual_tokens"):
            build_adapter(tiny("bert", "seq_cls"), kind, AdapterSettings(num_virtual_tokens=0))


def test_load_trained_adapter_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="adapter_config.json"):
        load_trained_adapter(tiny("bert", "seq_cls"), tmp_path)
