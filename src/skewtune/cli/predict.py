"""``skewtune predict``: label + probabilities per input row, written as JSONL (atomically)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict labels with a saved adapter",
        description="Predict a label and class probabilities for every input text with a saved adapter; writes one "
                    "JSON object per line. A shared adapter is fetched first with 'skewtune hub pull NAME'.")
    parser.add_argument("--adapter", required=True,
                        help="adapter folder saved by skewtune (skewtune.json + PEFT files), e.g. runs/x/adapter")
    parser.add_argument("--input", required=True,
                        help="texts: .txt (one per line), .csv, .tsv, .jsonl, .json or .parquet")
    parser.add_argument("--output", required=True, help="predictions file (.jsonl), written atomically")
    parser.add_argument("--text_column", default="text", help="column of the texts in a table input")
    parser.add_argument("--batch_size", type=int, default=128, help="texts per forward pass")
    parser.add_argument("--quant", choices=["8bit", "4bit", "none"], default=None,
                        help="backbone weights (choices: 8bit, 4bit, none; default: as trained)")
    parser.add_argument("--merge", action="store_true",
                        help="fold LoRA/IA3 into a dense backbone (faster serving; unquantized)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="compute precision; auto: fp32 unmerged, bf16 merged where the hardware has native "
                             "bf16 (CPUs with AMX-BF16 or AVX512-BF16, CUDA), else fp32")
    parser.add_argument("--max_length", type=int, default=128, help="subword tokens per text; longer texts are truncated")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the input file")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from skewtune.inference import load_adapter, read_inputs
    from skewtune.utils.io import atomic_write_text, check_writable_dir

    texts = read_inputs(args.input, args.text_column, args.encoding)
    check_writable_dir(Path(args.output).parent if str(Path(args.output).parent) else ".")
    classifier = load_adapter(args.adapter, quant=args.quant, merge=args.merge, max_length=args.max_length,
                              dtype=args.dtype)
    rows = classifier.predict(texts, batch_size=args.batch_size, progress=True)
    lines = [json.dumps({"text": t, **r}, ensure_ascii=False) for t, r in zip(texts, rows)]
    atomic_write_text(args.output, "\n".join(lines) + "\n")
    print(f"wrote {len(rows)} predictions to {args.output}")
    return 0
