"""Tasks as objects: sequence classification and token classification (see :mod:`skewtune.tasks.base`)."""

from skewtune.tasks.base import TASKS, Task
from skewtune.tasks.sequence import SequenceClassification
from skewtune.tasks.token import MISSING_TAG, TokenClassification, TokenCrossEntropy

__all__ = ["MISSING_TAG", "TASKS", "SequenceClassification", "Task", "TokenClassification", "TokenCrossEntropy",
           "get_task"]


def get_task(name: str) -> Task:
    """The task registered as ``name`` (``seq_cls``, ``token_cls``); ConfigError listing the valid ones."""
    return TASKS.get(name)()
