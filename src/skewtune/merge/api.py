"""``merge_adapters``: combine LoRA adapters into one standard PEFT LoRA adapter folder, with lineage.

The math is done here on the sources' LoRA state dicts (not with peft's ``add_weighted_adapter``). Per adapted
layer, source ``i`` contributes ``ΔW_i = s_i B_i A_i`` (``s_i = α_i/r_i``, or ``α_i/sqrt(r_i)`` with rsLoRA;
``rank_pattern``/``alpha_pattern`` honoured); a source that does not adapt a layer contributes ``ΔW_i = 0``
(union of target modules). With weights ``w_i`` and scale ``λ`` the merged update of a layer is stored as

* ``cat``: ``B = [λw_1 s_1 B_1 | λw_2 s_2 B_2 | …]``, ``A = [A_1; A_2; …]`` so ``BA = λ Σ w_i ΔW_i`` exactly, with
  rank ``Σ r_i`` (the sources' factors themselves, only scaled).
* ``linear`` and ``task_arithmetic``: the same exact ``λ Σ w_i ΔW_i``, re-factorised without forming it
  (QR of both concatenated factors + SVD of the small core, :func:`~skewtune.merge.methods.compact_factors`):
  rank = the numerical rank of the sum, at most ``min(Σ r_i, d_out, d_in)``; orthogonal, balanced factors;
  error at float64 rounding. ``linear`` defaults to ``w_i = 1/n`` (mean), ``task_arithmetic`` to ``w_i = 1``
  (``λ Σ ΔW_i``, Ilharco et al. 2023).
* ``svd``, ``ties``, ``dare_linear``, ``dare_ties``, ``magnitude_prune``: the dense merged ``ΔW`` (see
  :mod:`skewtune.merge.methods`) times ``λ``, factorised by truncated SVD ``B = U_r S_r^{1/2}``,
  ``A = S_r^{1/2} V_r^T`` to ``target_rank`` (default: ``svd`` → the largest source rank of the layer;
  the others → the sum of the sources' ranks of the layer, the rank a ``cat`` merge would have),
  capped at ``min(d_out, d_in)``. The truncation error per layer (max |ΔW − BA| and ‖ΔW − BA‖_F/‖ΔW‖_F,
  measured on the stored factors) is recorded in the manifest under ``lineage.layers``.

The written config has ``lora_alpha = r`` and ``alpha_pattern = rank_pattern`` per layer (scale 1) and
``use_rslora = False``, so vanilla ``PeftModel.from_pretrained`` reproduces ``ΔW`` as merged.

Heads (``modules_to_save``: classifier, pooler…) are not deltas: sources with the same label set get their
heads merged by ``head_method`` (default: the same method) with weights normalised to sum 1 (``w_i/Σw``; for
the sign-electing methods ``w_i/mean(w)``, so equal weights give the plain disjoint mean); ``cat``/``svd``/
``linear``/``task_arithmetic`` give the weighted average; ``λ`` is not applied. Sources with different label
sets make a multi-task adapter: see :mod:`skewtune.merge.multitask` for its format.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from skewtune.adapters.io import read_manifest, render_card, verify_folder, write_manifest
from skewtune.errors import MergeError
from skewtune.hub.api import info, pull
from skewtune.hub.names import parse_ref
from skewtune.merge.methods import (
    MERGE_METHODS,
    SIGN_METHODS,
    MergeMethod,
    MethodParams,
    compact_factors,
    low_rank_factors,
)
from skewtune.merge.sources import PEFT_PREFIX, LoraSource, check_compatible, check_output, load_source
from skewtune.utils.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text

HEADS_DIR = "heads"
MAX_COEFFICIENT = 1e4  # |weight| and |scale| bound: larger ones only overflow (a merge is a weighted sum)


@dataclass
class MergePlan:
    """Validated arguments of a merge (everything checked before a file is read or written)."""

    paths: list[Path]
    method: MergeMethod
    weights: list[float]
    params: MethodParams
    scale: float
    target_rank: int | None
    head_method: MergeMethod
    tasks: list[str] | None
    output_dir: Path | None
    name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _method(name: str, what: str = "merge method") -> MergeMethod:
    if not isinstance(name, str) or name not in MERGE_METHODS:
        raise MergeError(f"unknown {what} '{name}'", f"use one of: {', '.join(MERGE_METHODS.names())}")
    return MERGE_METHODS.get(name)


def plan_merge(
    adapters: Sequence[str | Path],
    weights: Sequence[float] | None = None,
    method: str = "ties",
    density: float = 0.5,
    scale: float = 1.0,
    target_rank: int | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    majority_sign_method: str = "total",
    head_method: str | None = None,
    tasks: Sequence[str] | None = None,
    name: str | None = None,
) -> MergePlan:
    """Check every argument of :func:`merge_adapters` without touching the disk; raise MergeError."""
    if isinstance(adapters, str | Path) or adapters is None or len(adapters) < 2:
        count = 0 if adapters is None else (1 if isinstance(adapters, str | Path) else len(adapters))
        raise MergeError(f"merging needs at least two adapters, got {count}", "pass two or more adapter folders")
    paths = [Path(p).expanduser() for p in adapters]
    if len({p.resolve() for p in paths}) != len(paths):
        raise MergeError("the same adapter folder is given twice", "use weights to weigh one adapter more")
    spec = _method(method)
    heads = _method(head_method, "head merge method") if head_method is not None else spec
    n = len(paths)
    if weights is None:
        ws = [1.0 / n] * n if spec.default_weight == "mean" else [1.0] * n
    else:
        ws = list(weights)
        if len(ws) != n:
            raise MergeError(f"got {len(ws)} weights for {n} adapters", "give one weight per adapter, in the same order")
        try:
            ws = [float(w) for w in ws]
        except (TypeError, ValueError) as exc:
            raise MergeError(f"weights must be numbers, got {list(weights)}", "pass numeric weights") from exc
        if not all(math.isfinite(w) and abs(w) <= MAX_COEFFICIENT for w in ws):
            raise MergeError(f"weights must be finite, between -{MAX_COEFFICIENT:g} and {MAX_COEFFICIENT:g}, got {ws}",
                             "pass weights such as 0.5 0.5 (each multiplies an adapter's update)")
    try:
        density = float(density)
    except (TypeError, ValueError) as exc:
        raise MergeError(f"density must be a number, got {density!r}", "pass a density in (0, 1]") from exc
    if not (0.0 < density <= 1.0):
        raise MergeError(f"density must be in (0, 1], got {density}", "pass the fraction of entries to keep, e.g. 0.5")
    try:
        scale = float(scale)
    except (TypeError, ValueError) as exc:
        raise MergeError(f"scale must be a number, got {scale!r}", "pass a finite scale, e.g. 1.0") from exc
    if not (math.isfinite(scale) and abs(scale) <= MAX_COEFFICIENT):
        raise MergeError(f"scale must be finite, between -{MAX_COEFFICIENT:g} and {MAX_COEFFICIENT:g}, got {scale}",
                         "pass a scale such as 1.0 (it multiplies the merged update)")
    if target_rank is not None:
        if isinstance(target_rank, bool) or not isinstance(target_rank, int) or target_rank < 1:
            raise MergeError(f"target_rank must be a positive integer, got {target_rank!r}", "pass e.g. target_rank=8")
        if spec.storage != "svd":
            raise MergeError(
                f"target_rank does not apply to the exact method '{spec.name}'",
                "drop target_rank, or use method='svd' to compress a linear merge",
            )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MergeError(f"seed must be an integer, got {seed!r}", "pass e.g. seed=0")
    if majority_sign_method not in SIGN_METHODS:
        raise MergeError(
            f"unknown majority_sign_method '{majority_sign_method}'", f"use one of: {', '.join(SIGN_METHODS)}"
        )
    task_names = None
    if tasks is not None:
        task_names = [str(t) for t in tasks]
        if len(task_names) != n or not all(_safe_task(t) for t in task_names):
            raise MergeError(
                f"tasks must give one name per adapter ({n}) made of letters, digits, '_', '-' or '.'",
                "pass e.g. tasks=['sentiment', 'polarity']",
            )
    out = Path(output_dir).expanduser() if output_dir is not None else None
    if out is not None:
        check_output(out, paths)
    return MergePlan(
        paths=paths,
        method=spec,
        weights=ws,
        params=MethodParams(density=density, seed=seed, majority_sign_method=majority_sign_method),  # type: ignore[arg-type]
        scale=scale,
        target_rank=target_rank,
        head_method=heads,
        tasks=task_names,
        output_dir=out,
        name=name,
    )


def _safe_task(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name)) and name not in (".", "..")


def merge_adapters(
    adapters: Sequence[str | Path],
    weights: Sequence[float] | None = None,
    method: str = "ties",
    density: float = 0.5,
    scale: float = 1.0,
    target_rank: int | None = None,
    seed: int = 0,
    output_dir: str | Path | None = None,
    majority_sign_method: str = "total",
    head_method: str | None = None,
    tasks: Sequence[str] | None = None,
    name: str | None = None,
    hub_url: str | None = None,
) -> Path:
    """Merge LoRA adapters into one standard PEFT LoRA adapter folder; return its path.

    ``method`` is a :data:`~skewtune.merge.methods.MERGE_METHODS` name (linear, cat, svd, ties, dare_linear,
    dare_ties, magnitude_prune, task_arithmetic); ``weights`` one per adapter (default 1/n, or 1 for
    task_arithmetic/ties/dare_ties); ``density`` ∈ (0, 1] the kept fraction for ties/dare/magnitude_prune;
    ``scale`` = λ multiplies the merged update; ``target_rank`` for the SVD-factorised methods;
    ``seed`` seeds DARE's drop; ``majority_sign_method`` "total" | "frequency" (TIES sign election);
    ``head_method`` merges same-label heads (default: ``method``); ``tasks`` names each source's task (multi-task
    merges; default the manifest's dataset or the folder name); ``output_dir`` default ``./merged-<method>-<hash>``;
    ``hub_url`` (or ``$SKEWTUNE_HUB``): adapters that are not local folders are hub refs ``NAME[@vN]``, pulled
    (verified) into the hub cache with :func:`skewtune.hub.api.pull`; the lineage records ref and version.

    Everything is validated before anything is written; the folder appears atomically. Raises MergeError.
    """
    plan = plan_merge(adapters, weights, method, density, scale, target_rank, seed, output_dir,
                      majority_sign_method, head_method, tasks, name)
    sources = [_load(p, raw, hub_url) for p, raw in zip(plan.paths, adapters)]
    check_compatible(sources)
    groups = _label_groups(sources, plan)
    out = plan.output_dir or Path.cwd() / f"merged-{plan.method.name}-{_merge_digest(sources, plan)[:8]}"
    if plan.output_dir is None:
        check_output(out, plan.paths)
    lora, layers = merge_lora(sources, plan)
    task_heads = {task: _merge_heads(sources, members, plan, task) for task, members in groups}
    return _write(out, sources, plan, lora, layers, groups, task_heads)


def _load(path: Path, raw: str | Path, hub_url: str | None) -> LoraSource:
    """A local folder, or a hub ref pulled from ``hub_url`` / ``$SKEWTUNE_HUB`` when no such folder exists."""
    hub_url = hub_url or os.environ.get("SKEWTUNE_HUB") or None
    if path.exists() or hub_url is None or isinstance(raw, Path):
        return load_source(path)
    ref = str(info(str(raw), hub_url)["ref"])
    source = load_source(pull(ref, hub_url))
    source.extra["hub"] = {"ref": ref, "url": hub_url, "version": parse_ref(ref)[1]}
    return source


# ---------------------------------------------------------------------------------------------------- LoRA


def _check_finite(tensor: torch.Tensor, what: str) -> None:
    """MergeError (nothing written yet) when a merged tensor (or update ``B @ A`` in the stored dtype) holds inf or
    NaN: huge weights or factors overflowed."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        raise MergeError(f"the merge overflowed: {what} holds inf or NaN values",
                         "use smaller --weights / --scale (or check the source adapters)")


