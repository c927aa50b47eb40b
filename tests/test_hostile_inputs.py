"""Hostile input (issues 9 and 23): every bad input tried, each a test through the CLI; docs/bad_inputs.md is
generated here.

Each case builds its inputs in a fresh folder, runs ``skewtune ...`` (in-process through
``skewtune.cli.main.main``, a few through a real ``python -m skewtune.cli.main`` subprocess) and checks the
contract: exit status 2, exactly one stderr line starting ``error: `` with a ``(fix: …)`` hint, no traceback,
nothing written or overwritten (the case folder and the shared fixtures are snapshotted before and after).
The issue-9 cases are listed here; the red-team cases of issue 23 in ``tests/redteam_*.py`` (``CASES`` in each).

Not errors, checked separately: duplicated rows are dropped and counted (metrics.json ``duplicates_removed``),
over-long texts are truncated with a warning that counts them, empty texts are skipped only with
``--skip_empty_texts`` (with a warning and metrics.json ``empty_texts_skipped``).

Regenerate the doc after changing a message: ``SKEWTUNE_WRITE_BAD_INPUTS_DOC=1 pytest tests/test_hostile_inputs.py``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import REPO, make_texts, tiny_args, write_csv
from tests.hostile_support import (  # noqa: F401  (isolated_cache: an autouse fixture)
    Case,
    World,
    _bytes,
    _foreign_checkpoint,
    _hub_copy,
    _manifest_edit,
    _prefilled,
    _raw,
    _truncate,
    _without_weights,
    _wrong_shapes,
    altered,
    csv_file,
    good_rows,
    isolated_cache,
    jsonl,
    merge,
    normalise,
    predict,
    run_cli,
    snapshot,
    train,
)

DOC = REPO / "docs" / "bad_inputs.md"
RESULTS: dict[str, str] = {}  # case id -> the error line as users see it (paths normalised)
NOT_ERRORS: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------ the cases


CASES: list[Case] = [
    # --- recipe / train flags
    Case("flag-quant", "flags", "`--quant 3bit`", "unknown quant mode '3bit'",
         lambda w, t: train(w, t, w.data, "--quant", "3bit")),
    Case("flag-lr-text", "flags", "`--learning_rate fast`", "--learning_rate 'fast' is not a number",
         lambda w, t: train(w, t, w.data, "--learning_rate", "fast")),
    Case("flag-lr-negative", "flags", "`--learning_rate -1`", "--learning_rate must be positive",
         lambda w, t: train(w, t, w.data, "--learning_rate", "-1")),
    Case("flag-lr-nan", "flags", "`--learning_rate nan`", "--learning_rate must be positive",
         lambda w, t: train(w, t, w.data, "--learning_rate", "nan")),
    Case("flag-batch-zero", "flags", "`--per_device_train_batch_size 0`", "--per_device_train_batch_size must be ≥ 1",
         lambda w, t: train(w, t, w.data, "--per_device_train_batch_size", "0")),
    Case("flag-epochs-zero", "flags", "`--num_train_epochs 0`", "--num_train_epochs must be > 0",
         lambda w, t: train(w, t, w.data, "--num_train_epochs", "0")),
    Case("flag-epochs-inf", "flags", "`--num_train_epochs inf`", "--num_train_epochs must be finite",
         lambda w, t: train(w, t, w.data, "--num_train_epochs", "inf")),
    Case("flag-epochs-text", "flags", "`--num_train_epochs abc` (argparse)", "invalid float value: 'abc'",
         lambda w, t: train(w, t, w.data, "--num_train_epochs", "abc")),
    Case("flag-unknown", "flags", "`--learning-rate 1e-3` (dash instead of underscore)", "unrecognized arguments",
         lambda w, t: train(w, t, w.data, "--learning-rate", "1e-3")),
    Case("flag-warmup", "flags", "`--warmup_ratio 1.5`", "--warmup_ratio must be in [0, 1)",
         lambda w, t: train(w, t, w.data, "--warmup_ratio", "1.5")),
    Case("flag-dropout", "flags", "`--lora_dropout 1.5`", "--lora_dropout must be in [0, 1)",
         lambda w, t: train(w, t, w.data, "--lora_dropout", "1.5"), subprocess=True),
    Case("flag-alpha", "flags", "`--lora_alpha 0`", "--lora_alpha must be a positive number",
         lambda w, t: train(w, t, w.data, "--lora_alpha", "0")),
    Case("flag-weight-decay", "flags", "`--weight_decay -1`", "--weight_decay must be ≥ 0",
         lambda w, t: train(w, t, w.data, "--weight_decay", "-1")),
    Case("flag-grad-norm", "flags", "`--max_grad_norm -1`", "--max_grad_norm must be ≥ 0",
         lambda w, t: train(w, t, w.data, "--max_grad_norm", "-1")),
    Case("flag-seed", "flags", "`--seed -1`", "--seed must be in [0, 2**32)",
         lambda w, t: train(w, t, w.data, "--seed", "-1")),
    Case("flag-max-steps", "flags", "`--max_steps 0`", "--max_steps must be ≥ 1 when given",
         lambda w, t: train(w, t, w.data, "--max_steps", "0")),
    Case("flag-checkpoint-steps", "flags", "`--checkpoint_every_steps -1`", "--checkpoint_every_steps must be ≥ 0",
         lambda w, t: train(w, t, w.data, "--checkpoint_every_steps", "-1")),
    Case("flag-keep-checkpoints", "flags", "`--keep_checkpoints 0`", "--keep_checkpoints must be ≥ 1",
         lambda w, t: train(w, t, w.data, "--keep_checkpoints", "0")),
    Case("flag-on-nan", "flags", "`--on_nan maybe`", "unknown on_nan 'maybe'",
         lambda w, t: train(w, t, w.data, "--on_nan", "maybe")),
    Case("flag-scheduler", "flags", "`--lr_scheduler_type bogus`", "unknown lr_scheduler_type 'bogus'",
         lambda w, t: train(w, t, w.data, "--lr_scheduler_type", "bogus")),
    Case("flag-precision", "flags", "`--mixed_precision fp8`", "unknown mixed_precision 'fp8'",
         lambda w, t: train(w, t, w.data, "--mixed_precision", "fp8")),
    Case("flag-encoding", "flags", "`--encoding klingon`", "unknown --encoding 'klingon'",
         lambda w, t: train(w, t, w.data, "--encoding", "klingon")),
    Case("flag-adapter", "flags", "`--adapter lorax`", "unknown adapter 'lorax'",
         lambda w, t: train(w, t, w.data, "--adapter", "lorax")),
    Case("flag-loss", "flags", "`--loss magic`", "unknown loss 'magic'",
         lambda w, t: train(w, t, w.data, "--loss", "magic")),
    Case("flag-loss-option", "flags", "`--loss focal --loss_options gama=2` (misspelt keyword)",
         "unknown option(s) ['gama'] for loss 'focal'",
         lambda w, t: train(w, t, w.data, "--loss", "focal", "--loss_options", "gama=2")),
    Case("flag-post-hoc-option", "flags", "`--post_hoc logit_adjustment --post_hoc_options tau=-1`",
         "logit-adjustment tau must be >= 0",
         lambda w, t: train(w, t, w.data, "--post_hoc", "logit_adjustment", "--post_hoc_options", "tau=-1")),
    Case("flag-sampler-smote", "flags", "`--sampler smote` (embedding-space sampler on texts)",
         "--sampler smote interpolates sentence embeddings", lambda w, t: train(w, t, w.data, "--sampler", "smote")),
    Case("flag-target-empty", "flags", "`--target_modules ''`", "--target_modules is empty",
         lambda w, t: train(w, t, w.data, "--target_modules", "")),
    Case("flag-target-unknown", "flags", "`--target_modules nonexistent_proj`", "match no module",
         lambda w, t: train(w, t, w.data, "--target_modules", "nonexistent_proj")),
    Case("flag-max-length", "flags", "`--max_length 100000` on a 128-position backbone", "exceeds the 128 positions",
         lambda w, t: train(w, t, w.data, "--max_length", "100000")),
    Case("flag-backbone", "flags", "`--backbone no-such-model`", "neither a known name nor an existing folder",
         lambda w, t: train(w, t, w.data, "--backbone", "no-such-model")),
    Case("flag-backbone-folder", "flags", "`--backbone` an empty folder", "no config.json",
         lambda w, t: train(w, t, w.data, "--backbone", str(t))),
    Case("flag-config-missing", "flags", "`--config missing.yaml`", "does not exist",
         lambda w, t: train(w, t, w.data, "--config", str(t / "missing.yaml"))),
    Case("flag-config-unknown-key", "flags", "`--config` with a key that is no flag (`learningrate: 1`)",
         "unknown key(s)", lambda w, t: train(w, t, w.data, "--config", str(csv_file(t, "learningrate: 1\n", "c.yaml")))),
    Case("flag-config-list", "flags", "`--config` holding a YAML list", "must be a mapping",
         lambda w, t: train(w, t, w.data, "--config", str(csv_file(t, "- a\n- b\n", "c.yaml")))),
    Case("flag-config-bad-yaml", "flags", "`--config` that is not YAML (`a: [`)", "is not valid YAML",
         lambda w, t: train(w, t, w.data, "--config", str(csv_file(t, "a: [\n", "c.yaml")))),
    Case("flag-resume-latest-empty", "flags", "`--resume_from_checkpoint latest` with nothing to resume",
         "no checkpoint to resume", lambda w, t: train(w, t, w.data, "--resume_from_checkpoint", "latest")),
    Case("flag-resume-not-checkpoint", "flags", "`--resume_from_checkpoint` a folder that is no checkpoint",
         "is not a skewtune checkpoint", lambda w, t: train(w, t, w.data, "--resume_from_checkpoint", str(t))),
    # --- output folder
    Case("output-not-empty", "output", "`--output_dir` an existing folder with files", "--overwrite_output_dir",
         lambda w, t: _prefilled(t) and train(w, t, w.data)),
    Case("output-other-settings", "output", "`--output_dir` holding a checkpoint of a run with other settings",
         "holds a checkpoint of a run with different settings",
         lambda w, t: _foreign_checkpoint(t) and train(w, t, w.data)),
    Case("output-through-file", "output", "`--output_dir results/run1` where `results` is a file",
         "which is a file, not a folder",
         lambda w, t: ["train", *tiny_args(w.tiny_bert, w.data, csv_file(t, "x", "results") / "run1")]),
    Case("output-read-only", "output", "`--output_dir` on a read-only filesystem (/sys; root ignores chmod)",
         "(read-only or permission denied)",
         lambda w, t: ["train", *tiny_args(w.tiny_bert, w.data, Path("/sys/skewtune-test/out"))]),
    # --- dataset files
    Case("data-missing", "data", "`--dataset nope.csv` (no such file)", "does not exist",
         lambda w, t: train(w, t, t / "nope.csv")),
    Case("data-unknown-name", "data", "`--dataset tweetz` (no such name)", "neither a known name nor an existing file",
         lambda w, t: train(w, t, "tweetz")),
    Case("data-empty", "data", "0-byte CSV", "is empty",
         lambda w, t: train(w, t, csv_file(t, "")), subprocess=True),
    Case("data-header-only", "data", "CSV with a header and no rows", "holds no rows",
         lambda w, t: train(w, t, csv_file(t, "text,label\n"))),
    Case("data-latin1", "data", "latin-1 bytes in a file read as UTF-8", "is not valid utf-8",
         lambda w, t: train(w, t, _bytes(t, "text,label\n" + good_rows() + "caf\xe9,positive\n", "latin-1"))),
    Case("data-binary", "data", "a PNG renamed to .csv", "is not valid utf-8",
         lambda w, t: train(w, t, _raw(t, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8"))),
    Case("data-ragged", "data", "ragged CSV (a row with an unquoted comma)", "has 3 fields but the header has 2",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + "one, two,positive\n"))),
    Case("data-unclosed-quote", "data", "CSV with an unclosed quote", "fields but the header has 2",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + '"never closed,positive\nx,negative\n'))),
    Case("data-no-text-column", "data", "no `text` column", "text column 'text' not found",
         lambda w, t: train(w, t, csv_file(t, "sentence,label\n" + good_rows()))),
    Case("data-no-label-column", "data", "no `label` column", "label column 'label' not found",
         lambda w, t: train(w, t, csv_file(t, "text,y\n" + good_rows()))),
    Case("data-repeated-column", "data", "header `text,text,label`", "repeated column name(s): 'text'",
         lambda w, t: train(w, t, csv_file(t, "text,text,label\na,b,positive\n"))),
    Case("data-float-labels", "data", "labels as fractional floats (`0.5`)", "label '0.5' is a fractional number",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + "half,0.5\n"))),
    Case("data-empty-label", "data", "an empty label cell", "has an empty or NaN label",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + "no label,\n"))),
    Case("data-nan-label", "data", "label `NaN`", "label 'NaN' is NaN",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + "not a number,NaN\n"))),
    Case("data-inf-label", "data", "label `inf`", "label 'inf' is infinite",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + "infinite,inf\n"))),
    Case("data-one-class", "data", "one class only", "only one class ('positive')",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + "".join(f"text {i},positive\n" for i in range(30))))),
    Case("data-rare-class", "data", "a class with 1 example", "'rare' (1)",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + "lonely,rare\n"))),
    Case("data-too-few-to-split", "data", "3 + 3 examples (too few to stratify 80/10/10)",
         "too few examples per class for a stratified split of 6 rows",
         lambda w, t: train(w, t, csv_file(t, "text,label\na,x\nb,x\nc,x\nd,y\ne,y\nf,y\n"))),
    Case("data-empty-texts", "data", "empty texts (without `--skip_empty_texts`)", "2 empty text(s)",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows() + '"",positive\n"   ",negative\n'))),
    Case("data-jsonl-bad-line", "data", "JSONL with a broken line", "line 31 is not valid JSON",
         lambda w, t: train(w, t, jsonl(t, ['{"text": "a", "label": '] ))),
    Case("data-jsonl-not-object", "data", "JSONL with a line that is a list", "line 31 is not a JSON object",
         lambda w, t: train(w, t, jsonl(t, ['["a", "positive"]']))),
    Case("data-jsonl-huge-number", "data", "JSONL with a 5,000-digit number", "line 31 is not usable JSON",
         lambda w, t: train(w, t, jsonl(t, ['{"text": "a", "label": ' + "7" * 5000 + "}"]))),
    Case("data-jsonl-deep", "data", "JSONL with 100,000 nested brackets", "line 31 is not usable JSON",
         lambda w, t: train(w, t, jsonl(t, ["[" * 100_000]))),
    Case("data-jsonl-label-object", "data", "JSONL label that is an object", "label {'x': 1} is a JSON dict",
         lambda w, t: train(w, t, jsonl(t, ['{"text": "a", "label": {"x": 1}}']))),
    Case("data-jsonl-text-list", "data", "JSONL text that is a list", "text is a JSON list, not a string",
         lambda w, t: train(w, t, jsonl(t, ['{"text": ["a"], "label": "positive"}']))),
    Case("data-json-not-list", "data", ".json holding one object", "must hold a JSON list of objects",
         lambda w, t: train(w, t, csv_file(t, '{"text": "a", "label": "b"}', "d.json"))),
    Case("data-parquet-corrupt", "data", "a .parquet that is not Parquet", "is not a readable Parquet file",
         lambda w, t: train(w, t, _raw(t, b"PAR1 not really", "d.parquet"))),
    Case("data-suffix", "data", "`--dataset data.xlsx`", "unsupported data file type '.xlsx'",
         lambda w, t: train(w, t, _raw(t, b"PK\x03\x04", "data.xlsx"))),
    Case("data-folder", "data", "`--dataset` a folder", "is a folder, not a data file",
         lambda w, t: train(w, t, (t / "folder.csv").mkdir() or t / "folder.csv")),
    Case("data-name-too-long", "data", "a 300-character file name", "File name too long",
         lambda w, t: train(w, t, t / ("x" * 300 + ".csv"))),
    Case("data-validation-unseen-label", "data", "`--validation_file` with a label never seen in training",
         "never in training", lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows()),
                                                 "--validation_file", str(csv_file(t, "text,label\nnew,surprise\n", "v.csv")))),
    Case("data-validation-empty", "data", "`--validation_file` with a header only", "holds no rows",
         lambda w, t: train(w, t, csv_file(t, "text,label\n" + good_rows()),
                            "--validation_file", str(csv_file(t, "text,label\n", "v.csv")))),
    # --- adapter folders (predict)
    Case("adapter-missing", "adapter", "`--adapter` a folder that does not exist", "does not exist",
         lambda w, t: predict(t / "none", t)),
    Case("adapter-no-weights", "adapter", "adapter folder without adapter_model.safetensors",
         "is missing adapter_model.safetensors",
         lambda w, t: predict(altered(w, t, lambda f: (f / "adapter_model.safetensors").unlink(), rehash=False), t)),
    Case("adapter-pickle", "adapter", "pickle weights (adapter_model.bin instead of safetensors)", "pickle weights",
         lambda w, t: predict(altered(w, t, lambda f: (f / "adapter_model.safetensors").rename(f / "adapter_model.bin"),
                                      rehash=False), t), subprocess=True),
    Case("adapter-code-file", "adapter", "a .py file inside the adapter folder", "is not allowed",
         lambda w, t: predict(altered(w, t, lambda f: (f / "hook.py").write_text("import os"), rehash=False), t)),
    Case("adapter-symlink", "adapter", "a symbolic link inside the adapter folder", "is a symbolic link",
         lambda w, t: predict(altered(w, t, lambda f: (f / "link.json").symlink_to("/etc/passwd"), rehash=False), t)),
    Case("adapter-tampered", "adapter", "a file changed after saving (hash mismatch)", "sha256 mismatch",
         lambda w, t: predict(altered(w, t, lambda f: (f / "README.md").write_text("changed"), rehash=False), t)),
    Case("adapter-extra-file", "adapter", "an extra file not in the manifest", "holds files not in its manifest",
         lambda w, t: predict(altered(w, t, lambda f: (f / "notes.txt").write_text("hi"), rehash=False), t)),
    Case("adapter-no-manifest", "adapter", "no skewtune.json", "has no skewtune.json",
         lambda w, t: predict(altered(w, t, lambda f: (f / "skewtune.json").unlink(), rehash=False), t)),
    Case("adapter-manifest-json", "adapter", "skewtune.json that is not JSON", "skewtune.json is not valid JSON",
         lambda w, t: predict(altered(w, t, lambda f: (f / "skewtune.json").write_text("{"), rehash=False), t)),
    Case("adapter-config-json", "adapter", "adapter_config.json that is not JSON", "adapter_config.json is not valid JSON",
         lambda w, t: predict(altered(w, t, lambda f: (f / "adapter_config.json").write_text("{]")), t)),
    Case("adapter-truncated", "adapter", "truncated adapter_model.safetensors (hashes updated)",
         "is not a safetensors file", lambda w, t: predict(altered(w, t, _truncate), t)),
    Case("adapter-wrong-shapes", "adapter", "LoRA tensors of the wrong shape (hashes updated)",
         "size mismatch for base_model.model", lambda w, t: predict(altered(w, t, _wrong_shapes), t)),
    Case("adapter-label-count", "adapter", "id2label with 2 labels for a 3-output head",
         "lists 2 labels but the classifier head",
         lambda w, t: predict(altered(w, t, _manifest_edit(id2label={"0": "a", "1": "b"})), t)),
    Case("adapter-mismatched-base", "adapter", "manifest pointing at another base (hidden 24 instead of 16)",
         "base-model mismatch",
         lambda w, t: predict(altered(w, t, _manifest_edit(backbone=str(w.other_base))), t)),
    Case("predict-empty-text", "adapter", "`predict --input` CSV with an empty text", "1 empty text(s)",
         lambda w, t: ["predict", "--adapter", str(w.adapter), "--input", str(csv_file(t, 'id,text\n1,ok\n2,""\n')),
                       "--output", str(t / "preds.jsonl")]),
    Case("predict-output-file-parent", "adapter", "`predict --output` under a file", "is a file, not a folder",
         lambda w, t: [*predict(w.adapter, t)[:-1], str(csv_file(t, "x", "results") / "p.jsonl")]),
    Case("predict-fp16-cpu", "adapter", "`predict --merge --dtype fp16` on a CPU", "dtype fp16 is not supported on CPU",
         lambda w, t: [*predict(w.adapter, t), "--merge", "--dtype", "fp16"]),
    # --- hub
    Case("hub-none", "hub", "`hub ls` without --hub or $SKEWTUNE_HUB", "no hub given", lambda w, t: ["hub", "ls"]),
    Case("hub-scheme", "hub", "`--hub foo://bucket`", "unknown hub URL scheme 'foo://'",
         lambda w, t: ["hub", "ls", "--hub", "foo://bucket/hub"]),
    Case("hub-not-a-hub", "hub", "`--hub` a folder of other things", "not a skewtune hub",
         lambda w, t: ["hub", "push", str(w.fake), "--hub", str(csv_file(t, "x", "photo.jpg").parent), "--name", "x"]),
    Case("hub-missing-name", "hub", "`hub pull missing`", "no adapter 'missing'",
         lambda w, t: ["hub", "pull", "missing", "--hub", str(w.hub), "--dest", str(t / "dest")]),
    Case("hub-missing-version", "hub", "`hub pull demo@v9`", "no version v9",
         lambda w, t: ["hub", "pull", "demo@v9", "--hub", str(w.hub), "--dest", str(t / "dest")]),
    Case("hub-bad-name", "hub", "`hub pull ../etc`", "invalid adapter",
         lambda w, t: ["hub", "pull", "../etc", "--hub", str(w.hub), "--dest", str(t / "dest")]),
    Case("hub-corrupt-index", "hub", "truncated index.json", "corrupt",
         lambda w, t: ["hub", "ls", "--hub", str(_hub_copy(w, t, '{"format_version": 2, "adapters": '))]),
    Case("hub-push-no-weights", "hub", "`hub push` of a folder without weights", "missing adapter_model.safetensors",
         lambda w, t: ["hub", "push", str(_without_weights(w, t)), "--hub", str(_hub_copy(w, t)), "--name", "y"]),
    Case("hub-pull-base-mismatch", "hub", "`hub pull --base` a base the adapter was not trained on", "base-model mismatch",
         lambda w, t: ["hub", "pull", "demo", "--hub", str(w.hub), "--dest", str(t / "dest"), "--base", str(w.other_base)]),
    Case("hub-min-metric", "hub", "`hub search --min_metric f1>0.7`", "invalid --min_metric",
         lambda w, t: ["hub", "search", "--min_metric", "f1>0.7", "--hub", str(w.hub)]),
    # --- merge
    Case("merge-one", "merge", "`merge` of a single adapter", "at least two adapters",
         lambda w, t: merge(w.adapter, tmp=t)),
    Case("merge-same-twice", "merge", "the same adapter twice", "the same adapter folder is given twice",
         lambda w, t: merge(w.adapter, w.adapter, tmp=t)),
    Case("merge-weights", "merge", "3 weights for 2 adapters", "got 3 weights for 2 adapters",
         lambda w, t: merge(w.adapter, w.twin, tmp=t, extra=("--weights", "0.5", "0.3", "0.2"))),
    Case("merge-method", "merge", "`--method average`", "unknown merge method 'average'",
         lambda w, t: [*merge(w.adapter, w.twin, tmp=t)[:4], "--method", "average"]),
    Case("merge-density", "merge", "`--density 0`", "density must be in (0, 1]",
         lambda w, t: [*merge(w.adapter, w.twin, tmp=t), "--density", "0", "--method", "ties"]),
    Case("merge-bases", "merge", "adapters trained on different bases", "different base model",
         lambda w, t: merge(w.adapter, w.alien, tmp=t)),
    Case("merge-missing", "merge", "an adapter folder that does not exist", "does not exist",
         lambda w, t: merge(w.adapter, t / "nope", tmp=t)),
    Case("merge-pickle", "merge", "a source adapter with pickle weights", "pickle weights",
         lambda w, t: merge(w.adapter, altered(w, t, lambda f: (f / "adapter_model.safetensors").rename(
             f / "adapter_model.bin"), rehash=False), tmp=t)),
    Case("merge-eval-item", "merge", "`--eval sentiment` (no =DATASET)", "is not TASK=DATASET",
         lambda w, t: merge(w.adapter, w.twin, tmp=t, extra=("--eval", "sentiment"))),
]


# the red-team cases of issue 23, one module per class of fault (each holds CASES)
REDTEAM_MODULES = sorted(path.stem for path in (REPO / "tests").glob("redteam_*.py"))
ALL_CASES: list[Case] = CASES + [case for name in REDTEAM_MODULES
                                 for case in importlib.import_module(f"tests.{name}").CASES]


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_bad_input(case: Case, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = case.build(world, tmp_path)
    before = snapshot(tmp_path, world.root)
    code, err = run_cli(argv, capsys, case.subprocess)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-3000:]
    line = lines[0]
    assert case.expect in line, line
    assert "(fix: " in line and line.endswith(")"), line
    assert snapshot(tmp_path, world.root) == before, "nothing may be written or overwritten"
    RESULTS[case.id] = normalise(line, (tmp_path, "<case>"), (world.root, "<fixtures>"), (world.tiny_bert, "<tiny-bert>"))


# ------------------------------------------------------------------------------------------------ not errors


def test_duplicates_long_text_and_skipped_empties(world: World, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Duplicated rows are dropped and counted, a 1 MB text is truncated with a counted warning, empty texts
    are skipped only under --skip_empty_texts (with a warning and a count)."""
    texts, labels = make_texts(120, seed=3)
    duplicates = [(texts[0], labels[0]), (texts[1].upper(), labels[1]), ("  " + texts[2] + "  ", labels[2])]
    long_text = "great " * 175_000  # 1.05 MB in one CSV field
    rows = list(zip(texts, labels)) + duplicates + [(long_text, "positive"), ("", "negative"), ("   ", "positive")]
    data = write_csv(tmp_path / "messy.csv", [r[0] for r in rows], [r[1] for r in rows])
    assert data.stat().st_size > 1_000_000
    out = tmp_path / "out"
    flags = ("--num_train_epochs", "1", "--max_steps", "2", "--eval_every_epoch", "false")
    # without the flag, the empty texts are an error (and nothing is written)
    assert run_cli(train(world, tmp_path, data, *flags), capsys, False)[0] == 2
    assert not out.exists()
    code, err = run_cli(train(world, tmp_path, data, *flags, "--skip_empty_texts"), capsys, False)
    assert code == 0, err[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["duplicates_removed"] == 3
    assert metrics["empty_texts_skipped"] == 2
    assert metrics["truncated_texts"] == 1
    warnings = [line for line in err.splitlines() if "truncated" in line or "skipped" in line]
    skipped = next(line for line in warnings if "skipped" in line)
    truncated = next(line for line in warnings if "truncated" in line)
    assert skipped.startswith("skipped 2 empty text(s)") and "--skip_empty_texts" in skipped
    assert "1 of " in truncated and "longer than 128 tokens and were truncated" in truncated
    assert metrics["train_size"] + metrics["validation_size"] + metrics["test_size"] == 121  # 120 + the long one
    NOT_ERRORS.update({
        "duplicated rows (exact, different case, extra spaces)": "dropped before splitting; metrics.json "
                                                                  f"`duplicates_removed: {metrics['duplicates_removed']}`",
        "one 1 MB text": f"read, then truncated to --max_length tokens with a warning: `{truncated.strip()}`;"
                         f" metrics.json `truncated_texts: {metrics['truncated_texts']}`",
        "empty texts with `--skip_empty_texts`": f"skipped with a warning: `{normalise(skipped.strip(), (tmp_path, '<case>'))}`;"
                                                 f" metrics.json `empty_texts_skipped: {metrics['empty_texts_skipped']}`",
    })


# ------------------------------------------------------------------------------------------------ the doc


def render_doc() -> str:
    lines = [
        "# Bad inputs",
        "",
        "Every bad input skewtune was tried on, and what users see. Each row is a test in",
        "`tests/test_hostile_inputs.py` (the id is the test id): the command exits with status 2, prints exactly",
        "this one line on stderr (no traceback; `--debug` shows one), and writes or overwrites nothing.",
        "Paths are shown as `<case>` (the case's folder), `<fixtures>` (shared test adapters and hub) and",
        "`<tiny-bert>` (the test backbone).",
        "",
        "This file is generated from the tests' actual output:",
        "`SKEWTUNE_WRITE_BAD_INPUTS_DOC=1 pytest tests/test_hostile_inputs.py`.",
        "",
        f"{len(ALL_CASES)} cases.",
        "",
        "| id | area | input | message |",
        "| --- | --- | --- | --- |",
    ]
    for case in ALL_CASES:
        message = RESULTS.get(case.id, "(not run)").replace("|", "\\|")
        lines.append(f"| `{case.id}` | {case.area} | {case.what} | `{message}` |")
    lines += [
        "",
        "## Not errors",
        "",
        "| input | behaviour |",
        "| --- | --- |",
        *[f"| {what} | {how.replace('|', chr(92) + '|')} |" for what, how in NOT_ERRORS.items()],
        "",
        "Faults (kill -9, SIGTERM/SIGINT, NaN loss, read-only or full disk) are covered by `tests/test_faults.py`.",
        "",
    ]
    return "\n".join(lines)


def test_doc_lists_every_case_with_its_message() -> None:
    """docs/bad_inputs.md holds every case with the message this run produced (regenerate it when they change)."""
    if os.environ.get("SKEWTUNE_WRITE_BAD_INPUTS_DOC") == "1":
        assert len(RESULTS) == len(ALL_CASES) and NOT_ERRORS, "run the whole file to write the doc"
        DOC.write_text(render_doc(), encoding="utf-8")
    assert len(CASES) >= 25 and len({c.id for c in ALL_CASES}) == len(ALL_CASES)
    doc = DOC.read_text(encoding="utf-8")
    for case in ALL_CASES:
        assert f"| `{case.id}` |" in doc, f"{case.id} missing from {DOC}; regenerate it (see the module docstring)"
        if case.id in RESULTS:
            # the problem part must match exactly; hints may list registry names that grow (datasets, losses, …)
            problem = RESULTS[case.id].split(" (fix: ")[0].replace("|", chr(92) + "|")
            row = next((line for line in doc.splitlines() if line.startswith(f"| `{case.id}` |")), "")
            assert f"`{problem} (fix: " in row, f"{case.id}: message changed to {RESULTS[case.id]!r}; regenerate {DOC}"
