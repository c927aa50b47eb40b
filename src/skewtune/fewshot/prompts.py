"""Label-word prompts: each class described by short template sentences, used as extra labelled rows.

A sentence encoder places "this is negative" near negative texts before any training: with few examples per class
that prior can be worth more than the examples (``benchmarks/few_shot.py`` measures it). The prompt rows join the
contrastive stage (pulling texts toward their label's description) and the head (with ``--prompt_weight``
per row, so their pull fades as k grows). Labels that are not words (``0``/``1``) need ``--label_words``.
"""

from __future__ import annotations

from collections.abc import Sequence

from skewtune.errors import ConfigError, capped

DEFAULT_TEMPLATES = ("{}", "this is {}", "it is {}", "it was {}", "this text is {}", "a {} text", "the answer is {}")


def parse_label_words(spec: str | None, labels: Sequence[str]) -> dict[str, list[str]]:
    """``"negative=bad|awful;positive=good"`` → words per label; unlisted labels use their own name."""
    words = {label: [label.replace("_", " ").replace("-", " ").strip()] for label in labels}
    if spec:
        for item in spec.split(";"):
            if not item.strip():
                continue
            label, sep, rest = item.partition("=")
            label = label.strip()
            if not sep or label not in words:
                raise ConfigError(f"--label_words: '{item.strip()}' does not name a label ({capped(labels)})",
                                  "pass label=word|word;label2=word")
            listed = [w.strip() for w in rest.split("|") if w.strip()]
            if not listed:
                raise ConfigError(f"--label_words: no word given for '{label}'", "pass label=word|word")
            words[label] = listed
    bare = [label for label, ws in words.items() if all(not any(ch.isalpha() for ch in w) for w in ws)]
    if bare:
        raise ConfigError(f"label(s) {capped(map(repr, bare))} are not words, so label prompts cannot describe them",
                          "pass --label_words label=word|word;… or --label_prompts false")
    return words


def label_prompts(labels: Sequence[str], templates: str | None = None, words: str | None = None) -> tuple[list[str], list[int]]:
    """Prompt rows and their class ids: every template × every word of every class."""
    chosen = [t for t in templates.split("|") if t.strip()] if templates else list(DEFAULT_TEMPLATES)
    per_label = parse_label_words(words, labels)
    texts: list[str] = []
    ids: list[int] = []
    for class_id, label in enumerate(labels):
        for word in per_label[label]:
            for template in chosen:
                texts.append(template.format(word))
                ids.append(class_id)
    return texts, ids
