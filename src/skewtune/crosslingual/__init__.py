"""Cross-lingual transfer: MAD-X-style language adapters (LoRA + masked LM), stacking, k-shot fine-tuning, scoring.

The experiment that uses them (tasks, languages, goals, results tables) is ``recipes/cross_lingual.py``.

* :mod:`~skewtune.crosslingual.mlm` — ``train_language_adapter(spec, texts, folder, language=...)``;
* :mod:`~skewtune.crosslingual.stack` — ``attach_language_adapter`` / ``activate`` / ``detach_language_adapter``;
* :mod:`~skewtune.crosslingual.fewshot` — ``sample_k``, ``split_holdout``, ``split_folds``, ``fine_tune`` (early
  stopping on held-out shots, WiSE-FT interpolation), ``interpolate``, ``snapshot``/``restore``;
* :mod:`~skewtune.crosslingual.scoring` — ``add_language_split``, ``score``, ``k_shot_score`` (a task adapter scored
  in another language, zero-shot and after k-shot fine-tuning), ``item_scores`` +
  ``paired_sign_test`` (is one configuration better than another on the same items?), ``true_class_probability``;
* :mod:`~skewtune.crosslingual.languages` — language codes per task.
"""

from skewtune.crosslingual.languages import LANGUAGE_NAMES, TASK_CORPORA, parse_languages
from skewtune.crosslingual.mlm import LanguageAdapterSettings, train_language_adapter, train_language_adapters
from skewtune.crosslingual.scoring import (
    add_language_split,
    item_scores,
    k_shot_score,
    paired_sign_test,
    score,
    true_class_probability,
)
from skewtune.crosslingual.stack import activate, attach_language_adapter, detach_language_adapter

__all__ = [
    "LANGUAGE_NAMES", "TASK_CORPORA", "LanguageAdapterSettings", "activate", "add_language_split",
    "attach_language_adapter", "detach_language_adapter", "item_scores", "k_shot_score", "paired_sign_test",
    "parse_languages", "score", "true_class_probability",
    "train_language_adapter", "train_language_adapters",
]
