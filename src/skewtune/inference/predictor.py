"""Load an adapter folder (safetensors only, verified) onto its backbone and predict, batched, in inference mode."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from skewtune.adapters import load_trained_adapter, merge_and_unload
from skewtune.adapters.heads import load_head_file, set_head_params
from skewtune.adapters.io import (
    check_base_fingerprint,
    check_folder_safe,
    check_manifest_hash,
    check_safetensors_header,
    read_manifest,
    select_task,
    task_names,
    verify_folder,
)
from skewtune.adapters.pooling import install_pooling
from skewtune.backbones import (
    check_max_length,
    load_backbone,
    load_tokenizer,
    position_limit,
    resolve_backbone,
)
from skewtune.data.batching import PaddingCollator, tokenize_split
from skewtune.data.readers import read_rows, read_table
from skewtune.errors import AdapterError, ConfigError, DataError, capped
from skewtune.imbalance.decision import apply_decision
from skewtune.inference.logits import predict_logits
from skewtune.inference.precision import apply_dtype, check_dtype_name, resolve_dtype

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@dataclass
class AdapterClassifier:
    """A backbone + adapter ready for prediction."""

    model: PeftModel | PreTrainedModel  # a PreTrainedModel once merged
    tokenizer: PreTrainedTokenizerBase
    id2label: dict[int, str]
    manifest: dict[str, Any]
    max_length: int = 128
    decision: dict[str, Any] | None = None
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32  # compute precision (skewtune.inference.precision)
    autocast: bool = False  # quantized layers at a lower precision: run under torch.autocast
    task: str | None = None  # the head in use of a multi-task adapter (None: single-task)
    problem_type: str = "single_label"  # single_label | multi_label | regression (the manifest's)
    pairs: bool = False  # trained on sentence pairs: predict takes a second text per row

    @property
    def tasks(self) -> list[str]:
        """Tasks of a merged multi-task adapter (default first); ``[]`` for a single-task one."""
        return task_names(self.manifest)

    @property
    def labels(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def compute_context(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` at ``dtype`` for models whose quantized layers cannot be cast, else a no-op."""
        return torch.autocast(self.device.type, dtype=self.dtype) if self.autocast else contextlib.nullcontext()

    def logits(self, texts: list[str], batch_size: int = 128, progress: bool = False,
               pairs: list[str] | None = None) -> torch.Tensor:
        check_batch_size(batch_size)
        if self.pairs and pairs is None:
            raise ConfigError("this adapter was trained on sentence pairs: give the second text of every row",
                              "pass pairs= (Python) or --text_pair_column (skewtune predict)")
        split = tokenize_split(self.tokenizer, texts, None, self.max_length, "input", pairs=pairs)
        config = getattr(self.model, "config", None)
        segments = pairs is not None and int(getattr(config, "type_vocab_size", 1) or 1) >= 2
        collator = PaddingCollator(self.tokenizer.pad_token_id, padding_side=getattr(self.tokenizer, "padding_side", "right"),
                                   segment_sep_id=self.tokenizer.sep_token_id if segments else None)
        with self.compute_context():
            logits = predict_logits(self.model, split, collator, batch_size, self.device, progress=progress)
        if self.decision:
            logits = apply_decision(logits, self.decision)
        return logits

    def predict(self, texts: list[str], batch_size: int = 128, progress: bool = False,
                pairs: list[str] | None = None) -> list[dict[str, Any]]:
        """One dict per text (or text pair): ``label`` and ``probabilities`` (label → p); multi-label: ``labels``
        (those at or above their threshold) and ``probabilities`` (label → sigmoid after the thresholds' bias, so
        0.5 is each label's cut); regression: ``score``."""
        if isinstance(texts, str):
            texts = [texts]
            pairs = [pairs] if isinstance(pairs, str) else pairs
        check_batch_size(batch_size)
        if not texts:
            return []
        if pairs is not None and len(pairs) != len(texts):
            raise ConfigError(f"{len(texts)} texts but {len(pairs)} second texts", "give one pair text per text")
        logits = self.logits(list(texts), batch_size, progress, pairs=list(pairs) if pairs is not None else None)
        name = str(self.manifest.get("name", "?"))
        if self.problem_type == "regression":
            return score_records(logits, name)
        if self.problem_type == "multi_label":
            return multilabel_records(logits, self.labels, name)
        return probability_records(logits, self.labels, name)


