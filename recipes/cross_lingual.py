"""Cross-lingual transfer on multilingual-e5-small: English-trained adapters, zero-shot / MAD-X / k-shot in other languages.

    python recipes/cross_lingual.py                    # full run (~tens of minutes on 2 CPU cores)
    python recipes/cross_lingual.py --quick            # smoke profile: tiny sizes, ≤ 4 minutes on 2 idle cores
    python recipes/cross_lingual.py --tasks sentiment --sentiment_languages fr,nl --k_shots 16

Tasks (pattern3 corpora, fetched by scripts/fetch_data.py): sentiment — train on English Pang & Lee sentences,
evaluate on Amazon FR / Amazon DE / bol.com NL reviews; UPOS tagging — train on English WSJ + OANC sentences
mapped to universal POS, evaluate on TIGER (de), TWNC (nl), Wikicorpus (es), WaCKy (it). For every task and
language: English in-language score, zero-shot, + language adapter (MAD-X: LoRA language adapters trained with
masked LM on unlabelled text, stacked under a task adapter trained over the English one), + k-shot
fine-tuning on k target-language texts / sentences. Every text gets e5's "query: " prefix (--text_prefix).

Writes the adapters under --output_dir (default outputs/cross_lingual/<time>), and --results_file (default
<output_dir>/results.json; pass --results_file benchmarks/results/cross_lingual.json to replace the committed
results) with a markdown table beside it (.md). Everything is
validated (tasks, language codes, backbone, corpora, tag mappings, output locations) before anything is written.
Settings: skewtune/configs/cross_lingual.yaml (package data) ← --config YAML ← flags; --quick applies the
QUICK profile below to the settings not given on the command line.

Read top to bottom: the settings (CrossLingualConfig, QUICK, the goals), ``run`` (the five steps), then the steps'
helpers — data, task adapters, results. Library pieces: ``skewtune.crosslingual`` (language adapters, stacking,
k-shot fine-tuning, scoring a language).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import hashlib
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from skewtune.cli.main import ArgumentParser, run_guarded
from skewtune.utils.console import quiet_libraries, recipe_exit_code

if __name__ == "__main__":
    # before the imports below: they import peft → bitsandbytes, which logs its CPU kernel lookup while importing
    quiet_libraries()

import torch  # noqa: E402

from skewtune.crosslingual.languages import (  # noqa: E402
    LANGUAGE_NAMES,
    SOURCE_LANGUAGE,
    TASK_CORPORA,
    check_task,
    parse_languages,
)
from skewtune.crosslingual.scoring import (  # noqa: E402
    add_language_split,
    item_scores,
    k_shot_score,
    paired_sign_test,
    score,
)
from skewtune.crosslingual.stack import activate, attach_language_adapter, detach_language_adapter  # noqa: E402
from skewtune.data import pattern3  # noqa: E402
from skewtune.data.datasets import Splits, normalise_for_dedup  # noqa: E402
from skewtune.data.tokens import deduplicate_sentences, make_token_splits  # noqa: E402
from skewtune.errors import ConfigError, DataError  # noqa: E402
from skewtune.inference.precision import NATIVE_BF16_UNITS  # noqa: E402
from skewtune.tasks import TokenClassification  # noqa: E402
from skewtune.training import add_config_arguments, config_from_args  # noqa: E402
from skewtune.training.config import TokenTrainConfig, TrainConfig  # noqa: E402
from skewtune.training.pipeline import Run, finish_metrics, peak_rss_mb, prepare, save_outputs, train  # noqa: E402
from skewtune.utils.io import atomic_write_json  # noqa: E402

# ------------------------------------------------------------------------------------------------ settings
TASK_METRIC = {"sentiment": "accuracy", "upos": "accuracy"}
GOALS = {"sentiment_gap_points": 3.0, "upos_zero_shot_accuracy": 0.80}
# settings that change only the scores after training (k-shot, the language-adapter choice), never the data split,
# the language adapters or the task adapters' training (benchmarks/cross_lingual_seeds.py re-scores with them)
SCORING_SETTINGS = ("k_shots", "k_shot_epochs", "k_shot_learning_rate", "upos_k_shot_learning_rate", "k_shot_metric",
                    "k_shot_wise_alpha", "upos_k_shot_wise_alpha", "k_shot_holdout", "k_shot_patience", "k_shot_draw", "k_shot_folds", "k_shot_cv_max_k",
                    "k_shot_batch_size", "k_shot_max_length", "la_select", "la_select_p")


@dataclasses.dataclass
class CrossLingualConfig(TrainConfig):
    """TrainConfig (task-adapter settings) plus the experiment's own settings."""

    # the defaults equal src/skewtune/configs/cross_lingual.yaml (a test checks it)
    backbone: str = "me5-small"  # registered backbone (me5-small: multilingual-e5-small, the multilingual one this experiment needs; minilm, smollm2 are English) or a local Hugging Face folder
    dataset: str = "pattern3"  # fixed: the pattern3 corpora
    lora_dropout: float = 0.1  # dropout on the LoRA branch's input, in [0, 1)
    backbone_dropout: float | None = None  # every dropout of the frozen backbone and head, in [0, 1); none keeps the backbone's own (BERT: 0.1)
    per_device_train_batch_size: int = 8  # English training rows per batch
    per_device_eval_batch_size: int = 64  # rows per batch when scoring
    max_length: int = 64  # subword tokens per English sentiment text
    sampler: str | None = None  # training rows resampled per class (none: rows as they are)
    target_modules: str | None = "attention"  # layers the adapter wraps: attention (query/value projections), all (every linear layer of the blocks) or comma-separated module names
    tasks: str = "sentiment,upos"  # comma list of tasks: sentiment, upos
    sentiment_languages: str = "fr,de,nl"  # target languages of the sentiment task (comma list)
    upos_languages: str = "de,nl,es,it"  # target languages of the UPOS tagging task (comma list)
    sentiment_train_size: int = 2000  # English Pang & Lee training sentences
    upos_train_size: int = 800  # English WSJ/OANC training sentences
    en_eval_size: int = 300  # English test texts / sentences
    validation_size: int = 64  # English validation texts / sentences
    eval_size: int = 500  # cap on the target sentiment test texts per language (all rows after the k-shot pool, up to this; the rest is language-adapter text)
    upos_eval_size: int = 150  # cap on the target test sentences per language (as --eval_size)
    eval_max_length: int = 96  # truncation of target sentiment texts (reviews are long)
    upos_max_length: int = 128  # subword limit of tagged sentences (words cut off count as wrong)
    upos_learning_rate: str = "5e-3"  # the tagger's own learning rate (sentiment uses --learning_rate)
    upos_target_modules: str = "all"  # the tagger's LoRA targets (sentiment uses --target_modules)
    text_prefix: str = "query: "  # prepended to every text and tagged sentence (e5's prefix for classification)
    k_shots: str = "16,64"  # comma list of k: target-language items for k-shot fine-tuning
    k_shot_pool: int = 64  # per language: items held out of the test set to draw the k-shot sets from
    k_shot_epochs: int = 5  # at most this many passes over the k target-language items (early stopping may end sooner)
    k_shot_learning_rate: float = 3e-4  # learning rate of sentiment k-shot fine-tuning (small steps away from the English adapter)
    upos_k_shot_learning_rate: float = 2e-3  # learning rate of the tagger's k-shot fine-tuning (sentiment uses --k_shot_learning_rate)
    k_shot_metric: str = "true_class_probability"  # sentiment early-stopping score on the held-out items: true_class_probability (mean probability of the true class), accuracy or macro_f1; tagging uses word accuracy
    k_shot_wise_alpha: float = 0.5  # sentiment WiSE-FT: keep (1 - alpha) x English + alpha x fine-tuned weights, in [0, 1]; 1: plain fine-tuning
    upos_k_shot_wise_alpha: float = 1.0  # the tagger's WiSE-FT alpha (1: plain fine-tuning)
    k_shot_holdout: float = 0.25  # share of the k items held out (stratified) for early stopping; 0: train on all k for --k_shot_epochs
    k_shot_patience: int = 2  # stop after this many epochs without a gain on the held-out items
    k_shot_draw: str = "random"  # how the k sentiment texts are drawn from the pool: random (they carry the target's class prior, as k texts a user labels do) or balanced (k/2 per class)
    k_shot_folds: int = 4  # k up to --k_shot_cv_max_k: the epoch count is chosen by this many-fold cross-validation over the k items instead of one held-out part
    k_shot_cv_max_k: int = 16  # cross-validated early stopping for k up to this (a held-out quarter of 16 is 4 items); 0: never
    k_shot_batch_size: int = 8  # target-language items per batch when fine-tuning on the k shots
    k_shot_max_length: int = 96  # truncation of the k target sentiment texts used for training (the test texts' length)
    language_adapters: bool = True  # train MAD-X language adapters (masked LM) and the '+ language adapter' rows
    la_steps: int = 120  # masked-LM steps per language adapter
    la_head_steps: int = 30  # MLM-head-only steps before the joint LoRA + head steps
    la_batch_size: int = 8  # texts per batch when training a language adapter (masked LM)
    la_learning_rate: float = 2e-3  # learning rate of the language adapters' masked-LM training
    la_max_length: int = 64  # subword tokens per masked-LM text
    la_rank: int = 8  # LoRA rank of the language adapters (alpha = 2 x rank)
    la_target_modules: str = "attention"  # layers the language adapters' LoRA wraps: attention, all or comma-separated module names
    la_select: bool = True  # per language, keep the language adapter only if it is better than the plain English adapter on the k-shot pool (labelled validation items) by more than chance (--la_select_p)
    la_select_p: float = 0.1  # the language adapter is kept when the one-sided exact sign test (McNemar) of its pool items against the plain adapter's gives p below this
    results_file: str | None = None  # results JSON (+ a .md table beside it); none: <output_dir>/results.json (the committed benchmarks/results/cross_lingual.json is replaced only when named here)
    quick: bool = False  # smoke profile: tiny sizes for the settings not given on the command line
    resume: bool = False  # reuse the language adapters and finished tasks in --output_dir (same settings)
    baselines: bool = False  # majority and TF-IDF baselines of the English task runs
    eval_every_epoch: bool = False  # score the English validation split after every epoch
    report_plots: bool = False  # write confusion_matrix.png for the English task runs

    def task_list(self) -> list[str]:
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
                     "k_shot_epochs", "k_shot_batch_size", "k_shot_patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be ≥ 1, got {getattr(self, name)}", f"pass a positive --{name}")
        from skewtune.crosslingual.scoring import K_SHOT_METRICS

        if self.k_shot_metric not in K_SHOT_METRICS:
            raise ConfigError(f"--k_shot_metric '{self.k_shot_metric}' is unknown", f"use one of: {', '.join(K_SHOT_METRICS)}")
        for name in ("k_shot_wise_alpha", "upos_k_shot_wise_alpha"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"--{name} must be in [0, 1], got {getattr(self, name)}",
                                  "pass e.g. 0.5 (halfway between the English and the fine-tuned weights), 1 for none")
        if not 0.0 < self.la_select_p <= 1.0:
            raise ConfigError(f"--la_select_p must be in (0, 1], got {self.la_select_p}", "pass e.g. 0.1")
        if self.k_shot_draw not in ("random", "balanced"):
            raise ConfigError(f"--k_shot_draw '{self.k_shot_draw}' is unknown", "use random or balanced")
        if self.k_shot_cv_max_k > 0 and self.k_shot_folds < 2:
            raise ConfigError(f"--k_shot_folds must be ≥ 2 for cross-validation, got {self.k_shot_folds}",
                              "pass e.g. 4, or --k_shot_cv_max_k 0 for one held-out part")
        if not 0.0 <= self.k_shot_holdout < 1.0:
            raise ConfigError(f"--k_shot_holdout must be in [0, 1), got {self.k_shot_holdout}",
                              "pass e.g. 0.25 (a quarter of the k items held out), or 0 for no early stopping")
        if self.adapter not in ("lora", "rslora", "dora") and self.language_adapters:
            raise ConfigError(f"language adapters stack with LoRA-family task adapters, not '{self.adapter}'",
                              "use --adapter lora, or --language_adapters false")


