"""Run configuration: one dataclass, filled from a YAML file and/or command-line flags (flags win)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import types
import typing
from pathlib import Path
from typing import Any

from skewtune.errors import ConfigError


@dataclasses.dataclass
class TrainConfig:
    """Every recipe/CLI flag. Field docs become ``--help`` text."""

    # data
    dataset: str = "tweets"  # registered name (tweets) or a local csv/tsv/jsonl/json/parquet file
    text_column: str = "text"
    label_column: str = "label"
    validation_file: str | None = None
    test_file: str | None = None
    encoding: str = "utf-8"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_length: int = 128  # longer texts are truncated, with a warning counting them
    skip_empty_texts: bool = False
    # model
    backbone: str = "minilm"
    quant: str = "8bit"  # 8bit | 4bit | none
    quantize_embeddings: bool | None = None  # word embedding int8 (8bit) / NF4 (4bit); default: on when quantized
    adapter: str = "lora"  # lora | dora | rslora | ia3 | prefix | prompt
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    backbone_dropout: float | None = None  # every dropout of the frozen backbone + head; None keeps its own (BERT 0.1)
    target_modules: str | None = None  # comma list, "attention", "all" (default: all linear layers)
    num_virtual_tokens: int = 16
    lora_layers: int | None = None  # adapt only the top N transformer layers (no backward below them: faster)
    # optimisation
    learning_rate: str = "1e-3"  # a float, or "auto" for the LR range test
    weight_decay: float = 0.01
    num_train_epochs: float = 1.0
    max_steps: int | None = None
    per_device_train_batch_size: int = 32
    per_device_eval_batch_size: int = 128
    max_tokens_per_batch: int | None = None  # token budget for length-grouped batches
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "linear"  # linear | cosine | constant (all with warmup)
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16
    seed: int = 42
    # imbalance (skewtune.imbalance registries)
    loss: str = "ce"  # ce | weighted_ce | sqrt_weighted_ce | focal | class_balanced | ldam | logit_adjusted | dice | label_smoothing
    loss_options: str | None = None  # keywords of the loss, e.g. "gamma=2" (focal), "drw_start=0.8,max_m=0.3" (ldam)
    sampler: str | None = None  # row resamplers (random_over, random_under, tomek, …) or class_balanced | sqrt_frequency
    sampler_ratio: float | None = None  # minority/majority size after row resampling, in (0, 1]
    augment: str | None = None  # eda | synonym_replacement | random_insertion | random_swap | random_deletion
    augment_ratio: float = 0.5  # augment minority classes up to this fraction of the largest class
    post_hoc: str | None = None  # logit_adjustment | bias_tuning (fitted on validation, applied by predict)
    post_hoc_options: str | None = None  # keywords of the rule, e.g. "tau=auto" or "tau=0.5" (logit_adjustment)
    # outputs and runtime
    output_dir: str | None = None  # default outputs/<recipe>/<timestamp>
    overwrite_output_dir: bool = False
    eval_every_epoch: bool = True
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    keep_checkpoints: int = 2
    resume_from_checkpoint: str | None = None  # a checkpoint folder or "latest"
    on_nan: str = "stop"  # stop | skip
    baselines: bool = True  # compute majority and TF-IDF+LR baselines on the same splits
    report_plots: bool = True

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
        from skewtune.backbones.registry import QUANT_MODES

        if self.quant not in QUANT_MODES:
            raise ConfigError(f"unknown quant mode '{self.quant}'", f"use one of: {', '.join(QUANT_MODES)}")
        from skewtune.backbones.quant import resolve_quantize_embeddings

        resolve_quantize_embeddings(self.quant, self.quantize_embeddings)
        self.learning_rate_value()
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "max_length", "lora_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be ≥ 1, got {getattr(self, name)}", f"pass a positive --{name}")
        if self.num_train_epochs <= 0 and not self.max_steps:
            raise ConfigError("--num_train_epochs must be > 0", "pass e.g. --num_train_epochs 1")
        if self.lr_scheduler_type not in ("linear", "cosine", "constant"):
            raise ConfigError(f"unknown lr_scheduler_type '{self.lr_scheduler_type}'", "use one of: constant, cosine, linear")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ConfigError(f"unknown mixed_precision '{self.mixed_precision}'", "use one of: auto, bf16, fp16, no")
        if self.on_nan not in ("stop", "skip"):
            raise ConfigError(f"unknown on_nan '{self.on_nan}'", "use one of: skip, stop")
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
        for name in ("max_steps", "max_train_samples", "max_eval_samples", "max_tokens_per_batch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be ≥ 1 when given, got {value}", f"pass a positive --{name} or leave it out")
        if self.checkpoint_every_steps < 0:
            raise ConfigError(f"--checkpoint_every_steps must be ≥ 0 (0: epoch ends only), got {self.checkpoint_every_steps}",
                              "pass e.g. 500")
        if self.keep_checkpoints < 1:
            raise ConfigError(f"--keep_checkpoints must be ≥ 1, got {self.keep_checkpoints}", "pass e.g. 2")
        if self.target_modules is not None and not [t for t in self.target_modules.split(",") if t.strip()]:
            raise ConfigError("--target_modules is empty", "leave it out for the default, or pass attention, all or names")
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


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type = TrainConfig) -> None:
    """One ``--flag`` per config field (defaults left unset so YAML values are not overridden)."""
    parser.add_argument("--config", help="YAML file setting any of the flags below")
    hints = typing.get_type_hints(config_cls)
    for field in dataclasses.fields(config_cls):
        kind = _base_type(hints[field.name])
        flag = f"--{field.name}"
        if kind is bool:
            parser.add_argument(flag, nargs="?", const=True, type=_bool, default=None,
                                help=f"(default: {field.default})")
        else:
            parse = kind if kind in (int, float) else str
            if type(None) in typing.get_args(hints[field.name]):  # optional: `--flag none` switches it off
                parse = _or_none(parse)
            parser.add_argument(flag, type=parse, default=None, help=f"(default: {field.default})")


def config_from_args(args: argparse.Namespace, config_cls: type = TrainConfig, defaults_file: str | Path | None = None):
    """Defaults ← ``defaults_file`` ← ``--config`` YAML ← explicit flags."""
    values: dict[str, Any] = {}
    for source in (defaults_file, getattr(args, "config", None)):
        if source:
            values.update(load_yaml(source, config_cls))
    for field in dataclasses.fields(config_cls):
        given = getattr(args, field.name, None)
        if given is not None:
            values[field.name] = None if given is NONE_GIVEN else given
    config = config_cls(**values)
    config.validate()
    return config


def load_yaml(path: str | Path, config_cls: type = TrainConfig) -> dict[str, Any]:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "check the --config path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML ({str(exc).splitlines()[0]})", "fix the file") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of flag: value", "write one 'flag: value' per line")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {path}: {', '.join(unknown)}", "see --help for the valid flags")
    hints = typing.get_type_hints(config_cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        kind = _base_type(hints[key])
        if value is None:
            out[key] = None
        elif kind is str:
            out[key] = str(value)
        elif kind is bool and not isinstance(value, bool):
            out[key] = _bool(value)
        elif kind in (int, float) and not isinstance(value, int | float):
            raise ConfigError(f"{path}: '{key}' must be a number, got {value!r}", f"set {key}: <number>")
        else:
            out[key] = kind(value) if kind in (int, float) else value
    return out
