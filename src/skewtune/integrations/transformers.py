"""skewtune's imbalance toolkit inside a Hugging Face ``transformers.Trainer`` script.

Three pieces, usable together or one at a time:

* **losses** — :func:`skewtune_loss` builds any loss of :data:`skewtune.imbalance.LOSSES` (``focal``,
  ``weighted_ce``, ``class_balanced``, ``ldam``, ``logit_adjusted``, …) from the training class counts, as a
  :class:`TrainerLoss`: a ``compute_loss_func(outputs, labels, num_items_in_batch=None)`` for ``Trainer``. The
  sum of the per-row losses is divided by ``num_items_in_batch`` (the labelled rows, or tokens, of the whole
  accumulated batch), so gradient accumulation gives the same gradient as one large batch;
* **samplers** — :func:`resampled_sampler` turns a sampler of :data:`skewtune.imbalance.SAMPLERS` (imbalanced-learn
  style ``random_over``, ``random_under``, ``near_miss``, ``tomek``, …; or the ``class_balanced`` /
  ``sqrt_frequency`` class samplers) into a ``torch.utils.data.Sampler`` of training-row indices
  (:class:`ResampledSampler`). ``random_over``, ``random_under`` and the two class samplers draw again every epoch
  (seed ``seed + epoch``, through ``set_epoch``, which ``Trainer`` calls); the neighbourhood methods are
  deterministic, drawn once;
* **decision rules** — :func:`fit_decision_rule` fits a post-hoc rule of :data:`skewtune.imbalance.POST_HOC`
  (``logit_adjustment``, ``bias_tuning``) on ``trainer.predict(validation)``; :func:`apply_decision_rule` turns
  ``trainer.predict(test)`` into label ids with it (``argmax_c z_c + b_c``).

:class:`ImbalanceTrainer` is a ``Trainer`` that takes ``sampler=`` and ``loss=`` by name and wires both; with
``sampler`` set, the prior-based losses see the class counts after resampling (epoch 0's draw), as in
``skewtune train``, so a sampler and a loss do not both correct the same skew. Unknown names or options raise
:class:`~skewtune.errors.ConfigError` listing the valid ones, before training starts.

Complete example (LoRA on MiniLM, 3-class tweets; ``tests/test_integration_trainer.py`` runs a shrunk copy)::

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments

    from skewtune.data import load_dataset_splits
    from skewtune.integrations.transformers import ImbalanceTrainer, apply_decision_rule, fit_decision_rule

    splits = load_dataset_splits("tweets", seed=0, max_train_samples=400, max_eval_samples=300)
    base = "sentence-transformers/all-MiniLM-L6-v2"          # or skewtune.backbones.resolve_backbone("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(splits.labels))
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                             target_modules=["query", "value"]))

    def dataset(split):
        data = Dataset.from_dict({"text": getattr(splits, f"{split}_texts"), "label": splits.ids(split)})
        return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=64), batched=True)

    args = TrainingArguments("out", num_train_epochs=2, learning_rate=1e-3, per_device_train_batch_size=16,
                             save_strategy="no", report_to="none")
    trainer = ImbalanceTrainer(model=model, args=args, train_dataset=dataset("train"), processing_class=tokenizer,
                               sampler="random_over", loss="focal", loss_options={"gamma": 2.0})
    trainer.train()

    rule = fit_decision_rule(trainer.predict(dataset("validation")), "bias_tuning")
    predicted_ids = apply_decision_rule(trainer.predict(dataset("test")), rule)

With a plain ``Trainer`` (no subclass), the loss alone::

    loss = skewtune_loss("logit_adjusted", class_counts=[172, 155, 73])
    trainer = Trainer(model=model, args=args, train_dataset=train, compute_loss_func=loss,
                      callbacks=[loss.callback()])      # the callback feeds LDAM's deferred re-weighting

and the sampler alone in your own loop: ``DataLoader(train, batch_size=16, sampler=resampled_sampler(labels,
"random_under", seed=0), collate_fn=...)`` (call ``sampler.set_epoch(epoch)`` before each epoch).

Distributed runs: every process draws the same indices (seeded generators, no global RNG), and Accelerate, which
``Trainer`` uses, shards the batches across processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback

from skewtune.errors import ConfigError, DataError
from skewtune.imbalance.decision import IGNORE_INDEX, apply_decision, fit_post_hoc
from skewtune.imbalance.losses import LOSSES, ImbalanceLoss, build_loss
from skewtune.imbalance.sampling import ROW_METHODS, SAMPLERS, build_sampler

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

__all__ = ["ImbalanceTrainer", "LossProgressCallback", "ResampledSampler", "TrainerLoss", "apply_decision_rule",
           "dataset_labels", "fit_decision_rule", "resampled_sampler", "skewtune_loss"]

EMBEDDING_SAMPLERS = ("smote", "adasyn", "borderline_smote")
CLASS_SAMPLERS = ("class_balanced", "sqrt_frequency")
REDRAWN_SAMPLERS = ("random_over", "random_under", *CLASS_SAMPLERS)  # random, with a size fixed by the labels
LABEL_COLUMNS = ("labels", "label", "label_ids")


# ------------------------------------------------------------------------------------------------- losses


def _logits(outputs: Any) -> torch.Tensor:
    """The logits of a model output (``ModelOutput``/dict with ``logits``, or a tuple whose first item they are)."""
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise DataError(f"the model output has no 'logits' (keys: {', '.join(map(str, outputs))})",
                            "use a classification model (…ForSequenceClassification / …ForTokenClassification)")
        return outputs["logits"]
    if isinstance(outputs, torch.Tensor):
        return outputs
    return outputs[0]


class TrainerLoss:
    """A skewtune :class:`~skewtune.imbalance.losses.ImbalanceLoss` as ``Trainer``'s ``compute_loss_func``.

    ``loss(outputs, labels, num_items_in_batch=None)`` returns ``Σ_i l_i / N``: the wrapped loss summed over the
    labelled positions of this micro-batch (``-100`` skipped), divided by ``N = num_items_in_batch`` (the
    labelled positions of the whole accumulated batch, as ``Trainer`` counts them) or, when ``Trainer`` passes
    none (evaluation), by this batch's labelled positions. ``calls`` counts calls; ``training_label_counts``
    counts the labels of training calls (gradient enabled) per class: the rows the model trained on.
    """

    def __init__(self, loss: ImbalanceLoss, name: str = "") -> None:
        if loss.reduction != "sum":
            raise ConfigError(f"TrainerLoss needs a loss built with reduction='sum', got '{loss.reduction}'",
                              "build it with skewtune_loss(name, class_counts)")
        self.loss = loss
        self.name = name or type(loss).__name__
        self.num_classes = loss.num_classes
        self.calls = 0
        self.training_label_counts = np.zeros(self.num_classes, dtype=np.int64)
        self._device: torch.device | None = None

    def __call__(self, outputs: Any, labels: torch.Tensor | None,
                 num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
        if labels is None:
            raise DataError("the batch reached the skewtune loss without labels",
                            "give the dataset a 'label' or 'labels' column (Trainer passes it as labels)")
        logits = _logits(outputs)
        if self._device != logits.device:
            self.loss.to(logits.device)
            self._device = logits.device
        labels = labels.to(logits.device)
        total = self.loss(logits, labels)
        valid = labels[labels != self.loss.ignore_index]
        if num_items_in_batch is None:
            denom: torch.Tensor | int = max(int(valid.numel()), 1)
        elif isinstance(num_items_in_batch, torch.Tensor):
            denom = num_items_in_batch.to(total.device).clamp(min=1)
        else:
            denom = max(int(num_items_in_batch), 1)
        self.calls += 1
        if torch.is_grad_enabled():
            self.training_label_counts += torch.bincount(valid.reshape(-1).long().cpu(),
                                                         minlength=self.num_classes).numpy()[:self.num_classes]
        return total / denom

    def set_progress(self, fraction: float) -> None:
        """Fraction of the optimizer steps done (LDAM's deferred re-weighting switches on with it)."""
        self.loss.set_progress(fraction)

    def callback(self) -> LossProgressCallback:
        """A ``TrainerCallback`` that calls :meth:`set_progress` before every optimizer step."""
        return LossProgressCallback(self)

    def __repr__(self) -> str:
        return f"TrainerLoss({self.name}, {self.loss.extra_repr()})"


class LossProgressCallback(TrainerCallback):
    """Tells a :class:`TrainerLoss` the fraction ``global_step / max_steps`` before each optimizer step."""

    def __init__(self, loss: TrainerLoss) -> None:
        self.loss = loss

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                      **kwargs: Any) -> None:
        self.loss.set_progress(state.global_step / max(int(state.max_steps or 0), 1))


