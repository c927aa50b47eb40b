"""Tokenise once, then batch by length: dynamic padding and length-grouped batches with a token budget."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger("skewtune")


@dataclass
class TokenizedSplit:
    """Token ids per example (no padding), labels as class ids, and how many texts were truncated.

    ``table``: the Arrow table (columns ``input_ids``, ``length``) the ids live in when the split was tokenized
    by :func:`tokenize_table`; then ``input_ids`` is a lazy view of it and a batch is read with one
    ``__getitems__`` call (the ``DataLoader`` fetches whole batches that way).
    """

    input_ids: Sequence[Sequence[int]]
    labels: list[int] | None
    truncated: int = 0
    table: datasets.Dataset | None = field(default=None, repr=False)
    reused_cache: bool = False  # the ids came from the cache of an earlier run's ``map``
    _lengths: list[int] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        if self._lengths is None:
            self._lengths = (self.table.data.column("length").to_pylist() if self.table is not None
                             else [len(ids) for ids in self.input_ids])
        return self._lengths

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        rows = (self.table[list(indices)]["input_ids"] if self.table is not None
                else [self.input_ids[i] for i in indices])
        if self.labels is None:
            return [{"input_ids": ids} for ids in rows]
        return [{"input_ids": ids, "labels": self.labels[i]} for ids, i in zip(rows, indices)]


def truncate_ids(seq: list[int], max_length: int, sep_token_id: int | None) -> list[int]:
    """``seq`` cut to ``max_length`` tokens, keeping a final separator token (BERT's [SEP]) when it ends one."""
    if len(seq) <= max_length:
        return seq
    last = seq[-1] if sep_token_id is not None and seq[-1] == sep_token_id else None
    return seq[: max_length - 1] + [last] if last is not None else seq[:max_length]


def encode_texts(tokenizer: Any, texts: Sequence[str], max_length: int,
                 pairs: Sequence[str] | None = None) -> tuple[list[list[int]], list[bool]]:
    """Token ids of ``texts`` (with their ``pairs``: ``[CLS] a [SEP] b [SEP]``) cut to ``max_length``, and which
    were cut. A single text keeps its final separator (:func:`truncate_ids`); a pair is cut longest-first by
    the tokenizer, so both sides keep tokens."""
    encoded = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=False,
                        add_special_tokens=True)["input_ids"]
    cut = [len(seq) > max_length for seq in encoded]
    if pairs is None:
        return [truncate_ids(seq, max_length, tokenizer.sep_token_id) for seq in encoded], cut
    long_rows = [i for i, c in enumerate(cut) if c]
    if long_rows:
        again = tokenizer([texts[i] for i in long_rows], [pairs[i] for i in long_rows], truncation="longest_first",
                          max_length=max_length, add_special_tokens=True)["input_ids"]
        for i, ids in zip(long_rows, again):
            encoded[i] = ids
    return [list(seq) for seq in encoded], cut


def tokenize_split(
    tokenizer: Any, texts: Sequence[str], labels: Sequence[Any] | None = None, max_length: int = 128,
    split_name: str = "data", pairs: Sequence[str] | None = None,
) -> TokenizedSplit:
    """Tokenise all texts (or text pairs) in one fast-tokenizer call; truncation is counted and reported once."""
    ids, cut = encode_texts(tokenizer, texts, max_length, pairs)
    truncated = sum(cut)
    if truncated:
        logger.warning("%d of %d %s texts are longer than %d tokens and were truncated", truncated, len(ids), split_name, max_length)
    return TokenizedSplit(ids, list(labels) if labels is not None else None, truncated)


TOKENIZE_BATCH = 1000  # texts per fast-tokenizer call inside ``map``
LARGE_SPLIT = 100_000  # rows from which tokenizing a split is logged at INFO
PARALLEL_ROWS = 50_000  # rows from which tokenizing uses every core by default


