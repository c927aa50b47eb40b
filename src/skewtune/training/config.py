"""Run configuration: one dataclass per entry point; defaults ← packaged YAML (skewtune/configs) ← --config ← flags."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as _dt
import functools
import importlib.resources
import inspect
import io
import textwrap
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

from skewtune.adapters.layers import check_layers_spec
from skewtune.backbones.modes import QUANT_MODES, resolve_quantize_embeddings
from skewtune.errors import ConfigError, capped, unknown_name
from skewtune.training.presets import get_preset

# Names for --help and validation, kept in step with the registries by tests/test_help_and_defaults.py (importing the
# registries here would load torch/peft for `skewtune --help`).
ADAPTER_NAMES = ("lora", "dora", "rslora", "ia3", "prefix", "prompt")
# experiment trackers (skewtune.training.tracking) and validation scores that can rank evaluations
TRACKERS = ("auto", "tensorboard", "wandb", "mlflow", "trackio", "all", "none")
METRICS_FOR_BEST = ("macro_f1", "accuracy", "weighted_f1", "balanced_accuracy", "balanced_macro_f1", "entity_f1",
                    "micro_f1", "samples_f1", "pearson", "spearman", "matthews_correlation")
LOSS_NAMES = ("ce", "weighted_ce", "sqrt_weighted_ce", "focal", "class_balanced", "ldam", "logit_adjusted", "dice",
              "label_smoothing",
              "bce", "bce_pos_weight", "asl",  # multi-label (skewtune.imbalance.multilabel; focal there too)
              "mse", "huber")  # regression (skewtune.tasks.regression)
PROBLEM_TYPES = ("single_label", "multi_label", "regression")  # skewtune.data.tables.PROBLEM_TYPES
SAMPLER_NAMES = ("random_over", "random_under", "tomek", "enn", "near_miss", "neighbourhood_cleaning",
                 "one_sided_selection", "smote", "adasyn", "borderline_smote", "class_balanced", "sqrt_frequency",
                 "ml_ros")  # ml_ros: multi-label (skewtune.imbalance.multilabel)
AUGMENT_NAMES = ("eda", "synonym_replacement", "random_insertion", "random_swap", "random_deletion", "contextual")
POST_HOC_NAMES = ("logit_adjustment", "bias_tuning")
SCHEDULERS = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "no", "fp16", "bf16")
NAN_POLICIES = ("stop", "skip")
TAGSETS = ("en-ptb", "de-stts", "nl-wotan", "es-parole", "it-penn")  # skewtune.data.upos.TAGSETS
# the packaged defaults files (src/skewtune/configs/<name>.yaml) of the recipes and commands
PACKAGED_CONFIGS = ("lora_sentiment", "few_shot", "cross_lingual")


def choice(default: str | None, choices: tuple[str, ...], kind: str) -> Any:
    """A field whose value must be one of ``choices`` (``None`` allowed when the annotation is optional).

    ``kind`` names the value in the error: ``unknown <kind> '<value>' (fix: use one of: …)``.
    """
    return dataclasses.field(default=default, metadata={"choices": tuple(choices), "kind": kind})


@dataclasses.dataclass
class TrainConfig:
    """Every flag of ``skewtune train`` and ``recipes/lora_sentiment.py``.

    The trailing comment of each field is its ``--help`` text; ``choice(...)`` fields list and enforce their values.
    The defaults equal ``src/skewtune/configs/lora_sentiment.yaml`` (a test checks it).
    """

    # data
    dataset: str = "tweets"  # registered corpus (tweets, pang_lee, amazon_fr, …), a local .csv/.tsv/.jsonl/.json/.parquet file, a folder saved by datasets' save_to_disk, or a Hugging Face Hub dataset owner/name (online)
    task: str | None = None  # a task preset (glue/cola, glue/sst2, glue/mrpc, glue/qqp, glue/stsb, glue/mnli, glue/qnli, glue/rte, glue/wnli, superglue/boolq, superglue/cb, superglue/rte): sets the Hub dataset, its columns, the problem type and the official metrics wherever this run does not set them; none: no preset
    problem_type: str | None = choice(None, PROBLEM_TYPES, "problem_type")  # single_label (one class per text), multi_label (several per text: a JSON list or names split on --label_delimiter) or regression (a number); none: single_label, or what a registered corpus is (snli, wnut16_types, vader)
    text_pair_column: str | None = None  # column of the second text of sentence pairs (NLI, paraphrase, similarity): both texts go in as one pair; none: single texts
    label_delimiter: str = ";"  # multi-label: the separator of class names in a label cell that is not a JSON list
    multilabel_thresholds: str = choice("tuned", ("tuned", "fixed"), "multilabel_thresholds")  # multi-label: per-label probability thresholds fitted on validation (tuned, saved with the adapter) or 0.5 for every label (fixed)
    dataset_config: str | None = None  # configuration of a Hub dataset (e.g. sst2 for nyu-mll/glue); none: its default
    streaming: bool = False  # read the training file as a stream (datasets' iterable dataset) instead of converting it to Arrow first: for data larger than disk cache or memory; needs --max_steps
    num_proc: int | None = None  # processes tokenizing a split with datasets' map; none: every core (up to 8) for splits of 50,000 rows or more, one below
    text_column: str = "text"  # column of the texts in a local file
    label_column: str = "label"  # column of the labels in a local file
    validation_file: str | None = None  # validation rows from this file instead of 10% of --dataset
    test_file: str | None = None  # test rows from this file instead of 10% of --dataset
    encoding: str = "utf-8"  # text encoding of local files, e.g. latin-1
    max_train_samples: int | None = None  # train on the first N training rows only; none: all
    max_eval_samples: int | None = None  # score at most N validation and N test rows; none: all
    max_length: int = 128  # subword tokens per text; longer texts are truncated, with a warning counting them
    skip_empty_texts: bool = False  # drop rows with an empty text instead of refusing the file
    # model
    backbone: str = "minilm"  # registered backbone (minilm, me5-small, smollm2: `skewtune backbones list`) or a local Hugging Face folder
    quant: str = choice("8bit", QUANT_MODES, "quant mode")  # frozen backbone weights: LLM.int8 (8bit), NF4 (4bit) or fp32 (none)
    quantize_embeddings: bool | None = None  # quantize the word embedding too (int8 / NF4); none: on when --quant is not none
    adapter: str = choice("lora", ADAPTER_NAMES, "adapter")  # PEFT method trained on the frozen backbone
    lora_r: int = 8  # rank of the LoRA update (lora, dora, rslora)
    lora_alpha: float = 16.0  # LoRA scale numerator: the update is scaled by alpha/r (alpha/sqrt(r) for rslora)
    lora_dropout: float = 0.0  # dropout on the LoRA branch's input, in [0, 1)
    backbone_dropout: float | None = 0.0  # every dropout of the frozen backbone and head, in [0, 1); none keeps the backbone's own (BERT: 0.1)
    target_modules: str | None = "all"  # layers the adapter wraps: all (every linear layer of the blocks), attention (query/value projections) or comma-separated module names
    num_virtual_tokens: int = 16  # virtual tokens of the prefix and prompt adapters
    lora_layers: str | None = None  # transformer layers to adapt: topN (the last N, e.g. top2; no backward below them: faster), 0-based indices such as 3,4,5, or all; none: all
    # optimisation
    learning_rate: str = "1e-3"  # peak learning rate, or auto (a learning-rate range test picks it)
    weight_decay: float = 0.01  # AdamW's decoupled weight decay: each step shrinks every trained weight (adapter, head) by lr × this; 0: off
    num_train_epochs: float = 1.0  # passes over the training rows (fractions allowed)
    max_steps: int | None = None  # stop after N optimizer steps, whatever --num_train_epochs says; none: no limit
    per_device_train_batch_size: int = 32  # training rows per batch and process
    per_device_eval_batch_size: int = 256  # rows per batch when scoring validation and test
    max_tokens_per_batch: int | None = None  # token budget per length-grouped training batch instead of a fixed row count; none: off
    gradient_accumulation_steps: int = 1  # batches per optimizer step
    gradient_checkpointing: bool = False  # keep only each block's input and recompute its activations in the backward pass: less memory (see skewtune plan), slower steps
    lr_scheduler_type: str = choice("linear", SCHEDULERS, "lr_scheduler_type")  # learning-rate decay after the warmup
    warmup_ratio: float = 0.06  # share of the optimizer steps spent warming the learning rate up from 0, in [0, 1)
    max_grad_norm: float = 1.0  # clip the gradient norm to this (0: no clipping)
    mixed_precision: str = choice("auto", PRECISIONS, "mixed_precision")  # autocast dtype; auto: bf16 on GPUs that support it, else fp16, none on CPU
    seed: int = 42  # seed of the split, the resampling, the initialisation and the batch order
    # imbalance (skewtune.imbalance registries)
    loss: str = choice("ce", LOSS_NAMES, "loss")  # training loss; class-weighted and margin losses counter imbalance
    loss_options: str | None = None  # keywords of the loss, e.g. "gamma=2" (focal), "drw_start=0.8,max_m=0.3" (ldam)
    sampler: str | None = choice("random_over", SAMPLER_NAMES, "sampler")  # training rows resampled per class (random_over: minority classes oversampled to balance); class_balanced / sqrt_frequency draw batches by class weight; none: rows as they are
    sampler_ratio: float | None = None  # minority/majority size after row resampling, in (0, 1]; none: 1 (balanced)
    augment: str | None = choice(None, AUGMENT_NAMES, "augmentation method")  # text augmentation of the minority classes; none: off
    augment_ratio: float = 0.5  # augment minority classes up to this fraction of the largest class
    post_hoc: str | None = choice(None, POST_HOC_NAMES, "post-hoc rule")  # decision rule fitted on validation and applied by predict; none: argmax
    post_hoc_options: str | None = None  # keywords of the rule, e.g. "tau=auto" or "tau=0.5" (logit_adjustment)
    # outputs and runtime
    output_dir: str | None = None  # run folder; none: outputs/<recipe>/<timestamp>
    overwrite_output_dir: bool = False  # replace what a previous run left in --output_dir
    eval_every_epoch: bool = True  # score the validation split after every epoch
    eval_steps: int = 0  # also score the validation split every N optimizer steps (0: only at epoch ends, see --eval_every_epoch)
    metric_for_best_model: str = choice("macro_f1", METRICS_FOR_BEST, "metric_for_best_model")  # validation score that ranks evaluations, for --load_best_model_at_end and --early_stopping_patience
    load_best_model_at_end: bool = False  # end with the adapter weights of the best-scoring validation evaluation instead of the last (needs more than one evaluation)
    early_stopping_patience: int = 0  # stop after N validation evaluations in a row without improvement of --metric_for_best_model (0: never)
    report_to: str = choice("auto", TRACKERS, "tracker")  # experiment tracking through Accelerate: tensorboard (event files in <output_dir>/tracking), wandb, mlflow, trackio, all (every installed one) or none; auto: tensorboard when installed, else none
    logging_steps: int = 10  # log training loss, learning rate, gradient norm and samples/s to the trackers every N optimizer steps
    checkpoint_every_steps: int = 0  # also checkpoint every N optimizer steps (0: at epoch ends only)
    keep_checkpoints: int = 2  # newest checkpoints kept in <output_dir>/checkpoints
    resume_from_checkpoint: str | None = None  # resume from this checkpoint folder, or latest
    on_nan: str = choice("stop", NAN_POLICIES, "on_nan")  # on a non-finite loss: stop (the last good checkpoint is kept) or skip the batch
    baselines: bool = True  # compute majority and TF-IDF+LR baselines on the same splits
    report_plots: bool = True  # write confusion_matrix.png
    num_threads: str | None = "auto"  # torch threads per process on CPU; auto: the CPUs free of other jobs (affinity, cgroup quota, current load) ÷ local processes, logged at start; or a number (env SKEWTUNE_NUM_THREADS works too)
    ddp_timeout: int = 1800  # seconds a process of a multi-process (multi-machine) run waits for the others at a collective (gradient all-reduce, barrier) before it stops with an error naming the lost peer

    def loss_kwargs(self) -> dict[str, Any]:
        """``--loss_options`` as keywords of the loss."""
        from skewtune.utils.registry import parse_options

        return parse_options(self.loss_options, "--loss_options")

    def post_hoc_kwargs(self) -> dict[str, Any]:
        """``--post_hoc_options`` as keywords of the decision rule."""
        from skewtune.utils.registry import parse_options

        return parse_options(self.post_hoc_options, "--post_hoc_options")

    def learning_rate_value(self) -> float | None:
        """The float learning rate, or None for ``auto``."""
        if str(self.learning_rate).lower() == "auto":
            return None
        try:
            value = float(self.learning_rate)
        except ValueError:
            raise ConfigError(f"--learning_rate '{self.learning_rate}' is not a number", "pass e.g. 1e-3 or auto") from None
        if not value > 0:
            raise ConfigError(f"--learning_rate must be positive, got {value}", "pass e.g. 1e-3 or auto")
        return value

    def validate(self) -> None:
        check_choices(self)

        check_layers_spec(self.lora_layers)

        resolve_quantize_embeddings(self.quant, self.quantize_embeddings)
        self.learning_rate_value()
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "max_length", "lora_r", "ddp_timeout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be ≥ 1, got {getattr(self, name)}", f"pass a positive --{name}")
        if self.num_train_epochs <= 0 and not self.max_steps:
            raise ConfigError("--num_train_epochs must be > 0", "pass e.g. --num_train_epochs 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}", "pass e.g. 0.06")
        self._validate_ranges()

    def _validate_ranges(self) -> None:
        """Values torch/peft/sklearn would reject with a traceback (or silently misuse) fail here, first."""
        import codecs
        import math

        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"--lora_dropout must be in [0, 1), got {self.lora_dropout}", "pass e.g. 0.1")
        if self.backbone_dropout is not None and not 0 <= self.backbone_dropout < 1:
            raise ConfigError(f"--backbone_dropout must be in [0, 1), got {self.backbone_dropout}",
                              "pass e.g. 0 (no dropout in the frozen backbone) or none (keep its own)")
        if not (self.lora_alpha > 0 and math.isfinite(self.lora_alpha)):
            raise ConfigError(f"--lora_alpha must be a positive number, got {self.lora_alpha}", "pass e.g. 16")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"--weight_decay must be ≥ 0, got {self.weight_decay}", "pass e.g. 0.01")
        if not (self.max_grad_norm >= 0 and math.isfinite(self.max_grad_norm)):
            raise ConfigError(f"--max_grad_norm must be ≥ 0 (0 disables clipping), got {self.max_grad_norm}", "pass e.g. 1.0")
        if not math.isfinite(self.num_train_epochs):
            raise ConfigError(f"--num_train_epochs must be finite, got {self.num_train_epochs}", "pass e.g. 3")
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"--seed must be in [0, 2**32), got {self.seed}", "pass e.g. --seed 42")
        for name in ("max_steps", "max_train_samples", "max_eval_samples", "max_tokens_per_batch", "num_proc"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be ≥ 1 when given, got {value}", f"pass a positive --{name} or leave it out")
        if self.checkpoint_every_steps < 0:
            raise ConfigError(f"--checkpoint_every_steps must be ≥ 0 (0: epoch ends only), got {self.checkpoint_every_steps}",
                              "pass e.g. 500")
        if self.num_threads is not None and str(self.num_threads).lower() != "auto" and not (
                str(self.num_threads).isdigit() and int(self.num_threads) >= 1):
            raise ConfigError(f"--num_threads must be auto or a whole number ≥ 1, got {self.num_threads}",
                              "pass e.g. --num_threads 1, or auto")
        for name in ("eval_steps", "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be ≥ 0 (0: off), got {getattr(self, name)}", f"pass e.g. --{name} 100")
        if self.logging_steps < 1:
            raise ConfigError(f"--logging_steps must be ≥ 1, got {self.logging_steps}", "pass e.g. --logging_steps 10")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep_checkpoints must be ≥ 1, got {self.keep_checkpoints}", "pass e.g. 2")
        if self.target_modules is not None and not [t for t in self.target_modules.split(",") if t.strip()]:
            raise ConfigError("--target_modules is empty", "leave it out for the default, or pass attention, all or names")
        if getattr(self, "task", None):
            get_preset(self.task)  # an unknown preset name fails here, listing the known ones
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(f"unknown --encoding '{self.encoding}'", "pass e.g. utf-8, latin-1 or cp1252") from None

    def resolved_output_dir(self, recipe: str) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("outputs") / recipe / stamp

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TokenTrainConfig(TrainConfig):
    """TrainConfig plus the token-classification settings (``skewtune train-tokens``; no packaged YAML).

    The model settings keep the values train-tokens had before the classification defaults moved to the recipe's
    (LoRA dropout 0.1, the backbone's own dropout, every linear layer, eval batch 128): nothing measured moved.
    """

    dataset: str = "upos_en"  # a registered token dataset (upos_en, en_wsj, de_tiger, nl_twnc, es_wikicorpus, it_wacky) or a CoNLL file
    tagset: str | None = choice(None, TAGSETS, "tagset")  # map the file's tags to universal POS; none: keep the tags
    text_prefix: str = ""  # words prepended to every sentence, never labelled (e5: "query: ")
    label_all_subwords: bool = False  # label every subword (B-X continuations become I-X) instead of the first
    baselines: bool = False  # majority and TF-IDF baselines (sequence-level: off for tagging)
    sampler: str | None = choice(None, SAMPLER_NAMES, "sampler")  # must stay none: resampling rows has no token-level meaning
    lora_dropout: float = 0.1  # dropout on the LoRA branch's input, in [0, 1)
    backbone_dropout: float | None = None  # every dropout of the frozen backbone and head, in [0, 1); none keeps the backbone's own (BERT: 0.1)
    target_modules: str | None = "all"  # layers the adapter wraps: all (every linear layer of the blocks), attention (query/value projections) or comma-separated module names
    per_device_eval_batch_size: int = 128  # sentences per batch when scoring validation and test
    o_weight: float = 1.0  # weight of the positions tagged O in the token loss (e.g. 0.3 down-weights the dominant O tag), > 0; multiplies --loss weighted_ce / sqrt_weighted_ce class weights


def _base_type(annotation: Any) -> type:
    hints = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(h for h in hints if h is not type(None))
    return annotation


def _bool(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got '{text}'")


class _NoneGiven:
    """``--flag none`` on the command line (argparse's own ``None`` means "not given")."""


NONE_GIVEN = _NoneGiven()


def _or_none(parse: Any) -> Any:
    def parse_or_none(text: str) -> Any:
        return NONE_GIVEN if text.strip().lower() in ("none", "null") else parse(text)

    parse_or_none.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in its errors
    return parse_or_none


def check_choices(config: Any) -> None:
    """ConfigError for a ``choice(...)`` field holding a value outside its choices (flags and YAML alike)."""
    for field in dataclasses.fields(config):
        choices, kind = field_choices(type(config), field.name)
        value = getattr(config, field.name)
        if choices and value is not None and value not in choices:
            raise unknown_name(kind, str(value), choices)


def field_choices(config_cls: type, name: str) -> tuple[tuple[str, ...], str]:
    """``(choices, kind)`` of a field, inherited from the nearest class that declared them (``((), "")``: free)."""
    for klass in config_cls.__mro__:
        field = getattr(klass, "__dataclass_fields__", {}).get(name)
        if field is not None and "choices" in field.metadata:
            return field.metadata["choices"], field.metadata["kind"]
    return (), ""


@functools.cache
def _trailing_comments(klass: type) -> dict[str, str]:
    """``field name -> its trailing comment`` in the class body (the comments are the fields' docs)."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # no source (frozen app): flags keep their defaults and choices only
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    docs: dict[str, str] = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            text = " ".join(comments[i] for i in lines if i in comments)
            if text:
                docs[node.target.id] = text
    return docs


def field_doc(config_cls: type, name: str) -> str:
    """What a field does: its trailing comment, from the nearest class in the MRO that documents it."""
    for klass in config_cls.__mro__:
        if dataclasses.is_dataclass(klass) and name in _trailing_comments(klass):
            return _trailing_comments(klass)[name]
    return ""


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def recipe_config_path(name: str) -> Path:
    """The packaged defaults of a recipe / command: ``skewtune/configs/<name>.yaml`` (package data)."""
    if name not in PACKAGED_CONFIGS:
        raise unknown_name("packaged config", name, PACKAGED_CONFIGS)
    return Path(str(importlib.resources.files("skewtune") / "configs" / f"{name}.yaml"))


def recipe_defaults(name: str, config_cls: type = TrainConfig) -> dict[str, Any]:
    """The values of a packaged defaults file (``lora_sentiment``, ``few_shot``, ``cross_lingual``), type-checked."""
    return load_yaml(recipe_config_path(name), config_cls)


def config_defaults(config_cls: type = TrainConfig, defaults: str | None = None) -> dict[str, Any]:
    """Every field's default as a command resolves it: the dataclass's, then the packaged ``defaults`` file's."""
    values = {f.name: f.default for f in dataclasses.fields(config_cls)}
    if defaults:
        values.update(recipe_defaults(defaults, config_cls))
    return values


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type = TrainConfig,
                         defaults: str | None = None) -> None:
    """One ``--flag`` per config field, with its doc, choices and the default the command will use.

    ``defaults`` names the packaged YAML (see :func:`recipe_defaults`) the command starts from; it is recorded in the
    parsed namespace so :func:`config_from_args` resolves exactly what ``--help`` shows. Argparse defaults stay
    unset (None) so a ``--config`` file is not overridden by flags the user did not give.
    """
    source = f"skewtune/configs/{defaults}.yaml, then " if defaults else ""
    parser.add_argument("--config", metavar="YAML",
                        help=f"YAML file of flag: value lines (any flag below); precedence: {source}this file, "
                             "then the flags given")
    parser.set_defaults(_config_defaults=defaults)
    hints = typing.get_type_hints(config_cls)
    shown = config_defaults(config_cls, defaults)
    for field in dataclasses.fields(config_cls):
        kind = _base_type(hints[field.name])
        optional = type(None) in typing.get_args(hints[field.name])
        choices, _ = field_choices(config_cls, field.name)
        doc = field_doc(config_cls, field.name)
        extra = [f"choices: {', '.join(choices)}{', none' if optional else ''}"] if choices else []
        extra.append(f"default: {_shown(shown[field.name])}")
        text = f"{doc} ({'; '.join(extra)})".strip().replace("%", "%%")
        flag = f"--{field.name}"
        if kind is bool:
            parse: Any = _bool
            metavar = "{true,false}" if not optional else "{true,false,none}"
        else:
            parse = kind if kind in (int, float) else str
            braces = "{" + ",".join([*choices, *(["none"] if optional else [])]) + "}"
            metavar = braces if choices and len(braces) <= 40 else field.name.upper()
        if optional:  # `--flag none` switches an optional default off
            parse = _or_none(parse)
        if kind is bool:
            parser.add_argument(flag, nargs="?", const=True, type=parse, default=None, metavar=metavar, help=text)
        else:
            parser.add_argument(flag, type=parse, default=None, metavar=metavar, help=text)


def config_from_args(args: argparse.Namespace, config_cls: type = TrainConfig, defaults_file: str | Path | None = None):
    """Dataclass defaults ← the packaged YAML named by ``add_config_arguments(defaults=)`` ← ``defaults_file`` ←
    ``--config`` YAML ← explicit flags; validated."""
    values: dict[str, Any] = {}
    packaged = getattr(args, "_config_defaults", None)
    if packaged:
        values.update(recipe_defaults(packaged, config_cls))
    chosen: dict[str, Any] = {}  # what this run sets itself: its YAML files and flags
    for source in (defaults_file, getattr(args, "config", None)):
        if source:
            chosen.update(load_yaml(source, config_cls))
    for field in dataclasses.fields(config_cls):
        given = getattr(args, field.name, None)
        if given is not None:
            chosen[field.name] = None if given is NONE_GIVEN else given
    if chosen.get("task"):  # a preset fills what the run does not set (skewtune.training.presets)
        names = {f.name for f in dataclasses.fields(config_cls)}
        values.update({k: v for k, v in get_preset(chosen["task"]).values().items() if k in names})
    values.update(chosen)
    config = config_cls(**values)
    config.validate()
    return config


def safe_yaml_load(text: str) -> Any:
    """Parse YAML with the safe loader, refusing anchors/aliases (no "billion laughs" expansion) and duplicate
    keys; raises ``yaml.YAMLError`` (a :class:`yaml.constructor.ConstructorError` for the refused constructs)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader without anchors, aliases or merge keys, and with unique mapping keys."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "anchors and aliases (&name / *name) are not allowed", event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise yaml.constructor.ConstructorError(
                        None, None, "merge keys (<<) are not allowed", key_node.start_mark)
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def _yaml_error_line(exc: Exception) -> str:
    """The first line of a YAML error with the position of its problem (``line N``)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _yaml_int(key: str, value: Any, path: Path) -> int:
    """An integer flag's YAML value: an integer, or text the command line accepts as one (``"3"``); a fraction,
    a boolean or other text is refused rather than rounded."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{path}: '{key}' must be a whole number, got {value!r}", f"set {key}: <whole number>, e.g. {key}: 8")


def _yaml_float(key: str, value: Any, path: Path) -> float:
    """A number flag's YAML value: a number, or text the command line accepts as one (``"1e-3"``); a boolean is
    refused."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{path}: '{key}' must be a number, got {value!r}", f"set {key}: <number>")


