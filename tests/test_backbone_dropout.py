"""``--backbone_dropout``: every dropout of the frozen backbone is set, the adapter's own dropout is not."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from skewtune.cli.main import main as cli_main
from tests.conftest import tiny_args


def test_set_backbone_dropout_leaves_the_adapter_dropout(tiny_bert: Path) -> None:
    from skewtune.adapters import AdapterSettings, build_adapter
    from skewtune.backbones import load_backbone, resolve_backbone
    from skewtune.backbones.registry import set_backbone_dropout

    model = load_backbone(resolve_backbone(str(tiny_bert)), num_labels=2, quant="none")
    assert any(m.p > 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert set_backbone_dropout(model, 0.0) >= 2 * 3 + 2  # per layer: attention probs, attention out, ffn out
    model = build_adapter(model, "lora", AdapterSettings(rank=4, dropout=0.2, target_modules="attention"))
    rates = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    lora = {n: p for n, p in rates.items() if "lora_dropout" in n}
    assert lora and all(p == 0.2 for p in lora.values())
    assert all(p == 0.0 for n, p in rates.items() if n not in lora)
    # no dropout left in the backbone: two training-mode forwards agree when the adapter's dropout is off too
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.train()
    ids = torch.tensor([[101, 2023, 3185, 102]])
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_backbone_dropout_flag_trains_and_is_recorded(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, "--backbone_dropout", "0", "--lora_dropout", "0")]) == 0
    manifest = json.loads((out / "adapter" / "skewtune.json").read_text())
    assert manifest["training"]["backbone_dropout"] == 0.0
    assert json.loads((out / "metrics.json").read_text())["eval_macro_f1"] > 0.5
