"""One backbone loader for every head (``skewtune.backbones.load_backbone_with_head``), on the tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skewtune.backbones import load_backbone, load_backbone_with_head, resolve_backbone
from skewtune.backbones.base import BackboneSpec
from skewtune.errors import ConfigError


def test_mlm_head_is_new_fp32_and_int8_scales_kept(tiny_bert: Path) -> None:
    from bitsandbytes.nn import Linear8bitLt

    spec = resolve_backbone(str(tiny_bert))
    model, head_is_new = load_backbone_with_head(spec, task="mlm", quant="8bit")
    assert type(model).__name__ == "BertForMaskedLM" and head_is_new  # the folder holds no MLM head
    assert model.cls.predictions.transform.dense.weight.dtype == torch.float32  # head kept out of int8
    int8 = [m for m in model.modules() if isinstance(m, Linear8bitLt)]
    assert int8 and all(getattr(m, "_skewtune_keeps_scb", False) for m in int8)  # the step load_mlm_model lacked
    assert not any(p.requires_grad for p in model.parameters())  # prepared for k-bit training: base frozen


def test_classification_heads_and_bad_tasks(tiny_bert: Path, tmp_path: Path) -> None:
    spec = resolve_backbone(str(tiny_bert))
    model, head_is_new = load_backbone_with_head(spec, task="seq_cls", id2label={0: "neg", 1: "pos"}, quant="none")
    assert head_is_new and model.config.num_labels == 2 and model.config.id2label == {0: "neg", 1: "pos"}
    assert load_backbone(spec, task="token_cls", num_labels=3, quant="none").classifier.out_features == 3
    with pytest.raises(ConfigError, match="unknown head task"):
        load_backbone(spec, task="causal", num_labels=2)
    decoder = tmp_path / "llama"
    decoder.mkdir()
    config = json.loads((tiny_bert / "config.json").read_text())
    (decoder / "config.json").write_text(json.dumps({**config, "model_type": "llama", "architectures": None}))
    with pytest.raises(ConfigError, match="BERT-style encoder"):
        # a config-only folder (resolve_backbone would refuse it for having no safetensors weights)
        load_backbone(BackboneSpec(name=str(decoder), path=str(decoder), hf_id=str(decoder)), task="mlm", quant="none")
