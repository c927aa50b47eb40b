"""Training: configuration, the Accelerate loop, checkpoints, and the run pipeline."""

from skewtune.training.config import TrainConfig, add_config_arguments, config_from_args
from skewtune.training.pipeline import (
    Run,
    evaluate_split,
    finish_metrics,
    fit_decision_rule,
    prepare,
    print_summary,
    save_outputs,
    train,
)


def run_training(cfg: TrainConfig, recipe: str = "train") -> Run:
    """prepare → train → test metrics → save → summary (what ``skewtune train`` runs)."""
    run = prepare(cfg, recipe=recipe)
    train(run)
    fit_decision_rule(run)
    finish_metrics(run)
    save_outputs(run)
    print_summary(run)
    return run


__all__ = [
    "Run", "TrainConfig", "add_config_arguments", "config_from_args", "evaluate_split", "fit_decision_rule", "finish_metrics", "prepare",
    "print_summary", "run_training", "save_outputs", "train",
]
