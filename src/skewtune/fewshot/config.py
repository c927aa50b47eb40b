"""Few-shot run settings: every :class:`~skewtune.training.TrainConfig` flag plus the k-shot ones."""

from __future__ import annotations

import dataclasses
import math

from skewtune.adapters.layers import parse_layers  # noqa: F401  (the one --lora_layers syntax; re-exported)
from skewtune.errors import ConfigError
from skewtune.fewshot.pairs import STRATEGIES
from skewtune.fewshot.sampling import DISTRIBUTIONS, check_shots, parse_seeds
from skewtune.training.config import SAMPLER_NAMES, TrainConfig, choice

CONTRASTIVE_LOSSES = ("cosine", "cosent", "angle", "contrastive", "online_contrastive")
HEADS = ("logistic", "linear")
# kept in step with skewtune.fewshot.methods.METHODS (a test checks it; importing it here would be a cycle)
METHOD_NAMES = ("prompt_allpairs_lora", "allpairs_lora", "contrastive_lora", "lora_head", "prefix_head",
                "prompt_probe", "linear_probe")


@dataclasses.dataclass
class FewShotConfig(TrainConfig):
    """``TrainConfig`` + k-shot sampling, the method and its contrastive/head settings.

    The defaults equal ``src/skewtune/configs/few_shot.yaml`` (a test checks it); the model and optimisation values
    that differ from the classification recipe's are overridden below.
    """

    shots: int = 8  # k: examples per class (per_class) or k·C in total (natural)
    seeds: str = "5"  # a count N (seeds 0..N-1) or a comma list; each seed draws its own k-shot set
    method: str = choice("prompt_allpairs_lora", METHOD_NAMES, "few-shot method")  # how the k-shot adapter is trained (skewtune.fewshot.METHODS)
    shots_distribution: str = choice("per_class", DISTRIBUTIONS, "--shots_distribution")  # per_class: k per class; natural: k·C examples following the training distribution
    test_samples: int | None = None  # fixed test subset (same rows for every method and seed); none: all
    validation_samples: int | None = 256  # validation rows used to pick the adapter to save among the seeds
    # contrastive stage (contrastive_lora, allpairs_lora)
    contrastive_loss: str = choice("cosine", CONTRASTIVE_LOSSES, "--contrastive_loss")  # sentence-transformers loss of the contrastive stage
    pair_strategy: str = choice("oversampling", STRATEGIES, "--pair_strategy")  # SetFit pair sampling
    num_iterations: int | None = None  # SetFit's num_iterations: pairs of each kind per example (overrides --pair_strategy)
    body_epochs: int = 1  # epochs of the contrastive stage over the pairs (contrastive_lora)
    allpairs_steps: int | None = None  # steps of the all-pairs stage; none: auto (a quarter of SetFit's encoder passes)
    head: str = choice("logistic", HEADS, "--head")  # head on the embeddings: logistic (scikit-learn, SetFit's default) or linear (torch, uses --loss)
    augment_copies: int = 0  # EDA copies per k-shot example (all classes; --augment names the operation, default eda)
    label_prompts: bool | None = None  # add label-word prompts as labelled rows; none: on for prompt_* methods
    label_templates: str | None = None  # "|"-separated templates with {} for the label word; none: 7 generic ones
    label_words: str | None = None  # "label=word|word;label2=word"; none: each label's own name
    prompt_weight: float = 2.0  # weight of one prompt row in the head, relative to one real example
    normalize_embeddings: bool = True  # L2-normalise the mean-pooled sentence embeddings
    # TrainConfig fields whose few-shot defaults differ from the classification recipe's
    learning_rate: str = "2e-3"  # peak learning rate of the adapter (auto is not available for k-shot sets)
    num_train_epochs: float = 10.0  # lora_head / prefix_head: epochs over the k-shot set
    per_device_train_batch_size: int = 16  # k-shot rows per batch
    per_device_eval_batch_size: int = 128  # rows per batch when scoring validation and test
    warmup_ratio: float = 0.1  # share of the optimizer steps spent warming the learning rate up from 0, in [0, 1)
    lora_dropout: float = 0.1  # dropout on the LoRA branch's input, in [0, 1)
    backbone_dropout: float | None = None  # every dropout of the frozen backbone and head, in [0, 1); none keeps the backbone's own (BERT: 0.1)
    target_modules: str | None = "all"  # layers the adapter wraps: all (every linear layer of the blocks), attention (query/value projections) or comma-separated module names
    sampler: str | None = choice(None, SAMPLER_NAMES, "sampler")  # class_balanced, sqrt_frequency or random_over on the k-shot set; none: as drawn

    def seed_list(self) -> list[int]:
        return parse_seeds(self.seeds)

    def validate(self) -> None:
        super().validate()
        check_shots(self.shots)
        self.seed_list()
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