def merge_lora(
    sources: Sequence[LoraSource], plan: MergePlan
) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, dict[str, Any]]]:
    """Merged ``(A, B)`` per module path and the per-layer report (rank and truncation error)."""
    dtypes = {s.weights_dtype for s in sources}
    out_dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    modules = sorted(set().union(*(s.factors for s in sources)))
    merged: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    report: dict[str, dict[str, Any]] = {}
    for module in modules:
        present = [i for i, s in enumerate(sources) if module in s.factors]
        d_out, d_in = sources[present[0]].shape(module)
        storage = plan.method.storage
        if storage in ("concat", "compact"):
            coeffs = [plan.scale * plan.weights[i] * sources[i].scaling(module) for i in present]
            b_cat = torch.cat([c * sources[i].factors[module][1].double() for c, i in zip(coeffs, present)], dim=1)
            a_cat = torch.cat([sources[i].factors[module][0].double() for i in present], dim=0)
            reference = b_cat @ a_cat
            _check_finite(reference.to(out_dtype), module)  # the update must fit the stored dtype, not only its factors
            if storage == "concat":
                b, a = b_cat, a_cat
            else:
                b, a, _ = compact_factors(b_cat, a_cat)
        else:
            deltas = [sources[i].delta(module) if i in present else torch.zeros(d_out, d_in, dtype=torch.float64)
                      for i in range(len(sources))]
            reference = plan.scale * plan.method.combine(deltas, plan.weights, plan.params, module)
            _check_finite(reference.to(out_dtype), module)  # an SVD of inf/NaN fails (or returns NaN factors)
            ranks = [sources[i].rank(module) for i in present]
            rank = plan.target_rank or (max(ranks) if plan.method.name == "svd" else sum(ranks))
            b, a, _ = low_rank_factors(reference, min(rank, d_out, d_in))
        a_out, b_out = a.to(out_dtype).contiguous(), b.to(out_dtype).contiguous()
        diff = reference - b_out.double() @ a_out.double()
        ref_norm = float(reference.norm())
        report[module] = {
            "rank": int(a_out.shape[0]),
            "max_abs_error": float(diff.abs().max()) if diff.numel() else 0.0,
            "rel_fro_error": float(diff.norm()) / ref_norm if ref_norm > 0 else 0.0,
        }
        merged[module] = (a_out, b_out)
    return merged, report


