"""``skewtune plan``: estimate a LoRA training run's peak memory before training, and refuse what cannot fit.

The estimate (:func:`skewtune.training.memory.plan_memory`) reads only the backbone's config.json; its defaults are
``skewtune train``'s. Heavy imports happen inside the handler so ``skewtune --help`` stays fast.
"""

from __future__ import annotations

import argparse

from skewtune.cli.main import positive_int


def _bool(text: str) -> bool:
    from skewtune.training.config import _bool as parse

    return parse(text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from skewtune.backbones.modes import QUANT_MODES
    from skewtune.training.config import config_defaults

    train = config_defaults(defaults="lora_sentiment")  # the plan's defaults are the training run's
    parser = subparsers.add_parser(
        "plan", help="estimate peak memory of a training run before starting it",
        description="Estimate the peak resident memory of `skewtune train` (LoRA) from the backbone's config.json: "
                    "weights per quant mode, trainable parameters with AdamW states, activations (with gradient "
                    "checkpointing: block inputs only) and the runtime baseline; compare it with the memory "
                    "available. Exit status 2 with one line when it cannot fit. The factors were fitted on "
                    "benchmarks/results/memory.json (within 25% of the measured peak RSS on every row).")
    parser.add_argument("--backbone", default=train["backbone"],
                        help="registered backbone (minilm, me5-small, smollm2) or a local Hugging Face folder")
    parser.add_argument("--quant", choices=QUANT_MODES, default=train["quant"],
                        help="frozen backbone weights: LLM.int8 (8bit), NF4 (4bit) or fp32 (none) "
                             "(choices: %(choices)s; default: %(default)s)")
    parser.add_argument("--batch", type=positive_int, default=train["per_device_train_batch_size"],
                        help="training rows per batch and process (--per_device_train_batch_size)")
    parser.add_argument("--max_length", type=positive_int, default=train["max_length"],
                        help="subword tokens per text; the plan assumes every batch is this long")
    parser.add_argument("--gradient_checkpointing", type=_bool, nargs="?", const=True, default=False,
                        metavar="{true,false}",
                        help="recompute block activations in the backward pass (default: false)")
    parser.add_argument("--lora_r", type=positive_int, default=train["lora_r"],
                        help="rank of the LoRA update; its trainable parameters grow in proportion")
    parser.add_argument("--target_modules", default=train["target_modules"],
                        help="layers LoRA wraps: attention, all, or comma-separated module names")
    parser.add_argument("--quantize_embeddings", type=_bool, default=None, metavar="{true,false}",
                        help="quantize the word embedding too (default: on when --quant is not none)")
    parser.add_argument("--num_labels", type=positive_int, default=2, help="classes of the classification head")
    parser.add_argument("--memory_gb", type=float, default=None,
                        help="memory to plan against, GB (default: what the system has available now)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import math

    from skewtune.backbones import resolve_backbone
    from skewtune.errors import ConfigError
    from skewtune.training.memory import MB, available_memory_bytes, fitting_alternatives, plan_memory

    if args.memory_gb is not None and not (args.memory_gb > 0 and math.isfinite(args.memory_gb)):
        raise ConfigError(f"--memory_gb must be a positive number, got {args.memory_gb}", "pass e.g. --memory_gb 16")
    path = resolve_backbone(args.backbone).path
    settings = {"quant": args.quant, "batch": args.batch, "max_length": args.max_length,
                "gradient_checkpointing": bool(args.gradient_checkpointing), "lora_r": args.lora_r,
                "target_modules": args.target_modules or "all", "quantize_embeddings": args.quantize_embeddings,
                "num_labels": args.num_labels}
    plan = plan_memory(path, **settings)
    budget = args.memory_gb * 1024 * MB if args.memory_gb is not None else float(available_memory_bytes())
    source = "given by --memory_gb" if args.memory_gb is not None else "available now"
    print(f"skewtune plan: {args.backbone} ({plan.settings['params'] / 1e6:.1f}M parameters), --quant {args.quant}, "
          f"batch {args.batch} × {args.max_length} tokens, gradient checkpointing "
          f"{'on' if args.gradient_checkpointing else 'off'}")
    for line in plan.lines():
        print(f"  {line}")
    if plan.total <= budget:
        print(f"fits: {plan.total_mb:,.0f} MB of {budget / MB:,.0f} MB ({source}, {100 * plan.total / budget:.0f}%)")
        return 0
    options = fitting_alternatives(path, budget, **settings)
    fix = ("try " + ", or ".join(options)) if options else "use a machine with more memory or a smaller backbone"
    raise ConfigError(f"the run needs about {plan.total_mb:,.0f} MB but only {budget / MB:,.0f} MB are {source}", fix)
