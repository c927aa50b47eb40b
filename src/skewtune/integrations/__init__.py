"""Bridges from skewtune's toolkit to other training libraries.

* :mod:`skewtune.integrations.transformers` — the imbalance losses, samplers and post-hoc decision rules inside a
  Hugging Face ``transformers.Trainer`` script (:class:`ImbalanceTrainer`, :func:`skewtune_loss`,
  :func:`resampled_sampler`, :func:`fit_decision_rule`, :func:`apply_decision_rule`).

The names load on first use (PEP 562): importing the package does not import transformers or imbalanced-learn.
"""

from __future__ import annotations

from skewtune.utils.lazy import lazy_exports

_LAZY = dict.fromkeys(["ImbalanceTrainer", "LossProgressCallback", "ResampledSampler", "TrainerLoss",
                       "apply_decision_rule", "dataset_labels", "fit_decision_rule", "resampled_sampler",
                       "skewtune_loss"], "transformers")

__all__ = sorted(_LAZY)


__getattr__ = lazy_exports(__name__, _LAZY)
