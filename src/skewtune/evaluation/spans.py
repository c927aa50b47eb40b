"""Entity chunks from BIO/BIOES tags: entity-level scores (seqeval's semantics) and character-offset spans.

One chunker serves both the ``token_classification`` metric module and prediction (``skewtune predict`` /
``skewtune serve`` on a tagging adapter), so a span a user sees is exactly an entity the metric counts.

Default mode is seqeval's default (conlleval-compatible, lenient): chunks are read from IOB1/IOB2/IOBES tags
(``B-``, ``I-``, ``E-``, ``S-`` prefixes, or bare ``B``/``I``/``E``/``S`` of type ``_``); an ``I-`` or ``E-`` after
``O`` or after another type opens a chunk, a type switch closes one, ``E-``/``S-`` close the chunk they are in.
Sentences are separated so no chunk spans two. ``mode="strict"`` is seqeval's strict mode for one ``scheme``
(``IOB2``: ``B-X I-X*``; ``IOBES``: ``S-X`` or ``B-X (I-X)* E-X``): malformed chunks count as no entity, and a
prefix the scheme does not allow raises a DataError. An entity is correct when type, start and end all match;
precision, recall and F1 are micro-averaged over types (0 when undefined), per type alongside
(seqeval ``precision_recall_fscore_support``, Ramshaw & Marcus 1995 / CoNLL-2000 ``conlleval``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from skewtune.errors import ConfigError, DataError

ENTITY_PREFIXES = ("B-", "I-", "E-", "S-")
BARE_TAGS = ("O", "B", "I", "E", "S")
STRICT_SCHEMES = {"IOB2": frozenset("IOB"), "IOBES": frozenset("IOBES")}
Entity = tuple[str, int, int]  # (type, first word, last word), inclusive


def is_entity_tagset(tags: Iterable[str]) -> bool:
    """True when every tag is ``O``/a bare ``B``/``I``/``E``/``S`` or carries a ``B-``/``I-``/``E-``/``S-`` prefix."""
    return all(t in BARE_TAGS or t.startswith(ENTITY_PREFIXES) for t in tags)


def has_entities(labels: Sequence[str]) -> bool:
    """A BIO/BIOES tag set: entity tags only, at least one of them typed (``B-PER``; a POS tag set is not)."""
    return is_entity_tagset(labels) and any(t.startswith(ENTITY_PREFIXES) for t in labels)


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if (prev_tag, tag) in {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}:
        return True
    return tag not in ("O", ".") and prev_type != type_


def _default_entities(seq: list[str]) -> list[Entity]:
    chunks = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*seq, "O"]):
        tag = chunk[0] if chunk else "O"
        type_ = chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if _end_of_chunk(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _start_of_chunk(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def _strict_entities(seq: list[str], scheme: str) -> list[Entity]:
    """seqeval ``Tokens(seq, scheme).entities`` for IOB2 / IOBES: well-formed chunks only."""
    allowed = STRICT_SCHEMES[scheme]
    parsed = []
    for chunk in seq:
        prefix = chunk[:1]
        if prefix not in allowed:
            raise DataError(f"tag '{chunk}' has a prefix that the {scheme} scheme does not allow "
                            f"({'/'.join(sorted(allowed))})", "use the lenient default mode, or another scheme")
        parsed.append((prefix, chunk[1:].strip("-") or "_"))
    out: list[Entity] = []
    i = 0
    while i < len(parsed):
        prefix, type_ = parsed[i]
        if prefix == "B" or (prefix == "S" and scheme == "IOBES"):
            j = i + 1
            if prefix == "B":
                closing = "I" if scheme == "IOB2" else "IE"
                while j < len(parsed) and parsed[j][1] == type_ and parsed[j][0] in closing \
                        and parsed[j - 1][0] != "E":
                    j += 1
            if scheme == "IOB2" or parsed[j - 1][0] in ("E", "S"):
                out.append((type_, i, j - 1))
            i = j
        else:
            i += 1
    return out


def get_entities(sentences: Sequence[Sequence[str]], *, mode: str | None = None,
                 scheme: str | None = None) -> list[Entity]:
    """``(type, start, end)`` chunks (inclusive ends) over sentences joined with an ``O`` between them.

    Indices count words over the joined sequence (sentence ``k`` starts after the ``k`` separators before it).
    """
    seq = [tag for sentence in sentences for tag in [*sentence, "O"]]
    if mode is None:
        return _default_entities(seq)
    if mode != "strict":
        raise ConfigError(f"unknown entity scoring mode '{mode}'", "use the default (None) or 'strict'")
    if scheme not in STRICT_SCHEMES:
        raise ConfigError(f"strict entity scoring needs a scheme, got {scheme!r}",
                          f"pass scheme= one of: {', '.join(STRICT_SCHEMES)}")
    return _strict_entities(seq, scheme)


def entity_scores(references: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]], *,
                  mode: str | None = None, scheme: str | None = None) -> dict[str, Any]:
    """Micro P/R/F1 over exact-match chunks, per-type scores and the gold entity count (seqeval's definitions).

    ``P = tp / #predicted``, ``R = tp / #gold``, ``F1 = 2PR / (P + R)``, each 0 when its denominator is 0.
    """
    gold: dict[str, set[tuple[int, int]]] = defaultdict(set)
    pred: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for type_, start, end in get_entities(references, mode=mode, scheme=scheme):
        gold[type_].add((start, end))
    for type_, start, end in get_entities(predictions, mode=mode, scheme=scheme):
        pred[type_].add((start, end))

    def prf(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_true if n_true else 0.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    per_type = {}
    tp_all = pred_all = true_all = 0
    for type_ in sorted(set(gold) | set(pred)):
        tp = len(gold[type_] & pred[type_])
        p, r, f = prf(tp, len(pred[type_]), len(gold[type_]))
        per_type[type_] = {"precision": p, "recall": r, "f1": f, "support": len(gold[type_])}
        tp_all, pred_all, true_all = tp_all + tp, pred_all + len(pred[type_]), true_all + len(gold[type_])
    p, r, f = prf(tp_all, pred_all, true_all)
    return {"entity_precision": p, "entity_recall": r, "entity_f1": f, "entity_per_type": per_type,
            "entity_support": true_all}


# ------------------------------------------------------------------------------------------- character spans
def word_offsets(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character offsets (end exclusive) of the words of ``text.split()``, in order.

    Words are maximal runs of characters that are not ``str.isspace()``, exactly as ``str.split()`` cuts them.
    """
    out = []
    start = None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                out.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        out.append((start, len(text)))
    return out


def tags_to_spans(words: Sequence[str], tags: Sequence[str | None], text: str,
                  word_offsets: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Entities of one text as ``{"type", "start", "end", "text"}`` with ``text[start:end] == span text``.

    Chunks are read as the metric reads them (seqeval default mode); a word without a tag (``None``: cut off
    by truncation) ends a span like ``O``. A span runs from its first word's start to its last word's end, so
    the text between its words (spaces, tabs) is kept as written.
    """
    if not len(words) == len(tags) == len(word_offsets):
        raise DataError(f"{len(words)} words, {len(tags)} tags and {len(word_offsets)} offsets differ",
                        "give one tag and one (start, end) offset per word")
    for word, (start, end) in zip(words, word_offsets):
        if text[start:end] != word:
            raise DataError(f"offsets ({start}, {end}) give {text[start:end]!r}, not the word {word!r}",
                            "compute the offsets on the same text (skewtune.evaluation.spans.word_offsets)")
    spans = []
    for type_, first, last in _default_entities([t if t is not None else "O" for t in tags]):
        start, end = word_offsets[first][0], word_offsets[last][1]
        spans.append({"type": type_, "start": start, "end": end, "text": text[start:end]})
    return spans


__all__ = ["ENTITY_PREFIXES", "Entity", "STRICT_SCHEMES", "entity_scores", "get_entities", "has_entities",
           "is_entity_tagset", "tags_to_spans", "word_offsets"]