def tokenizer_digest(tokenizer: Any) -> str:
    """SHA-256 of what decides a tokenizer's ids: the fast tokenizer's JSON (vocabulary, normaliser,
    pre-tokenizer, post-processor; not its per-call truncation and padding state, which each call sets), else its
    class, name and vocabulary."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    else:
        text = repr((type(tokenizer).__name__, tokenizer.name_or_path, sorted(tokenizer.get_vocab().items())))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tokenize_processes(rows: int, num_proc: int | None = None) -> int:
    """Processes for tokenizing ``rows`` texts: ``num_proc`` when given (at most one per 1,000 rows), else every
    usable core (up to 8) for ``PARALLEL_ROWS`` rows or more and one below (starting workers costs seconds)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = num_proc if num_proc else (min(cores, 8) if rows >= PARALLEL_ROWS else 1)
    return max(1, min(wanted, rows // TOKENIZE_BATCH))


def tokenize_table(tokenizer: Any, table: datasets.Dataset, labels: Sequence[int] | None = None,
                   max_length: int = 128, split_name: str = "data", num_proc: int | None = None) -> TokenizedSplit:
    """Tokenize the ``text`` column of an Arrow table with ``Dataset.map`` (batched; processes:
    :func:`tokenize_processes`).

    The result is written next to a file-backed table's Arrow files under a fingerprint of the table, the
    tokenizer (:func:`tokenizer_digest`) and ``max_length``: a re-run on the same rows reuses it instead of
    tokenizing again (logged). Truncation keeps a final separator, as :func:`truncate_ids` does, and is counted.
    """
    # lazy: importing the datasets library costs about a second, and batching is imported where no table is
    # tokenized (serving, prediction)
    import datasets  # noqa: F811

    fingerprint = hashlib.sha256(f"{table._fingerprint}|{tokenizer_digest(tokenizer)}|{max_length}|ids-v1".encode())
    fingerprint_hex = fingerprint.hexdigest()[:32]

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        ids, cut = encode_texts(tokenizer, batch["text"], max_length, batch.get("text_pair"))
        return {"input_ids": ids, "length": [len(x) for x in ids], "truncated": cut}

    features = datasets.Features({"input_ids": datasets.List(datasets.Value("int32")),
                                  "length": datasets.Value("int32"), "truncated": datasets.Value("bool")})
    reused = bool(table.cache_files) and _cache_exists(table, fingerprint_hex)
    started = time.perf_counter()
    processes = tokenize_processes(len(table), num_proc)
    out = table.map(encode, batched=True, batch_size=TOKENIZE_BATCH, remove_columns=table.column_names,
                    features=features, new_fingerprint=fingerprint_hex, num_proc=processes if processes > 1 else None,
                    desc=f"tokenize {split_name}")
    # one line for a large split (a small one stays quiet: its error paths end in one line)
    level = logging.INFO if len(out) >= LARGE_SPLIT else logging.DEBUG
    if reused:
        logger.log(level, "%s: reused the %d tokenized rows of an earlier run (%s)", split_name, len(out),
                   out.cache_files[0]["filename"])
    else:
        logger.log(level, "%s: tokenized %d rows in %.1f s", split_name, len(out), time.perf_counter() - started)
    truncated = int(out.data.column("truncated").to_numpy().sum()) if len(out) else 0
    if truncated:
        logger.warning("%d of %d %s texts are longer than %d tokens and were truncated", truncated, len(out),
                       split_name, max_length)
    return TokenizedSplit(out["input_ids"], list(labels) if labels is not None else None, truncated, table=out,
                          reused_cache=reused)


def _cache_exists(table: datasets.Dataset, fingerprint: str) -> bool:
    """Does ``map`` with ``new_fingerprint=fingerprint`` find its result (one file, or one per process) cached?"""
    try:
        path = Path(table._get_cache_file_path(fingerprint))
    except (AttributeError, ValueError):
        return False
    return path.exists() or any(path.parent.glob(f"{path.stem}_*_of_*{path.suffix}"))


class PaddingCollator:
    """Pad a list of examples to the longest one in the batch (optionally to a multiple of ``pad_to_multiple_of``).

    ``segment_sep_id``: for sentence pairs on a backbone with segment embeddings (BERT's ``token_type_ids``),
    the separator id; each position after the first separator gets segment 1, as the tokenizer's own
    ``token_type_ids`` do (``[CLS] a [SEP]`` → 0, ``b [SEP]`` → 1).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None, padding_side: str = "right",
                 segment_sep_id: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.padding_side = padding_side
        self.segment_sep_id = segment_sep_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in batch)
        if self.pad_to_multiple_of:
            longest = int(math.ceil(longest / self.pad_to_multiple_of) * self.pad_to_multiple_of)
        input_ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            seq = torch.as_tensor(item["input_ids"], dtype=torch.long)
            if self.padding_side == "left":
                input_ids[row, longest - len(seq):] = seq
                attention[row, longest - len(seq):] = 1
            else:
                input_ids[row, : len(seq)] = seq
                attention[row, : len(seq)] = 1
        out = {"input_ids": input_ids, "attention_mask": attention}
        if self.segment_sep_id is not None:
            is_sep = (input_ids == self.segment_sep_id) & attention.bool()
            before = torch.cumsum(is_sep.long(), dim=1) - is_sep.long()  # separators strictly before a position
            out["token_type_ids"] = ((before >= 1) & attention.bool()).long()
        if "labels" in batch[0]:
            first = batch[0]["labels"]
            if isinstance(first, float) or (isinstance(first, tuple | list) and first and isinstance(first[0], float)):
                # regression targets and multi-hot rows (multi-label): float
                out["labels"] = torch.as_tensor([item["labels"] for item in batch], dtype=torch.float32)
            elif isinstance(first, list):  # token classification: pad labels with -100
                labels = torch.full((len(batch), longest), -100, dtype=torch.long)
                for row, item in enumerate(batch):
                    lab = torch.as_tensor(item["labels"], dtype=torch.long)
                    if self.padding_side == "left":
                        labels[row, longest - len(lab):] = lab
                    else:
                        labels[row, : len(lab)] = lab
                out["labels"] = labels
            else:
                out["labels"] = torch.as_tensor([item["labels"] for item in batch], dtype=torch.long)
        return out


def pack_by_length(ordered: Sequence[int], lengths: Sequence[int], batch_size: int,
                   max_tokens: int | None = None) -> list[list[int]]:
    """Cut ``ordered`` (indices, usually sorted by length) into batches of at most ``batch_size`` rows; with
    ``max_tokens`` a batch also closes when ``rows × longest`` would exceed the budget."""
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in ordered:
        length = lengths[index]
        new_longest = max(longest, length)
        over_budget = max_tokens is not None and current and new_longest * (len(current) + 1) > max_tokens
        if len(current) >= batch_size or over_budget:
            batches.append(current)
            current, new_longest = [], length
        current.append(index)
        longest = new_longest
    if current:
        batches.append(current)
    return batches


class LengthGroupedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length: shuffle, sort inside mega-batches of ``mega`` batches, shuffle the batches.

    With ``max_tokens`` a batch closes when ``batch_len × longest`` would exceed the budget, so short texts
    travel in large batches and long ones in small ones (padding waste stays low). Deterministic per
    ``seed`` and epoch (call :meth:`set_epoch`). Under DDP, Accelerate shards the batch list across processes.
    ``shuffle=False`` gives sorted-by-length batches for evaluation (order restored by the caller via indices).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        max_tokens: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        mega: int = 50,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.mega = mega
        self.epoch = 0
        self.indices = list(indices) if indices is not None else None
        self._batches = self._build()

    resample: Any = None  # optional callable(epoch) -> indices, e.g. a class-balanced draw per epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            if self.resample is not None:
                self.indices = list(self.resample(epoch))
            self._batches = self._build()

    def set_indices(self, indices: Sequence[int]) -> None:
        """Replace the pool of example indices (e.g. a resampled training set) and rebuild."""
        self.indices = list(indices)
        self._batches = self._build()

    def _pack(self, ordered: list[int]) -> list[list[int]]:
        return pack_by_length(ordered, self.lengths, self.batch_size, self.max_tokens)

    def _build(self) -> list[list[int]]:
        pool = list(self.indices) if self.indices is not None else list(range(len(self.lengths)))
        if not self.shuffle:
            return self._pack(sorted(pool, key=lambda i: self.lengths[i]))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(pool)
        span = self.batch_size * self.mega
        batches: list[list[int]] = []
        for start in range(0, len(pool), span):
            chunk = sorted(pool[start : start + span], key=lambda i: self.lengths[i], reverse=True)
            batches.extend(self._pack(chunk))
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)
