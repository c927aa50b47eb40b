"""Many adapters on one backbone per base model, and forward passes that mix them in one batch.

An :class:`AdapterPool` keeps one quantized backbone per (base model, quantization, task) and loads every
LoRA-family adapter of that base into it as a named peft adapter (``PeftModel.add_adapter`` +
``set_peft_model_state_dict``). A batch whose rows belong to different adapters runs in **one** forward pass:

* the LoRA layers use peft's mixed-batch path (``model(..., adapter_names=[...])``: the frozen base matmul runs
  once over the whole batch, each adapter adds ``B_a A_a x`` to its own rows);
* each adapter's trained head modules (peft ``modules_to_save``: the classifier, and BERT's pooler) live in a
  :class:`RoutedModule` that sends each row through the copy of its adapter. Heads may have different label
  counts: the routed output is zero-padded to the widest head and every row is cut back to its own labels.

DoRA adapters share the backbone but cannot join peft's mixed batches (peft refuses ``adapter_names`` with DoRA),
so their rows run as a batch of their own with that adapter active. Adapters of other kinds (IA3, prefix, prompt
tuning, few-shot pooled heads) get a model of their own (:func:`skewtune.inference.load_adapter`), as
``engine="per_adapter"`` does for every adapter (one ``skewtune predict`` model per adapter, the baseline the serving
benchmark compares with). ``engine="merged"`` gives every adapter a dense model with the adapter folded in
(``skewtune predict --merge``: unquantized, bf16 where the hardware multiplies it natively) — the fast path for
one hot adapter, at a dense model's memory per adapter.

Every adapter passes the same checks as ``skewtune predict`` before anything is loaded
(:func:`skewtune.inference.predictor.open_adapter_folder` and the base fingerprint); a refused adapter leaves the
pool unchanged.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from skewtune.adapters.heads import set_head_params
from skewtune.adapters.io import check_base_fingerprint
from skewtune.backbones import check_max_length, load_backbone, load_tokenizer, resolve_backbone
from skewtune.data.batching import PaddingCollator, truncate_ids
from skewtune.errors import AdapterError, ConfigError
from skewtune.evaluation.spans import has_entities, tags_to_spans, word_offsets
from skewtune.imbalance.decision import apply_decision
from skewtune.inference.precision import apply_dtype, check_dtype_name, resolve_dtype
from skewtune.inference.predictor import (
    AdapterClassifier,
    load_adapter,
    open_adapter_folder,
    probability_records,
    trained_max_length,
)

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PEFT_PREFIX = "base_model.model."
ENGINES = ("shared", "per_adapter", "merged")
SERVED_TASKS = ("seq_cls", "token_cls")


@dataclass
class EncodedText:
    """One text as the model reads it: token ids, and for a tagging adapter its words, each word's first
    subword position (-1: cut off by truncation), the text and each word's ``(start, end)`` character offsets."""

    ids: list[int]
    words: list[str] | None = None
    word_positions: list[int] | None = None
    text: str | None = None
    word_offsets: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.ids)


class Router:
    """Which adapter each row of the running batch belongs to (set around one forward pass)."""

    def __init__(self) -> None:
        self.groups: list[tuple[str, torch.Tensor]] | None = None

    def set(self, slots: list[str], device: torch.device) -> None:
        order: dict[str, list[int]] = {}
        for row, slot in enumerate(slots):
            order.setdefault(slot, []).append(row)
        self.groups = [(slot, torch.tensor(rows, device=device)) for slot, rows in order.items()]


class RoutedModule(nn.Module):
    """A head module with one trained copy per adapter: each row goes through its adapter's copy.

    Rows of adapters without a copy use the base module. Outputs of different widths (heads with different label
    counts) are zero-padded on the last dimension to the widest; callers cut each row back to its own labels.
    """

    def __init__(self, base: nn.Module, router: Router) -> None:
        super().__init__()
        self.base = base
        self.copies = nn.ModuleDict()
        self._router = router  # not a submodule: shared by every routed module of the backbone

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        groups = self._router.groups
        if not groups:
            return self.base(x, *args, **kwargs)
        if len(groups) == 1:
            return self.copies[groups[0][0]](x, *args, **kwargs) if groups[0][0] in self.copies else \
                self.base(x, *args, **kwargs)
        outputs = []
        for slot, rows in groups:
            module = self.copies[slot] if slot in self.copies else self.base
            outputs.append((rows, module(x[rows], *args, **kwargs)))
        first = outputs[0][1]
        width = max(out.shape[-1] for _, out in outputs)
        result = first.new_zeros((x.shape[0], *first.shape[1:-1], width))
        for rows, out in outputs:
            result[rows, ..., : out.shape[-1]] = out
        return result