def load_yaml(path: str | Path, config_cls: type = TrainConfig) -> dict[str, Any]:
    """The ``flag: value`` mapping of a YAML config, type-checked against ``config_cls``'s fields.

    Anchors/aliases and repeated keys are refused; an integer flag takes whole numbers only (``2.7`` and ``true``
    are refused, not rounded), a text flag takes a scalar only (a list or mapping is refused, not stringified).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "check the --config path")
    try:
        data = safe_yaml_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML ({_yaml_error_line(exc)})",
                          "fix the file: plain 'flag: value' lines, each flag once, no &anchors or *aliases") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of flag: value", "write one 'flag: value' per line")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ConfigError(f"unknown key(s) in {path}: {capped(unknown)}", "see --help for the valid flags")
    hints = typing.get_type_hints(config_cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = _base_type(hints[key])
        if value is None:
            out[key] = None
        elif isinstance(value, list | dict | set):
            raise ConfigError(f"{path}: '{key}' must be a single value, got a YAML {type(value).__name__}",
                              f"write {key}: <value> on one line")
        elif kind is str:
            out[key] = str(value)
        elif kind is bool and not isinstance(value, bool):
            try:
                out[key] = _bool(value)
            except argparse.ArgumentTypeError:
                raise ConfigError(f"{path}: '{key}' must be true or false, got {value!r}", f"set {key}: true") from None
        elif kind is int:
            out[key] = _yaml_int(key, value, path)
        elif kind is float:
            out[key] = _yaml_float(key, value, path)
        else:
            out[key] = value
    return out