def check_batch_size(batch_size: int) -> None:
    """ConfigError for a batch size that is not a whole number ≥ 1."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"--batch_size must be a whole number ≥ 1, got {batch_size!r}", "pass e.g. --batch_size 32")


def load_adapter(
    path: str | Path, *, backbone: str | None = None, quant: str | None = None, merge: bool = False,
    device: str | None = None, verify: bool = True, max_length: int | None = None, dtype: str = "auto",
    task: str | None = None, force_base: bool = False,
) -> AdapterClassifier:
    """Load ``path`` (an adapter folder saved by skewtune) on its backbone.

    ``quant`` defaults to the mode used in training; ``merge=True`` loads a dense (unquantized) backbone and
    folds LoRA/IA³ into its weights for speed. ``dtype`` (auto | fp32 | bf16 | fp16) is the compute precision: ``auto`` is fp32
    unmerged and, merged, bf16 on hardware with native bf16 matmul (``skewtune.inference.precision``).
    ``max_length`` (tokens per text) defaults to the one trained with (128 when unrecorded) within the backbone's
    positions; a larger explicit one is a ConfigError, as in training.
    Files are hash-checked against ``skewtune.json`` unless ``verify=False``. ``task`` picks the head of a merged
    multi-task adapter (``classifier.tasks``; default: its default task, with a warning on the ``skewtune`` logger).
    The manifest's own hash is always checked, and the base fingerprint the adapter records is compared with the
    backbone folder about to load (:func:`skewtune.adapters.io.check_base_fingerprint`): a mismatch raises
    :class:`AdapterError` unless ``force_base`` (then a warning); an adapter recording none loads with a warning.
    """
    check_dtype_name(dtype)  # before any backbone loads
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
        raise ConfigError(f"--max_length must be a whole number ≥ 1, got {max_length!r}", "pass e.g. --max_length 128")
    folder = Path(path)
    manifest, adapter_config = open_adapter_folder(folder, verify=verify)
    chosen, task_labels, head_file = select_task(manifest, task, folder)  # before any backbone loads
    if chosen is not None and task is None:
        logger.warning("%s is a multi-task adapter (tasks: %s); predicting its default task '%s' — choose one with "
                       "--task / task=", folder, ", ".join(task_names(manifest)), chosen)
    id2label = {int(k): v for k, v in manifest["id2label"].items()}  # the head inside adapter_model.safetensors
    spec = resolve_backbone(backbone or manifest.get("backbone") or adapter_config.get("base_model_name_or_path"))
    if Path(spec.path).is_dir():  # a Hub id (online) has no local folder to fingerprint before it downloads
        check_base_fingerprint(manifest, spec.path, force=force_base, base_label=spec.name, require=False)
    task = manifest.get("task_type", "seq_cls")
    mode = quant or manifest.get("quant", "none")
    if merge:
        mode = "none"
    model = load_backbone(spec, task=task, num_labels=len(id2label), id2label=id2label, quant=mode)
    if max_length is None:  # as trained (128 when unrecorded), within the backbone's positions
        max_length = trained_max_length(manifest, model.config)
    check_max_length(max_length, model.config, spec.name)  # as training does: beyond the positions is an error
    try:
        model = load_trained_adapter(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise AdapterError(f"adapter {folder} does not fit backbone '{spec.name}': {first}",
                           "load it on the backbone it was trained on (see skewtune.json)") from exc
    if head_file and chosen != manifest.get("default_task"):
        set_head_params(model, load_head_file(folder, head_file))
    if chosen is not None:
        id2label = {int(k): v for k, v in task_labels.items()}
    if merge and hasattr(model, "merge_and_unload"):  # prefix/prompt adapters have nothing to fold in
        model = merge_and_unload(model)
    if manifest.get("pooling"):  # few-shot adapters classify mean-pooled sentence embeddings (skewtune.fewshot)
        install_pooling(model, manifest["pooling"])
    model.eval()
    tokenizer = load_tokenizer(spec)
    target = torch.device(device) if device else next(p.device for p in model.parameters())
    if mode == "none":
        model.to(target)
    compute = resolve_dtype(dtype, merged=merge, device=target)
    autocast = apply_dtype(model, compute, castable=mode == "none")
    decision = manifest.get("decision")
    if chosen is not None and chosen != manifest.get("default_task"):
        decision = (manifest["tasks"][chosen] or {}).get("decision")  # a decision rule belongs to one head
    return AdapterClassifier(model=model, tokenizer=tokenizer, id2label=id2label, manifest=manifest,
                             max_length=max_length, decision=decision, device=target,
                             dtype=compute, autocast=autocast, task=chosen,
                             problem_type=manifest.get("problem_type") or "single_label",
                             pairs=bool(manifest.get("text_pair_column")))


def open_adapter_folder(folder: str | Path, *, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checks every loader runs before a backbone loads; returns ``(manifest, adapter_config)``.

    A safe folder (no links out), a valid manifest whose own hash holds, every file's sha256 (unless
    ``verify=False``), a readable safetensors table whose classifier rows match ``id2label`` and finite weights.
    """
    folder = Path(folder)
    check_folder_safe(folder)
    manifest = read_manifest(folder)
    if verify:
        verify_folder(folder, manifest)
    else:
        check_manifest_hash(manifest, folder)
    _check_weights(folder, manifest)
    try:
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{folder}/adapter_config.json is not valid JSON", "re-save the adapter") from exc
    if not isinstance(adapter_config, dict):
        raise AdapterError(f"{folder}/adapter_config.json is not a JSON object", "re-save the adapter")
    return manifest, adapter_config