# ---------------------------------------------------------------------------------------------------- heads


def _label_groups(sources: Sequence[LoraSource], plan: MergePlan) -> list[tuple[str, list[int]]]:
    """Group sources by label set and problem type (a multi-label head never merges with a single-label head of
    the same names); sources without labels join a group with identical head shapes."""
    keyed: list[tuple[Any, list[int]]] = []
    for i, src in enumerate(sources):
        labels = (src.problem_type, src.id2label) if src.id2label is not None else None
        sig = sorted((k, tuple(v.shape)) for k, v in src.heads.items())
        for key, members in keyed:
            first = sources[members[0]]
            first_sig = sorted((k, tuple(v.shape)) for k, v in first.heads.items())
            same = (labels == key) if labels is not None and key is not None else sig == first_sig
            if same:
                members.append(i)
                break
        else:
            keyed.append((labels, [i]))
    if len(keyed) > 1:
        headless = [str(sources[m].path) for _, members in keyed for m in members if not sources[m].heads]
        if headless:
            raise MergeError(
                f"the adapters have different label sets but {', '.join(headless)} has no trained head",
                "merge adapters of one label set, or ones saved with their classification head",
            )
    names: list[str] = []
    datasets = [(sources[members[0]].manifest or {}).get("dataset") for _, members in keyed]
    use_dataset = all(isinstance(d, str) and _safe_task(d) for d in datasets) and len(set(datasets)) == len(datasets)
    for (_, members), dataset in zip(keyed, datasets):
        first = members[0]
        if plan.tasks is not None:
            base = plan.tasks[first]
        elif use_dataset:
            base = str(dataset)
        else:
            base = re.sub(r"[^A-Za-z0-9_.-]+", "_", sources[first].path.name).strip("._") or "task"
        candidate, k = base, 2
        while candidate in names:
            candidate, k = f"{base}-{k}", k + 1
        names.append(candidate)
    return list(zip(names, (members for _, members in keyed)))


