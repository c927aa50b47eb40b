"""Few-shot adapters: k-shot sampling, SetFit-style pairs, and a registry of methods (:data:`METHODS`).

``recipes/few_shot.py`` runs a method over several seeds; ``benchmarks/few_shot.py`` compares the methods with
SetFit on the same backbone, k-shot sets and test rows.
"""

from skewtune.fewshot.config import FewShotConfig, parse_layers
from skewtune.fewshot.methods import METHODS, FewShotContext, FewShotMethod, Trained, describe, get_method
from skewtune.fewshot.pairs import all_pairs, generate_pairs
from skewtune.fewshot.pooling import SentenceEncoder, install_pooling, mean_pool
from skewtune.fewshot.sampling import (
    KShotSample,
    mean_std,
    natural_allocation,
    parse_seeds,
    sample_k_shot,
    sample_subset,
)

__all__ = [
    "METHODS", "FewShotConfig", "FewShotContext", "FewShotMethod", "KShotSample", "SentenceEncoder", "Trained",
    "all_pairs", "describe", "generate_pairs", "get_method", "install_pooling", "mean_pool", "mean_std",
    "natural_allocation", "parse_layers", "parse_seeds", "sample_k_shot", "sample_subset",
]
