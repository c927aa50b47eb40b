"""Training: configuration, the one training engine, checkpoints, the LR finder, and the run pipeline.

The configuration classes are imported eagerly; the engine and pipeline names load on first use (PEP 562), so
that building the CLI's parser (``skewtune --help``), which needs only the configuration, does not import torch,
transformers, peft and bitsandbytes.
"""

from __future__ import annotations

from skewtune.training.config import TokenTrainConfig, TrainConfig, add_config_arguments, config_from_args
from skewtune.utils.lazy import lazy_exports

_LAZY = {
    "Checkpointing": "engine", "Optimization": "engine", "TrainResult": "engine", "batch_loader": "engine",
    "train_module": "engine", "FitState": "state", "Run": "pipeline", "evaluate_split": "pipeline",
    "finish_metrics": "pipeline", "fit_decision_rule": "pipeline", "prepare": "pipeline",
    "print_summary": "pipeline", "run_training": "pipeline", "save_outputs": "pipeline", "train": "pipeline",
}

__all__ = ["TokenTrainConfig", "TrainConfig", "add_config_arguments", "config_from_args", *_LAZY]


__getattr__ = lazy_exports(__name__, _LAZY)