def _head_weights(weights: Sequence[float], method: MergeMethod) -> list[float]:
    """Normalise weights for full parameters: sum 1 (average), or mean 1 for the sign-electing methods."""
    total = sum(weights)
    if total <= 0:
        return [1.0] * len(weights) if method.sign_election else [1.0 / len(weights)] * len(weights)
    norm = total / len(weights) if method.sign_election else total
    return [w / norm for w in weights]


def _merge_heads(sources: Sequence[LoraSource], members: Sequence[int], plan: MergePlan, task: str) -> dict[str, torch.Tensor]:
    """One task's heads: the member's own head, or the members' heads merged by ``plan.head_method``."""
    keys = sorted(set().union(*(sources[i].heads for i in members)))
    merged: dict[str, torch.Tensor] = {}
    for key in keys:
        holders = [i for i in members if key in sources[i].heads]
        tensors = [sources[i].heads[key] for i in holders]
        if len({tuple(t.shape) for t in tensors}) != 1:
            raise MergeError(
                f"head tensor {key} has different shapes across {', '.join(str(sources[i].path) for i in holders)}",
                "merge adapters with the same label set and backbone",
            )
        if len(holders) == 1 or not tensors[0].is_floating_point():
            merged[key] = tensors[0].clone()
            continue
        weights = _head_weights([plan.weights[i] for i in holders], plan.head_method)
        value = plan.head_method.combine([t.double() for t in tensors], weights, plan.params, f"head:{task}:{key}")
        merged[key] = value.to(tensors[0].dtype).contiguous()
    return merged


