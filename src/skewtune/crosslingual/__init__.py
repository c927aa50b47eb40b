"""Cross-lingual transfer: MAD-X-style language adapters (LoRA + masked LM), stacking, k-shot fine-tuning, scoring.

The experiment that uses them (tasks, languages, goals, results tables) is ``recipes/cross_lingual.py``.

* :mod:`~skewtune.crosslingual.mlm` — ``train_language_adapter(spec, texts, folder, language=...)``;
* :mod:`~skewtune.crosslingual.stack` — ``attach_language_adapter`` / ``activate`` / ``detach_language_adapter``;
* :mod:`~skewtune.crosslingual.fewshot` — ``sample_k``, ``fine_tune``, ``snapshot``/``restore``;
* :mod:`~skewtune.crosslingual.scoring` — ``add_language_split``, ``score``, ``k_shot_score`` (a task adapter scored
  in another language, zero-shot and after k-shot fine-tuning);
* :mod:`~skewtune.crosslingual.languages` — language codes per task.
"""

from skewtune.crosslingual.languages import LANGUAGE_NAMES, TASK_CORPORA, parse_languages
from skewtune.crosslingual.mlm import LanguageAdapterSettings, train_language_adapter, train_language_adapters
from skewtune.crosslingual.scoring import add_language_split, k_shot_score, score
from skewtune.crosslingual.stack import activate, attach_language_adapter, detach_language_adapter

__all__ = [
    "LANGUAGE_NAMES", "TASK_CORPORA", "LanguageAdapterSettings", "activate", "add_language_split",
    "attach_language_adapter", "detach_language_adapter", "k_shot_score", "parse_languages", "score",
    "train_language_adapter", "train_language_adapters",
]
