"""Imbalance toolkit: losses, resampling, minority augmentation and post-hoc decision rules.

One registry per family: :data:`LOSSES` (``build_loss``), :data:`SAMPLERS` (``build_sampler``),
:data:`AUGMENTERS` (``build_augmenter``, ``augment_minority``) and :data:`POST_HOC` (``fit_post_hoc``,
``apply_decision``); :func:`long_tail_splits` / :func:`make_long_tail` make long-tailed subsamples
(``long_tail.py``). See each module's docstring for formulas and sources.
"""

from skewtune.imbalance.augment import (
    AUGMENTERS,
    AugmentedRows,
    EmbeddingSynonyms,
    FilteredSynonyms,
    MobySynonyms,
    PolarityGuard,
    augment_minority,
    build_augmenter,
    contextual_substitution,
    eda,
    embedding_synonyms,
    synonyms_from_model,
)
from skewtune.imbalance.decision import POST_HOC, apply_decision, bias_tuning, fit_post_hoc, logit_adjustment
from skewtune.imbalance.long_tail import (
    classes_by_frequency,
    long_tail_counts,
    long_tail_splits,
    make_long_tail,
)
from skewtune.imbalance.losses import LOSSES, ImbalanceLoss, build_loss, class_weights
from skewtune.imbalance.sampling import (
    SAMPLERS,
    ClassBalancedBatchSampler,
    EmbeddingSMOTE,
    TextResampler,
    WeightedClassSampler,
    build_sampler,
)

__all__ = [
    "AUGMENTERS",
    "LOSSES",
    "POST_HOC",
    "SAMPLERS",
    "AugmentedRows",
    "ClassBalancedBatchSampler",
    "EmbeddingSMOTE",
    "EmbeddingSynonyms",
    "FilteredSynonyms",
    "ImbalanceLoss",
    "MobySynonyms",
    "PolarityGuard",
    "TextResampler",
    "WeightedClassSampler",
    "apply_decision",
    "augment_minority",
    "bias_tuning",
    "build_augmenter",
    "build_loss",
    "build_sampler",
    "class_weights",
    "classes_by_frequency",
    "contextual_substitution",
    "eda",
    "embedding_synonyms",
    "fit_post_hoc",
    "logit_adjustment",
    "long_tail_counts",
    "long_tail_splits",
    "make_long_tail",
    "synonyms_from_model",
]
