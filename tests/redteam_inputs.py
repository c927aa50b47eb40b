"""Red-team cases of issue 23, classes 5-7 (bad inputs): YAML configs (alias bombs, repeated keys, non-integer
values of integer flags), inputs that used to escape as tracebacks (corrupt or pickled checkpoints, pickled
backbones, predict's batch size and length, merge coefficients) and silent nonsense (overflowing merges, NaN
probabilities, Parquet bytes/list columns, one boolean spelt several ways). Run by ``tests/test_hostile_inputs.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.hostile_support import Case, World, altered, csv_file, merge, predict, train

# ------------------------------------------------------------------------------------------------ builders


def _alias_bomb(tmp: Path, depth: int = 8) -> Path:
    """Billion laughs under a known key: 9 ** depth strings once expanded (9 ** 8: 43 million)."""
    levels = ['&l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    levels += [f"&l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, depth + 1)]
    return csv_file(tmp, "dataset: [" + ", ".join(levels) + "]\n", "bomb.yaml")


def _config(tmp: Path, text: str) -> Path:
    return csv_file(tmp, text, "c.yaml")


def _checkpoint(tmp: Path, *, state: str | None = None, weights: str = "safetensors", optimizer: str = "none") -> Path:
    """A checkpoint folder as Accelerate + skewtune write one, with one part replaced by something hostile."""
    import torch
    from safetensors.torch import save_file

    folder = tmp / "ckpt" / "step-2"
    folder.mkdir(parents=True)
    (folder / "skewtune_state.json").write_text(state if state is not None else json.dumps(
        {"epoch": 0, "global_step": 2, "step_in_epoch": 2, "history": [], "config_fingerprint": "0" * 16}))
    tensors = {"w": torch.zeros(2, 2)}
    if weights == "safetensors":
        save_file(tensors, str(folder / "model.safetensors"))
    elif weights == "pickle":
        torch.save(tensors, folder / "pytorch_model.bin")
    elif weights == "garbage":
        (folder / "model.safetensors").write_bytes(b"\x00\x01 not safetensors at all")
    if optimizer == "pickle-object":
        torch.save({"state": {}, "param_groups": [], "hook": _Reducer()}, folder / "optimizer.bin")
    elif optimizer == "truncated":
        torch.save({"state": {}, "param_groups": []}, folder / "optimizer.bin")
        data = (folder / "optimizer.bin").read_bytes()
        (folder / "optimizer.bin").write_bytes(data[: len(data) // 2])
    return folder


class _Reducer:
    """An object whose unpickling would call a function (here a harmless ``print``): never unpickled."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def _pickled_base(w: World, tmp: Path) -> Path:
    """A copy of the adapter's base with its weights as a pickled pytorch_model.bin instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    folder = shutil.copytree(w.adapter_base, tmp / "pickled-base")
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def _huge_lora_b(folder: Path) -> None:
    """Finite but huge LoRA B factors (1e37): a weighted merge overflows float32."""
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "adapter_model.safetensors"))
    for key in tensors:
        if "lora_B" in key:
            tensors[key] = torch.full_like(tensors[key], 1e37)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})


def _nan_head(folder: Path) -> None:
    """A NaN in the classifier head (hashes updated: a consistent but broken adapter)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "adapter_model.safetensors"))
    key = next(k for k in tensors if k.endswith("classifier.weight") or k.endswith("classifier.modules_to_save.weight")
               or "classifier" in k and k.endswith("weight"))
    tensors[key] = tensors[key].clone()
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})


def _parquet(tmp: Path, text: object = None, label: object = None) -> Path:
    """A Parquet file of 60 good rows plus one row whose text or label is ``text`` / ``label``; the column of the
    odd cell holds the same kind of value on every row (bytes or lists, as such files come)."""
    import pandas as pd

    from tests.conftest import make_texts

    texts, labels = make_texts(60)
    text_column: list[object] = list(texts)
    label_column: list[object] = list(labels)
    if isinstance(text, bytes):
        text_column = [t.encode() for t in texts] + [text]
        label_column.append(labels[0])
    elif text is not None:
        text_column = [[t] for t in texts] + [text]
        label_column.append(labels[0])
    if label is not None:
        text_column.append("one more")
        label_column = [[lab] for lab in labels] + [label]
    path = tmp / "d.parquet"
    pd.DataFrame({"text": text_column, "label": label_column}).to_parquet(path)
    return path


