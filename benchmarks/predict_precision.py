"""Prediction speed and label agreement per precision, on a fully trained main-job adapter (issue: performance).

``benchmarks/throughput.py`` times prediction with a freshly initialised adapter; this one checks what bf16 costs in
quality on a real one: the main job's adapter (8-bit MiniLM, LoRA r=8), on the first 2,048 test tweets, predicted
as trained (unmerged, int8 layers, fp32 compute), unmerged under bf16 autocast, on an fp32 backbone unmerged
(fp32, bf16) and merged (fp32, bf16). Reports samples/s (best of 2 passes after a warm-up) in batches of 128 and
one text per call, macro-F1 and the share of labels equal to the as-trained path.

    accelerate launch recipes/lora_sentiment.py --output_dir outputs/main   # the adapter (about 7 minutes)
    python benchmarks/predict_precision.py --adapter outputs/main/adapter   # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import harness  # beside this script

ROWS = 2048
#         name                      quant   merge  dtype
CASES = [("unmerged_8bit (as trained)", None, False, "fp32"),
         ("unmerged_8bit_bf16", None, False, "bf16"),
         ("unmerged_fp32", "none", False, "fp32"),
         ("unmerged_bf16", "none", False, "bf16"),
         ("merged_fp32", "none", True, "fp32"),
         ("merged_bf16", "none", True, "bf16")]


def _timed(clf, split, collator, batch_size: int):
    from skewtune.inference.logits import predict_logits

    with clf.compute_context():
        predict_logits(clf.model, split, collator, batch_size, clf.device)
        best, logits = float("inf"), None
        for _ in range(2):
            start = time.perf_counter()
            logits = predict_logits(clf.model, split, collator, batch_size, clf.device)
            best = min(best, time.perf_counter() - start)
    return len(split) / best, logits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="outputs/main/adapter")
    args = parser.parse_args(argv)
    if not (Path(args.adapter) / "skewtune.json").is_file():
        print(f"error: no skewtune adapter at {args.adapter} (fix: run the main job first: accelerate launch "
              "recipes/lora_sentiment.py --output_dir outputs/main)", file=sys.stderr)
        return 2
    import torch
    from sklearn.metrics import f1_score

    import skewtune
    from skewtune.data import load_dataset_splits
    from skewtune.data.batching import PaddingCollator, tokenize_split
    from skewtune.inference.precision import cpu_has_native_bf16

    torch.set_num_threads(harness.cores())  # every core: a measurement on an idle machine
    splits = load_dataset_splits("tweets", seed=42)
    texts, labels = splits.test_texts[:ROWS], splits.ids("test")[:ROWS]
    rows, reference = [], None
    for name, quant, merge, dtype in CASES:
        clf = skewtune.load_adapter(args.adapter, quant=quant, merge=merge, dtype=dtype)
        collator = PaddingCollator(clf.tokenizer.pad_token_id)
        split = tokenize_split(clf.tokenizer, texts, labels, 128, "test")
        batched, logits = _timed(clf, split, collator, 128)
        single, _ = _timed(clf, tokenize_split(clf.tokenizer, texts[:256], None, 128, "test"), collator, 1)
        predicted = logits.argmax(-1)
        reference = predicted if reference is None else reference
        rows.append({"case": name, "samples_per_s_b128": batched, "samples_per_s_b1": single,
                     "macro_f1": float(f1_score(labels, predicted.tolist(), average="macro")),
                     "labels_as_trained": float((predicted == reference).float().mean())})
        print(rows[-1], flush=True)
    base = rows[0]
    for row in rows:
        row["speedup_b128"] = row["samples_per_s_b128"] / base["samples_per_s_b128"]
        row["speedup_b1"] = row["samples_per_s_b1"] / base["samples_per_s_b1"]
    lines = ["| prediction path | samples/s (batch 128) | × as trained | samples/s (1 per call) | × as trained | "
             "macro-F1 | labels as trained |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['samples_per_s_b128']:.1f} | {r['speedup_b128']:.2f} | "
                     f"{r['samples_per_s_b1']:.1f} | {r['speedup_b1']:.2f} | {r['macro_f1']:.4f} | "
                     f"{r['labels_as_trained']:.4f} |")
    lines.append(f"\nAdapter {args.adapter}; first {ROWS} test tweets; one run, {torch.get_num_threads()} threads; "
                 f"native bf16 (AMX-BF16 or AVX512-BF16): {cpu_has_native_bf16()}.")
    harness.write_results(harness.results_path("predict_precision"), {"adapter": args.adapter, "rows": rows},
                          "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
