"""Imbalance toolkit: losses, resampling, minority augmentation and post-hoc decision rules.

One registry per family: :data:`LOSSES` (``build_loss``), :data:`SAMPLERS` (``build_sampler``),
:data:`AUGMENTERS` (``build_augmenter``, ``augment_minority``) and :data:`POST_HOC` (``fit_post_hoc``,
``apply_decision``); :func:`long_tail_splits` / :func:`make_long_tail` make long-tailed subsamples
(``long_tail.py``). See each module's docstring for formulas and sources.

The names below load on first use (PEP 562): the training task imports the decision rules and losses only, and
must not pull in imbalanced-learn and scikit-learn through the samplers.
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = {
    **dict.fromkeys(["AUGMENTERS", "AugmentedRows", "EmbeddingSynonyms", "FilteredSynonyms", "MobySynonyms", "PolarityGuard", "augment_minority", "build_augmenter", "contextual_substitution", "eda", "embedding_synonyms", "synonyms_from_model"], "augment"),
    **dict.fromkeys(["POST_HOC", "apply_decision", "bias_tuning", "fit_post_hoc", "logit_adjustment"], "decision"),
    **dict.fromkeys(["classes_by_frequency", "long_tail_counts", "long_tail_splits", "make_long_tail"], "long_tail"),
    **dict.fromkeys(["ImbalanceLoss", "LOSSES", "build_loss", "class_weights"], "losses"),
    **dict.fromkeys(["ClassBalancedBatchSampler", "EmbeddingSMOTE", "SAMPLERS", "TextResampler", "WeightedClassSampler", "build_sampler"], "sampling"),
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