def trained_max_length(manifest: dict[str, Any], config: Any) -> int:
    """Tokens per text as trained (128 when unrecorded), within the backbone's positions."""
    training = manifest.get("training")
    trained = training.get("max_length") if isinstance(training, dict) else None
    max_length = trained if isinstance(trained, int) and not isinstance(trained, bool) and trained >= 1 else 128
    return min(max_length, position_limit(config) or max_length)


def _finite_rows(values: torch.Tensor, adapter_name: str, what: str) -> None:
    broken = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=-1)
    if bool(broken.any()):  # a broken adapter (e.g. an overflowed merge): refuse rather than write NaN
        raise AdapterError(
            f"adapter '{adapter_name}' produced non-finite (NaN/inf) {what} for {int(broken.sum())} of "
            f"{len(values)} text(s); nothing was written",
            "its weights are broken: retrain or re-merge it, or run 'skewtune hub verify' on its source")


def multilabel_records(logits: torch.Tensor, labels: list[str], adapter_name: str) -> list[dict[str, Any]]:
    """``{"labels", "probabilities"}`` per row of (decided) multi-label logits: every label with σ ≥ 0.5."""
    probs = torch.sigmoid(logits.float())
    _finite_rows(probs, adapter_name, "probabilities")
    return [{"labels": [lab for lab, p in zip(labels, row) if p >= 0.5],
             "probabilities": {lab: float(p) for lab, p in zip(labels, row)}} for row in probs.tolist()]


def score_records(outputs: torch.Tensor, adapter_name: str) -> list[dict[str, Any]]:
    """``{"score"}`` per row of a regression adapter's outputs."""
    values = outputs.float().reshape(len(outputs), -1)[:, 0]
    _finite_rows(values, adapter_name, "scores")
    return [{"score": float(v)} for v in values.tolist()]


def probability_records(logits: torch.Tensor, labels: list[str], adapter_name: str) -> list[dict[str, Any]]:
    """``{"label", "probabilities"}`` per row of (decided) logits; non-finite probabilities are an AdapterError."""
    probs = torch.softmax(logits.float(), dim=-1)
    broken = ~torch.isfinite(probs).all(dim=-1)
    if bool(broken.any()):  # a broken adapter (e.g. an overflowed merge): refuse rather than write NaN
        raise AdapterError(
            f"adapter '{adapter_name}' produced non-finite (NaN/inf) probabilities for "
            f"{int(broken.sum())} of {len(logits)} text(s); nothing was written",
            "its weights are broken: retrain or re-merge it, or run 'skewtune hub verify' on its source")
    return [
        {"label": labels[int(row.argmax())], "probabilities": {lab: float(p) for lab, p in zip(labels, row.tolist())}}
        for row in probs
    ]


HEAD_SUFFIXES = ("classifier.weight", "classifier.bias", "score.weight")


def _check_weights(folder: Path, manifest: dict[str, Any]) -> None:
    """Before any backbone loads: a readable safetensors table whose classifier rows match ``id2label``."""
    header = check_safetensors_header(folder / "adapter_model.safetensors")
    labels = manifest.get("id2label") or {}
    for key, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if key.endswith(HEAD_SUFFIXES) and "original_module" not in key and shape and shape[0] != len(labels):
            raise AdapterError(
                f"{folder}: skewtune.json lists {len(labels)} labels but the classifier head {key} has {shape[0]} outputs",
                "re-save the adapter with skewtune (the manifest and the weights do not belong together)",
            )
    _check_finite_weights(folder / "adapter_model.safetensors")


