"""MAD-X-style language adapters: a LoRA per language trained with masked-LM on unlabelled text.

The backbone is loaded as ``AutoModelForMaskedLM`` from its folder. A folder holding only encoder weights
(``BertModel``, as the converted me5-small) gets a new MLM head (``cls.predictions``): the decoder is tied to the
word embeddings, the transform starts as the identity (dense) with a unit LayerNorm and the output bias as the
log unigram frequency of the corpus (so the first loss is the unigram entropy, not ``log |V|``); the head
trains with the LoRA and is then discarded, as in MAD-X (the adapter folder holds the LoRA only).

Cost control for a 250k-piece vocabulary on CPU: the head runs on the masked positions only, and the softmax
is taken over the *shortlist* of pieces that occur in the language's corpus (a few thousand; the masked targets
always belong to it, random replacements are drawn from it) instead of all 250,002 pieces. Masking is
BERT's: 15% of the non-special tokens, 80% ``<mask>``, 10% a random shortlist piece, 10% unchanged.

Training goes through the engine, :func:`skewtune.training.engine.train_module` (Accelerate, AdamW, linear warmup schedule), over
length-grouped batches. The adapter folder is a PEFT LoRA folder (keys ``base_model.model.<encoder>...``, so it
loads onto the sequence- and token-classification models of the same backbone, see
:mod:`skewtune.crosslingual.stack`) plus ``README.md`` and ``skewtune.json`` (``role: language_adapter``,
``task_type: mlm``, the language, the MLM losses).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from peft import LoraConfig, get_peft_model
from peft.tuners.lora import LoraLayer
from transformers.modeling_outputs import MaskedLMOutput

from skewtune.adapters.base import AdapterSettings, resolve_target_modules
from skewtune.adapters.io import write_manifest
from skewtune.backbones import base_fingerprint, load_tokenizer
from skewtune.backbones.registry import load_backbone_with_head
from skewtune.data.batching import tokenize_split
from skewtune.errors import BackboneError, ConfigError, DataError
from skewtune.training.engine import Optimization, batch_loader, build_accelerator, train_module
from skewtune.utils.io import atomic_dir, atomic_write_text, check_writable_dir

logger = logging.getLogger("skewtune")

ROLE = "language_adapter"


@dataclass
class LanguageAdapterSettings:
    """How a language adapter is trained."""
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: str | list[str] | None = "attention"  # as --target_modules: attention | all | names
    steps: int = 60
    head_steps: int = 0  # first train the MLM head alone (cheap: no backward through the encoder)
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_length: int = 64
    mask_probability: float = 0.15
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    seed: int = 42
    quant: str = "8bit"


# ---------------------------------------------------------------------------------------------------- model
def load_mlm_model(spec: Any, quant: str = "8bit") -> tuple[Any, bool]:
    """``AutoModelForMaskedLM`` of ``spec`` (head modules kept out of quantization); True when the head is new."""
    return load_backbone_with_head(spec, task="mlm", quant=quant)


def _head(model: Any) -> tuple[Any, Any, torch.nn.Parameter]:
    """(transform module, decoder weight tied to the embeddings, output bias) of a BERT/RoBERTa MLM model."""
    if hasattr(model, "cls"):
        predictions = model.cls.predictions
        return predictions.transform, model.get_input_embeddings().weight, predictions.bias
    head = model.lm_head  # RoBERTa / XLM-R: dense + layer_norm (+ gelu in forward)

    class _Transform(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense, self.layer_norm = head.dense, head.layer_norm

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer_norm(torch.nn.functional.gelu(self.dense(x)))

    return _Transform(), model.get_input_embeddings().weight, head.bias


def init_new_head(model: Any, unigram_log_prob: torch.Tensor | None, shortlist: torch.Tensor) -> None:
    """Identity transform, unit LayerNorm, log-unigram bias on the shortlist (a head that did not exist)."""
    transform, _, bias = _head(model)
    with torch.no_grad():
        dense = transform.dense
        dense.weight.copy_(torch.eye(dense.weight.shape[0], dense.weight.shape[1]))
        dense.bias.zero_()
        norm = getattr(transform, "LayerNorm", None) or transform.layer_norm
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        bias.zero_()
        if unigram_log_prob is not None:
            bias[shortlist.to(bias.device)] = unigram_log_prob.to(bias.device, bias.dtype)


class ShortlistMLM(torch.nn.Module):
    """Masked-LM logits over a vocabulary shortlist, at the masked positions only.

    ``forward(input_ids, attention_mask, masked)`` → ``.logits`` of shape ``[n_masked, len(shortlist)]``; the
    labels of a batch are shortlist indices (see :class:`MLMCollator`).
    """

    def __init__(self, peft_model: Any, shortlist: torch.Tensor) -> None:
        super().__init__()
        self.peft_model = peft_model
        self.register_buffer("shortlist", shortlist.long(), persistent=False)
        base = peft_model.get_base_model()
        self._encoder = getattr(base, base.base_model_prefix)
        self.transform, self._decoder_weight, self._bias = _head(base)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, masked: torch.Tensor) -> Any:

        hidden = self._encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        states = self.transform(hidden[masked.bool()])
        weight = self._decoder_weight[self.shortlist].to(states.dtype)
        logits = states @ weight.T + self._bias[self.shortlist].to(states.dtype)
        return MaskedLMOutput(logits=logits)


class MLMCollator:
    """Pad, then mask like BERT; labels are shortlist indices of the masked tokens (flattened)."""
    def __init__(self, pad_token_id: int, mask_token_id: int, shortlist: list[int], special_ids: set[int],
                 probability: float = 0.15, seed: int = 0) -> None:
        self.pad_token_id = pad_token_id
        self.mask_token_id = mask_token_id
        self.index = {token: i for i, token in enumerate(shortlist)}
        self.shortlist = torch.as_tensor(shortlist, dtype=torch.long)
        self.special = torch.as_tensor(sorted(special_ids), dtype=torch.long)
        self.probability = probability
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(item["input_ids"]) for item in batch)
        ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            ids[row, : len(item["input_ids"])] = torch.as_tensor(item["input_ids"], dtype=torch.long)
            attention[row, : len(item["input_ids"])] = 1
        candidates = attention.bool() & ~torch.isin(ids, self.special)
        draw = torch.rand(ids.shape, generator=self.generator)
        masked = candidates & (draw < self.probability)
        if not masked.any():  # at least one target per batch
            flat = candidates.flatten().nonzero().flatten()
            if len(flat) == 0:
                raise DataError("a masked-LM batch has no maskable token", "give texts with words in them")
            pick = flat[torch.randint(len(flat), (1,), generator=self.generator)]
            masked.view(-1)[pick] = True
        targets = ids[masked]
        labels = torch.as_tensor([self.index[int(t)] for t in targets], dtype=torch.long)
        action = torch.rand(len(targets), generator=self.generator)
        replaced = targets.clone()
        replaced[action < 0.8] = self.mask_token_id
        randomised = (action >= 0.8) & (action < 0.9)
        if randomised.any():
            picks = torch.randint(len(self.shortlist), (int(randomised.sum()),), generator=self.generator)
            replaced[randomised] = self.shortlist[picks]
        ids[masked] = replaced
        return {"input_ids": ids, "attention_mask": attention, "masked": masked, "labels": labels}


def corpus_shortlist(token_ids: list[list[int]], special_ids: set[int]) -> tuple[list[int], torch.Tensor]:
    """Pieces occurring in the corpus (sorted by id) and their log unigram probabilities."""
    counts = Counter(t for seq in token_ids for t in seq if t not in special_ids)
    if not counts:
        raise DataError("the unlabelled corpus has no token", "give non-empty texts")
    shortlist = sorted(counts)
    freq = torch.as_tensor([counts[t] for t in shortlist], dtype=torch.float32)
    return shortlist, (freq / freq.sum()).log()


# ------------------------------------------------------------------------------------------------- training
def train_language_adapter(
    spec: Any,
    texts: list[str],
    output_dir: str | Path,
    *,
    language: str,
    settings: LanguageAdapterSettings | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train a LoRA language adapter with masked LM on ``texts``; write the adapter folder; return its metrics."""
    return train_language_adapters(spec, {language: texts}, {language: Path(output_dir)}, settings=settings,
                                   progress=progress)[language]


