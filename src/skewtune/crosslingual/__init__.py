"""Cross-lingual transfer: MAD-X-style language adapters (LoRA + masked LM), stacking, k-shot fine-tuning.

* :mod:`~skewtune.crosslingual.mlm` — ``train_language_adapter(spec, texts, folder, language=...)``;
* :mod:`~skewtune.crosslingual.stack` — ``attach_language_adapter`` / ``activate`` / ``detach_language_adapter``;
* :mod:`~skewtune.crosslingual.fewshot` — ``sample_k``, ``fine_tune``, ``snapshot``/``restore``;
* :mod:`~skewtune.crosslingual.experiment` — the steps of ``recipes/cross_lingual.py``;
* :mod:`~skewtune.crosslingual.languages` — language codes per task.
"""

from skewtune.crosslingual.languages import LANGUAGE_NAMES, TASK_CORPORA, parse_languages
from skewtune.crosslingual.mlm import LanguageAdapterSettings, train_language_adapter, train_language_adapters
from skewtune.crosslingual.stack import activate, attach_language_adapter, detach_language_adapter

__all__ = [
    "LANGUAGE_NAMES", "TASK_CORPORA", "LanguageAdapterSettings", "activate", "attach_language_adapter",
    "detach_language_adapter", "parse_languages", "train_language_adapter", "train_language_adapters",
]