# --quick: the smoke profile (applied to the values the command line does not set explicitly). It checks that every
# step runs (both tasks, one target language each, language adapters, MAD-X stacking, k-shot), not how well: its
# scores are noise and no goal is judged. Sized to finish in ≤ 4 minutes on 2 idle cores (README: measured figure).
QUICK: dict[str, Any] = {
    "sentiment_languages": "fr", "upos_languages": "de",
    "sentiment_train_size": 64, "upos_train_size": 32, "en_eval_size": 24, "validation_size": 8,
    "learning_rate": "5e-3",
    "eval_size": 24, "upos_eval_size": 12, "eval_max_length": 48, "k_shots": "8", "k_shot_pool": 16,
    "k_shot_epochs": 2, "la_steps": 2, "la_head_steps": 1, "la_batch_size": 8, "la_max_length": 32,
    "max_length": 48, "upos_max_length": 64,
}


def build_parser() -> ArgumentParser:
    """Every CrossLingualConfig flag, defaults from the packaged cross_lingual.yaml; bad flags → one line, exit 2."""
    parser = ArgumentParser(prog="recipes/cross_lingual.py", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    add_config_arguments(parser, CrossLingualConfig, defaults="cross_lingual")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python recipes/cross_lingual.py " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    return run_guarded(run, args, command, debug=args.debug)


def run(args: argparse.Namespace, command: str) -> int:
    from skewtune.backbones import resolve_backbone
    from skewtune.training.pipeline import hold_output_dir
    from skewtune.utils.io import check_writable_dir

    started = time.perf_counter()
    quiet_libraries()
    # 1. settings: skewtune/configs/cross_lingual.yaml ← --config ← flags (← --quick profile)
    cfg = config_from_args(args, CrossLingualConfig)
    if cfg.quick:
        for key, value in QUICK.items():
            if getattr(args, key, None) is None:
                setattr(cfg, key, value)
        cfg.validate()
    # 2. validate everything before writing anything: names and language codes (done by validate), the backbone
    #    (me5-small converts once into the user cache), corpora and their universal-POS mappings, output places
    tasks = cfg.task_list()
    spec = resolve_backbone(cfg.backbone)
    data = {task: build_task_data(cfg, task) for task in tasks}
    output_dir = cfg.resolved_output_dir("cross_lingual")
    results_file = results_path(cfg, output_dir)
    check_writable_dir(results_file.parent)
    with hold_output_dir(output_dir, command):  # one writer per output folder, for the whole recipe
        return run_locked(cfg, command, started, tasks, spec, data, output_dir, results_file)


def run_locked(cfg: CrossLingualConfig, command: str, started: float, tasks: list[str], spec: Any,
               data: dict[str, TaskData], output_dir: Path, results_file: Path) -> int:
    """Steps 2 (the output folder) to 5 of :func:`run`, with the output folder locked."""
    from skewtune.crosslingual import train_language_adapters
    from skewtune.training.pipeline import check_output_dir
    from skewtune.utils.io import atomic_write_text

    partial = load_partial(cfg, output_dir) if cfg.resume else None  # --resume: same settings, same folder
    if partial is None:
        check_output_dir(cfg, output_dir)
        partial = {"fingerprint": settings_fingerprint(cfg), "language_adapters": {}, "tasks": {}}
    # 3. one language adapter per language (masked LM on that language's unlabelled text outside the test sets)
    language_adapters: dict[str, Path] = {}
    la_results = {}
    if cfg.language_adapters:
        texts = unlabelled_by_language(list(data.values()))
        settings = language_adapter_settings(cfg)
        order = sorted(texts, key=lambda code: (code != "en", code))
        language_adapters = {code: output_dir / "language_adapters" / code for code in order}
        la_results = dict(partial["language_adapters"])
        todo = [code for code in order if code not in la_results]

        def done(code: str, metrics: dict) -> None:
            la_results[code] = metrics
            save_partial(output_dir, {**partial, "language_adapters": la_results})
            print(f"language adapter {code}: MLM loss {metrics['mlm_loss_first']:.2f} → "
                  f"{metrics['mlm_loss_last']:.2f} ({metrics['train_seconds']:.0f} s)", flush=True)

        if todo:
            train_language_adapters(spec, {code: texts[code] for code in todo},
                                    {code: language_adapters[code] for code in todo}, settings=settings, on_done=done)
        la_results = {code: la_results[code] for code in order}
        partial["language_adapters"] = la_results
    # 4. per task: English task adapter → in-language, zero-shot, k-shot; MAD-X task adapter → + language adapter
    task_results = partial["tasks"]
    for task in tasks:
        if task in task_results:
            print(f"{task}: reused from {output_dir} (--resume)", flush=True)
            continue
        task_results[task] = run_task(cfg, task, data[task], output_dir, language_adapters or None)
        save_partial(output_dir, partial)
        print(f"{task}: done ({task_results[task]['timings_s']})", flush=True)
    task_results = {task: task_results[task] for task in tasks}
    # 5. results JSON + markdown table
    results = {
        "recipe": "cross_lingual",
        "mode": "quick" if cfg.quick else "full",
        "backbone": cfg.backbone,
        "base_model": spec.hf_id,
        "quant": cfg.quant,
        "adapter": cfg.adapter,
        "command": command,
        "device": f"{machine()['cpu']}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "machine": machine(),
        "settings": {**{k: v for k, v in cfg.to_dict().items() if k not in ("overwrite_output_dir",)},
                     "k_shots": cfg.k_values()},
        "output_dir": str(output_dir),
        "language_adapters": la_results,
        "tasks": task_results,
        "resumed": bool(cfg.resume),
        "notes": run_notes(cfg),
    }
    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["goals"] = {} if cfg.quick else check_goals(results)  # a smoke run's scores judge nothing
    results["summary_line"] = summary_line(results)
    results = rounded(results)
    atomic_write_json(results_file, results)
    atomic_write_text(results_file.with_suffix(".md"), format_table(results))
    print(format_table(results))
    print(f"results: {results_file} (+ .md); adapters: {output_dir}")
    return 0


def run_notes(cfg: CrossLingualConfig) -> list[str]:
    """What each column of the results table is (the settings of ``cfg``)."""
    early = (f"early stopping: a stratified {cfg.k_shot_holdout:.0%} of the k items is held out and scored before "
             f"training (the zero-shot adapter) and after each epoch (sentiment: {cfg.k_shot_metric}; UPOS: word "
             f"accuracy), the best state is kept (ties: the earlier), patience {cfg.k_shot_patience}"
             if cfg.k_shot_holdout > 0 else "no early stopping")
    if cfg.k_shot_cv_max_k > 0:
        early += (f"; for k ≤ {cfg.k_shot_cv_max_k} instead {cfg.k_shot_folds}-fold cross-validation: each stratified "
                  "fold of the k items is held out once while the others train every epoch, the epoch count with "
                  "the best item-weighted mean score over the folds (ties: fewer; 0: the zero-shot adapter) is then "
                  "trained on all k items")
    wise = (f"; WiSE-FT: the kept weights are {1 - cfg.k_shot_wise_alpha:g} × English + {cfg.k_shot_wise_alpha:g} × "
            "fine-tuned (sentiment; each epoch's interpolated state is the one scored)" if cfg.k_shot_wise_alpha < 1 else "")
    return [
        "EN in-language: English test split, English task adapter; '+ language adapter' on the EN row is the "
        "MAD-X task adapter with the English language adapter.",
        "zero-shot and k-shot use the English task adapter; k-shot fine-tunes it on k target items "
        f"({'a random draw' if cfg.k_shot_draw == 'random' else 'k/2 per class'} for sentiment, a random draw of "
        f"sentences for UPOS) from a pool of {cfg.k_shot_pool} disjoint from the test set (up to {cfg.k_shot_epochs} epochs, "
        f"lr {cfg.k_shot_learning_rate} for sentiment texts cut at {cfg.k_shot_max_length} subwords, "
        f"{cfg.upos_k_shot_learning_rate} for UPOS; {early}{wise}), one draw per k.",
        "'+ language adapter' (MAD-X): a second task adapter trained over the frozen English language adapter; "
        "the target language adapter replaces it at test time (LoRA deltas summed on the same base)"
        + ("; per language it is used only where it is better than the plain English adapter on the k-shot pool "
           "(labelled, disjoint from the test set) by more than chance: a one-sided exact sign test (McNemar) on the "
           f"pool items where the two differ (tagging: sentences, by words right), p < {cfg.la_select_p:g} — "
           "otherwise the zero-shot adapter is used ('LA used' says which; 'LA always' is the stacked adapter on "
           "every language)." if cfg.la_select else "."),
        f"Test sets: every target row after the k-shot pool, up to {cfg.eval_size} texts (sentiment) / "
        f"{cfg.upos_eval_size} sentences (UPOS) per language; the rows after those (and the pool's texts) are the "
        "language adapters' masked-LM text, so no test text is ever trained on.",
        f"e5 prefix: every text starts with {cfg.text_prefix!r}.",
    ]


def language_adapter_settings(cfg: CrossLingualConfig) -> Any:
    """The ``LanguageAdapterSettings`` of the --la_* settings."""
    from skewtune.crosslingual import LanguageAdapterSettings

    return LanguageAdapterSettings(
        rank=cfg.la_rank, alpha=2.0 * cfg.la_rank, target_modules=cfg.la_target_modules, steps=cfg.la_steps,
        head_steps=cfg.la_head_steps, batch_size=cfg.la_batch_size, learning_rate=cfg.la_learning_rate,
        max_length=cfg.la_max_length, seed=cfg.seed, quant=cfg.quant)


def results_path(cfg: CrossLingualConfig, output_dir: Path) -> Path:
    """--results_file, or ``<output_dir>/results.json``: the committed results are replaced only when named."""
    return Path(cfg.results_file) if cfg.results_file else Path(output_dir) / "results.json"


# ----------------------------------------------------------------------------------- resuming (--resume)
PARTIAL = "partial_results.json"
_NOT_SETTINGS = ("output_dir", "overwrite_output_dir", "results_file", "resume", "resume_from_checkpoint")


def settings_fingerprint(cfg: CrossLingualConfig) -> str:
    """Hash of every setting that changes a result (paths and --resume excluded)."""
    keep = {k: v for k, v in cfg.to_dict().items() if k not in _NOT_SETTINGS}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_partial(cfg: CrossLingualConfig, output_dir: Path) -> dict[str, Any] | None:
    """The finished parts recorded in ``output_dir`` (None when there are none); refuses other settings."""
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
def task_config(cfg: CrossLingualConfig, task: str, output_dir: Path) -> TrainConfig:
    """The TrainConfig of one task run (token settings for upos)."""
    base = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    base.update(output_dir=str(output_dir), overwrite_output_dir=True, resume_from_checkpoint=None,
                checkpoint_every_steps=0, keep_checkpoints=1)
    if task == "upos":
        return TokenTrainConfig(**{**base, "dataset": "upos_en", "max_length": cfg.upos_max_length,
                                   "learning_rate": cfg.upos_learning_rate, "target_modules": cfg.upos_target_modules},
                                text_prefix=cfg.text_prefix)
    return TrainConfig(**{**base, "dataset": "pang_lee"})


def prepare_task(cfg: CrossLingualConfig, task: str, data: TaskData, output_dir: Path) -> Run:
    """The prepared run (data tokenized, backbone and adapter loaded) of one task adapter."""
    task_cfg = task_config(cfg, task, output_dir)
    if task == "upos":
        return prepare(task_cfg, recipe="cross_lingual", task=TokenClassification(), splits=data.source)
    return prepare(task_cfg, recipe="cross_lingual", splits=data.source)


def add_target_splits(run: Any, cfg: CrossLingualConfig, data: TaskData) -> list[str]:
    """Tokenize each target test set into ``run.tokenized['test_<lang>']``."""
    return [add_language_split(run, f"test_{language}", target.test, target.test_labels, max_length=cfg.eval_max_length)
            for language, target in data.targets.items()]


def add_pool_splits(run: Any, cfg: CrossLingualConfig, data: TaskData) -> dict[str, str]:
    """Tokenize each target language's k-shot pool (labelled, disjoint from the test set) as ``pool_<lang>``: the
    validation items that choose with or without the language adapter."""
    return {language: add_language_split(run, f"pool_{language}", target.pool, target.pool_labels,
                                         max_length=cfg.eval_max_length)
            for language, target in data.targets.items()}


def k_shot_scores(run: Any, cfg: CrossLingualConfig, data: TaskData) -> dict[str, dict[str, Any]]:
    """Fine-tune the trained English adapter on k pool items per language and k (early stopping on a held-out
    part of the k items, or cross-validated over folds of them for k ≤ ``k_shot_cv_max_k``); score; restore the
    adapter."""
    tagging = data.task == "upos"
    lr = cfg.upos_k_shot_learning_rate if tagging else cfg.k_shot_learning_rate
    alpha = cfg.upos_k_shot_wise_alpha if tagging else cfg.k_shot_wise_alpha
    metric = TASK_METRIC[data.task] if tagging else cfg.k_shot_metric
    out: dict[str, dict[str, Any]] = {}
    for language, target in data.targets.items():
        for k in cfg.k_values():
            out.setdefault(language, {})[f"k{k}"] = k_shot_score(
                run, target.pool, k, labels=target.pool_labels, split=f"test_{language}", seed=cfg.seed + k,
                epochs=cfg.k_shot_epochs, learning_rate=lr, batch_size=cfg.k_shot_batch_size,
                max_length=cfg.k_shot_max_length, name=f"{k}-shot {language}", holdout=cfg.k_shot_holdout,
                patience=cfg.k_shot_patience, metric=metric, wise_alpha=alpha,
                folds=cfg.k_shot_folds if k <= cfg.k_shot_cv_max_k else 0, balanced=cfg.k_shot_draw == "balanced")
    return out


_NOT_TRAINING = ("output_dir", "overwrite_output_dir", "num_threads", "report_to")


def saved_task_adapter(task_cfg: TrainConfig, folder: Path) -> dict[str, Any] | None:
    """The weights and metrics of a task adapter already trained in ``folder`` with exactly ``task_cfg``'s training
    settings (its ``adapter/skewtune.json``), or None. Training is seeded, so reusing it equals retraining it."""
    from safetensors.torch import load_file

    manifest, weights = folder / "adapter" / "skewtune.json", folder / "adapter" / "adapter_model.safetensors"
    if not (manifest.is_file() and weights.is_file() and (folder / "metrics.json").is_file()):
        return None
    saved = json.loads(manifest.read_text(encoding="utf-8")).get("training", {})
    if any(saved.get(k) != v for k, v in task_cfg.to_dict().items() if k not in _NOT_TRAINING):
        return None
    return {"weights": load_file(weights), "metrics": json.loads((folder / "metrics.json").read_text(encoding="utf-8"))}


def load_task_weights(run: Run, weights: dict[str, torch.Tensor]) -> None:
    """Put saved task-adapter weights (PEFT's file: LoRA + head) into the run's 'default' adapter."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(run.accelerator.unwrap_model(run.model), weights, adapter_name="default")
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise DataError(f"the saved task adapter does not fit this model ({len(unexpected)} unexpected weights, "
                        f"e.g. {unexpected[0]})", "drop the reuse of saved task adapters or delete the folder")
    # one forward pass outside inference mode before any scoring: the 8-bit layers cache their dequantization
    # scales on first use, and a cache built under torch.inference_mode (scoring) cannot serve a later backward
    # pass (k-shot fine-tuning); training builds it in a normal pass, this does when training is skipped
    from skewtune.inference.logits import logits_of
    from skewtune.training.engine import batch_loader

    model = run.accelerator.unwrap_model(run.model)
    train_split = run.tokenized["train"]
    batch = next(iter(batch_loader(train_split, train_split.lengths, 1, run.collator, seed=0)))
    was_training = model.training
    model.eval()  # no dropout: the torch RNG is untouched
    with torch.no_grad():
        logits_of(model, {k: v.to(run.accelerator.device) for k, v in batch.items()})
    model.train(was_training)


def _en_entry(report: dict[str, Any], size: int) -> dict[str, Any]:
    return {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"], "size": size}


def run_task(cfg: CrossLingualConfig, task: str, data: TaskData, output_dir: Path,
             language_adapters: dict[str, Path] | None = None, reuse_adapters: bool = False) -> dict[str, Any]:
    """Both task adapters of ``task`` and every score of the results table (adapters saved under ``output_dir``).

    ``reuse_adapters``: a task adapter already saved under ``output_dir`` with the same training settings
    (:func:`saved_task_adapter`) is loaded instead of trained again (its training time is the saved one)."""
    metric = TASK_METRIC[task]
    train_size = len(data.source.train_texts if task == "sentiment" else data.source.train)
    result: dict[str, Any] = {"metric": metric, "train_size": train_size, "languages": {}, "timings_s": {}}
    langs = result["languages"]

    # a) the English task adapter: in-language, zero-shot, k-shot
    start = time.perf_counter()
    folder = output_dir / task / "task_adapter"
    saved = saved_task_adapter(task_config(cfg, task, folder), folder) if reuse_adapters else None
    run = prepare_task(cfg, task, data, folder)
    if saved is None:
        train(run)
        finish_metrics(run)
        save_outputs(run)
    else:
        load_task_weights(run, saved["weights"])
        en = score(run, "test")
        run.metrics.update(saved["metrics"], eval_accuracy=en["accuracy"], eval_macro_f1=en["macro_f1"])
        result["reused_task_adapters"] = True
    result["memory"] = memory_note(run)
    result["train_seconds"] = round(run.metrics["train_runtime_s"], 1)
    langs[SOURCE_LANGUAGE] = {"in_language": _en_entry(
        {"accuracy": run.metrics["eval_accuracy"], "macro_f1": run.metrics["eval_macro_f1"]}, len(run.tokenized["test"]))}
    for name in add_target_splits(run, cfg, data):
        langs[name.removeprefix("test_")] = {"zero_shot": score(run, name)}
    select = bool(language_adapters) and cfg.la_select
    validation: dict[str, dict[str, float]] = {}
    pool_items: dict[str, list[tuple[int, int]]] = {}
    if select:  # the plain English adapter on each pool: the "without language adapter" side of the choice
        for language, name in add_pool_splits(run, cfg, data).items():
            validation[language] = {"without": score(run, name)[metric]}
            pool_items[language] = item_scores(run, name)
    result["timings_s"]["task_adapter"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    for language, scores in k_shot_scores(run, cfg, data).items():
        langs[language].update(scores)
    result["timings_s"]["k_shot"] = round(time.perf_counter() - start, 1)
    release(run)

    # b) MAD-X: a task adapter trained over the frozen English language adapter, targets swapped in
    if language_adapters:
        start = time.perf_counter()
        folder = output_dir / task / "task_adapter_over_en_language_adapter"
        saved = saved_task_adapter(task_config(cfg, task, folder), folder) if reuse_adapters else None
        run = prepare_task(cfg, task, data, folder)
        # the target adapters are attached after training (they are not needed before). How many are loaded does not
        # change training: attach_language_adapter keeps the torch RNG untouched (tested bit for bit).
        attach_language_adapter(run.model, language_adapters[SOURCE_LANGUAGE], f"lang_{SOURCE_LANGUAGE}")
        activate(run.model, "default", f"lang_{SOURCE_LANGUAGE}")
        if saved is None:
            train(run)
        else:
            load_task_weights(run, saved["weights"])
        for language in data.targets:
            attach_language_adapter(run.model, language_adapters[language], f"lang_{language}")
        en = score(run, "test")
        langs[SOURCE_LANGUAGE]["in_language_language_adapter"] = en
        pools = add_pool_splits(run, cfg, data) if select else {}
        for name in add_target_splits(run, cfg, data):
            language = name.removeprefix("test_")
            activate(run.model, "default", f"lang_{language}")
            stacked = score(run, name)
            if not select:
                langs[language]["language_adapter"] = stacked
                continue
            # MAD-X with a per-language choice on labelled validation items (the k-shot pool, never the test set):
            # the language adapter is used only where it is better than the plain English adapter there by more
            # than chance — a one-sided exact sign test on the items where the two differ, p < --la_select_p
            validation[language]["with"] = score(run, pools[language])[metric]
            test = paired_sign_test(pool_items[language], item_scores(run, pools[language]))
            chosen = "with" if test["p_value"] < cfg.la_select_p else "without"
            langs[language]["language_adapter_always"] = stacked
            langs[language]["language_adapter"] = (
                stacked if chosen == "with" else {**langs[language]["zero_shot"], "from": "zero_shot"})
            langs[language]["language_adapter_choice"] = {
                "chosen": chosen, "validation": validation[language], "sign_test": test, "p_max": cfg.la_select_p,
                "validation_size": len(run.tokenized[pools[language]])}
        activate(run.model, "default", None)
        for language in [SOURCE_LANGUAGE, *data.targets]:
            detach_language_adapter(run.model, f"lang_{language}")
        run.metrics.update(eval_split="test (with the English language adapter)", eval_accuracy=en["accuracy"],
                           eval_macro_f1=en["macro_f1"], stacked_on=f"lang_{SOURCE_LANGUAGE}")
        if saved is None:
            save_outputs(run)
        result["timings_s"]["language_adapter_task"] = round(time.perf_counter() - start, 1)
        release(run)
    result["peak_rss_mb"] = round(peak_rss_mb())
    result["gap"] = gap_summary(result, metric)
    return result


def release(run: Any) -> None:
    """Free a run's model (the next task loads its own) and its output folder's lock."""
    run.close()
    run.model = None
    run.tokenized.clear()
    gc.collect()


def memory_note(run: Any) -> dict[str, Any]:
    """Parameters and bytes of the loaded backbone: embeddings vs encoder, and the footprint as loaded."""
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


def _cell(entry: Any, metric: str) -> str:
    """100 × the score (``mean ± std`` for a summary over seeds), or – when absent."""
    if not isinstance(entry, dict) or metric not in entry:
        return "–"
    if "std" in entry:
        return f"{100 * entry[metric]:.1f} ± {100 * entry['std']:.1f}"
    return f"{100 * entry[metric]:.1f}"


def _la_used(row: dict[str, Any]) -> str:
    choice = row.get("language_adapter_choice")
    if not choice:
        return "–"
    if "with" in choice:  # a summary over seeds: how many seeds chose the language adapter
        return f"{choice['with']} of {choice['seeds']} seeds"
    return "yes" if choice["chosen"] == "with" else "no"


def format_table(results: dict[str, Any]) -> str:
    """Markdown: one table per task, a row per language (``mean ± std`` cells for a summary over seeds)."""
    lines = [f"# Cross-lingual transfer ({results['backbone']}, {results['quant']}, {results['mode']} mode)", ""]
    lines.append(results.get("summary_line", ""))
    lines.append("")
    for task, res in results["tasks"].items():
        metric = TASK_METRIC[task]
        ks = results["settings"]["k_shots"]
        unit = "sentences" if task == "upos" else "texts"
        lines += [f"## {task} ({'word ' if task == 'upos' else ''}{metric}; "
                  f"train: {res['train_size']} English {unit})", ""]
        chosen = any("language_adapter_always" in row for row in res["languages"].values())
        header = ["language", "test size", "EN in-language", "zero-shot", "+ language adapter"]
        header += ["LA used", "LA always"] if chosen else []
        header += [f"+ {k}-shot" for k in ks]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + " --- |" * len(header))
        for language, row in res["languages"].items():
            if language == SOURCE_LANGUAGE:
                la = row.get("in_language_language_adapter")
                cells = [f"{LANGUAGE_NAMES[language]} (en)", str(row["in_language"]["size"]),
                         _cell(row["in_language"], metric), "–", _cell(la, metric) + (" (EN LA)" if la else "")]
                cells += ["–", "–"] if chosen else []
                cells += ["–" for _ in ks]
            else:
                size = str(row["zero_shot"]["size"]) + (f" ({row['zero_shot']['words']} words)"
                                                        if "words" in row["zero_shot"] else "")
                cells = [f"{LANGUAGE_NAMES[language]} ({language})", size, "–",
                         _cell(row.get("zero_shot"), metric), _cell(row.get("language_adapter"), metric)]
                cells += [_la_used(row), _cell(row.get("language_adapter_always"), metric)] if chosen else []
                cells += [_cell(row.get(f"k{k}"), metric) for k in ks]
            lines.append("| " + " | ".join(cells) + " |")
        gaps = res.get("gap", {})
        if gaps:
            lines.append("")
            parts = [f"{name}: {g['gap_points']:+.1f}" + (f" ± {g['std_points']:.1f}" if "std_points" in g else "")
                     + " points" for name, g in gaps.items() if name != "best"]
            lines.append(f"EN − mean(targets): {'; '.join(parts)}.")
        lines += choice_lines(results, task)
        lines.append("")
    lines += per_seed_tables(results)
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
        parts = [f"{code} {m['mlm_loss_first']:.2f} → {m['mlm_loss_last']:.2f} ({m['texts']} texts, "
                 f"{m['train_seconds']:.0f} s)" for code, m in adapters.items()]
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


def choice_lines(results: dict[str, Any], task: str) -> list[str]:
    """The language-adapter choice per language (and seed): sign-test wins / losses on the pool, p, the choice."""
    runs = ({f"seed {s}": r[task] for s, r in results["per_seed"].items()} if results.get("per_seed")
            else {"": results["tasks"][task]})
    parts = []
    for language in results["tasks"][task]["languages"]:
        picks = []
        for name, res in runs.items():
            choice = res["languages"].get(language, {}).get("language_adapter_choice")
            if choice is None:
                continue
            test, pool = choice.get("sign_test"), choice.get("validation") or {}
            detail = (f"{test['wins']}/{test['losses']}, p={test['p_value']:.2f} " if test else
                      f"{100 * pool['with']:.1f} vs {100 * pool['without']:.1f}% " if "with" in pool else "")
            picks.append(f"{name + ' ' if name else ''}{detail}→ {choice['chosen']}")
        if picks:
            parts.append(f"{language}: " + ", ".join(picks))
    if not parts:
        return []
    return ["", "Language-adapter choice on the k-shot pool (pool items better / worse with it, one-sided sign-test "
            "p → with or without; a part without a test chose by pool accuracy, with vs without): "
            + "; ".join(parts) + "."]


def per_seed_tables(results: dict[str, Any]) -> list[str]:
    """A summary over seeds: each seed's score per task, language and method (accuracy × 100)."""
    per_seed = results.get("per_seed")
    if not per_seed:
        return []
    seeds = list(per_seed)
    lines = ["## Per seed", "", "| task | language | method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|" + " --- |" * (3 + len(seeds))]
    first = per_seed[seeds[0]]
    for task, res in first.items():
        metric = TASK_METRIC[task]
        for language, row in res["languages"].items():
            for method in row:
                if not isinstance(row[method], dict) or metric not in row[method]:
                    continue
                values = [per_seed[s][task]["languages"][language].get(method, {}).get(metric) for s in seeds]
                lines.append(f"| {task} | {language} | {method} | "
                             + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in values) + " |")
        gaps = [per_seed[s][task].get("gap", {}).get("zero_shot", {}).get("gap_points") for s in seeds]
        lines.append(f"| {task} | EN − targets | zero-shot gap (points) | "
                     + " | ".join("–" if g is None else f"{g:+.1f}" for g in gaps) + " |")
    lines.append("")
    return lines


