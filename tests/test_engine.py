"""The one training core (skewtune.training.engine): step accounting, one module for optimizer/schedule/prepare,
phases on one prepared module, references released, the schedule it builds."""

from __future__ import annotations

import re

import pytest
import torch
from accelerate import Accelerator
from transformers.modeling_outputs import SequenceClassifierOutput

from skewtune.training.engine import Optimization, batch_loader, plan_steps, train_module
from tests.conftest import REPO


@pytest.mark.parametrize(("batches", "processes", "accumulation", "epochs", "max_steps", "expected"), [
    # (per-process batches, updates/epoch, total updates, epochs entered, scheduler steps)
    (10, 1, 1, 1.0, None, (10, 10, 10, 1, 10)),
    (10, 2, 1, 1.0, None, (5, 5, 5, 1, 10)),       # each process takes half the batches; schedule × processes
    (10, 2, 2, 1.0, None, (5, 3, 3, 1, 6)),        # accumulation: ⌈5 / 2⌉ updates per epoch
    (11, 2, 1, 1.0, None, (6, 6, 6, 1, 12)),       # Accelerate's even sharding rounds up
    (10, 1, 1, 1.5, None, (10, 10, 15, 2, 15)),    # fractional epochs stop mid-epoch
    (10, 1, 1, 1.0, 25, (10, 10, 25, 3, 25)),      # max_steps overrides epochs
    (10, 4, 1, 3.0, 7, (3, 3, 7, 3, 28)),
])
def test_step_accounting(batches, processes, accumulation, epochs, max_steps, expected) -> None:
    plan = plan_steps(batches, processes, accumulation,
                      Optimization(learning_rate=1e-3, num_epochs=epochs, max_steps=max_steps, warmup_ratio=0.1))
    got = (plan.batches_per_epoch, plan.updates_per_epoch, plan.total_updates, plan.epochs, plan.scheduler_steps)
    assert got == expected
    assert plan.warmup_steps == int(0.1 * plan.scheduler_steps)


def test_one_module_builds_optimizers_schedules_and_prepares() -> None:
    """`get_scheduler(` and `accelerator.prepare(` for training appear in training/engine.py only (src and
    benchmarks), so every trainer shares the step accounting above."""
    pattern = re.compile(r"get_scheduler\(|accelerator\.prepare\(|\.prepare\(optimizer")
    users = sorted(str(p.relative_to(REPO)) for folder in ("src", "benchmarks", "recipes")
                   for p in (REPO / folder).rglob("*.py") if pattern.search(p.read_text(encoding="utf-8")))
    assert users == ["src/skewtune/training/engine.py"]


class _Toy(torch.nn.Module):
    """A linear classifier with the (input_ids → .logits) interface of the backbones."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(8, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(logits=self.head(self.embed(input_ids).mean(1)))


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.rows = [{"input_ids": [1 + i % 3, 4 + i % 2], "labels": i % 2} for i in range(n)]
        self.lengths = [2] * n

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _collate(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor([r["input_ids"] for r in rows]), "labels": torch.tensor([r["labels"] for r in rows])}


def test_phases_on_one_prepared_module_and_references_released() -> None:
    torch.manual_seed(0)
    model, accelerator = _Toy(), Accelerator(cpu=True)
    data = _Rows(40)
    loader = batch_loader(data, data.lengths, 8, _collate, seed=0)
    head_only = list(model.head.parameters())
    before = model.embed.weight.detach().clone()
    first = train_module(model, loader, torch.nn.CrossEntropyLoss(), Optimization(learning_rate=0.1, max_steps=3),
                         accelerator, params=head_only)
    assert first.state.global_step == 3 and torch.equal(model.embed.weight, before)  # only the head moved
    second = train_module(model, loader, torch.nn.CrossEntropyLoss(), Optimization(learning_rate=0.1, num_epochs=2),
                          accelerator)
    assert second.model is first.model  # not prepared twice
    assert second.state.global_step == 10 and len(second.state.history) == 2
    assert not torch.equal(model.embed.weight, before)
    assert not accelerator._optimizers and not accelerator._schedulers and not accelerator._dataloaders
    assert len(accelerator._models) == 1
    train_module(model, loader, torch.nn.CrossEntropyLoss(), Optimization(learning_rate=0.1, max_steps=1),
                 accelerator, release_model=True)
    assert not accelerator._models


def test_the_schedule_follows_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Warmup then linear decay over exactly the planned optimizer steps (gradient accumulation included)."""
    from skewtune.training import engine

    made = []
    original = engine.get_scheduler
    monkeypatch.setattr(engine, "get_scheduler", lambda *a, **k: made.append(k) or original(*a, **k))
    data = _Rows(40)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    result = train_module(_Toy(), batch_loader(data, data.lengths, 4, _collate, seed=0), torch.nn.CrossEntropyLoss(),
                          Optimization(learning_rate=0.1, num_epochs=1, warmup_ratio=0.2), accelerator)
    assert made == [{"num_warmup_steps": 1, "num_training_steps": 5}]
    assert result.state.global_step == result.plan.total_updates == 5


def test_plan_rejects_unknown_names() -> None:
    from skewtune.errors import ConfigError

    with pytest.raises(ConfigError, match="lr_scheduler_type"):
        Optimization(learning_rate=1e-3, lr_scheduler_type="step")
    with pytest.raises(ConfigError, match="on_nan"):
        Optimization(learning_rate=1e-3, on_nan="ignore")

