"""Few-shot methods, by name in :data:`METHODS`. Every method trains one adapter on one k-shot set.

* ``lora_head`` — LoRA (or ``--adapter`` dora/rslora/ia3) + the backbone's classification head ([CLS] pooler +
  linear), cross-entropy or any ``--loss`` of the imbalance toolkit, ``--sampler`` over the k-shot rows.
* ``prefix_head`` — the same with prefix tuning.
* ``contrastive_lora`` — SetFit's recipe on the adapter only: SetFit-style pairs (:func:`~skewtune.fewshot.pairs.
  generate_pairs`), a sentence-transformers pair loss (``--contrastive_loss``, CosineSimilarityLoss by default)
  on mean-pooled embeddings trains the LoRA weights, then a head on the embeddings (``--head logistic``:
  scikit-learn logistic regression as SetFit; ``linear``: a torch linear layer with ``--loss``).
* ``allpairs_lora`` — the same loss over *every* pair of the k-shot set at each step: one forward pass per
  example instead of one per pair side, so a step sees all ``n(n-1)/2`` pairs (positives and negatives weighted
  equally); ``--allpairs_steps`` steps, then the head.
* ``linear_probe`` — no adapter training: the head on the frozen backbone's embeddings (the reference point).

``--augment_copies N`` adds N EDA copies of every k-shot example (``--augment`` picks the operation, default
``eda``); with ``--shots_distribution natural`` and ``--augment`` alone, minority classes are augmented up to
``--augment_ratio`` of the largest (:func:`skewtune.imbalance.augment_minority`). The training loop is
``skewtune.training.engine.train_module`` (Accelerate: one CPU, DDP or GPUs); adapters are built by
``skewtune.adapters.build_adapter`` on ``skewtune.backbones.load_backbone`` (8-bit by default).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate.utils import set_seed
from sklearn.linear_model import LogisticRegression

from skewtune.adapters import AdapterSettings, build_adapter
from skewtune.adapters.layers import parse_layers
from skewtune.backbones import load_backbone
from skewtune.backbones.registry import head_module_names
from skewtune.data import tokenize_split
from skewtune.errors import ConfigError
from skewtune.fewshot.pairs import all_pairs, auto_allpairs_steps, generate_pairs
from skewtune.fewshot.pooling import EmbeddingOutput, FrozenPrefixEncoder, SentenceEncoder, install_pooling
from skewtune.fewshot.prompts import label_prompts
from skewtune.imbalance import augment_minority, build_augmenter, build_sampler
from skewtune.imbalance.losses import build_loss
from skewtune.inference.logits import predict_logits
from skewtune.training.engine import Optimization, batch_loader, train_module
from skewtune.training.state import FitState
from skewtune.utils.registry import Registry

METHODS: Registry[Any] = Registry("few-shot method")
INJECTED_ADAPTERS = ("lora", "rslora", "dora", "ia3")
BALANCING_LOSSES = ("weighted_ce", "sqrt_weighted_ce", "class_balanced", "ldam", "logit_adjusted", "focal")


@dataclass
class FewShotContext:
    """What every method needs, loaded once per run."""
    cfg: Any  # FewShotConfig
    spec: Any  # BackboneSpec
    tokenizer: Any
    collator: Any
    accelerator: Any
    labels: list[str]
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # extra load_backbone keywords (quantize_embeddings)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))


@dataclass
class Trained:
    """One trained adapter, ready for ``predict_logits``."""
    method: str
    model: Any
    trainable_params: int
    train_seconds: float
    load_seconds: float
    pooling: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- datasets
@dataclass
class PairSplit:
    """Tokenised pairs: ``input_ids`` / ``pair_input_ids`` and a float similarity label."""
    left: list[list[int]]
    right: list[list[int]]
    labels: list[float]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [max(len(a), len(b)) for a, b in zip(self.left, self.right)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.left[index], "pair_input_ids": self.right[index], "labels": self.labels[index]}


class PairCollator:
    """Pads both sides of B pairs into one (2B, T) batch (left sides first) and a (B,) float label tensor."""
    def __init__(self, collator: Any) -> None:
        self.collator = collator

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [{"input_ids": item["input_ids"]} for item in batch] + [{"input_ids": item["pair_input_ids"]} for item in batch]
        out = self.collator(rows)
        out["labels"] = torch.tensor([item["labels"] for item in batch], dtype=torch.float)
        return out


@dataclass
class EmbeddingSplit:
    embeddings: torch.Tensor
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> list[int]:
        return [1] * len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"embeddings": self.embeddings[index], "labels": self.labels[index]}


def collate_embeddings(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    return {"embeddings": torch.stack([b["embeddings"] for b in batch]),
            "labels": torch.tensor([b["labels"] for b in batch], dtype=torch.long)}


class LinearOnEmbeddings(torch.nn.Module):
    def __init__(self, linear: torch.nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, embeddings: torch.Tensor, **_: Any) -> EmbeddingOutput:
        return EmbeddingOutput(logits=self.linear(embeddings))


# ------------------------------------------------------------------------------------------------ losses
def sentence_transformers_loss(name: str, encoder: Any) -> Any:
    """A sentence-transformers pair loss (``compute_loss_from_embeddings([u, v], labels)``)."""
    from sentence_transformers.sentence_transformer import losses

    if name == "cosine":
        return losses.CosineSimilarityLoss(encoder)
    if name == "cosent":
        return losses.CoSENTLoss(encoder)
    if name == "angle":
        return losses.AnglELoss(encoder)
    if name == "contrastive":
        return losses.ContrastiveLoss(encoder)
    if name == "online_contrastive":
        return losses.OnlineContrastiveLoss(encoder)
    raise ConfigError(f"unknown --contrastive_loss '{name}'", "use one of: cosine, cosent, angle, contrastive, online_contrastive")


class PairLoss(torch.nn.Module):
    """Embeddings of a (2B, D) pair batch → the sentence-transformers loss of its B pairs."""
    def __init__(self, st_loss: Any) -> None:
        super().__init__()
        self.st_loss = st_loss

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        half = embeddings.shape[0] // 2
        return self.st_loss.compute_loss_from_embeddings([embeddings[:half], embeddings[half:]], labels)


class AllPairsLoss(torch.nn.Module):
    """Embeddings of B single examples → the pair loss over every ``i < j`` pair; ``balanced`` averages the
    positive-pair and negative-pair losses (SetFit's oversampling gives both kinds equal weight)."""

    def __init__(self, st_loss: Any, balanced: bool = True) -> None:
        super().__init__()
        self.st_loss = st_loss
        self.balanced = balanced

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        left, right, same = all_pairs(labels)
        if not self.balanced:
            return self.st_loss.compute_loss_from_embeddings([embeddings[left], embeddings[right]], same)
        parts = []
        for mask in (same > 0.5, same < 0.5):
            if mask.any():
                parts.append(self.st_loss.compute_loss_from_embeddings(
                    [embeddings[left[mask]], embeddings[right[mask]]], same[mask]))
        return torch.stack(parts).mean()


# --------------------------------------------------------------------------------------------- helpers
def count_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def classifier_of(model: Any) -> torch.nn.Module:
    """The classification Linear that the forward pass uses (peft's trained copy under modules_to_save)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in ("classifier", "score"):
        module = getattr(base, name, None)
        if module is None:
            continue
        copies = getattr(module, "modules_to_save", None)
        if copies is not None:
            module = copies[next(iter(copies.keys()))]
        if isinstance(module, torch.nn.Linear):
            return module
        inner = getattr(module, "out_proj", None)  # roberta-style heads
        if isinstance(inner, torch.nn.Linear):
            return inner
    raise ConfigError(f"no linear classifier found on {type(base).__name__}", "use a BERT-style backbone")


def build_model(ctx: FewShotContext, adapter: str, *, pooled_head: bool) -> Any:
    """Backbone (``--quant``) + adapter; the heads are trained and saved through ``modules_to_save``."""
    cfg = ctx.cfg
    model = load_backbone(ctx.spec, task="seq_cls", num_labels=len(ctx.labels), id2label=ctx.id2label, quant=cfg.quant,
                          **ctx.load_kwargs)
    present = {name.split(".")[-1] for name, _ in model.named_modules()}
    heads = [h.split(".")[0] for h in head_module_names(model.config.model_type, "seq_cls")]
    heads = [h for h in dict.fromkeys(heads) if h in present]
    if pooled_head:  # the [CLS] pooler is bypassed by mean pooling: only the classifier is trained and saved
        heads = [h for h in heads if h in ("classifier", "score")]
    layers = parse_layers(cfg.lora_layers, int(getattr(model.config, "num_hidden_layers", 0) or 0)) \
        if adapter in INJECTED_ADAPTERS else None
    settings = AdapterSettings(rank=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                               target_modules=cfg.target_modules, num_virtual_tokens=cfg.num_virtual_tokens,
                               modules_to_save=heads, layers_to_transform=layers)
    return build_adapter(model, adapter, settings, task="seq_cls")


def augment_set(ctx: FewShotContext, texts: list[str], labels: list[int], seed: int) -> tuple[list[str], list[int], int]:
    """``--augment_copies`` EDA copies of every example, or minority augmentation for natural k-shot sets."""
    cfg = ctx.cfg
    if cfg.augment_copies > 0:

        aug = build_augmenter(cfg.augment or "eda")
        new_texts, new_labels = list(texts), list(labels)
        for copy in range(cfg.augment_copies):
            seeds = [(seed * 1_000_003 + copy * 100_003 + i) % 2**31 for i in range(len(texts))]
            new_texts += aug(list(texts), seeds)
            new_labels += list(labels)
        return new_texts, new_labels, len(new_texts) - len(texts)
    if cfg.augment and cfg.shots_distribution == "natural":

        rows = augment_minority(texts, labels, target_ratio=cfg.augment_ratio, method=cfg.augment, seed=seed)
        return list(rows.texts), list(rows.labels), int(rows.num_added)
    return list(texts), list(labels), 0


def class_counts(labels: list[int], num_classes: int) -> list[int]:
    return [sum(1 for y in labels if y == c) for c in range(num_classes)]


def resampled_rows(cfg: Any, labels: list[int], seed: int) -> Any:
    """``--sampler`` over the k-shot rows: (indices for epoch 0, a per-epoch resample callable or None)."""
    if not cfg.sampler:
        return None, None

    if cfg.sampler in ("class_balanced", "sqrt_frequency"):
        def draw(epoch: int) -> list[int]:
            sampler = build_sampler(cfg.sampler, labels=labels, seed=seed, num_replicas=1, rank=0)
            sampler.set_epoch(epoch)
            return sampler.global_indices().tolist()

        return draw(0), draw
    resampler = build_sampler(cfg.sampler, ratio=cfg.sampler_ratio, seed=seed)
    resampler.fit_resample(list(range(len(labels))), labels)
    return resampler.sample_indices_.tolist(), None


def run_loop(ctx: FewShotContext, module: torch.nn.Module, dataset: Any, collate: Any, loss_fn: Any, *,
             lr: float, batch_size: int, seed: int, epochs: int | None = None, max_steps: int | None = None,
             indices: list[int] | None = None, resample: Any = None) -> FitState:
    """Train ``module`` on ``dataset`` through the engine (AdamW + warmup schedule, no checkpoints)."""
    cfg = ctx.cfg
    loader = batch_loader(dataset, dataset.lengths, batch_size, collate, seed=seed, max_tokens=cfg.max_tokens_per_batch,
                          indices=indices, resample=resample)
    opt = Optimization(learning_rate=lr, num_epochs=epochs or 1, max_steps=max_steps, weight_decay=cfg.weight_decay,
                       lr_scheduler_type=cfg.lr_scheduler_type, warmup_ratio=cfg.warmup_ratio,
                       max_grad_norm=cfg.max_grad_norm, on_nan=cfg.on_nan)
    return train_module(module, loader, loss_fn, opt, ctx.accelerator, release_model=True).state


def body_encoder(ctx: FewShotContext, model: Any, buckets: int = 1) -> SentenceEncoder:
    """The encoder the contrastive stage trains: with LoRA in the top layers only, the frozen bottom is cached."""
    cfg = ctx.cfg
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = parse_layers(cfg.lora_layers, int(getattr(base.config, "num_hidden_layers", 0) or 0))
    if layers and min(layers) > 0:
        return FrozenPrefixEncoder(model, min(layers), normalize=cfg.normalize_embeddings, buckets=buckets)
    return SentenceEncoder(model, normalize=cfg.normalize_embeddings, buckets=buckets)


def learning_rate(cfg: Any) -> float:
    value = cfg.learning_rate_value()
    if value is None:
        raise ConfigError("--learning_rate auto is not available for k-shot sets (too few steps for a range test)",
                          "pass a number, e.g. --learning_rate 1e-3")
    return value


# ---------------------------------------------------------------------------------------------- methods
class FewShotMethod:
    """Base: ``train(ctx, texts, labels, seed)`` loads the backbone (not timed, like SetFit's from_pretrained)
    then times everything that learns: augmentation, adapter training, head fitting."""

    name = ""
    contrastive = False
    pooled_head = False
    adapter: str | None = None  # None: --adapter (an injected type: lora, rslora, dora, ia3)
    default_prompts = False  # label-word prompt rows unless --label_prompts says otherwise
    description = ""

    def uses_prompts(self, cfg: Any) -> bool:
        return self.default_prompts if cfg.label_prompts is None else bool(cfg.label_prompts)

    def prompt_rows(self, ctx: FewShotContext) -> tuple[list[str], list[int]]:
        return self.prompt_rows_for(ctx.labels, ctx.cfg)

    def prompt_rows_for(self, labels: list[str], cfg: Any) -> tuple[list[str], list[int]]:
        if not self.uses_prompts(cfg):
            return [], []

        return label_prompts(labels, cfg.label_templates, cfg.label_words)

    def adapter_kind(self, cfg: Any) -> str:
        if self.adapter is not None:
            return self.adapter
        if cfg.adapter not in INJECTED_ADAPTERS:
            raise ConfigError(f"--method {self.name} needs an injected adapter, not '{cfg.adapter}'",
                              f"use --adapter {' / '.join(INJECTED_ADAPTERS)}, or --method prefix_head")
        return cfg.adapter

    def train(self, ctx: FewShotContext, texts: list[str], labels: list[int], seed: int) -> Trained:

        set_seed(seed)
        start = time.perf_counter()
        model = build_model(ctx, self.adapter_kind(ctx.cfg), pooled_head=self.pooled_head)
        if ctx.cfg.quant == "none":
            model.to(ctx.accelerator.device)
        loaded = time.perf_counter()
        info = self.fit(ctx, model, texts, labels, seed)
        seconds = time.perf_counter() - loaded
        model = ctx.accelerator.unwrap_model(model)
        model.eval()
        pooling = None
        if self.pooled_head:
            pooling = {"type": "mean", "normalize": bool(ctx.cfg.normalize_embeddings)}
            install_pooling(model, pooling)
        trainable = info.pop("trainable_params")
        return Trained(method=self.name, model=model, trainable_params=trainable, train_seconds=seconds,
                       load_seconds=loaded - start, pooling=pooling, info=info)

    def fit(self, ctx: FewShotContext, model: Any, texts: list[str], labels: list[int], seed: int) -> dict[str, Any]:
        raise NotImplementedError


class HeadMethod(FewShotMethod):
    """Adapter + the backbone's own classification head, trained end to end with ``--loss``."""
    def fit(self, ctx, model, texts, labels, seed):

        cfg = ctx.cfg
        texts, labels, added = augment_set(ctx, texts, labels, seed)
        prompt_texts, prompt_ids = self.prompt_rows(ctx)
        texts, labels = texts + prompt_texts, labels + prompt_ids
        split = tokenize_split(ctx.tokenizer, texts, labels, cfg.max_length, "k-shot")
        counts = class_counts(labels, len(ctx.labels))
        loss = torch.nn.CrossEntropyLoss() if cfg.loss == "ce" else build_loss(cfg.loss, counts)
        indices, resample = resampled_rows(cfg, labels, seed)
        trainable = count_trainable(model)
        state = run_loop(ctx, model, split, ctx.collator, loss, lr=learning_rate(cfg), seed=seed,
                         batch_size=cfg.per_device_train_batch_size, epochs=max(1, math.ceil(cfg.num_train_epochs)),
                         max_steps=cfg.max_steps, indices=indices, resample=resample)
        return {"trainable_params": trainable, "steps": state.global_step, "train_rows": len(texts),
                "augmented_rows": added, "prompt_rows": len(prompt_texts),
                "final_loss": state.history[-1]["train_loss"] if state.history else None}


@METHODS.register("lora_head")
class LoraHead(HeadMethod):
    name = "lora_head"
    description = "LoRA + classification head, cross-entropy (or --loss)"


@METHODS.register("prefix_head")
class PrefixHead(HeadMethod):
    name = "prefix_head"
    adapter = "prefix"
    description = "prefix tuning + classification head"


class EmbeddingHeadMethod(FewShotMethod):
    """Mean-pooled sentence embeddings (optionally after a contrastive stage) + a head on them."""
    pooled_head = True

    def body(self, ctx, model, texts, labels, seed) -> dict[str, Any]:
        return {}

    def fit(self, ctx, model, texts, labels, seed):
        cfg = ctx.cfg
        texts, labels, added = augment_set(ctx, texts, labels, seed)
        prompt_texts, prompt_ids = self.prompt_rows(ctx)
        rows, row_labels = texts + prompt_texts, labels + prompt_ids
        weights = [1.0] * len(texts) + [float(cfg.prompt_weight)] * len(prompt_texts)
        self.real_labels = list(labels)  # the k-shot (+ augmented) rows, without prompts
        head = classifier_of(model)
        for p in head.parameters():  # not in the encoder's graph during the body stage (keeps DDP happy)
            p.requires_grad_(False)
        body_params = count_trainable(model)
        info = self.body(ctx, model, rows, row_labels, seed)
        for p in head.parameters():
            p.requires_grad_(True)
        if not info.get("body_trained", False):
            body_params = 0
        self.fit_head(ctx, model, head, rows, row_labels, weights, seed)
        info.update({"trainable_params": body_params + sum(p.numel() for p in head.parameters()),
                     "train_rows": len(texts), "augmented_rows": added, "prompt_rows": len(prompt_texts),
                     "head": cfg.head})
        return info

    def encode(self, ctx, model, texts) -> torch.Tensor:

        split = tokenize_split(ctx.tokenizer, texts, None, ctx.cfg.max_length, "k-shot")
        # the body stage's encoder when there is one (its cache of frozen lower layers is reused)
        encoder = getattr(self, "encoder", None) or SentenceEncoder(model, normalize=ctx.cfg.normalize_embeddings)
        return predict_logits(encoder, split, ctx.collator, ctx.cfg.per_device_eval_batch_size, ctx.accelerator.device)

    def fit_head(self, ctx, model, head, texts, labels, weights, seed) -> None:
        cfg = ctx.cfg
        embeddings = self.encode(ctx, model, texts)
        num_classes = len(ctx.labels)
        balanced = cfg.loss in BALANCING_LOSSES or cfg.sampler in ("class_balanced", "random_over")
        if cfg.head == "logistic":

            clf = LogisticRegression(class_weight="balanced" if balanced else None, random_state=seed)
            clf.fit(embeddings.numpy(), np.asarray(labels), sample_weight=np.asarray(weights, dtype=float))
            coef = torch.as_tensor(clf.coef_, dtype=torch.float)
            bias = torch.as_tensor(clf.intercept_, dtype=torch.float)
            weight = torch.zeros(num_classes, coef.shape[1])
            full_bias = torch.zeros(num_classes)
            classes = [int(c) for c in clf.classes_]
            if coef.shape[0] == 1:  # binary: logit difference = coef·x + b
                weight[classes[0]], weight[classes[1]] = -coef[0] / 2, coef[0] / 2
                full_bias[classes[0]], full_bias[classes[1]] = -bias[0] / 2, bias[0] / 2
            else:
                full_bias[:] = -1e4  # a class absent from the k-shot set is never predicted
                for row, c in enumerate(classes):
                    weight[c], full_bias[c] = coef[row], bias[row]
            with torch.no_grad():
                head.weight.copy_(weight.to(head.weight.device, head.weight.dtype))
                head.bias.copy_(full_bias.to(head.bias.device, head.bias.dtype))
            return

        # prompt rows count prompt_weight times (rounded): repeat them
        repeats = [max(1, round(w)) for w in weights]
        keep = [i for i, r in enumerate(repeats) for _ in range(r)]
        embeddings, labels = embeddings[keep], [labels[i] for i in keep]
        with torch.no_grad():  # prototype initialisation: class means of the embeddings
            for c in range(num_classes):
                rows = embeddings[[i for i, y in enumerate(labels) if y == c]]
                if len(rows):
                    head.weight[c] = rows.mean(0).to(head.weight.dtype) * 10.0
            head.bias.zero_()
        counts = class_counts(labels, num_classes)
        loss = torch.nn.CrossEntropyLoss() if cfg.loss == "ce" else build_loss(cfg.loss, counts)
        indices, resample = resampled_rows(cfg, labels, seed)
        run_loop(ctx, LinearOnEmbeddings(head), EmbeddingSplit(embeddings, list(labels)), collate_embeddings, loss,
                 lr=1e-2, seed=seed, batch_size=max(len(labels), 1), max_steps=100, indices=indices, resample=resample)


@METHODS.register("linear_probe")
class LinearProbe(EmbeddingHeadMethod):
    name = "linear_probe"
    description = "head on frozen mean-pooled embeddings (no adapter training)"


@METHODS.register("contrastive_lora")
class ContrastiveLora(EmbeddingHeadMethod):
    name = "contrastive_lora"
    contrastive = True
    description = "SetFit-style pairs + sentence-transformers loss on LoRA, then a head"

    def body(self, ctx, model, texts, labels, seed):

        cfg = ctx.cfg
        pairs = generate_pairs(labels, seed, strategy=cfg.pair_strategy, num_iterations=cfg.num_iterations)
        ids = tokenize_split(ctx.tokenizer, texts, None, cfg.max_length, "k-shot").input_ids
        data = PairSplit([ids[i] for i, _, _ in pairs], [ids[j] for _, j, _ in pairs], [s for _, _, s in pairs])
        encoder = self.encoder = body_encoder(ctx, model)
        loss = PairLoss(sentence_transformers_loss(cfg.contrastive_loss, encoder))
        state = run_loop(ctx, encoder, data, PairCollator(ctx.collator), loss, lr=learning_rate(cfg), seed=seed,
                         batch_size=cfg.per_device_train_batch_size, epochs=cfg.body_epochs)
        return {"body_trained": True, "pairs": len(pairs), "steps": state.global_step,
                "final_loss": state.history[-1]["train_loss"] if state.history else None}


@METHODS.register("allpairs_lora")
class AllPairsLora(EmbeddingHeadMethod):
    name = "allpairs_lora"
    contrastive = True
    description = "every in-batch pair per step (sentence-transformers loss) on LoRA, then a head"

    def body(self, ctx, model, texts, labels, seed):

        cfg = ctx.cfg
        split = tokenize_split(ctx.tokenizer, texts, labels, cfg.max_length, "k-shot")
        encoder = self.encoder = body_encoder(ctx, model, buckets=2)
        loss = AllPairsLoss(sentence_transformers_loss(cfg.contrastive_loss, encoder),
                            balanced=cfg.contrastive_loss in ("cosine", "contrastive", "online_contrastive"))
        batch = min(len(texts), max(cfg.per_device_train_batch_size, 64))
        steps = cfg.allpairs_steps or auto_allpairs_steps(self.real_labels)
        state = run_loop(ctx, encoder, split, ctx.collator, loss, lr=learning_rate(cfg), seed=seed, batch_size=batch,
                         max_steps=steps)
        n = len(texts)
        return {"body_trained": True, "pairs_per_step": n * (n - 1) // 2 if batch >= n else None,
                "steps": state.global_step, "steps_rule": "given" if cfg.allpairs_steps else "auto", "final_loss": state.history[-1]["train_loss"] if state.history else None}


def method_names() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> FewShotMethod:
    return METHODS.get(name)()


def describe() -> dict[str, str]:
    return {name: METHODS.get(name).description for name in METHODS.names()}


__all__ = ["METHODS", "FewShotContext", "FewShotMethod", "Trained", "describe", "get_method", "method_names"]


@METHODS.register("prompt_allpairs_lora")
class PromptAllPairsLora(AllPairsLora):
    name = "prompt_allpairs_lora"
    default_prompts = True
    description = "allpairs_lora with label-word prompt rows (contrastive stage and head)"


@METHODS.register("prompt_probe")
class PromptProbe(LinearProbe):
    name = "prompt_probe"
    default_prompts = True
    description = "head on frozen embeddings of the k-shot rows + label-word prompt rows (no adapter training)"