def summarise_seeds(per_seed: dict[Any, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Mean ± sample std over seeds of every score of :func:`run_task` (``per_seed``: seed → task → result).

    Each score becomes ``{metric: mean, macro_f1: mean, std: std of metric, values: [per seed], size}``; the
    language-adapter choice becomes how many seeds chose it; ``gap`` is :func:`gap_summary` of the means (the mean
    of the per-seed gaps, as the gap is linear) with ``std_points`` and ``values_points`` over seeds.
    """
    from skewtune.utils.stats import mean_std

    seeds = list(per_seed)
    out: dict[str, dict[str, Any]] = {}
    for task, first in per_seed[seeds[0]].items():
        metric = first["metric"]
        runs = [per_seed[s][task] for s in seeds]
        summary: dict[str, Any] = {"metric": metric, "train_size": first["train_size"], "languages": {},
                                   "memory": first.get("memory"), "timings_s": [r["timings_s"] for r in runs]}
        for language, row in first["languages"].items():
            rows = [r["languages"][language] for r in runs]
            merged: dict[str, Any] = {}
            for method, entry in row.items():
                if method == "language_adapter_choice":
                    picks = [r[method]["chosen"] for r in rows]
                    merged[method] = {"with": picks.count("with"), "seeds": len(picks), "per_seed": picks,
                                      "p_values": [r[method].get("sign_test", {}).get("p_value") for r in rows]}
                    continue
                if not isinstance(entry, dict) or metric not in entry or not all(method in r for r in rows):
                    continue
                values = [r[method][metric] for r in rows]
                mean, std = mean_std(values)
                merged[method] = {metric: mean, "macro_f1": mean_std([r[method]["macro_f1"] for r in rows])[0],
                                  "std": std, "values": values, "size": entry["size"]}
                if "words" in entry:
                    merged[method]["words"] = entry["words"]
            summary["languages"][language] = merged
        gap = gap_summary(summary, metric)
        for config, entry in gap.items():
            if config == "best":
                continue
            values = [r["gap"][config]["gap_points"] for r in runs]
            entry["std_points"] = round(mean_std(values)[1], 2)
            entry["values_points"] = values
        if "best" in gap:
            gap["best"] = {**gap["best"], **{k: v for k, v in gap[gap["best"]["configuration"]].items()}}
        summary["gap"] = gap
        out[task] = summary
    return out


def check_goals(results: dict[str, Any]) -> dict[str, Any]:
    """The goals, judged on the figures in ``results`` (the means for a summary over seeds).

    * sentiment zero-shot gap (EN − mean of the targets) ≤ 3 points; UPOS zero-shot ≥ 80% in German and Dutch;
    * per task: the MAD-X ('+ language adapter') target mean ≥ the zero-shot target mean;
    * per task, k and language: k-shot ≥ zero-shot.
    """
    goals: dict[str, Any] = {}
    sentiment = results["tasks"].get("sentiment")
    if sentiment and sentiment.get("gap", {}).get("zero_shot"):
        gap = sentiment["gap"]["zero_shot"]
        goals["sentiment_gap"] = {"target_points": GOALS["sentiment_gap_points"], "measured_points": gap["gap_points"],
                                  "std_points": gap.get("std_points"), "configuration": "zero_shot",
                                  "met": gap["gap_points"] <= GOALS["sentiment_gap_points"]}
    upos = results["tasks"].get("upos")
    if upos:
        for language in ("de", "nl"):
            row = upos["languages"].get(language)
            if row:
                value = row["zero_shot"]["accuracy"]
                goals[f"upos_zero_shot_{language}"] = {"target": GOALS["upos_zero_shot_accuracy"], "measured": value,
                                                       "met": value >= GOALS["upos_zero_shot_accuracy"]}
    for task, res in results["tasks"].items():
        metric = TASK_METRIC[task]
        targets = {lang: row for lang, row in res["languages"].items() if lang != SOURCE_LANGUAGE}
        if not targets:
            continue
        zero = {lang: row["zero_shot"][metric] for lang, row in targets.items()}
        zero_mean = sum(zero.values()) / len(zero)
        if all("language_adapter" in row for row in targets.values()):
            la_mean = sum(row["language_adapter"][metric] for row in targets.values()) / len(targets)
            goals[f"{task}_language_adapter_vs_zero_shot"] = {
                "zero_shot_mean": zero_mean, "measured_mean": la_mean, "met": la_mean >= zero_mean - 1e-9}
        for k in results["settings"]["k_shots"]:
            shots = {lang: row[f"k{k}"][metric] for lang, row in targets.items() if f"k{k}" in row}
            if shots:
                below = sorted(lang for lang, v in shots.items() if v < zero[lang] - 1e-9)
                goals[f"{task}_k{k}_vs_zero_shot"] = {
                    "per_language": {lang: {"zero_shot": zero[lang], "k_shot": v} for lang, v in shots.items()},
                    "below": below, "met": not below}
    return goals


def summary_line(results: dict) -> str:
    if results.get("mode") == "quick":
        return "Smoke run (--quick): tiny sizes check that every step runs; its scores are not measurements, no goal is judged."
    over = f" (mean over {len(results['per_seed'])} seeds)" if results.get("per_seed") else ""
    parts = []
    for name, goal in results["goals"].items():
        verdict = "met" if goal["met"] else "not met"
        if name == "sentiment_gap":
            spread = f" ± {goal['std_points']:.1f}" if goal.get("std_points") is not None else ""
            parts.append(f"sentiment zero-shot gap {goal['measured_points']:.1f}{spread} points "
                         f"(goal ≤ {goal['target_points']:.0f}: {verdict})")
        elif name.startswith("upos_zero_shot"):
            parts.append(f"{name} {100 * goal['measured']:.1f}% (goal ≥ {100 * goal['target']:.0f}%: {verdict})")
        elif name.endswith("_language_adapter_vs_zero_shot"):
            parts.append(f"{name.split('_')[0]} + language adapter target mean {100 * goal['measured_mean']:.1f} vs "
                         f"zero-shot {100 * goal['zero_shot_mean']:.1f} (goal ≥: {verdict})")
        else:
            task, k = name.split("_")[:2]
            below = f"; below in {', '.join(goal['below'])}" if goal["below"] else ""
            parts.append(f"{task} {k.removeprefix('k')}-shot ≥ zero-shot in every language ({verdict}{below})")
    return "Goals" + over + ": " + "; ".join(parts) + "." if parts else ""


def machine() -> dict[str, Any]:
    """The CPU (name, native bf16 units) and cores the run was measured on."""
    get = getattr(torch.cpu, "get_capabilities", None)
    caps = get() if get else {}
    units = [unit for unit in NATIVE_BF16_UNITS if caps.get(unit)] or ["no native bf16"]
    return {"cpu": f"{caps.get('cpu_name') or platform.processor() or platform.machine()} ({', '.join(units)})",
            "cpu_count": os.cpu_count()}


def rounded(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


if __name__ == "__main__":
    # a bad flag is the parser's one line (exit 2); under `accelerate launch` the output ends with that line, not
    # accelerate's CalledProcessError traceback
    sys.exit(recipe_exit_code(main))