def train_language_adapters(
    spec: Any,
    texts: dict[str, list[str]],
    output_dirs: dict[str, Path],
    *,
    settings: LanguageAdapterSettings | None = None,
    progress: bool = False,
    on_done: Any = None,
) -> dict[str, dict[str, Any]]:
    """One language adapter per key of ``texts``, trained in turn on one loaded MLM backbone.

    Between languages the LoRA weights are re-initialised (seeded) and the head is reset (a built head to its
    identity / log-unigram start, a pretrained one to its loaded weights). Everything is checked before training.
    """


    settings = settings or LanguageAdapterSettings()
    if settings.steps < 1:
        raise ConfigError(f"language adapter steps must be ≥ 1, got {settings.steps}", "pass e.g. 60")
    cleaned = {lang: [t for t in items if t and t.strip()] for lang, items in texts.items()}
    available = {lang: len(items) for lang, items in cleaned.items()}
    cap = max(256, 4 * settings.steps * settings.batch_size)  # a seeded sample is plenty for the steps taken
    cleaned = {lang: random.Random(f"{settings.seed}-{lang}").sample(items, cap) if len(items) > cap else items
               for lang, items in cleaned.items()}
    for language, items in cleaned.items():
        if not items:
            raise DataError(f"no unlabelled {language} text for its language adapter", "give some texts")
        check_writable_dir(Path(output_dirs[language]).parent)
    tokenizer = load_tokenizer(spec)
    if tokenizer.mask_token_id is None:
        raise BackboneError(f"the tokenizer of '{spec.name}' has no mask token", "use a masked-LM backbone")
    model, built = load_mlm_model(spec, settings.quant)
    transform, _, bias = _head(model)
    head_start = {k: v.detach().clone() for k, v in transform.state_dict().items()}
    bias_start = bias.detach().clone()
    targets = resolve_target_modules(model, AdapterSettings(target_modules=settings.target_modules))
    torch.manual_seed(settings.seed)
    peft_model = get_peft_model(model, LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                                                  lora_dropout=settings.dropout, target_modules=targets))
    results: dict[str, dict[str, Any]] = {}
    for language, items in cleaned.items():
        _reset_lora(peft_model, settings.seed)  # every language starts from the same seeded LoRA and head
        transform.load_state_dict(head_start)
        with torch.no_grad():
            bias.copy_(bias_start)
        results[language] = _train_one(peft_model, tokenizer, items, language, built, settings, progress)
        results[language]["texts_available"] = available[language]
        save_language_adapter(peft_model, Path(output_dirs[language]), spec, language, settings, results[language])
        if on_done is not None:
            on_done(language, results[language])
    del peft_model, model
    return results


