"""Fold a LoRA adapter into its backbone for deployment: a plain transformers model folder (safetensors).

``W ← W + s·B A`` for every adapted Linear (``ΔW`` from :mod:`skewtune.merge.sources`, the same scaling as
merging: α/r or α/sqrt(r), ``rank_pattern``/``alpha_pattern``), the adapter's heads copied in, id2label set.

* ``quant="none"``: fp32 backbone, fp32 result.
* ``quant="8bit"``: the backbone is loaded as bitsandbytes LLM.int8 (heads kept fp32, as in training); every
  adapted int8 layer is dequantized (``W = q · SCB/127``), merged, and requantized row-wise (absmax int8),
  and the model is saved in transformers' 8-bit serialisation (``config.json`` has ``quantization_config``;
  loads again with ``from_pretrained``). Layers not adapted keep their int8 weights bit for bit.

With ``verify=True`` (default) the saved folder is reloaded and its logits compared with the unmerged model
(backbone + PEFT adapter) on 4 seeded random token sequences, before the folder is moved into place; the check
passes when ``max |Δlogit| ≤ atol + rtol · max |logit|``. Defaults (tiny random BERTs in tests/test_merge.py):
fp32 ``atol=1e-4, rtol=0``; 8-bit ``atol=0.02, rtol=0.02`` (the requantization rounds ``W + ΔW`` to the int8
grid, up to half a step ``SCB/254`` per weight). The measured
difference is recorded in ``skewtune_merge.json`` in the output folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from skewtune.backbones import load_backbone, load_tokenizer, quiet_loading, resolve_backbone
from skewtune.errors import BackboneError, ConfigError, MergeError, capped
from skewtune.merge.multitask import check_base, load_heads, set_head_params
from skewtune.merge.sources import LoraSource, check_output, load_source
from skewtune.utils.io import atomic_dir, atomic_write_json

MERGE_QUANT_MODES = ("none", "8bit")
DEFAULT_TOLERANCE = {"none": (1e-4, 0.0), "8bit": (2e-2, 2e-2)}


def _labels_and_heads(src: LoraSource, task: str | None) -> tuple[str | None, dict[str, str], dict[str, torch.Tensor]]:
    manifest = src.manifest or {}
    tasks = manifest.get("tasks") or {}
    if tasks:
        task = task or manifest.get("default_task") or next(iter(tasks))
        if task not in tasks:
            raise MergeError(f"unknown task '{task}' in {src.path}", f"use one of: {capped(tasks)}")
        target = (src.path / tasks[task]["head_file"]).resolve()
        if src.path.resolve() not in target.parents or not target.is_file():
            raise MergeError(f"head file of task '{task}' is missing in {src.path}", "pull a clean copy of the adapter")
        return task, {str(k): str(v) for k, v in tasks[task]["id2label"].items()}, load_heads(target)
    if task is not None:
        raise MergeError(f"{src.path} is a single-task adapter; task='{task}' does not apply", "drop task")
    labels = src.id2label
    if not labels:
        sizes = [int(v.shape[0]) for k, v in src.heads.items() if k.endswith(("classifier.weight", "score.weight"))]
        if not sizes:
            raise MergeError(f"cannot tell the labels of {src.path} (no id2label, no classifier head)",
                             "save the adapter with skewtune (skewtune.json with id2label)")
        labels = {str(i): f"LABEL_{i}" for i in range(sizes[0])}
    return None, labels, dict(src.heads)


def _fold(model: torch.nn.Module, src: LoraSource) -> None:
    """Add every ``ΔW`` of ``src`` to ``model`` in place (dequantize → add → requantize for int8 layers)."""
    fan_in_fan_out = bool(src.config.get("fan_in_fan_out"))
    with torch.no_grad():
        for module_path in src.factors:
            try:
                layer = model.get_submodule(module_path)
            except AttributeError as exc:
                raise MergeError(f"the base model has no layer {module_path}", "pass the adapter's base model") from exc
            delta = src.delta(module_path, dtype=torch.float32)
            if fan_in_fan_out:
                delta = delta.T
            weight = layer.weight
            if tuple(weight.shape) != tuple(delta.shape):
                raise MergeError(f"layer {module_path} is {tuple(weight.shape)} in the base but {tuple(delta.shape)} in "
                                 "the adapter", "pass the adapter's base model")
            if type(weight).__name__ == "Int8Params":
                import bitsandbytes as bnb  # lazy: optional, platform-dependent; only int8 bases need it

                state = layer.state
                scb = weight.SCB if weight.SCB is not None else state.SCB
                dequant = bnb.functional.int8_vectorwise_dequant(weight.data, scb.to(weight.device)).float()
                merged = (dequant + delta.to(dequant.device)).cpu()
                layer.weight = bnb.nn.Int8Params(merged, requires_grad=False,
                                                 has_fp16_weights=weight.has_fp16_weights).to(weight.device)
                state.reset_grads()
            elif weight.is_floating_point():
                weight.add_(delta.to(weight.dtype))
            else:
                raise MergeError(f"layer {module_path} of the base has {type(weight).__name__} weights",
                                 "fold into an fp32 or 8-bit backbone (4-bit is not supported)")


def _probe_inputs(config: Any, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    vocab = int(getattr(config, "vocab_size", 100) or 100)
    length = min(32, int(getattr(config, "max_position_embeddings", 32) or 32))
    ids = torch.randint(5, max(6, vocab), (4, length), generator=gen)
    mask = torch.ones_like(ids)
    for row, keep in enumerate((length, length - 3, length // 2, 4)):
        mask[row, keep:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(**{k: v.to(device) for k, v in inputs.items()}).logits.float().cpu()


def merge_into_base(
    adapter_dir: str | Path,
    base_path: str,
    output_dir: str | Path,
    quant: str = "none",
    task: str | None = None,
    verify: bool = True,
    atol: float | None = None,
    rtol: float | None = None,
) -> Path:
    """Fold ``adapter_dir`` into ``base_path`` and save a transformers model folder at ``output_dir``.

    ``quant``: "none" (fp32) or "8bit" (dequantize → merge → requantize, saved 8-bit). ``task`` picks a task of a
    multi-task adapter (default: its default task). Verification tolerances: see the module docstring. Raises
    MergeError (nothing written) on bad input or a failed check.
    """
    if quant not in MERGE_QUANT_MODES:
        raise MergeError(f"unknown quant mode '{quant}' for merge_into_base", f"use one of: {', '.join(MERGE_QUANT_MODES)}")
    src = load_source(adapter_dir)
    out = Path(output_dir).expanduser()
    spec = resolve_backbone(base_path)
    check_output(out, [src.path, Path(spec.path)], marker="config.json")
    check_base(src.manifest or {}, spec.path)
    task, labels, heads = _labels_and_heads(src, task)
    task_type = src.task_type if src.task_type in ("seq_cls", "token_cls") else "seq_cls"
    id2label = {int(k): v for k, v in labels.items()}
    try:
        model = load_backbone(spec, task=task_type, num_labels=len(labels), id2label=id2label, quant=quant)
    except ConfigError as exc:
        raise MergeError(exc.message, exc.hint) from exc
    _fold(model, src)
    set_head_params(model, heads)
    for pname, param in model.named_parameters():  # huge finite adapter values can overflow the sum
        if param.is_floating_point() and not bool(torch.isfinite(param).all()):
            raise MergeError(f"the merged model's {pname} holds inf or NaN values",
                             "check the adapter for huge or non-finite weights")
    model.eval()
    a_tol, r_tol = DEFAULT_TOLERANCE[quant]
    a_tol = a_tol if atol is None else float(atol)
    r_tol = r_tol if rtol is None else float(rtol)
    info: dict[str, Any] = {
        "adapter": str(src.path.resolve()),
        "adapter_model_sha256": src.weights_sha256,
        "base_model": spec.hf_id,
        "quant": quant,
        "task": task,
        "id2label": labels,
        "verified": None,
    }
    auto = AutoModelForTokenClassification if task_type == "token_cls" else AutoModelForSequenceClassification
    with atomic_dir(out) as tmp:
        with quiet_loading():
            model.save_pretrained(str(tmp))
        try:
            load_tokenizer(spec).save_pretrained(str(tmp))
        except (BackboneError, OSError, ValueError):
            pass
        if verify:
            inputs = _probe_inputs(model.config)
            with quiet_loading():
                merged = auto.from_pretrained(str(tmp)).eval()
                unmerged_base = load_backbone(spec, task=task_type, num_labels=len(labels), id2label=id2label, quant=quant)
                unmerged = PeftModel.from_pretrained(unmerged_base, str(src.path), is_trainable=False).eval()
            set_head_params(unmerged, heads)
            with torch.no_grad():
                expected = _logits(unmerged, inputs)
                got = _logits(merged, inputs)
            diff = float((got - expected).abs().max())
            bound = a_tol + r_tol * float(expected.abs().max())
            info["verified"] = {"max_abs_logit_diff": diff, "max_abs_logit": float(expected.abs().max()),
                                "atol": a_tol, "rtol": r_tol, "inputs": "4 seeded random token sequences"}
            if not diff <= bound:
                raise MergeError(
                    f"merged model's logits differ from the unmerged model's by {diff:.3g} (> {bound:.3g})",
                    "check that base_path is the adapter's base model, or relax atol/rtol",
                )
        atomic_write_json(tmp / "skewtune_merge.json", info)
    return out