def _bool_labels(tmp: Path) -> Path:
    """A CSV whose label column spells true four ways (true, True, 1, yes) and false one way."""
    from tests.conftest import make_texts

    texts, labels = make_texts(80)
    spellings = iter(["true", "True", "1", "yes"] * 40)
    rows = [f"{t},{next(spellings) if lab == labels[0] else 'false'}\n" for t, lab in zip(texts, labels)]
    return csv_file(tmp, "text,label\n" + "".join(rows))


def _bool_jsonl(tmp: Path) -> Path:
    """JSONL labels: JSON booleans, and the string "True" on some rows."""
    from tests.conftest import make_texts

    texts, labels = make_texts(80)
    lines = [json.dumps({"text": t, "label": (lab == labels[0]) if i % 5 else ("True" if lab == labels[0] else False)})
             for i, (t, lab) in enumerate(zip(texts, labels))]
    return csv_file(tmp, "\n".join(lines) + "\n", "d.jsonl")


def _resume(w: World, tmp: Path, folder: Path) -> list[str]:
    return train(w, tmp, w.data, "--resume_from_checkpoint", str(folder))


# ------------------------------------------------------------------------------------------------ the cases


CASES: list[Case] = [
    # --- class 5: YAML configs
    Case("rt-in-yaml-alias-bomb", "flags", "`--config` with a billion-laughs alias bomb under `dataset:`",
         "anchors and aliases", lambda w, t: train(w, t, w.data, "--config", str(_alias_bomb(t))), subprocess=True),
    Case("rt-in-yaml-anchor", "flags", "`--config` reusing a value through an anchor (`seed: &s 3`, `max_steps: *s`)",
         "anchors and aliases",
         lambda w, t: train(w, t, w.data, "--config", str(_config(t, "seed: &s 3\nmax_steps: *s\n")))),
    Case("rt-in-yaml-duplicate-key", "flags", "`--config` giving `learning_rate` twice", "duplicate key 'learning_rate'",
         lambda w, t: train(w, t, w.data, "--config", str(_config(t, "learning_rate: 1e-3\nlearning_rate: 1e-1\n")))),
    Case("rt-in-yaml-int-fraction", "flags", "`--config` with `per_device_train_batch_size: 2.7`",
         "'per_device_train_batch_size' must be a whole number, got 2.7",
         lambda w, t: train(w, t, w.data, "--config", str(_config(t, "per_device_train_batch_size: 2.7\n")))),
    Case("rt-in-yaml-int-bool", "flags", "`--config` with `max_steps: true`", "'max_steps' must be a whole number, got True",
         lambda w, t: train(w, t, w.data, "--config", str(_config(t, "max_steps: true\n")))),
    Case("rt-in-yaml-number-bool", "flags", "`--config` with `warmup_ratio: yes`", "'warmup_ratio' must be a number, got True",
         lambda w, t: train(w, t, w.data, "--config", str(_config(t, "warmup_ratio: yes\n")))),
    Case("rt-in-yaml-text-list", "flags", "`--config` with a list for a text flag (`dataset: [a, b]`)",
         "'dataset' must be a single value", lambda w, t: train(w, t, w.data, "--config", str(_config(t, "dataset: [a, b]\n")))),
    # --- class 6: tracebacks that escaped
    Case("rt-in-resume-pickled-weights", "flags", "`--resume_from_checkpoint` holding pytorch_model.bin (pickle)",
         "pytorch_model.bin (pickle files are not loaded)",
         lambda w, t: _resume(w, t, _checkpoint(t, weights="pickle"))),
    Case("rt-in-resume-corrupt-weights", "flags", "`--resume_from_checkpoint` with a corrupt model.safetensors",
         "model.safetensors is not a readable safetensors file",
         lambda w, t: _resume(w, t, _checkpoint(t, weights="garbage"))),
    Case("rt-in-resume-pickled-object", "flags", "`--resume_from_checkpoint` whose optimizer.bin pickles a callable",
         "optimizer.bin is corrupt or holds objects other than tensors",
         lambda w, t: _resume(w, t, _checkpoint(t, optimizer="pickle-object"))),
    Case("rt-in-resume-truncated-state", "flags", "`--resume_from_checkpoint` with a truncated optimizer.bin",
         "optimizer.bin is not a torch state archive",
         lambda w, t: _resume(w, t, _checkpoint(t, optimizer="truncated"))),
    Case("rt-in-resume-bad-json", "flags", "`--resume_from_checkpoint` with a corrupt skewtune_state.json",
         "skewtune_state.json is not readable JSON", lambda w, t: _resume(w, t, _checkpoint(t, state="{"))),
    Case("rt-in-resume-bad-counters", "flags", "`--resume_from_checkpoint` whose state has `global_step: \"x\"`",
         "has no valid 'global_step'",
         lambda w, t: _resume(w, t, _checkpoint(t, state='{"epoch": 0, "global_step": "x", "step_in_epoch": 0}'))),
    Case("rt-in-backbone-pickled", "flags", "`--backbone` a folder with pytorch_model.bin and no safetensors",
         "holds pickle weights (pytorch_model.bin)", lambda w, t: train(w, t, w.data, "--backbone", str(_pickled_base(w, t)))),
    Case("rt-in-adapter-pickled-base", "adapter", "an adapter whose manifest points at a pickled backbone",
         "holds pickle weights (pytorch_model.bin)",
         lambda w, t: predict(altered(w, t, lambda f: _edit_backbone(f, _pickled_base(w, t))), t)),
    Case("rt-in-predict-batch-zero", "adapter", "`predict --batch_size 0`", "--batch_size: must be a whole number ≥ 1",
         lambda w, t: [*predict(w.adapter, t), "--batch_size", "0"]),
    Case("rt-in-predict-batch-negative", "adapter", "`predict --batch_size -5`", "--batch_size: must be a whole number ≥ 1",
         lambda w, t: [*predict(w.adapter, t), "--batch_size", "-5"]),
    Case("rt-in-predict-max-length", "adapter", "`predict --max_length 100000` on a 32-position base",
         "--max_length 100000 exceeds the 32 positions", lambda w, t: [*predict(w.adapter, t), "--max_length", "100000"]),
    Case("rt-in-merge-weight-huge", "merge", "`merge --weights 1e308 1`", "weights must be finite, between -10000 and 10000",
         lambda w, t: merge(w.adapter, w.twin, tmp=t, extra=("--weights", "1e308", "1"))),
    Case("rt-in-merge-scale-huge", "merge", "`merge --scale 1e308`", "scale must be finite, between -10000 and 10000",
         lambda w, t: merge(w.adapter, w.twin, tmp=t, extra=("--scale", "1e308"))),
    # --- class 7: silent nonsense
    Case("rt-in-merge-overflow", "merge", "a merge of adapters with huge finite LoRA factors (1e37) overflowing float32",
         "the merge overflowed",
         lambda w, t: merge(altered(w, t, _huge_lora_b), w.twin, tmp=t, extra=("--weights", "10000", "1"))),
    Case("rt-in-predict-nan-adapter", "adapter", "an adapter with a NaN in its head (hashes updated)",
         "holds NaN or infinite values", lambda w, t: predict(altered(w, t, _nan_head), t)),
    Case("rt-in-parquet-bytes-text", "data", "Parquet text column of bytes", "text is bytes (a binary column)",
         lambda w, t: train(w, t, _parquet(t, text=b"raw bytes"))),
    Case("rt-in-parquet-list-text", "data", "Parquet text column of lists", "text is an array (a list column)",
         lambda w, t: train(w, t, _parquet(t, text=["a", "list"]))),
    Case("rt-in-parquet-list-label", "data", "Parquet label column of lists", "is an array (a list column); labels must be class names",
         lambda w, t: train(w, t, _parquet(t, label=["positive"]))),
    Case("rt-in-labels-bool-spellings", "data", "labels true, True, 1 and yes in one column",
         "the labels '1', 'True', 'true', 'yes' all mean true", lambda w, t: train(w, t, _bool_labels(t))),
    Case("rt-in-labels-bool-mixed", "data", "JSONL labels: JSON booleans and the string \"True\"",
         "the labels 'True', 'true' all mean true", lambda w, t: train(w, t, _bool_jsonl(t))),
]


def _edit_backbone(folder: Path, backbone: Path) -> None:
    manifest = json.loads((folder / "skewtune.json").read_text())
    manifest["backbone"] = str(backbone)
    manifest["base_path"] = str(backbone)
    (folder / "skewtune.json").write_text(json.dumps(manifest))
