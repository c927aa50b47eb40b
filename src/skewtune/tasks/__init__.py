"""Tasks as objects: sequence classification and token classification (see :mod:`skewtune.tasks.base`)."""

from typing import Any

from skewtune.data.datasets import corpus_defaults
from skewtune.tasks.base import TASKS, Task
from skewtune.tasks.multilabel import MultiLabelClassification
from skewtune.tasks.regression import Regression
from skewtune.tasks.sequence import SequenceClassification
from skewtune.tasks.token import MISSING_TAG, TokenClassification, TokenCrossEntropy

__all__ = ["MISSING_TAG", "TASKS", "MultiLabelClassification", "Regression", "SequenceClassification", "Task",
           "TokenClassification", "TokenCrossEntropy", "get_task", "sequence_task"]

# --problem_type → the sequence task that trains it
SEQUENCE_TASKS: dict[str, type[SequenceClassification]] = {
    "single_label": SequenceClassification, "multi_label": MultiLabelClassification, "regression": Regression}


def sequence_task(cfg: Any) -> SequenceClassification:
    """The sequence task of a configuration: ``--problem_type``, or the one a registered corpus fixes."""
    corpus = corpus_defaults(getattr(cfg, "dataset", None))
    problem_type = getattr(cfg, "problem_type", None) or (corpus.problem_type if corpus else "single_label")
    return SEQUENCE_TASKS[problem_type]()


def get_task(name: str) -> Task:
    """The task registered as ``name`` (``seq_cls``, ``token_cls``); ConfigError listing the valid ones."""
    return TASKS.get(name)()
