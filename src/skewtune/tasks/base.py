"""What a task is to the training pipeline: an object, looked up by name in :data:`TASKS`.

A task loads its splits, tokenizes them, names the head the backbone grows (``head``: the backbone loader's
and peft's task kind, recorded as the manifest's ``task_type``), gives the training loss, scores a split and
adds its own metrics to the test scores. The pipeline (:mod:`skewtune.training.pipeline`) calls these and never
asks which task it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from skewtune.utils.registry import Registry

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from transformers import PreTrainedTokenizerBase


class Task(Protocol):
    """The protocol every task implements."""

    name: str  # registry name and manifest ``task_type``: the backbone head kind (seq_cls, token_cls)
    baselines: bool  # sequence-level baselines (majority, TF-IDF + LR) make sense for it

    def check_config(self, cfg: Any) -> None:
        """Refuse options that have no meaning for this task (before anything loads)."""

    def load_splits(self, cfg: Any) -> Any:
        """Train/validation/test splits of ``cfg.dataset``."""

    def tokenize(self, cfg: Any, tokenizer: PreTrainedTokenizerBase, splits: Any, split: str) -> Any:
        """One split, tokenized once (a ``TokenizedSplit``)."""

    def loss(self, cfg: Any, class_counts: Callable[[], list[int]]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The training loss; ``class_counts()`` gives the rows per class the model trains on."""

    def evaluate(self, model: torch.nn.Module, data: Any, splits: Any, collator: Any, batch_size: int,
                 accelerator: Accelerator, decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """Scores of ``model`` on a tokenized split: ``accuracy``, ``macro_f1``, per-class lists, …"""

    def test_metrics(self, report: dict[str, Any]) -> dict[str, Any]:
        """Task-specific ``eval_*`` entries of metrics.json from the test split's report."""


TASKS: Registry[Task] = Registry("task")
