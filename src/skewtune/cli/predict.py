"""``skewtune predict``: label + probabilities per input row, written as JSONL (atomically)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from skewtune.cli.main import positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict labels with a saved adapter",
        description="Predict a label and class probabilities for every input text with a saved adapter; writes one "
                    "JSON object per line: the input row's columns (e.g. id), then label and probabilities, one line "
                    "per input row, in order (empty texts are refused, with their count). A shared adapter is fetched "
                    "first with 'skewtune hub pull NAME'.")
    parser.add_argument("--adapter", required=True,
                        help="adapter folder saved by skewtune (skewtune.json + PEFT files), e.g. runs/x/adapter; "
                             "with --server, the name the server serves it under")
    parser.add_argument("--input", required=True,
                        help="texts: .txt (one per line), .csv, .tsv, .jsonl, .json or .parquet")
    parser.add_argument("--output", required=True,
                        help="predictions file (.jsonl), written atomically; an existing file is kept unless "
                             "--overwrite; it may not be the input or lie inside the adapter or backbone folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    parser.add_argument("--text_column", default=None,
                        help="column of the texts in a table input (default: the column the adapter was trained on "
                             "when the file has it, else 'text')")
    parser.add_argument("--text_pair_column", default=None,
                        help="column of the second texts for an adapter trained on sentence pairs (default: the "
                             "pair column it was trained on)")
    parser.add_argument("--task", default=None,
                        help="task of a merged multi-task adapter ('skewtune hub info' / skewtune.json list them; "
                             "default: its default task, with a warning)")
    parser.add_argument("--batch_size", type=positive_int, default=128,
                        help="texts per forward pass; lower it when memory runs short")
    parser.add_argument("--quant", choices=["8bit", "4bit", "none"], default=None,
                        help="load the backbone's weights as LLM.int8 (8bit), NF4 (4bit) or fp32 (none) "
                             "(choices: 8bit, 4bit, none; default: as trained)")
    parser.add_argument("--merge", action="store_true",
                        help="fold LoRA/IA3 into a dense backbone (faster serving; unquantized)")
    parser.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="compute precision; auto: fp32 unmerged, bf16 merged where the hardware has native "
                             "bf16 (CPUs with AMX-BF16 or AVX512-BF16, CUDA), else fp32; fp32, bf16 or fp16 "
                             "force that precision")
    parser.add_argument("--max_length", type=positive_int, default=None,
                        help="subword tokens per text; longer texts are truncated (default: as trained, at most the "
                             "backbone's positions)")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the input file")
    parser.add_argument("--force_base", action="store_true",
                        help="load the adapter even when the backbone's fingerprint differs from the one it records")
    parser.add_argument("--server", default=None, metavar="URL",
                        help="send the texts to a running 'skewtune serve' at URL instead of loading the adapter "
                             "here (same output records; --batch_size texts per request)")
    parser.add_argument("--api_key", default=None,
                        help="the server's API key (default: the SKEWTUNE_API_KEY environment variable)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # lazy: 'skewtune --help' must not import torch, and a bad adapter folder is reported before peft imports
    from skewtune.adapters.io import check_folder_safe, read_manifest

    check_output_place(args)
    if args.server:
        return _predict_remote(args)
    check_folder_safe(args.adapter)
    manifest = read_manifest(args.adapter)
    bases = [manifest.get(key) for key in ("backbone", "base_path")] if isinstance(manifest, dict) else []
    args.backbone_folders = [b for b in bases if isinstance(b, str) and b and Path(b).is_dir()]  # read too
    check_output_place(args)
    from skewtune.utils.io import check_writable_dir
    from skewtune.utils.locks import OutputLock

    check_writable_dir(Path(args.output).parent if str(Path(args.output).parent) else ".")
    with OutputLock(args.output, flag="--output", is_file=True):  # one predict per output file at a time
        return _predict(args, manifest)


def _predict(args: argparse.Namespace, manifest: dict) -> int:
    from skewtune.adapters.io import select_task

    select_task(manifest, args.task, args.adapter)  # a wrong --task fails before the input is read
    from skewtune.inference.predictor import load_adapter, prediction_record, read_prediction_inputs

    trained_column = (manifest.get("training") or {}).get("text_column")
    pair_column = args.text_pair_column or manifest.get("text_pair_column")
    inputs = read_prediction_inputs(args.input, args.text_column, args.encoding, trained_column=trained_column,
                                    pair_column=pair_column)
    if manifest.get("task_type") == "token_cls":
        rows = _predict_tags(args, inputs.texts)
    else:
        classifier = load_adapter(args.adapter, quant=args.quant, merge=args.merge, max_length=args.max_length,
                                  dtype=args.dtype, task=args.task, force_base=args.force_base)
        rows = classifier.predict(inputs.texts, batch_size=args.batch_size, progress=True, pairs=inputs.pairs)
    records = (prediction_record(row, inputs.text_column, text, pred)
               for row, text, pred in zip(inputs.rows, inputs.texts, rows))
    lines = [json.dumps(record, ensure_ascii=False, default=str) for record in records]
    write_predictions(args, "\n".join(lines) + "\n")
    print(f"wrote {len(rows)} predictions to {args.output}")
    return 0


def _predict_remote(args: argparse.Namespace) -> int:
    """``--server``: the records of a local prediction, computed by a running ``skewtune serve``."""
    from skewtune.inference.predictor import prediction_record, read_prediction_inputs
    from skewtune.serve.client import Client
    from skewtune.utils.io import check_writable_dir
    from skewtune.utils.locks import OutputLock

    check_writable_dir(Path(args.output).parent if str(Path(args.output).parent) else ".")
    with Client(args.server, api_key=args.api_key or os.environ.get("SKEWTUNE_API_KEY"),
                chunk_size=args.batch_size) as client:
        served = next((a for a in client.adapters() if a.get("name") == args.adapter), None)
        if served is None:
            from skewtune.errors import ConfigError

            raise ConfigError(f"the server at {args.server} serves no adapter named '{args.adapter}'",
                              "GET /v1/adapters lists them (or load it with POST /v1/adapters)")
        inputs = read_prediction_inputs(args.input, args.text_column, args.encoding,
                                        trained_column=served.get("text_column"))
        with OutputLock(args.output, flag="--output", is_file=True):
            rows = client.predict(args.adapter, inputs.texts)
            records = (prediction_record(row, inputs.text_column, text, pred)
                       for row, text, pred in zip(inputs.rows, inputs.texts, rows))
            write_predictions(args, "\n".join(json.dumps(r, ensure_ascii=False, default=str) for r in records) + "\n")
    print(f"wrote {len(rows)} predictions to {args.output}")
    return 0


def _predict_tags(args: argparse.Namespace, texts: list[str]) -> list[dict]:
    """A tagging adapter's ``{"words", "tags"}`` per text (plus ``"spans"`` with character offsets for BIO/BIOES
    tags), through the serving engine in this process (the same checks and decoding as ``skewtune serve``), in
    batches of similar length."""
    import sys

    from skewtune.backbones import check_max_length
    from skewtune.errors import ConfigError
    from skewtune.serve.pool import AdapterPool

    if args.merge:
        raise ConfigError("--merge applies to classification adapters, not to a tagging adapter", "drop --merge")
    pool = AdapterPool(quant=args.quant, dtype=args.dtype, force_base=args.force_base)
    served = pool.add(args.adapter)
    if args.max_length is not None:
        check_max_length(args.max_length, pool.backbone_config(served), str(served.manifest.get("backbone")))
        served.max_length = args.max_length
    encoded, cut = pool.encode(served, texts)
    if cut:
        print(f"{len(cut)} of {len(texts)} texts are longer than {served.max_length} tokens: their last words are "
              "tagged null", file=sys.stderr)
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    rows: list[dict] = [{} for _ in texts]
    for start in range(0, len(order), args.batch_size):
        chunk = order[start:start + args.batch_size]
        for i, record in zip(chunk, pool.predict_rows([(served, encoded[i]) for i in chunk])):
            rows[i] = record
    return rows


def check_output_place(args: argparse.Namespace) -> None:
    """Refuse an ``--output`` that overlaps what the command reads (the input, the adapter folder, its backbone
    folder), is a folder, or exists without ``--overwrite``: before any work, and again at the write."""
    from skewtune.errors import OutputError
    from skewtune.utils.io import check_no_overlap

    check_no_overlap(args.output, {"the --input file": args.input, "the --adapter folder": args.adapter}, "--output")
    for folder in getattr(args, "backbone_folders", []):
        check_no_overlap(args.output, {"the adapter's backbone folder": folder}, "--output")
    out = Path(args.output)
    if out.is_dir():
        raise OutputError(f"--output {out} is a folder", "name a predictions file, e.g. preds.jsonl")
    if os.path.lexists(out) and not args.overwrite:
        raise OutputError(f"--output {out} already exists", "pass --overwrite to replace it, or choose another --output")


def write_predictions(args: argparse.Namespace, text: str) -> None:
    """Write ``--output`` atomically (the caller holds its writer lock); the checks of :func:`check_output_place`
    are repeated first, so a file that appeared meanwhile is kept."""
    from skewtune.utils.io import atomic_write_text

    check_output_place(args)
    atomic_write_text(args.output, text)