# ---------------------------------------------------------------------------------------------------- writing


def _merge_digest(sources: Sequence[LoraSource], plan: MergePlan) -> str:
    payload = json.dumps(
        [[s.weights_sha256 for s in sources], plan.method.name, plan.weights, plan.params.density, plan.scale,
         plan.target_rank, plan.params.seed, plan.params.majority_sign_method, plan.head_method.name],
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _output_config(sources: Sequence[LoraSource], lora: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
    """A PEFT LoRA config for the merged factors: scale 1 everywhere, explicit per-layer ranks."""
    config = json.loads(json.dumps(sources[0].config))
    ranks = {module: int(a.shape[0]) for module, (a, _) in lora.items()}
    counts = Counter(ranks.values())
    r = max(counts, key=lambda k: (counts[k], k))
    pattern = {module: rank for module, rank in ranks.items() if rank != r}
    modules_to_save: list[str] = []
    for src in sources:
        for name in src.config.get("modules_to_save") or []:
            if name not in modules_to_save:
                modules_to_save.append(name)
    config.update(
        r=r,
        lora_alpha=r,
        rank_pattern=pattern,
        alpha_pattern=dict(pattern),
        use_rslora=False,
        use_dora=False,
        target_modules=sorted(lora),
        exclude_modules=None,
        layers_to_transform=None,
        layers_pattern=None,
        modules_to_save=modules_to_save or None,
        init_lora_weights=True,
        lora_dropout=0.0,
        inference_mode=True,
    )
    for key in ("loftq_config",):
        if key in config:
            config[key] = {}
    for key in ("eva_config", "corda_config", "lora_ga_config"):
        if key in config:
            config[key] = None
    return config


def _write(
    out: Path,
    sources: Sequence[LoraSource],
    plan: MergePlan,
    lora: dict[str, tuple[torch.Tensor, torch.Tensor]],
    layers: dict[str, dict[str, Any]],
    groups: Sequence[tuple[str, list[int]]],
    task_heads: dict[str, dict[str, torch.Tensor]],
) -> Path:
    for module, (a, b) in lora.items():
        _check_finite(a, f"{module}.lora_A")
        _check_finite(b, f"{module}.lora_B")
    for task, heads in task_heads.items():
        for key, value in heads.items():
            _check_finite(value, f"head {key} of task {task}")
    default_task = groups[0][0]
    tensors: dict[str, torch.Tensor] = {}
    for module, (a, b) in lora.items():
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = a
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = b
    for key, value in task_heads[default_task].items():
        tensors[f"{PEFT_PREFIX}{key}"] = value
    manifest = _manifest(sources, plan, layers, groups)
    with atomic_dir(out) as tmp:
        atomic_write_bytes(tmp / "adapter_model.safetensors", save(tensors, metadata={"format": "pt"}))
        atomic_write_json(tmp / "adapter_config.json", _output_config(sources, lora))
        if len(groups) > 1:
            for task, heads in task_heads.items():
                head_tensors = {f"{PEFT_PREFIX}{k}": v for k, v in heads.items()}
                atomic_write_bytes(tmp / HEADS_DIR / f"{task}.safetensors", save(head_tensors, metadata={"format": "pt"}))
        atomic_write_text(tmp / "README.md", render_card(manifest) + _lineage_card(manifest))
        write_manifest(tmp, manifest)
    return out


SCORE_KEYS = ("accuracy", "macro_f1", "weighted_f1", "num_samples", "split", "seed", "task")


def record_scores(folder: str | Path, scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Save ``merge --eval`` scores in a merged adapter's manifest (and card); return the new manifest.

    ``scores``: per task ``{"dataset": name, "merged": report, "sources": {source name: report}}`` with
    :func:`~skewtune.merge.evaluate_adapter` reports. The manifest's ``metrics`` get the merge's own figures as
    numbers — ``eval_accuracy`` / ``eval_macro_f1`` for one task, ``eval_<task>_accuracy`` / ``eval_<task>_macro_f1``
    for several — plus ``merge_eval``: per task the dataset and the merge's and each source's headline scores. The
    folder is hash-checked first; the card is re-rendered and the file hashes recomputed (``write_manifest``).
    """
    folder = Path(folder)
    manifest = verify_folder(folder, read_manifest(folder))

    def brief(report: dict[str, Any]) -> dict[str, Any]:
        return {k: report[k] for k in SCORE_KEYS if k in report}

    metrics: dict[str, Any] = dict(manifest.get("metrics") or {})
    detail: dict[str, Any] = {}
    for task, entry in scores.items():
        merged = entry.get("merged") or {}
        prefix = "eval_" if len(scores) == 1 else f"eval_{task}_"
        for key in ("accuracy", "macro_f1"):
            if isinstance(merged.get(key), int | float):
                metrics[f"{prefix}{key}"] = float(merged[key])
        detail[task] = {"dataset": entry.get("dataset"), "merged": brief(merged),
                        "sources": {name: brief(r) for name, r in (entry.get("sources") or {}).items()}}
    metrics["merge_eval"] = detail
    manifest["metrics"] = metrics
    atomic_write_text(folder / "README.md", render_card(manifest) + _lineage_card(manifest))
    return write_manifest(folder, manifest)


def _common(values: Sequence[Any]) -> Any:
    return values[0] if all(v == values[0] for v in values) else None


def _manifest(
    sources: Sequence[LoraSource],
    plan: MergePlan,
    layers: dict[str, dict[str, Any]],
    groups: Sequence[tuple[str, list[int]]],
) -> dict[str, Any]:
    manifests = [s.manifest or {} for s in sources]
    task_of = {i: task for task, members in groups for i in members}
    default_task, default_members = groups[0]
    datasets = [manifests[i].get("dataset") for i in default_members if manifests[i].get("dataset")]
    languages = sorted({lang for m in manifests for lang in (m.get("languages") or [])}) or None
    lineage = {
        "method": plan.method.name,
        "parameters": {
            "weights": plan.weights,
            "scale": plan.scale,
            "density": plan.params.density if plan.method.uses_density else None,
            "seed": plan.params.seed,
            "majority_sign_method": plan.params.majority_sign_method if plan.method.sign_election else None,
            "target_rank": plan.target_rank,
            "head_method": plan.head_method.name,
            "storage": plan.method.storage,
        },
        "sources": [
            {
                "name": s.name,
                "path": str(s.path.resolve()),
                "version": (s.extra.get("hub") or {}).get("version", m.get("version")),
                "hub": s.extra.get("hub"),
                "skewtune_version": m.get("skewtune_version"),
                "adapter_model_sha256": s.weights_sha256,
                "adapter_config_sha256": s.config_sha256,
                "base_model": s.base_name,
                "dataset": m.get("dataset"),
                "task": task_of[i],
                "weight": plan.weights[i],
                "r": s.config.get("r"),
                "lora_alpha": s.config.get("lora_alpha"),
                "use_rslora": bool(s.config.get("use_rslora")),
                "rank_pattern": s.config.get("rank_pattern") or {},
                "alpha_pattern": s.config.get("alpha_pattern") or {},
            }
            for i, (s, m) in enumerate(zip(sources, manifests))
        ],
        "max_abs_error": max((v["max_abs_error"] for v in layers.values()), default=0.0),
        "layers": layers,
    }
    manifest: dict[str, Any] = {
        "name": plan.name or f"merge-{plan.method.name}",
        "task_type": sources[0].task_type,
        "backbone": _common([m.get("backbone") for m in manifests]),
        "base_model": sources[0].base_name,
        "base_fingerprint": sources[0].base_fingerprint if all(s.base_fingerprint for s in sources) else None,
        "adapter_type": "lora",
        "quant": _common([m.get("quant") for m in manifests]),
        "id2label": sources[default_members[0]].id2label or {},
        "languages": languages,
        "dataset": "+".join(dict.fromkeys(datasets)) if datasets else None,
        "training": None,
        "metrics": {},
        "imbalance": None,
        "decision": None,
        "tags": ["merge", plan.method.name] + (["multi-task"] if len(groups) > 1 else []),
        "lineage": lineage,
    }
    if len(groups) > 1:
        manifest["default_task"] = default_task
        manifest["tasks"] = {
            task: {
                "id2label": sources[members[0]].id2label or {},
                "head_file": f"{HEADS_DIR}/{task}.safetensors",
                "sources": [sources[i].name for i in members],
                "dataset": manifests[members[0]].get("dataset"),
            }
            for task, members in groups
        }
    return manifest


def _lineage_card(manifest: dict[str, Any]) -> str:
    lineage = manifest["lineage"]
    params = {k: v for k, v in lineage["parameters"].items() if v is not None}
    lines = [
        "## Merge lineage",
        "",
        f"Merged with skewtune method `{lineage['method']}` ({', '.join(f'{k}={v}' for k, v in params.items())}).",
        f"Largest per-layer error of the stored factors vs the merged update: {lineage['max_abs_error']:.3g}"
        " (max abs; per layer in `skewtune.json` → `lineage.layers`).",
        "",
        "| source | task | weight | adapter_model.safetensors sha256 |",
        "| --- | --- | --- | --- |",
    ]
    for src in lineage["sources"]:
        lines.append(f"| {src['name']} | {src['task']} | {src['weight']:g} | `{src['adapter_model_sha256']}` |")
    if manifest.get("tasks"):
        lines += [
            "",
            "## Tasks",
            "",
            "A multi-task adapter: one merged LoRA, one head per task in `heads/<task>.safetensors`; the PEFT weights"
            f" carry the head of `{manifest['default_task']}`. Predict with",
            "`skewtune.merge.MultiTaskClassifier.from_folder(path, base).predict(texts, task=...)`.",
            "",
        ]
        for task, info in manifest["tasks"].items():
            labels = ", ".join(str(v) for _, v in sorted(info["id2label"].items(), key=lambda kv: int(kv[0])))
            lines.append(f"- `{task}`: {labels}")
    return "\n".join(lines) + "\n"
