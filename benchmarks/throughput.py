"""Training and inference throughput, side by side, in one run (issue: performance).

Configurations, same backbone (MiniLM), same tweets, same batch size, same number of timed steps after warm-up:

  (a) the seed article's recipe: transformers ``Trainer``, full fine-tuning, ``padding="max_length"`` (512)
  (b) plain PEFT LoRA (r=8, query/value) + ``Trainer`` + ``DataCollatorWithPadding``
  (c) skewtune default: the main recipe's model settings (``skewtune/configs/lora_sentiment.yaml``: 8-bit backbone,
      LoRA r=8 on attention, its dropouts), length-grouped dynamic padding, its Accelerate loop
  (d) skewtune fp32 LoRA (same settings and loop, fp32 backbone)
  (e) skewtune inference: ``predict`` with the adapter merged into dense weights (``merged``: ``dtype=auto``,
      which is bf16 on CPUs with AMX-BF16 or AVX512-BF16 and fp32 elsewhere; ``merged_fp32``) vs unmerged (an fp32-trained
      adapter, and ``_8bit``: the default adapter predicted as trained, on int8 layers; ``_bf16``: the same
      unmerged model at bf16, for the comparison at equal precision), in batches of 128 and one request at a
      time (``_b1``, where LoRA's extra small matmuls weigh most)

After its timed steps, each LoRA training configuration (b)-(d) is scored on the same 1,000 test tweets (macro-F1):
the same rows, steps and batch size for all three, so the throughput ratio is at equal training.

Reported: samples/s, non-padding tokens/s, ratio to (b), peak RSS (each configuration in its own subprocess),
backbone bytes, and MFU = model FLOPs needed for the non-padding tokens processed per second ÷ the GEMM
peak of the row's compute dtype (fp32, or bf16 for bf16 prediction) measured at the moments the row ran: a short
probe before every window of 10 timed training steps (MFU = FLOPs ÷ Σ window seconds × its probe) and before every
prediction pass (the best pass and its own probe) — the shared machine's speed drifts within seconds. Model FLOPs per token: forward 2·N_linear (+ attention 4·L·d·T̄) and, for
training, the backward a frozen base still needs (input gradients: one more forward's worth) plus the
adapter's own weight gradients (negligible) — 2× forward for (b)-(d), 3× for (a) (weight gradients too).

    python benchmarks/throughput.py --quick      # 20 steps (article: 2), the 4 prediction rows the goals use, best
                                                 # of 3 passes: ≤ 5 minutes; writes outputs/benchmarks/throughput.*
    python benchmarks/throughput.py              # more steps; writes benchmarks/results/throughput.{json,md}
    python benchmarks/throughput.py --name throughput_training_bf16 --configs c_skewtune_8bit \
        c_skewtune_8bit_amp_bf16 d_skewtune_fp32 d_skewtune_fp32_amp_bf16   # training under bf16 autocast
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import harness  # beside this script

REPO = harness.REPO
ADAPTER_CACHE = "THROUGHPUT_ADAPTER_CACHE"  # set by the parent: one folder per run for the prediction adapters


def gemm_peak_gflops(sizes: tuple[int, ...] = (1024, 2048), repeats: int = 10, dtype: str = "fp32",
                     warmup: int = 10) -> float:
    """GEMM peak (fp32 or bf16) with the current torch thread count: best of ``repeats`` over square ``sizes``
    (bf16 on AMX reaches its peak only on the larger size, after a few calls)."""
    import torch

    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    peak = 0.0
    for size in sizes:
        a, b = torch.randn(size, size, dtype=kind), torch.randn(size, size, dtype=kind)
        for _ in range(warmup):  # AMX tiles need a few calls to reach their clock
            a @ b
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        peak = max(peak, 2 * size**3 / best / 1e9)
    return peak


WINDOW = 10  # timed steps between two GEMM-peak probes


def probe_peak(dtype: str = "fp32") -> float:
    """A short GEMM-peak probe; bf16 (AMX) reaches its peak only after several calls, and a 3-repeat bf16 probe
    under-stated it 2-3x, so bf16 takes the full measurement."""
    return gemm_peak_gflops(dtype="bf16") if dtype == "bf16" else gemm_peak_gflops(repeats=3, warmup=2)


class ProbedClock:
    """Times steps in windows of ``WINDOW``, each preceded by a short GEMM-peak probe (not timed).

    The shared machine's speed drifts within seconds (fp32 peak 200–300 GFLOP/s in one run), so MFU divides by the
    peak of the moments the steps ran: MFU = model FLOPs ÷ Σ_w (seconds_w × peak_w). ``samples/s`` excludes the
    probes.
    """

    def __init__(self, dtype: str = "fp32") -> None:
        self.dtype = dtype
        self.windows: list[tuple[float, float]] = []  # (seconds, peak GFLOP/s)
        self._peak = self._mark = 0.0
        self._steps = 0

    def start(self) -> None:
        self._peak = probe_peak(self.dtype)
        self._steps = 0
        self._mark = time.perf_counter()

    def step(self) -> None:
        self._steps += 1
        if self._steps == WINDOW:
            self.windows.append((time.perf_counter() - self._mark, self._peak))
            self.start()

    def stop(self) -> None:
        if self._steps:
            self.windows.append((time.perf_counter() - self._mark, self._peak))
            self._steps = 0

    @property
    def seconds(self) -> float:
        return sum(w[0] for w in self.windows)

    @property
    def peak(self) -> float:
        """Time-weighted mean of the probes."""
        return sum(w[0] * w[1] for w in self.windows) / self.seconds


def linear_params(model) -> int:
    """Weights of the Linear layers inside the transformer layers (what each token multiplies)."""
    import torch

    total = 0
    for name, module in model.named_modules():
        if ".layer." in name and hasattr(module, "weight") and module.weight is not None and module.weight.dim() == 2:
            if isinstance(module, torch.nn.Linear) or "Linear" in type(module).__name__:
                total += module.weight.shape[0] * module.weight.shape[1]
    return total


def flops_per_token(n_linear: int, layers: int, hidden: int, mean_len: float, train: bool, full_ft: bool) -> float:
    forward = 2 * n_linear + 4 * layers * hidden * mean_len
    if not train:
        return forward
    return forward * (3 if full_ft else 2)


def _texts(n: int, seed: int):
    from skewtune.data import load_dataset_splits

    splits = load_dataset_splits("tweets", seed=seed)
    return splits.train_texts[:n], splits.ids("train")[:n]


EVAL_ROWS = 1000


def _test_rows(seed: int = 42):
    from skewtune.data import load_dataset_splits

    splits = load_dataset_splits("tweets", seed=seed)
    return splits.test_texts[:EVAL_ROWS], splits.ids("test")[:EVAL_ROWS]


def _macro_f1(model, tokenizer) -> float:
    """Macro-F1 of ``model`` on the fixed test rows (dynamic padding, inference mode)."""
    from sklearn.metrics import f1_score

    from skewtune.data.batching import PaddingCollator, tokenize_split
    from skewtune.inference.logits import predict_logits

    texts, labels = _test_rows()
    split = tokenize_split(tokenizer, texts, labels, 128, "test")
    logits = predict_logits(model, split, PaddingCollator(tokenizer.pad_token_id), 128, next(model.parameters()).device)
    return float(f1_score(labels, logits.argmax(-1).tolist(), average="macro"))


def run_config(name: str, steps: int, warmup: int, batch: int, passes: int = 5) -> dict:
    """One configuration, in this (fresh) process."""
    if name.endswith("_recipe_batch"):
        from skewtune.training.config import recipe_defaults

        batch = int(recipe_defaults("lora_sentiment")["per_device_train_batch_size"])
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from skewtune.backbones import resolve_backbone

    torch.manual_seed(0)
    base = resolve_backbone("minilm").path
    tokenizer = AutoTokenizer.from_pretrained(base)
    n = batch * (steps + warmup)
    texts, labels = _texts(n + 64, seed=42)
    texts, labels = texts[:n], labels[:n]
    result: dict = {"config": name, "batch_size": batch, "timed_steps": steps}

    if name in ("a_article_full_ft", "b_peft_trainer"):
        from datasets import Dataset
        from transformers import DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3)
        if name == "b_peft_trainer":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16,
                                                     target_modules=["query", "value"]))
        padding = "max_length" if name == "a_article_full_ft" else False
        enc = tokenizer(texts, truncation=True, max_length=512, padding=padding)
        dataset = Dataset.from_dict({**enc, "labels": labels})
        real_tokens = [sum(m) for m in enc["attention_mask"]]

        probed = ProbedClock()

        class Clock(TrainerCallback):
            def __init__(self) -> None:
                self.step = 0

            def on_step_end(self, args, state, control, **kw):
                self.step += 1
                if self.step == warmup:
                    probed.start()
                elif self.step > warmup:
                    probed.step()

        clock = Clock()
        args = TrainingArguments(output_dir=f"/tmp/skewtune-bench-{name}", per_device_train_batch_size=batch,
                                 max_steps=steps + warmup, learning_rate=1e-3 if "peft" in name else 2e-5,
                                 report_to=[], logging_steps=10_000, save_strategy="no", disable_tqdm=True,
                                 use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=dataset,
                          data_collator=None if padding else DataCollatorWithPadding(tokenizer), callbacks=[clock])
        trainer.train()
        probed.stop()
        seconds = probed.seconds
        result["window_peaks"] = [w[1] for w in probed.windows]
        result["gemm_peak_gflops"] = probed.peak
        # Trainer shuffles; tokens per timed sample ≈ the mean over the data
        mean_tokens = sum(real_tokens) / len(real_tokens)
        samples = steps * batch
        result.update(train=True, full_ft=name.startswith("a_"), seconds=seconds, samples=samples,
                      tokens=mean_tokens * samples, mean_len=mean_tokens,
                      padded_len=512 if padding else None)
        if name == "b_peft_trainer":
            result["macro_f1"] = _macro_f1(model, tokenizer)
        backbone = model.get_base_model() if hasattr(model, "get_base_model") else model
    elif name.startswith(("c_skewtune_8bit", "d_skewtune_fp32")):  # ``_amp_bf16``: under bf16 autocast
        import tempfile

        from skewtune.training import TrainConfig, prepare
        from skewtune.training.config import recipe_defaults
        from skewtune.training.engine import Optimization, batch_loader, train_module
        from skewtune.training.pipeline import build_loss

        # the main recipe's model settings (adapter, rank, dropouts, quantization); rows, batch and steps as (a)/(b)
        recipe = recipe_defaults("lora_sentiment")
        model_keys = ("backbone", "adapter", "lora_r", "lora_alpha", "lora_dropout", "backbone_dropout",
                      "target_modules", "max_length", "seed")
        cfg = TrainConfig(**{k: recipe[k] for k in model_keys if k in recipe}, dataset="tweets",
                          quant="8bit" if "8bit" in name else "none", max_train_samples=None,
                          output_dir=tempfile.mkdtemp(), overwrite_output_dir=True,
                          per_device_train_batch_size=batch, baselines=False, report_plots=False,
                          mixed_precision="bf16" if name.endswith("_amp_bf16") else "no",
                          sampler=None)  # the first n rows as they are (the default oversamples)
        result["settings"] = {k: getattr(cfg, k) for k in model_keys}
        result["dtype"] = "fp32+bf16 autocast" if cfg.mixed_precision == "bf16" else "fp32"
        run = prepare(cfg, recipe="bench")
        train_split = run.tokenized["train"]
        # the same rows as (a)/(b): the first n of the training split; the engine's loop, AdamW, linear schedule
        # (no warmup) over warm-up + timed steps, the clock started after the warm-up steps
        loader = batch_loader(train_split, train_split.lengths, batch, run.collator, seed=0, indices=list(range(n)))
        batches = list(loader.batch_sampler)
        timed = batches[warmup: warmup + steps]
        tokens = sum(train_split.lengths[i] for b in timed for i in b)
        probed = ProbedClock()

        def clock(state) -> None:
            if state.global_step == warmup:
                probed.start()
            elif state.global_step > warmup:
                probed.step()

        trained = train_module(run.model, loader, build_loss(run),
                               Optimization(learning_rate=1e-3, max_steps=warmup + steps, weight_decay=0.01),
                               run.accelerator, on_step_end=clock)
        model = trained.model
        probed.stop()
        seconds = probed.seconds
        result["window_peaks"] = [w[1] for w in probed.windows]
        result["gemm_peak_gflops"] = probed.peak
        samples = sum(len(b) for b in timed)
        result.update(train=True, full_ft=False, seconds=seconds, samples=samples, tokens=tokens,
                      mean_len=tokens / samples)
        result["macro_f1"] = _macro_f1(run.accelerator.unwrap_model(model), run.tokenizer)
        backbone = run.accelerator.unwrap_model(model).get_base_model()
    else:  # e_predict_merged / e_predict_unmerged
        import tempfile

        import skewtune
        from skewtune.inference.logits import predict_logits
        from skewtune.training import TrainConfig, prepare, save_outputs

        # an adapter folder as the default 8-bit training saves it (``_8bit``: predicted as trained, on int8 layers)
        # or as fp32 training does; its LoRA is freshly initialised (the same computation as a trained one: timing
        # only; ``benchmarks/predict_precision.py`` checks quality on a trained adapter). Saved once per quant in
        # the run's cache folder, so every prediction row of a run times the same adapter.
        quant = "8bit" if "_8bit" in name else "none"
        out = Path(os.environ.get(ADAPTER_CACHE) or tempfile.mkdtemp()) / f"adapter-{quant}"
        if not (out / "adapter" / "skewtune.json").is_file():
            cfg = TrainConfig(dataset="tweets", quant=quant, target_modules="attention", max_train_samples=64,
                              output_dir=str(out), baselines=False, report_plots=False, sampler=None,
                              lora_dropout=0.1, backbone_dropout=None)  # the settings these timings were taken with
            run = prepare(cfg, recipe="bench")
            run.metrics.update(eval_accuracy=0.0, eval_macro_f1=0.0)
            save_outputs(run)
        merged = "_merged" in name
        dtype = "bf16" if "_bf16" in name else "fp32" if "_fp32" in name else "auto"
        clf = skewtune.load_adapter(out / "adapter", quant=None if quant == "8bit" else "none", merge=merged,
                                    dtype=dtype)
        result["dtype"] = str(clf.dtype).removeprefix("torch.").replace("float32", "fp32").replace("bfloat16", "bf16")
        per_call = 1 if name.endswith("_b1") else 128
        n_pred = batch * steps if per_call > 1 else 4 * steps
        texts_pred = texts[:n_pred] if len(texts) >= n_pred else (texts * (n_pred // len(texts) + 1))[:n_pred]
        clf.logits(texts_pred[:256])  # warm-up
        from skewtune.data.batching import PaddingCollator, tokenize_split

        split = tokenize_split(clf.tokenizer, texts_pred, None, 128)
        collator = PaddingCollator(clf.tokenizer.pad_token_id)
        # best of ``passes`` (5; ``--quick``: 3): a few seconds per pass, so one pass moved ±25% between runs on the
        # shared 2-core machine; each pass preceded by a GEMM-peak probe of the row's dtype; MFU uses the best pass
        # and its own probe
        pass_seconds, probes = [], []
        for _ in range(passes):
            probes.append(probe_peak(result["dtype"]))
            start = time.perf_counter()
            with clf.compute_context():
                logits = predict_logits(clf.model, split, collator, per_call, clf.device)
            pass_seconds.append(time.perf_counter() - start)
        # labels of the predicted texts: agreement with the same adapter's fp32 unmerged path (``main``)
        result["labels"] = logits.argmax(-1).tolist()
        seconds = min(pass_seconds)
        result["gemm_peak_gflops"] = probes[pass_seconds.index(seconds)]
        result["window_peaks"] = probes
        result["predict_batch_size"] = per_call
        result["pass_seconds"] = pass_seconds
        tokens = sum(split.lengths)
        result.update(train=False, full_ft=False, seconds=seconds, samples=len(texts_pred), tokens=tokens,
                      mean_len=tokens / len(texts_pred))
        backbone = clf.model.get_base_model() if hasattr(clf.model, "get_base_model") else clf.model
    cfg_model = backbone.config
    result["backbone_bytes"] = int(backbone.get_memory_footprint())
    result["linear_params"] = linear_params(backbone)
    result["layers"] = cfg_model.num_hidden_layers
    result["hidden"] = cfg_model.hidden_size
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["torch_threads"] = torch.get_num_threads()
    result["samples_per_s"] = result["samples"] / result["seconds"]
    result["tokens_per_s"] = result["tokens"] / result["seconds"]
    return result


PREDICT = ["e_predict_unmerged", "e_predict_unmerged_bf16", "e_predict_unmerged_8bit", "e_predict_unmerged_8bit_bf16",
           "e_predict_merged_fp32", "e_predict_merged"]
# ``c_skewtune_8bit_recipe_batch``: (c) at the main recipe's own batch size (32), for its MFU as users run it
CONFIGS = ["a_article_full_ft", "b_peft_trainer", "c_skewtune_8bit", "d_skewtune_fp32", "c_skewtune_8bit_recipe_batch",
           *PREDICT, *(name + "_b1" for name in PREDICT)]
# ``--quick``: the rows the goals are read from (default merged vs default unmerged; the full run adds the
# comparisons at equal precision)
QUICK = [*CONFIGS[:4], "e_predict_unmerged_8bit", "e_predict_merged", "e_predict_unmerged_8bit_b1", "e_predict_merged_b1"]


def predict_ratios(by: dict[str, dict]) -> dict[str, float]:
    """Merged ÷ unmerged samples/s: against the default unmerged path (8-bit, as trained) and at equal precision."""
    out = {}
    for b1 in ("", "_b1"):
        merged = by.get("e_predict_merged" + b1)
        if not merged:
            continue
        same = "_bf16" if merged["dtype"] == "bf16" else ""
        for key, unmerged in (("_8bit", "e_predict_unmerged_8bit"), ("_same_precision", "e_predict_unmerged" + same)):
            if unmerged + b1 in by:
                out["merged_over_unmerged" + key + b1] = merged["samples_per_s"] / by[unmerged + b1]["samples_per_s"]
        fp32 = by.get("e_predict_merged_fp32" + b1)
        if fp32 and "e_predict_unmerged" + b1 in by:
            out["merged_fp32_over_unmerged_fp32" + b1] = fp32["samples_per_s"] / by["e_predict_unmerged" + b1]["samples_per_s"]
    return out


def agreement(by: dict[str, dict]) -> dict[str, float]:
    """Share of predicted labels equal to the same adapter's fp32 path (8-bit rows: its int8 path as trained)."""
    out = {}
    for name, row in by.items():
        if "labels" not in row:
            continue
        b1 = "_b1" if name.endswith("_b1") else ""
        ref = by.get(("e_predict_unmerged_8bit" if "_8bit" in name else "e_predict_unmerged") + b1)
        if ref and ref is not row:
            same = sum(a == b for a, b in zip(row["labels"], ref["labels"]))
            out[name] = same / len(ref["labels"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--only", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--configs", nargs="*", default=None,
                        help="also c_skewtune_8bit_amp_bf16 / d_skewtune_fp32_amp_bf16: training under bf16 autocast")
    parser.add_argument("--name", default="throughput",
                        help="results file stem under benchmarks/results/ (quick: outputs/benchmarks/), for another "
                             "set of --configs; the machine is recorded inside the file, not in its name")
    args = parser.parse_args(argv)
    if args.only:  # child process: one configuration
        steps = args.steps
        warmup = (1 if args.quick else 2) if args.only.startswith("a_") else 5
        harness.emit(run_config(args.only, steps, warmup, args.batch_size, passes=3 if args.quick else 5))
        return 0
    steps = args.steps or (20 if args.quick else 60)
    peak = gemm_peak_gflops()
    peak_bf16 = gemm_peak_gflops(dtype="bf16")
    import tempfile

    cache = tempfile.mkdtemp(prefix="throughput-adapters-")
    rows = []
    for name in args.configs or (QUICK if args.quick else CONFIGS):
        # the article's recipe runs at about 1 sample/s: a fifth of the steps (``--quick``: 2 after 1 warm-up step)
        n_steps = steps
        if name.startswith("a_"):
            n_steps = 2 if args.quick else max(3, steps // 5)
        started = time.perf_counter()
        row = harness.run_child(__file__, "--only", name, "--steps", str(n_steps), "--batch_size", str(args.batch_size),
                                *(["--quick"] if args.quick else []), env=harness.child_env(**{ADAPTER_CACHE: cache}),
                                what=name)
        fpt = flops_per_token(row["linear_params"], row["layers"], row["hidden"], row["mean_len"], row["train"],
                              row["full_ft"])
        row["model_gflops_per_s"] = row["tokens_per_s"] * fpt / 1e9
        row["mfu"] = row["model_gflops_per_s"] / row["gemm_peak_gflops"]
        rows.append(row)
        print(f"{name}: {row['samples_per_s']:.1f} samples/s, MFU {row['mfu']:.2f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    by = {r["config"]: r for r in rows}
    ref = by.get("b_peft_trainer")
    for r in rows:
        same_batch = ref and r["train"] and r["batch_size"] == ref["batch_size"]
        r["ratio_to_b"] = r["samples_per_s"] / ref["samples_per_s"] if same_batch else None
    summary = {
        "note": "one run, each configuration in its own subprocess (honest peak RSS), same data and batch size",
        "gemm_peak_gflops_fp32": peak,
        "gemm_peak_gflops_bf16": peak_bf16,
        "cpu_count": os.cpu_count(),
        "machine": harness.machine(),
        "quick": args.quick,
        "rows": rows,
    }
    if "c_skewtune_8bit" in by and "a_article_full_ft" in by:
        summary["c_over_a"] = by["c_skewtune_8bit"]["samples_per_s"] / by["a_article_full_ft"]["samples_per_s"]
    if "c_skewtune_8bit" in by and ref:
        summary["c_over_b"] = by["c_skewtune_8bit"]["samples_per_s"] / ref["samples_per_s"]
    summary.update(predict_ratios(by))
    summary["label_agreement"] = agreement(by)
    for row in rows:
        row.pop("labels", None)
    if "c_skewtune_8bit" in by and ref and "macro_f1" in ref:
        summary["macro_f1_c_minus_b"] = by["c_skewtune_8bit"]["macro_f1"] - ref["macro_f1"]
    lines = ["| config | dtype | samples/s | tokens/s | × (b) | MFU | GEMM peak | macro-F1 | labels as fp32 | "
             "peak RSS MB | backbone MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    agree = summary["label_agreement"]
    for r in rows:
        ratio = f"{r['ratio_to_b']:.2f}" if r["ratio_to_b"] else "–"
        f1 = f"{r['macro_f1']:.3f}" if "macro_f1" in r else "–"
        same = f"{agree[r['config']]:.3f}" if r["config"] in agree else "–"
        lines.append(f"| {r['config']} | {r.get('dtype', 'fp32')} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | "
                     f"{ratio} | {r['mfu']:.2f} | {r['gemm_peak_gflops']:.0f} | {f1} | {same} | {r['peak_rss_mb']:.0f} | "
                     f"{r['backbone_bytes'] / 1e6:.1f} |")
    fp32_peaks = sorted(p for r in rows if r.get("dtype") != "bf16" for p in r["window_peaks"])
    lines.append(f"\nGEMM peaks at the start of the run: fp32 {peak:.0f}, bf16 {peak_bf16:.0f} GFLOP/s "
                 f"({os.cpu_count()} cores, {summary['machine']['cpu']}); MFU is against the peak of the row's dtype probed before every {WINDOW} timed "
                 f"training steps and every prediction pass (column GEMM peak: their time-weighted mean; fp32 probes "
                 f"{fp32_peaks[0]:.0f}–{fp32_peaks[-1]:.0f}); macro-F1 on the same {EVAL_ROWS} test "
                 f"tweets after the same training steps (`_recipe_batch`: the main recipe's batch of 32, so twice the rows; "
                 f"no ratio to (b)); `_b1`: predict one text per call; labels as fp32: share of "
                 f"predicted labels equal to the same adapter's unmerged path at its training precision.")
    for key in ("c_over_a", "c_over_b", "macro_f1_c_minus_b", *sorted(k for k in summary if k.startswith("merged"))):
        if key in summary:
            lines.append(f"- {key}: {summary[key]:.3f}")
    harness.write_results(harness.results_path(args.name, args.quick), summary, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