def skewtune_loss(name: str, class_counts: Sequence[int], **options: Any) -> TrainerLoss:
    """Loss ``name`` of :data:`skewtune.imbalance.LOSSES` for ``Trainer(compute_loss_func=...)``.

    ``class_counts``: training rows (tokens, for token classification) per label id, in label-id order; the
    priors of ``weighted_ce``, ``class_balanced``, ``ldam``, ``logit_adjusted`` and ``focal(alpha="inverse")``
    come from them. ``options`` are the loss's keywords (e.g. ``gamma=2.0`` for focal, ``tau=1.0`` for
    logit_adjusted, ``ignore_index``); unknown names or keywords raise ConfigError listing the valid ones. LDAM's
    deferred re-weighting needs the training progress: add ``callbacks=[loss.callback()]`` to the Trainer
    (:class:`ImbalanceTrainer` adds it).
    """
    if "reduction" in options:
        raise ConfigError("a Trainer loss takes no 'reduction': it is the mean over the accumulated batch",
                          "drop reduction= (use skewtune.imbalance.build_loss for another reduction)")
    return TrainerLoss(build_loss(name, class_counts, reduction="sum", **options), name)


# ----------------------------------------------------------------------------------------------- samplers


def _label_array(labels: Any) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels)


def _flat_labels(labels: Any, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Integer label ids, flattened across tokens (nested per-token lists allowed), ``ignore_index`` dropped."""
    if hasattr(labels, "shape"):
        arr = _label_array(labels).reshape(-1)
    else:
        items = list(labels)
        nested = bool(items) and isinstance(items[0], (list, tuple, np.ndarray, torch.Tensor))
        arr = np.concatenate([_label_array(x).reshape(-1) for x in items]) if nested else np.asarray(items)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
            raise DataError(f"labels must be integer class ids, got dtype {arr.dtype}",
                            "map the label names to ids (0 … C-1) first, e.g. with datasets' class_encode_column")
    arr = arr.astype(np.int64)
    arr = arr[arr != ignore_index]
    if arr.size and arr.min() < 0:
        raise DataError(f"labels must be class ids >= 0 (or {ignore_index}), got {int(arr.min())}",
                        "map the label names to ids (0 … C-1)")
    return arr


def dataset_labels(dataset: Any, column: str | None = None) -> list[Any]:
    """The label of every row of ``dataset`` (a ``datasets.Dataset`` or any sized dataset of dicts).

    ``column`` defaults to the first of ``labels``, ``label``, ``label_ids`` that the dataset has.
    """
    names = getattr(dataset, "column_names", None)
    if names is not None:
        found = column or next((c for c in LABEL_COLUMNS if c in names), None)
        if found is None or found not in names:
            raise DataError(f"the training dataset has no label column (columns: {', '.join(names)})",
                            f"name it one of {', '.join(LABEL_COLUMNS)}, or pass labels=")
        return list(dataset[found])
    try:
        rows = [dataset[i] for i in range(len(dataset))]
    except TypeError as exc:
        raise DataError("the training dataset has no length or is not indexable",
                        "pass labels= (one label id per training row)") from exc
    if not rows:
        raise DataError("the training dataset is empty", "check the training split")
    first = rows[0]
    if not isinstance(first, Mapping):
        raise DataError(f"cannot read labels from dataset rows of type {type(first).__name__}",
                        "pass labels= (one label id per training row)")
    found = column or next((c for c in LABEL_COLUMNS if c in first), None)
    if found is None or found not in first:
        raise DataError(f"the training rows have no label key (keys: {', '.join(map(str, first))})",
                        f"name it one of {', '.join(LABEL_COLUMNS)}, or pass labels=")
    return [row[found] for row in rows]


def _check_sampler_name(name: str) -> None:
    SAMPLERS.get(name)  # ConfigError listing the valid names
    if name in EMBEDDING_SAMPLERS:
        raise ConfigError(f"sampler '{name}' interpolates sentence embeddings, not training rows",
                          "use it on embeddings (skewtune.imbalance.EmbeddingSMOTE) or pick a row sampler: "
                          f"{', '.join([*ROW_METHODS, *CLASS_SAMPLERS])}")


class ResampledSampler(Sampler[int]):
    """Training-row indices drawn by a skewtune sampler, for a ``DataLoader`` or ``Trainer``.

    Row samplers (``random_over``, ``random_under``, ``near_miss``, ``tomek``, ``enn``, ``one_sided_selection``,
    ``neighbourhood_cleaning``) run imbalanced-learn's ``fit_resample`` on the row positions (neighbour-based
    methods need ``texts=`` for TF-IDF or ``features=`` embeddings) and yield ``sample_indices_``, in a random
    order when ``shuffle``; ``class_balanced`` / ``sqrt_frequency`` draw ``len(labels)`` rows with class
    probability ``∝ n_c^0`` / ``∝ n_c^{1/2}``. Random samplers draw again each epoch with seed ``seed + epoch``
    (:meth:`set_epoch`); the size of an epoch is the same every epoch. ``options`` go to the sampler
    (e.g. ``ratio=0.5``, ``sampling_strategy=``, ``n_neighbors=``).
    """

    def __init__(self, labels: Any, name: str = "random_over", *, seed: int = 0, shuffle: bool = True,
                 texts: Sequence[str] | None = None, features: Any = None, num_classes: int | None = None,
                 **options: Any) -> None:
        _check_sampler_name(name)
        y = _label_array(labels)
        if y.ndim != 1:
            raise DataError(f"a row sampler needs one label per row, got labels of shape {y.shape}",
                            "samplers apply to sequence classification (one label per row), not to token labels")
        if y.shape[0] == 0:
            raise DataError("no training rows to resample", "check the training split")
        if texts is not None and len(texts) != y.shape[0]:
            raise DataError(f"{len(texts)} texts for {y.shape[0]} labels", "pass one text per training row")
        for key in ("seed", "labels", "num_replicas", "rank"):
            if key in options:
                raise ConfigError(f"ResampledSampler sets '{key}' itself", f"drop {key}= from the sampler options")
        self.name = name
        self.labels = y
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.texts = list(texts) if texts is not None else None
        self.features = features
        self.num_classes = num_classes
        self.options = dict(options)
        self.redraws = name in REDRAWN_SAMPLERS
        self.epoch = 0
        self._draws: dict[int, np.ndarray] = {0: self._draw(0)}  # errors surface here, before training
        self.num_samples = int(self._draws[0].shape[0])

    def _draw(self, epoch: int) -> np.ndarray:
        seed = self.seed + (epoch if self.redraws else 0)
        if self.name in CLASS_SAMPLERS:
            sampler = build_sampler(self.name, labels=self.labels, seed=seed, num_replicas=1, rank=0,
                                    num_classes=self.num_classes, **self.options)
            return sampler.global_indices().numpy().astype(np.int64)  # already in random order
        resampler = build_sampler(self.name, seed=seed, num_classes=self.num_classes, **self.options)
        X: Any = self.texts if self.texts is not None else np.arange(self.labels.shape[0])
        resampler.fit_resample(X, self.labels, features=self.features)
        return np.asarray(resampler.sample_indices_, dtype=np.int64)

    def resampled_indices(self, epoch: int = 0) -> np.ndarray:
        """The rows drawn for ``epoch`` (imbalanced-learn's order, before shuffling)."""
        epoch = int(epoch) if self.redraws else 0
        if epoch not in self._draws:
            self._draws = {0: self._draws[0], epoch: self._draw(epoch)}  # keep epoch 0 (the priors) and the last
        return self._draws[epoch]

    def class_counts(self, num_classes: int | None = None) -> list[int]:
        """Rows per label id in epoch 0's draw: the class counts the model trains on (for prior-based losses)."""
        width = num_classes or self.num_classes or int(self.labels.max()) + 1
        return np.bincount(self.labels[self._draws[0]], minlength=width).tolist()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw :meth:`__iter__` yields (``Trainer`` calls this every epoch)."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        idx = self.resampled_indices(self.epoch)
        if self.shuffle and self.name not in CLASS_SAMPLERS:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            idx = idx[torch.randperm(idx.shape[0], generator=g).numpy()]
        return iter(idx.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return f"ResampledSampler({self.name!r}, rows={self.labels.shape[0]} -> {self.num_samples}, seed={self.seed})"


def resampled_sampler(labels: Any, name: str = "random_over", *, seed: int = 0, **options: Any) -> ResampledSampler:
    """A :class:`ResampledSampler` of sampler ``name`` over ``labels`` (one label id per training row)."""
    return ResampledSampler(labels, name, seed=seed, **options)


# ------------------------------------------------------------------------------------------- decision rules


def _prediction_arrays(prediction: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(logits, labels)`` from a ``PredictionOutput`` / ``EvalPrediction`` or a logits array (+ ``labels``)."""
    logits = getattr(prediction, "predictions", prediction)
    if isinstance(logits, (tuple, list)) and logits and hasattr(logits[0], "shape"):
        logits = logits[0]  # models that also return hidden states: logits come first
    logits = _label_array(logits)
    if labels is None:
        labels = getattr(prediction, "label_ids", None)
    if logits.ndim < 2:
        raise DataError(f"logits must be [N, C] (or [N, T, C]), got shape {logits.shape}",
                        "pass trainer.predict(...) or the model's raw logits")
    return logits, None if labels is None else _label_array(labels)


def fit_decision_rule(prediction: Any, name: str = "logit_adjustment", *, labels: Any = None,
                      class_counts: Sequence[int] | None = None, **options: Any) -> dict[str, Any]:
    """Fit post-hoc rule ``name`` (``logit_adjustment`` or ``bias_tuning``) on validation predictions.

    ``prediction``: ``trainer.predict(validation_dataset)`` (logits and ``label_ids``), or a logits array with
    ``labels=``. ``class_counts`` (training rows per label id) is needed by ``logit_adjustment``
    (``b_c = -τ log π_c``); ``options`` are the rule's keywords (``tau="auto"``, ``grid_size``, …). Returns the
    JSON-serialisable rule ``{"rule", "logit_bias", "val_macro_f1_before", "val_macro_f1_after", …}``.
    """
    logits, y = _prediction_arrays(prediction, labels)
    if y is None:
        raise DataError("fitting a decision rule needs the validation labels",
                        "predict on a dataset with a label column, or pass labels=")
    return fit_post_hoc(name, logits, y, class_counts=class_counts, **options)


def apply_decision_rule(prediction: Any, rule: dict[str, Any] | None) -> np.ndarray:
    """Label ids ``argmax_c (z_c + b_c)`` for ``trainer.predict(...)`` (or logits) under ``rule``.

    ``rule=None`` is the plain argmax. Token-classification logits ``[N, T, C]`` give ``[N, T]`` ids.
    """
    logits, _ = _prediction_arrays(prediction)
    return np.asarray(apply_decision(logits, rule)).argmax(axis=-1)


# ------------------------------------------------------------------------------------------------ trainer


class ImbalanceTrainer(Trainer):
    """``transformers.Trainer`` with a skewtune sampler and loss chosen by name.

    ``ImbalanceTrainer(model=..., args=..., train_dataset=..., sampler="random_over", loss="focal",
    sampler_options={"ratio": 0.5}, loss_options={"gamma": 2.0})``; every other argument is ``Trainer``'s.

    * ``sampler``: a row or class sampler of :data:`skewtune.imbalance.SAMPLERS` (None: ``Trainer``'s own);
      labels come from ``labels=`` or the dataset's ``labels``/``label``/``label_ids`` column (``label_column=``);
      neighbour-based samplers use TF-IDF of the ``text_column`` column (or ``sampler_options={"features": E}``).
      The seed is ``args.seed``; ``train_sampling_strategy="sequential"`` keeps imbalanced-learn's order.
    * ``loss``: a name of :data:`skewtune.imbalance.LOSSES` or a ready :class:`TrainerLoss` (None: the model's
      loss). Its class counts are the training counts after resampling (epoch 0's draw), or ``class_counts=``.

    After training, ``trainer.imbalance_sampler`` / ``trainer.imbalance_loss`` are the objects used and
    ``trainer.training_class_counts`` the counts the loss was built from.
    """

    def __init__(self, *args: Any, sampler: str | None = None, loss: str | TrainerLoss | None = None,
                 sampler_options: Mapping[str, Any] | None = None, loss_options: Mapping[str, Any] | None = None,
                 labels: Sequence[Any] | None = None, label_column: str | None = None, text_column: str = "text",
                 class_counts: Sequence[int] | None = None, **kwargs: Any) -> None:
        if loss is not None and kwargs.get("compute_loss_func") is not None:
            raise ConfigError("both loss= and compute_loss_func= were given", "pass one of them")
        if sampler is not None:
            _check_sampler_name(sampler)
        if isinstance(loss, str):
            LOSSES.get(loss)  # ConfigError listing the losses before the (slow) Trainer set-up
        elif loss is not None and not isinstance(loss, TrainerLoss):
            raise ConfigError(f"loss must be a loss name or a TrainerLoss, got {type(loss).__name__}",
                              "pass e.g. loss='focal' or loss=skewtune_loss('focal', counts)")
        if loss_options and not isinstance(loss, str):
            raise ConfigError("loss_options needs loss=<name>", "add e.g. loss='focal'")
        if sampler_options and sampler is None:
            raise ConfigError("sampler_options needs sampler=<name>", "add e.g. sampler='random_over'")
        super().__init__(*args, **kwargs)
        self.imbalance_sampler: ResampledSampler | None = None
        self.imbalance_loss: TrainerLoss | None = None
        self.training_class_counts: list[int] | None = None
        self.decision_rule: dict[str, Any] | None = None
        num_classes = getattr(getattr(self.model, "config", None), "num_labels", None)
        train_labels: list[Any] | None = None
        if sampler is not None or isinstance(loss, str):
            if self.train_dataset is None:
                raise ConfigError("sampler= and loss= need a train_dataset", "pass train_dataset=")
            train_labels = list(labels) if labels is not None else dataset_labels(self.train_dataset, label_column)
        if sampler is not None:
            assert train_labels is not None
            strategy = str(getattr(self.args, "train_sampling_strategy", "random"))
            if strategy not in ("random", "sequential"):
                raise ConfigError(f"sampler='{sampler}' replaces train_sampling_strategy='{strategy}'",
                                  "leave train_sampling_strategy at 'random' (or 'sequential'), or drop sampler=")
            options = dict(sampler_options or {})
            if sampler in ROW_METHODS and "texts" not in options and "features" not in options:
                names = getattr(self.train_dataset, "column_names", None) or []
                if text_column in names:
                    options["texts"] = list(self.train_dataset[text_column])
            self.imbalance_sampler = ResampledSampler(train_labels, sampler, seed=self.args.seed,
                                                      shuffle=strategy == "random", num_classes=num_classes,
                                                      **options)
        if class_counts is not None:
            self.training_class_counts = [int(c) for c in class_counts]
        elif self.imbalance_sampler is not None:
            self.training_class_counts = self.imbalance_sampler.class_counts(num_classes)
        elif train_labels is not None:
            flat = _flat_labels(train_labels)
            width = num_classes or (int(flat.max()) + 1 if flat.size else 0)
            self.training_class_counts = np.bincount(flat, minlength=width).tolist()
        if isinstance(loss, str):
            counts = self.training_class_counts
            assert counts is not None
            if num_classes is not None and len(counts) != num_classes:
                raise ConfigError(f"{len(counts)} class counts for a model with {num_classes} labels",
                                  "check num_labels of the model and the training label ids")
            loss = skewtune_loss(loss, counts, **dict(loss_options or {}))
        if loss is not None:
            self.imbalance_loss = loss
            self.compute_loss_func = loss
            self.add_callback(loss.callback())

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int] | None:
        """The skewtune sampler when ``sampler=`` was given (``Trainer``'s own otherwise)."""
        if self.imbalance_sampler is None:
            return super()._get_train_sampler(train_dataset)
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        rows = self.imbalance_sampler.labels.shape[0]
        if dataset is not None and hasattr(dataset, "__len__") and len(dataset) != rows:
            raise DataError(f"the sampler was fitted on {rows} rows but the training dataset has {len(dataset)}",
                            "build the ImbalanceTrainer with the dataset it trains on")
        return self.imbalance_sampler

    def fit_decision_rule(self, dataset: Any, name: str = "logit_adjustment", **options: Any) -> dict[str, Any]:
        """Fit rule ``name`` on ``trainer.predict(dataset)`` (priors: :attr:`training_class_counts`, else the training
        labels) and keep it in :attr:`decision_rule` for :meth:`predict_labels`."""
        prediction = self.predict(dataset)
        counts = options.pop("class_counts", None) or self.training_class_counts
        if counts is None and name == "logit_adjustment" and self.train_dataset is not None:
            flat = _flat_labels(dataset_labels(self.train_dataset))
            counts = np.bincount(flat, minlength=_prediction_arrays(prediction)[0].shape[-1]).tolist()
        self.decision_rule = fit_decision_rule(prediction, name, class_counts=counts, **options)
        return self.decision_rule

    def predict_labels(self, dataset: Any) -> np.ndarray:
        """Label ids for ``dataset`` under :attr:`decision_rule` (plain argmax when none was fitted)."""
        return apply_decision_rule(self.predict(dataset), self.decision_rule)
