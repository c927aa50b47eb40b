"""Few-shot run settings: every :class:`~skewtune.training.TrainConfig` flag plus the k-shot ones."""

from __future__ import annotations

import dataclasses
import math

from skewtune.errors import ConfigError
from skewtune.fewshot.pairs import STRATEGIES
from skewtune.fewshot.sampling import DISTRIBUTIONS, check_shots, parse_seeds
from skewtune.training.config import TrainConfig

CONTRASTIVE_LOSSES = ("cosine", "cosent", "angle", "contrastive", "online_contrastive")
HEADS = ("logistic", "linear")


@dataclasses.dataclass
class FewShotConfig(TrainConfig):
    """``TrainConfig`` + k-shot sampling, the method and its contrastive/head settings."""

    shots: int = 8  # k: examples per class (per_class) or k·C in total (natural)
    seeds: str = "5"  # a count N (seeds 0..N-1) or a comma list; each seed draws its own k-shot set
    method: str = "prompt_allpairs_lora"  # see skewtune.fewshot.METHODS
    shots_distribution: str = "per_class"  # per_class | natural (k·C examples following the training distribution)
    test_samples: int | None = None  # fixed test subset (same rows for every method and seed); default: all
    validation_samples: int | None = 256  # validation rows used to pick the adapter to save among the seeds
    # contrastive stage (contrastive_lora, allpairs_lora)
    contrastive_loss: str = "cosine"  # sentence-transformers loss: cosine | cosent | angle | contrastive | online_contrastive
    pair_strategy: str = "oversampling"  # SetFit pair sampling: oversampling | undersampling | unique
    num_iterations: int | None = None  # SetFit's num_iterations: pairs of each kind per example (overrides pair_strategy)
    body_epochs: int = 1  # epochs of the contrastive stage over the pairs (contrastive_lora)
    allpairs_steps: int | None = None  # steps of the all-pairs stage; default: auto (a quarter of SetFit's encoder passes)
    head: str = "logistic"  # head on the embeddings: logistic (scikit-learn, SetFit's default) | linear (torch, uses --loss)
    augment_copies: int = 0  # EDA copies per k-shot example (all classes; --augment names the operation, default eda)
    lora_layers: str | None = None  # LoRA only in these transformer layers: "top2", "3,4,5"; default all layers
    label_prompts: bool | None = None  # add label-word prompts as labelled rows (default: on for prompt_* methods)
    label_templates: str | None = None  # "|"-separated templates with {} for the label word (default: 7 generic ones)
    label_words: str | None = None  # "label=word|word;label2=word" (default: each label's own name)
    prompt_weight: float = 2.0  # weight of one prompt row in the head, relative to one real example
    normalize_embeddings: bool = True

    def seed_list(self) -> list[int]:
        return parse_seeds(self.seeds)

    def validate(self) -> None:
        super().validate()
        check_shots(self.shots)
        self.seed_list()
        if self.shots_distribution not in DISTRIBUTIONS:
            raise ConfigError(f"unknown --shots_distribution '{self.shots_distribution}'",
                              f"use one of: {', '.join(DISTRIBUTIONS)}")
        if self.contrastive_loss not in CONTRASTIVE_LOSSES:
            raise ConfigError(f"unknown --contrastive_loss '{self.contrastive_loss}'",
                              f"use one of: {', '.join(CONTRASTIVE_LOSSES)}")
        if self.pair_strategy not in STRATEGIES:
            raise ConfigError(f"unknown --pair_strategy '{self.pair_strategy}'", f"use one of: {', '.join(STRATEGIES)}")
        if self.head not in HEADS:
            raise ConfigError(f"unknown --head '{self.head}'", f"use one of: {', '.join(HEADS)}")
        for name in ("body_epochs", "allpairs_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be ≥ 1, got {getattr(self, name)}", f"pass a positive --{name}")
        if self.num_iterations is not None and self.num_iterations < 1:
            raise ConfigError(f"--num_iterations must be ≥ 1, got {self.num_iterations}", "pass e.g. 20 or leave it unset")
        if self.augment_copies < 0:
            raise ConfigError(f"--augment_copies must be ≥ 0, got {self.augment_copies}", "pass 0, 1, 2, …")
        for name in ("test_samples", "validation_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be ≥ 1, got {value}", f"pass a positive --{name} or leave it unset")
        if not (self.prompt_weight > 0 and math.isfinite(self.prompt_weight)):
            raise ConfigError(f"--prompt_weight must be a positive number, got {self.prompt_weight}", "pass e.g. 2")
        if self.label_templates is not None:
            templates = [t for t in self.label_templates.split("|") if t.strip()]
            if not templates or any(t.count("{}") != 1 for t in templates):
                raise ConfigError(f"--label_templates '{self.label_templates}': each template needs one {{}}",
                                  "pass e.g. 'this is {}|it was {}'")
        if self.learning_rate_value() is None:
            raise ConfigError("--learning_rate auto is not available for k-shot sets (too few steps for a range test)",
                              "pass a number, e.g. --learning_rate 1e-3")
        if self.post_hoc:
            raise ConfigError("--post_hoc is not supported by the few-shot recipe",
                              "drop it (k-shot runs have no validation budget to fit a decision rule on)")
        if self.resume_from_checkpoint:
            raise ConfigError("--resume_from_checkpoint is not supported by the few-shot recipe",
                              "few-shot runs are short: rerun them")
        from skewtune.fewshot.methods import METHODS

        method = METHODS.get(self.method)
        check_shots(self.shots, contrastive=method.contrastive)
        if self.sampler and self.sampler not in ("class_balanced", "sqrt_frequency", "random_over"):
            raise ConfigError(f"--sampler {self.sampler} is not available for k-shot sets",
                              "use class_balanced, sqrt_frequency or random_over (the sets are too small to clean)")


def parse_layers(spec: str | None, num_layers: int) -> list[int] | None:
    """``None`` → all layers; ``"top2"`` → the last two; ``"3,4,5"`` → those (0-based)."""
    if spec is None or str(spec).strip() in ("", "all"):
        return None
    text = str(spec).strip()
    if text.startswith("top"):
        try:
            n = int(text[3:])
        except ValueError:
            raise ConfigError(f"--lora_layers '{spec}' is not topN or a comma list", "pass e.g. top2 or 3,4,5") from None
        if not 1 <= n <= num_layers:
            raise ConfigError(f"--lora_layers {spec}: the backbone has {num_layers} layers", f"pass top1 … top{num_layers}")
        return list(range(num_layers - n, num_layers))
    try:
        layers = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"--lora_layers '{spec}' is not topN or a comma list", "pass e.g. top2 or 3,4,5") from None
    bad = [x for x in layers if not 0 <= x < num_layers]
    if bad or not layers:
        raise ConfigError(f"--lora_layers {spec}: layers must be in 0..{num_layers - 1}", "pass e.g. top2 or 3,4,5")
    return layers