@dataclass
class ServedAdapter:
    """One adapter the server answers for."""

    name: str
    folder: Path
    manifest: dict[str, Any]
    labels: list[str]
    max_length: int
    decision: dict[str, Any] | None
    lane: str  # rows of one lane may share a forward pass
    slot: str = ""  # its peft adapter name on a shared backbone
    mixable: bool = False  # plain LoRA: joins peft's mixed-adapter batches
    solo: AdapterClassifier | None = None  # a model of its own (other kinds, or engine="per_adapter")

    @property
    def task(self) -> str:
        return str(self.manifest.get("task_type", "seq_cls"))

    def describe(self) -> dict[str, Any]:
        m = self.manifest
        return {"name": self.name, "labels": self.labels, "backbone": m.get("backbone"),
                "base_model": m.get("base_model"), "adapter_type": m.get("adapter_type"),
                "task_type": m.get("task_type", "seq_cls"), "quant": m.get("quant"),
                "max_length": self.max_length, "text_column": (m.get("training") or {}).get("text_column"),
                "shared_backbone": self.solo is None,
                "mixed_batches": self.mixable, "metrics": m.get("metrics") or {}}


@dataclass
class SharedBackbone:
    """One quantized backbone with every LoRA-family adapter of its base loaded as a named peft adapter."""

    key: str
    base: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    autocast: bool
    router: Router = field(default_factory=Router)
    peft_model: PeftModel | None = None
    routed: dict[str, RoutedModule] = field(default_factory=dict)
    slots: set[str] = field(default_factory=set)
    dora: set[str] = field(default_factory=set)

    def compute_context(self) -> Any:
        return torch.autocast(self.device.type, dtype=self.dtype) if self.autocast else contextlib.nullcontext()

    def add(self, slot: str, folder: Path, adapter_config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
        """Load one adapter's LoRA weights under ``slot`` and its head modules as routed copies."""
        from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

        model = self.peft_model.base_model.model if self.peft_model is not None else self.base
        heads = _head_paths(model, adapter_config.get("modules_to_save") or [], state)
        lora_state = {k: v for k, v in state.items() if not _under(k[len(PEFT_PREFIX):], heads)}
        head_state = {k[len(PEFT_PREFIX):]: v for k, v in state.items() if _under(k[len(PEFT_PREFIX):], heads)}
        if not any(k.endswith(("classifier.weight", "score.weight")) for k in head_state):
            raise AdapterError(f"{folder} carries no classification head", "serve adapters trained by skewtune")
        fields = {k: v for k, v in adapter_config.items() if k in LoraConfig.__dataclass_fields__}
        fields.update(task_type=None, modules_to_save=None, inference_mode=True, lora_dropout=0.0)
        try:
            config = LoraConfig(**fields)
        except (TypeError, ValueError) as exc:
            raise AdapterError(f"{folder}/adapter_config.json is not a LoRA config: {str(exc).splitlines()[0]}",
                               "re-save the adapter with skewtune") from exc
        copies = {path: _head_copy(model.get_submodule(path) if path not in self.routed else self.routed[path].base,
                                   path, head_state) for path in heads}
        created = self.peft_model is None
        try:
            if created:
                self.peft_model = get_peft_model(self.base, config, adapter_name=slot)
            else:
                self.peft_model.add_adapter(slot, config)
            result = set_peft_model_state_dict(self.peft_model, lora_state, adapter_name=slot)
            missing = [k for k in getattr(result, "unexpected_keys", []) if slot in k or "lora_" in k]
            if missing:
                raise AdapterError(f"{folder}: {len(missing)} LoRA tensor(s) match no layer of the backbone "
                                   f"(first: {missing[0]})", "load it on the backbone it was trained on")
        except (RuntimeError, ValueError, KeyError) as exc:
            self._drop_slot(slot, created)
            first = str(exc).strip().splitlines()[0][:200]
            raise AdapterError(f"adapter {folder} does not fit this backbone: {first}",
                               "load it on the backbone it was trained on (see skewtune.json)") from exc
        except AdapterError:
            self._drop_slot(slot, created)
            raise
        inner = self.peft_model.base_model.model
        for path, module in copies.items():
            if path not in self.routed:
                routed = RoutedModule(inner.get_submodule(path), self.router)
                inner.set_submodule(path, routed)
                self.routed[path] = routed
            self.routed[path].copies[slot] = module.to(self.device)
        self.slots.add(slot)
        if config.use_dora:
            self.dora.add(slot)
        self.peft_model.eval()

    def _drop_slot(self, slot: str, created: bool) -> None:
        if self.peft_model is None:
            return
        if created:
            self.base = self.peft_model.unload()
            self.peft_model = None
        elif slot in self.peft_model.peft_config:
            self.peft_model.delete_adapter(slot)

    def remove(self, slot: str) -> None:
        for routed in self.routed.values():
            if slot in routed.copies:
                del routed.copies[slot]
        self.slots.discard(slot)
        self.dora.discard(slot)
        if self.peft_model is not None and slot in self.peft_model.peft_config and self.slots:
            self.peft_model.delete_adapter(slot)

    @torch.inference_mode()
    def logits(self, slots: list[str], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of one batch whose row ``i`` belongs to adapter ``slots[i]`` (DoRA: one adapter per call)."""
        assert self.peft_model is not None
        batch = {k: v.to(self.device) for k, v in batch.items()}
        self.router.set(slots, self.device)
        try:
            with self.compute_context():
                if slots[0] in self.dora:
                    self.peft_model.set_adapter(slots[0])
                    return self.peft_model(**batch).logits.float().cpu()
                return self.peft_model(**batch, adapter_names=slots).logits.float().cpu()
        finally:
            self.router.groups = None


class AdapterPool:
    """Named adapters, their shared backbones, and the forward pass of a batch of (adapter, token ids) rows.

    Thread-safe: loading, unloading and forward passes take one lock, so a batch never sees half an adapter.
    """

    def __init__(self, *, engine: str = "shared", quant: str | None = None, dtype: str = "auto",
                 device: str | None = None, verify: bool = True, force_base: bool = False) -> None:
        if engine not in ENGINES:
            raise ConfigError(f"unknown engine '{engine}'", f"use one of: {', '.join(ENGINES)}")
        check_dtype_name(dtype)
        self.engine, self.quant, self.dtype_name, self.verify, self.force_base = engine, quant, dtype, verify, force_base
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.adapters: dict[str, ServedAdapter] = {}
        self.backbones: dict[str, SharedBackbone] = {}
        self.lock = threading.RLock()
        self._next_slot = 0

    # ------------------------------------------------------------------------------------------- loading
    def add(self, folder: str | Path, name: str | None = None) -> ServedAdapter:
        """Check and load the adapter in ``folder`` under ``name`` (default: its manifest name)."""
        folder = Path(folder)
        manifest, adapter_config = open_adapter_folder(folder, verify=self.verify)
        name = name or str(manifest.get("name") or folder.name)
        check_served_name(name)
        if name in self.adapters:
            raise ConfigError(f"an adapter named '{name}' is already loaded", "unload it first or pick another name")
        task = manifest.get("task_type", "seq_cls")
        if task not in SERVED_TASKS:
            raise ConfigError(f"{folder} is a '{task}' adapter; the server answers {' and '.join(SERVED_TASKS)} "
                              "adapters", "serve a text classification or tagging adapter")
        if manifest.get("tasks"):
            raise ConfigError(f"{folder} is a merged multi-task adapter", "serve each source adapter instead")
        if (manifest.get("problem_type") or "single_label") != "single_label" or manifest.get("text_pair_column"):
            kind_of = "a sentence-pair" if manifest.get("text_pair_column") else f"a {manifest.get('problem_type')}"
            raise ConfigError(f"{folder} is {kind_of} adapter; the server answers single-text, single-label "
                              "classification and tagging adapters (not yet pairs, multi-label or regression)",
                              "predict with it through 'skewtune predict' or skewtune.load_adapter")
        spec = resolve_backbone(manifest.get("backbone") or adapter_config.get("base_model_name_or_path"))
        if Path(spec.path).is_dir():
            check_base_fingerprint(manifest, spec.path, force=self.force_base, base_label=spec.name, require=False)
        labels = [manifest["id2label"][k] for k in sorted(manifest["id2label"], key=int)]
        quant = self.quant or manifest.get("quant", "none")
        kind = adapter_config.get("peft_type")
        if self.engine != "shared" or kind != "LORA" or manifest.get("pooling"):
            if task != "seq_cls":
                raise ConfigError(f"{folder}: a tagging adapter is served on the shared engine as a LoRA adapter only",
                                  "serve it with --engine shared, or retrain it as a LoRA adapter")
            with self.lock:
                solo = load_adapter(folder, quant=self.quant, merge=self.engine == "merged", dtype=self.dtype_name,
                                    verify=False, device=str(self.device), force_base=self.force_base)
                served = ServedAdapter(name=name, folder=folder, manifest=manifest, labels=labels,
                                       max_length=solo.max_length, decision=solo.decision, lane=f"solo:{name}",
                                       solo=solo)
                self.adapters[name] = served
            return served
        from safetensors.torch import load_file

        state = load_file(str(folder / "adapter_model.safetensors"))
        key = f"{spec.path}|{quant}|{task}"
        with self.lock:
            backbone = self.backbones.get(key) or self._new_backbone(key, spec, quant, task)
            max_length = trained_max_length(manifest, backbone.base.config)
            check_max_length(max_length, backbone.base.config, spec.name)
            slot = f"adapter{self._next_slot}"
            self._next_slot += 1
            backbone.add(slot, folder, adapter_config, state)
            self.backbones[key] = backbone
            dora = slot in backbone.dora
            served = ServedAdapter(name=name, folder=folder, manifest=manifest, labels=labels, max_length=max_length,
                                   decision=manifest.get("decision"), lane=f"dora:{name}" if dora else key,
                                   slot=slot, mixable=not dora)
            self.adapters[name] = served
        return served

    def _new_backbone(self, key: str, spec: Any, quant: str, task: str = "seq_cls") -> SharedBackbone:
        base = load_backbone(spec, task=task, num_labels=2, quant=quant)
        base.eval()
        if quant == "none":
            base.to(self.device)
        compute = resolve_dtype(self.dtype_name, merged=False, device=self.device)
        autocast = apply_dtype(base, compute, castable=False)  # adapters join later: compute under autocast
        return SharedBackbone(key=key, base=base, tokenizer=load_tokenizer(spec), device=self.device,
                              dtype=compute, autocast=autocast)

    def remove(self, name: str) -> None:
        with self.lock:
            served = self.adapters.pop(name, None)
            if served is None:
                raise KeyError(name)
            if served.solo is None:
                key = next(k for k, b in self.backbones.items() if served.slot in b.slots)
                backbone = self.backbones[key]
                backbone.remove(served.slot)
                if not backbone.slots:  # the last adapter of this base: free the backbone
                    del self.backbones[key]

    def tokenizer(self, served: ServedAdapter) -> PreTrainedTokenizerBase:
        if served.solo is not None:
            return served.solo.tokenizer
        return self._backbone_of(served).tokenizer

    def backbone_config(self, served: ServedAdapter) -> Any:
        """The transformers config of the model ``served`` runs on."""
        return served.solo.model.config if served.solo is not None else self._backbone_of(served).base.config

    def _backbone_of(self, served: ServedAdapter) -> SharedBackbone:
        return next(b for b in self.backbones.values() if served.slot in b.slots)

    # ------------------------------------------------------------------------------------------- predicting
    def encode(self, served: ServedAdapter, texts: list[str]) -> tuple[list[EncodedText], list[int]]:
        """Each text as the model reads it (cut to the adapter's max_length as ``skewtune predict`` and training
        evaluation do) and the indices of the texts that were truncated. A tagging adapter's texts are split into
        words on whitespace and tokenized as words (``skewtune.data.tokens.tokenize_token_split``)."""
        tokenizer = self.tokenizer(served)
        if served.task == "token_cls":
            from skewtune.data.tokens import tokenize_token_split

            offsets = [word_offsets(text) for text in texts]  # the words of text.split(), where they stand
            sentences = [([text[a:b] for a, b in spans], [served.labels[0]] * len(spans))
                         for text, spans in zip(texts, offsets)]
            label2id = {label: i for i, label in enumerate(served.labels)}
            prefix = str((served.manifest.get("training") or {}).get("text_prefix") or "")
            data = tokenize_token_split(tokenizer, sentences, label2id, served.max_length, "request", prefix=prefix)
            encoded = [EncodedText(ids, words, positions, text, spans) for ids, (words, _), positions, text, spans
                       in zip(data.input_ids, sentences, data.word_positions, texts, offsets)]
            return encoded, [i for i, e in enumerate(encoded) if any(p < 0 for p in e.word_positions or [])]
        raw = tokenizer(list(texts), truncation=False, add_special_tokens=True)["input_ids"]
        cut = [i for i, seq in enumerate(raw) if len(seq) > served.max_length]
        return [EncodedText(truncate_ids(seq, served.max_length, tokenizer.sep_token_id)) for seq in raw], cut

    def predict_rows(self, rows: list[tuple[ServedAdapter, EncodedText | list[int]]],
                     top_k: list[int | None] | None = None) -> list[dict[str, Any]]:
        """Predictions for rows of one lane (see :attr:`ServedAdapter.lane`) in one forward pass, in row order:
        ``{"label", "probabilities"}`` per text, or for a tagging adapter ``{"words", "tags"}`` (the tag of each
        word read at its first subword, as training evaluation reads it; None for a word cut off), with
        ``"spans"`` (``{"type", "start", "end", "text"}``, character offsets) when its tags are BIO/BIOES."""
        served0 = rows[0][0]
        with self.lock:
            for served, _ in rows:
                if self.adapters.get(served.name) is not served:
                    raise KeyError(served.name)
            tokenizer = self.tokenizer(served0)
            collator = PaddingCollator(tokenizer.pad_token_id, padding_side=getattr(tokenizer, "padding_side", "right"))
            batch = collator([{"input_ids": getattr(ids, "ids", ids)} for _, ids in rows])
            if served0.solo is not None:
                clf = served0.solo
                with torch.inference_mode(), clf.compute_context():
                    logits = clf.model(**{k: v.to(clf.device) for k, v in batch.items()}).logits.float().cpu()
            else:
                logits = self._backbone_of(served0).logits([s.slot for s, _ in rows], batch)
        out = []
        for i, (served, encoded) in enumerate(rows):
            if served.task == "token_cls":
                out.append(tag_record(logits[i, : len(encoded), : len(served.labels)], encoded, served.labels))
                continue
            row = logits[i : i + 1, : len(served.labels)]
            if served.decision:
                row = apply_decision(row, served.decision)
            record = probability_records(row, served.labels, served.name)[0]
            k = top_k[i] if top_k else None
            if k:
                best = sorted(record["probabilities"].items(), key=lambda kv: -kv[1])[:k]
                record["probabilities"] = dict(best)
            out.append(record)
        return out


def tag_record(logits: torch.Tensor, encoded: EncodedText, labels: list[str]) -> dict[str, Any]:
    """``{"words", "tags"}`` of one text from its ``[tokens, labels]`` logits, plus ``"spans"`` (entities with
    character offsets, :func:`skewtune.evaluation.spans.tags_to_spans`) when the tags are BIO/BIOES."""
    best = logits.argmax(-1).tolist()
    positions = encoded.word_positions or []
    record: dict[str, Any] = {"words": list(encoded.words or []),
                              "tags": [labels[best[p]] if 0 <= p < len(best) else None for p in positions]}
    if encoded.text is not None and encoded.word_offsets is not None and has_entities(labels):
        record["spans"] = tags_to_spans(record["words"], record["tags"], encoded.text, encoded.word_offsets)
    return record


def check_served_name(name: str) -> None:
    """A served name: 1–100 characters of letters, digits, ``-``, ``_``, ``.`` (it appears in URLs and metrics)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise ConfigError(f"adapter name {str(name)[:60]!r} is not allowed",
                          "use 1-100 letters, digits, '-', '_' or '.', starting with a letter or digit")


def _under(key: str, paths: list[str]) -> bool:
    return any(key.startswith(path + ".") for path in paths)


def _head_paths(model: nn.Module, modules_to_save: list[str], state: dict[str, torch.Tensor]) -> list[str]:
    """Module paths of ``model`` named by ``modules_to_save`` (peft's rule: the path or its last parts) that the
    adapter's weights cover (``base_model.model.<path>.<param>``)."""
    keys = [k[len(PEFT_PREFIX):] for k in state if k.startswith(PEFT_PREFIX)]
    paths = []
    for path, _ in model.named_modules():
        if not path or not any(path == n or path.endswith("." + n) for n in modules_to_save):
            continue
        if any(k.startswith(path + ".") for k in keys) and not any(path.startswith(p + ".") for p in paths):
            paths.append(path)
    return paths


def _head_copy(base: nn.Module, path: str, head_state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of head module ``base`` holding the adapter's tensors (resized where its label count differs)."""
    params = {k[len(path) + 1:]: v for k, v in head_state.items() if k.startswith(path + ".")}
    module = copy.deepcopy(base)
    set_head_params(module, params)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module