def _check_finite_weights(path: Path) -> None:
    """Before any backbone loads: every floating tensor of the adapter is finite (NaN/inf would be predicted as
    NaN probabilities)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise AdapterError(f"{path}: tensor {key} holds NaN or infinite values",
                                       "the adapter is broken: retrain or re-merge it")
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise AdapterError(f"{path} is not a readable safetensors file ({type(exc).__name__})",
                           "re-save the adapter") from exc


@dataclass
class PredictionInputs:
    """The texts of an input file, the column they came from, and each row's other columns (kept in the output)."""

    texts: list[str]
    rows: list[dict[str, Any]]
    text_column: str
    pairs: list[str] | None = None  # the second texts, for an adapter trained on sentence pairs


PREDICTION_KEYS = ("label", "labels", "probabilities", "score")  # written by predict; input columns of these names get an input_ prefix


def read_prediction_inputs(path: str | Path, text_column: str | None = None, encoding: str = "utf-8",
                           trained_column: str | None = None, pair_column: str | None = None) -> PredictionInputs:
    """Texts and rows from .txt (one per line) or .csv/.tsv/.jsonl/.json/.parquet.

    The text column is ``text_column``, else ``trained_column`` (the column the adapter was trained on) when the
    file has it, else ``text``. Empty texts (blank lines included) are an error that counts them: predictions
    are written one per input row, in order, so a skipped row would misalign a join by row position.
    """
    rows = read_rows(path, encoding=encoding, keep_blank=True)
    if not rows:
        raise DataError(f"{path} holds no rows", "add texts")
    columns = list(rows[0].keys())
    column = text_column or (trained_column if trained_column in columns else "text")
    if column not in columns:
        tried = ("" if text_column or not trained_column or trained_column == "text"
                 else f" nor '{trained_column}' (the adapter's training column)")
        raise DataError(f"text column '{column}'{tried} not found in {path} (columns: {capped(map(str, columns))})",
                        "pass --text_column NAME")
    texts, _ = read_table(path, text_column=column, label_column=None, encoding=encoding, rows=rows)
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if empty:
        where = ", ".join(str(i + 1) for i in empty[:5]) + (", …" if len(empty) > 5 else "")
        raise DataError(f"{len(empty)} empty text(s) in {path} (row(s) {where})",
                        "remove or fill them: predictions are written one per input row, in order")
    pairs = None
    if pair_column is not None:
        if pair_column not in columns:
            raise DataError(f"text pair column '{pair_column}' not found in {path} (columns: "
                            f"{capped(map(str, columns))}); the adapter was trained on sentence pairs",
                            "pass --text_pair_column NAME")
        pairs, _ = read_table(path, text_column=pair_column, label_column=None, encoding=encoding, rows=rows)
        blank = [i for i, t in enumerate(pairs) if not t.strip()]
        if blank:
            raise DataError(f"{len(blank)} empty second text(s) in {path} (row {blank[0] + 1} first)",
                            "fill them: each row needs both texts of its pair")
    return PredictionInputs(texts=texts, rows=[dict(r) for r in rows], text_column=column, pairs=pairs)


def read_inputs(path: str | Path, text_column: str = "text", encoding: str = "utf-8") -> list[str]:
    """Texts from .txt (one per line), .csv/.tsv/.jsonl/.json/.parquet (``text_column``); empty texts refused."""
    return read_prediction_inputs(path, text_column, encoding).texts


def _finite_or_none(value: Any) -> Any:
    """A kept input cell as strict JSON allows it: NaN and ±inf (e.g. empty Parquet cells, or inside a JSONL
    object) become None (null)."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) or (hasattr(value, "dtype") and getattr(value, "ndim", None) == 0):
        try:
            return value if math.isfinite(float(value)) else None
        except (TypeError, ValueError, OverflowError):
            return value
    return value


def prediction_record(row: dict[str, Any], text_column: str, text: str, prediction: dict[str, Any]) -> dict[str, Any]:
    """One output line: the input row's columns (``label``/``probabilities`` renamed ``input_…``), then the prediction."""
    taken = {*PREDICTION_KEYS, *prediction}  # a tagging adapter's prediction brings words and tags
    out = {(f"input_{k}" if k in taken else str(k)): _finite_or_none(v) for k, v in row.items()} if row else {}
    out[text_column if row else "text"] = text
    return {**out, **prediction}