def _reset_lora(peft_model: Any, seed: int) -> None:

    torch.manual_seed(seed)
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            module.reset_lora_parameters("default", True)


def _train_one(peft_model: Any, tokenizer: Any, texts: list[str], language: str, built: bool,
               settings: LanguageAdapterSettings, progress: bool) -> dict[str, Any]:
    set_seed(settings.seed)
    split = tokenize_split(tokenizer, texts, None, settings.max_length, f"{language} unlabelled")
    special = set(tokenizer.all_special_ids)
    shortlist, log_prob = corpus_shortlist(split.input_ids, special)
    shortlist_t = torch.as_tensor(shortlist)
    if built:
        init_new_head(peft_model.get_base_model(), log_prob, shortlist_t)
    module = ShortlistMLM(peft_model, shortlist_t)
    for param in [*module.transform.parameters(), module._bias]:
        param.requires_grad_(True)
    accelerator = build_accelerator(mixed_precision="no")
    collator = MLMCollator(tokenizer.pad_token_id, tokenizer.mask_token_id, shortlist, special,
                           settings.mask_probability, settings.seed)
    loader = batch_loader(split, split.lengths, settings.batch_size, collator, seed=settings.seed, private_rng=False)
    losses: list[float] = []

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        losses.append(float(loss.detach()))
        return loss

    lora = [p for n, p in module.named_parameters() if "lora_" in n]
    head = [*module.transform.parameters(), module._bias]
    start = time.perf_counter()
    head_losses: list[float] = []
    for phase, steps in (("head", settings.head_steps), ("joint", settings.steps)):
        if steps <= 0:
            continue
        for param in lora:
            param.requires_grad_(phase == "joint")
        opt = Optimization(learning_rate=settings.learning_rate, max_steps=steps, weight_decay=settings.weight_decay,
                           warmup_ratio=settings.warmup_ratio, max_grad_norm=1.0)
        train_module(module, loader, loss_fn, opt, accelerator, params=head if phase == "head" else head + lora,
                     progress=progress)
        if phase == "head":
            head_losses, losses[:] = list(losses), []
    seconds = time.perf_counter() - start
    for param in [*module.transform.parameters(), module._bias]:
        param.requires_grad_(False)
    window = max(1, min(10, len(losses) // 4))
    return {
        "language": language,
        "texts": len(texts),
        "tokens": int(sum(split.lengths)),
        "truncated_texts": split.truncated,
        "shortlist_size": len(shortlist),
        "steps": settings.steps,
        "head_steps": settings.head_steps,
        "mlm_loss_head_only_last": (sum(head_losses[-window:]) / len(head_losses[-window:])) if head_losses else None,
        "mlm_loss_first": sum(losses[:window]) / window,
        "mlm_loss_last": sum(losses[-window:]) / window,
        "unigram_entropy": float(-(log_prob.exp() * log_prob).sum()),
        "head": "built (BertForMaskedLM head, decoder tied to the word embeddings)" if built else "from checkpoint",
        "train_seconds": seconds,
    }


def save_language_adapter(peft_model: Any, output_dir: Path, spec: Any, language: str,
                          settings: LanguageAdapterSettings, metrics: dict[str, Any]) -> Path:
    """PEFT LoRA folder + README + skewtune.json (atomically)."""


    manifest = {
        "name": f"lang-{language}-{spec.name}".replace("/", "_"),
        "role": ROLE,
        "task_type": "mlm",
        "backbone": spec.name,
        "base_model": spec.hf_id,
        "base_path": spec.path,
        "base_fingerprint": base_fingerprint(spec.path) if Path(spec.path).is_dir() else None,
        "adapter_type": "lora",
        "quant": settings.quant,
        "id2label": {},
        "languages": [language],
        "dataset": f"unlabelled {language} text",
        "training": asdict(settings),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, int | float)},
        "lineage": None,
    }
    card = (
        "---\n"
        f"base_model: {spec.hf_id}\nlibrary_name: peft\nlanguage:\n- {language}\n"
        "tags:\n- skewtune\n- lora\n- language-adapter\n- mad-x\n---\n\n"
        f"# {language} language adapter for {spec.hf_id}\n\n"
        f"LoRA (r={settings.rank}) trained with masked LM for {settings.steps} steps on {metrics['texts']} "
        f"unlabelled {language} texts (MLM loss {metrics['mlm_loss_first']:.3f} → {metrics['mlm_loss_last']:.3f}). "
        "Stack it under a task adapter with `skewtune.crosslingual.stack` (MAD-X style).\n"
    )
    with atomic_dir(output_dir) as tmp:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        atomic_write_text(tmp / "README.md", card)
        write_manifest(tmp, manifest)
    return output_dir


__all__ = [
    "LanguageAdapterSettings", "MLMCollator", "ROLE", "ShortlistMLM", "corpus_shortlist", "init_new_head",
    "load_mlm_model", "save_language_adapter", "train_language_adapter", "train_language_adapters",
]
