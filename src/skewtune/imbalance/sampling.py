"""Resampling for skewed text classification, with scikit-learn / imbalanced-learn ``fit_resample`` conventions.

Three stages, each object saying which one it belongs to in ``stage``:

* ``"rows"`` - :class:`TextResampler`: imbalanced-learn samplers applied to training rows (texts or row
  indices). Random over/under-sampling duplicate or drop rows; the cleaning / prototype-selection methods
  (Tomek links, ENN, NearMiss, one-sided selection, neighbourhood cleaning) decide from neighbours in a feature
  space: sentence embeddings you pass, or TF-IDF of the texts. Rows are only ever copied or dropped, never
  synthesised, so the result is still text.
* ``"embeddings"`` - :class:`EmbeddingSMOTE`: SMOTE / ADASYN / Borderline-SMOTE interpolating sentence
  embeddings, for a stage that trains a classification head on frozen embeddings. Never on token ids.
* ``"batches"`` - :class:`WeightedClassSampler` / :class:`ClassBalancedBatchSampler`: class-balanced or
  square-root-frequency sampling for a ``torch.utils.data.DataLoader``, sharded across DDP processes.

``build_sampler(name, **kw)`` builds any of them from :data:`SAMPLERS`.

Target ``ratio`` (in ``(0, 1]``) is the wanted minority/majority size ratio after resampling, as imbalanced-learn's
float ``sampling_strategy`` but for any number of classes: over-sampling raises every class to at least
``ceil(ratio · n_max)``; under-sampling lowers every class to at most ``max(n_min, floor(n_min / ratio))``.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from imblearn.utils import check_sampling_strategy
from sklearn.feature_extraction.text import TfidfVectorizer
from torch.utils.data import Sampler

from skewtune.errors import ConfigError, DataError, unknown_name
from skewtune.utils.registry import Registry

SAMPLERS: Registry[Callable[..., Any]] = Registry("sampler")

# method -> (imblearn class path, kind, takes random_state, needs features)
_ROW_METHODS: dict[str, tuple[str, str, bool, bool]] = {
    "random_over": ("imblearn.over_sampling:RandomOverSampler", "over", True, False),
    "random_under": ("imblearn.under_sampling:RandomUnderSampler", "under", True, False),
    "near_miss": ("imblearn.under_sampling:NearMiss", "under", False, True),
    "tomek": ("imblearn.under_sampling:TomekLinks", "clean", False, True),
    "enn": ("imblearn.under_sampling:EditedNearestNeighbours", "clean", False, True),
    "one_sided_selection": ("imblearn.under_sampling:OneSidedSelection", "clean", True, True),
    "neighbourhood_cleaning": ("imblearn.under_sampling:NeighbourhoodCleaningRule", "clean", False, True),
}

_SMOTE_KINDS: dict[str, str] = {
    "smote": "imblearn.over_sampling:SMOTE",
    "adasyn": "imblearn.over_sampling:ADASYN",
    "borderline": "imblearn.over_sampling:BorderlineSMOTE",
}


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _labels_array(y: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(y.detach().cpu().numpy() if hasattr(y, "detach") else y)
    if arr.ndim != 1:
        raise DataError(f"labels must be 1-D, got shape {arr.shape}", "pass one label per row")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{n} rows but {arr.shape[0]} labels", "pass one label per row")
    if arr.shape[0] == 0:
        raise DataError("no rows to resample", "check the training split")
    return arr


def _check_classes(y: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Classes and counts; with ``num_classes`` every id ``0..C-1`` must have at least one row."""
    classes, counts = np.unique(y, return_counts=True)
    if num_classes is not None:
        if not np.issubdtype(y.dtype, np.integer):
            raise ConfigError("num_classes needs integer label ids", "map labels to ids first, or drop num_classes")
        present = {int(c) for c in classes}
        empty = [c for c in range(int(num_classes)) if c not in present]
        if empty:
            raise DataError(f"class(es) {empty} have zero training examples", "add examples for these labels or "
                            "drop them from the label map")
    if classes.shape[0] < 2:
        raise DataError(f"resampling needs at least 2 classes, got {classes.shape[0]}", "check the training labels")
    return classes, counts


def check_ratio(ratio: float) -> float:
    """Validate a target minority/majority ratio in ``(0, 1]``."""
    try:
        value = float(ratio)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"target ratio must be a number in (0, 1], got {ratio!r}", "use e.g. 0.5") from exc
    if not (0.0 < value <= 1.0):
        raise ConfigError(
            f"target ratio must be in (0, 1] (minority/majority size after resampling), got {value}",
            "use e.g. 0.5 for half the majority size, 1.0 for balanced",
        )
    return value


def ratio_strategy(y: Any, ratio: float, kind: str) -> dict[Any, int]:
    """Per-class target sizes for ``ratio`` (see module doc); ``kind`` is ``over`` or ``under``."""
    value = check_ratio(ratio)
    classes, counts = np.unique(_labels_array(y), return_counts=True)
    keys = [c.item() if hasattr(c, "item") else c for c in classes]
    if kind == "over":
        target = math.ceil(value * counts.max() - 1e-9)
        return {k: int(max(n, target)) for k, n in zip(keys, counts)}
    if kind == "under":
        cap = max(int(counts.min()), math.floor(counts.min() / value + 1e-9))
        return {k: int(min(n, cap)) for k, n in zip(keys, counts)}
    raise ConfigError(f"a target ratio does not apply to {kind} methods", "use sampling_strategy instead")


def _take(X: Any, idx: np.ndarray) -> Any:
    if isinstance(X, (list, tuple)):
        return [X[int(i)] for i in idx]
    if hasattr(X, "iloc"):  # pandas
        return X.iloc[idx]
    return np.asarray(X)[idx]


def _wrap_imblearn(exc: Exception, what: str) -> DataError:
    return DataError(f"{what} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                     "use fewer neighbours, a milder sampling strategy, or more rows per class")


class TextResampler:
    """Resample text rows with an imbalanced-learn method (see :data:`ROW_METHODS`).

    ``TextResampler(method, sampling_strategy="auto", ratio=None, seed=0, features="tfidf", num_classes=None,
    **method_kw).fit_resample(X, y, features=None) -> (X_res, y_res)``. ``X`` is a list of texts or an array of
    row indices (or any sequence); ``X_res`` has the same type. ``sample_indices_`` holds the selected original
    positions (repeat it on other columns). The neighbour-based methods need a feature matrix aligned with
    ``X``: ``features=`` in ``fit_resample`` (e.g. sentence embeddings ``[n, d]``), or TF-IDF computed from the
    texts when ``features="tfidf"`` (the default) and ``X`` holds strings. ``method_kw`` go to the
    imbalanced-learn class (e.g. ``n_neighbors``, ``version`` for NearMiss).
    """

    stage = "rows"

    def __init__(self, method: str = "random_over", *, sampling_strategy: Any = "auto",
                 ratio: float | None = None, seed: int = 0, features: str | None = "tfidf",
                 num_classes: int | None = None, **method_kw: Any) -> None:
        if method not in _ROW_METHODS:
            raise unknown_name("row resampling method", method, list(_ROW_METHODS))
        self.method = method
        self.kind = _ROW_METHODS[method][1]
        if ratio is not None:
            check_ratio(ratio)
            if self.kind == "clean":
                raise ConfigError(f"'{method}' removes rows by neighbourhood and takes no target ratio",
                                  "drop ratio, or use random_over / random_under / near_miss")
        if features not in ("tfidf", None):
            raise ConfigError(f"unknown feature source '{features}'", "use tfidf, or pass features= to fit_resample")
        self.sampling_strategy = sampling_strategy
        self.ratio = ratio
        self.seed = int(seed)
        self.features = features
        self.num_classes = num_classes
        self.method_kw = method_kw
        self.sample_indices_: np.ndarray | None = None

    def _features(self, X: Any, features: Any, n: int) -> Any:
        if features is not None:
            F = features.detach().cpu().numpy() if hasattr(features, "detach") else features
            if not hasattr(F, "shape"):
                F = np.asarray(F, dtype=np.float64)
            if F.shape[0] != n or len(F.shape) != 2:
                raise DataError(f"features must be [{n}, d] aligned with X, got shape {tuple(F.shape)}",
                                "pass one embedding row per text")
            return F
        is_text = n > 0 and all(isinstance(x, str) for x in (X if isinstance(X, (list, tuple)) else list(X)))
        if self.features == "tfidf" and is_text:
            try:
                return TfidfVectorizer(sublinear_tf=True).fit_transform(list(X))
            except ValueError as exc:  # empty vocabulary
                raise DataError(f"TF-IDF features failed: {exc}", "pass embeddings with features=") from exc
        raise ConfigError(f"'{self.method}' needs a feature space to find neighbours",
                          "pass features=<embeddings [n, d]> to fit_resample, or texts with features=tfidf")

    @property
    def needs_features(self) -> bool:
        """Does the method find neighbours in a feature space (texts or embeddings), or only count labels?"""
        return bool(_ROW_METHODS[self.method][3])

    def fit_resample(self, X: Any, y: Any, features: Any = None) -> tuple[Any, np.ndarray]:
        """Resample rows; returns ``(X_res, y_res)`` and sets ``sample_indices_``."""
        n = len(X)
        y_arr = _labels_array(y, n)
        _check_classes(y_arr, self.num_classes)
        path, kind, takes_seed, needs_features = _ROW_METHODS[self.method]
        F = self._features(X, features, n) if needs_features else np.arange(n).reshape(-1, 1)
        strategy = ratio_strategy(y_arr, self.ratio, kind) if self.ratio is not None else self.sampling_strategy
        kwargs = dict(self.method_kw, sampling_strategy=strategy)
        if takes_seed:
            kwargs["random_state"] = self.seed
        try:
            sampler = _import(path)(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"bad option for '{self.method}': {exc}", "see the imbalanced-learn docs") from exc
        try:
            sampler.fit_resample(F, y_arr)
        except (ValueError, RuntimeError) as exc:
            raise _wrap_imblearn(exc, f"resampling with '{self.method}'") from exc
        idx = np.asarray(sampler.sample_indices_, dtype=np.int64)
        self.sample_indices_ = idx
        return _take(X, idx), y_arr[idx]


class EmbeddingSMOTE:
    """SMOTE-family over-sampling of sentence embeddings, for a head-training stage (never token ids).

    ``kind``: ``smote`` (Chawla et al. 2002), ``adasyn`` (He et al. 2008) or ``borderline`` (Borderline-SMOTE-1,
    Han et al. 2005). A synthetic row is ``x + λ (x_nn - x)``, ``λ ~ U(0, 1)``, between a minority row and one of
    its ``k_neighbors`` same-class neighbours. ``fit_resample(E [n, d] float, y) -> (E_res, y_res)`` keeps the
    originals first, then the synthetic rows; ``synthetic_mask_`` flags the latter. Every over-sampled class
    needs at least ``k_neighbors + 1`` rows.
    """

    stage = "embeddings"

    def __init__(self, kind: str = "smote", *, sampling_strategy: Any = "auto", ratio: float | None = None,
                 k_neighbors: int = 5, m_neighbors: int = 10, seed: int = 0, num_classes: int | None = None) -> None:
        if kind not in _SMOTE_KINDS:
            raise unknown_name("SMOTE kind", kind, list(_SMOTE_KINDS))
        if int(k_neighbors) < 1 or int(m_neighbors) < 1:
            raise ConfigError("k_neighbors and m_neighbors must be >= 1", "use e.g. k_neighbors=5")
        if ratio is not None:
            check_ratio(ratio)
        self.kind = kind
        self.sampling_strategy = sampling_strategy
        self.ratio = ratio
        self.k_neighbors = int(k_neighbors)
        self.m_neighbors = int(m_neighbors)
        self.seed = int(seed)
        self.num_classes = num_classes
        self.synthetic_mask_: np.ndarray | None = None

    @staticmethod
    def _embeddings(X: Any) -> np.ndarray:
        if isinstance(X, (list, tuple)) and X and isinstance(X[0], str):
            raise ConfigError("SMOTE interpolates vectors, got texts",
                              "embed the texts first (sentence embeddings), or use TextResampler for rows")
        E = X.detach().cpu().numpy() if hasattr(X, "detach") else np.asarray(X)
        if E.ndim != 2:
            raise DataError(f"SMOTE needs a 2-D embedding matrix [n, d], got shape {E.shape}",
                            "pass one sentence embedding per row")
        if not np.issubdtype(E.dtype, np.floating):
            raise ConfigError(f"SMOTE got a {E.dtype} matrix: token ids or labels cannot be interpolated",
                              "pass float sentence embeddings (e.g. mean-pooled backbone outputs)")
        return E

    def fit_resample(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Over-sample embeddings; returns ``(E_res, y_res)`` and sets ``synthetic_mask_``."""
        E = self._embeddings(X)
        y_arr = _labels_array(y, E.shape[0])
        classes, counts = _check_classes(y_arr, self.num_classes)
        strategy = ratio_strategy(y_arr, self.ratio, "over") if self.ratio is not None else self.sampling_strategy
        try:
            to_make = check_sampling_strategy(strategy, y_arr, "over-sampling")
        except ValueError as exc:
            raise ConfigError(f"bad sampling_strategy {strategy!r}: {exc}", "use auto, minority, or a dict") from exc
        size = dict(zip([c.item() if hasattr(c, "item") else c for c in classes], counts.tolist()))
        for cls_raw, n_new in to_make.items():
            cls = cls_raw.item() if hasattr(cls_raw, "item") else cls_raw
            have = size[cls]
            if n_new > 0 and self.k_neighbors > have - 1:
                raise DataError(
                    f"{self.kind} needs k_neighbors={self.k_neighbors} <= (rows of class {cls!r}) - 1 = {have - 1}",
                    f"set k_neighbors <= {max(have - 1, 0)} or add rows to class {cls!r}",
                )
        if self.kind == "borderline" and self.m_neighbors > E.shape[0] - 1:
            raise DataError(f"borderline SMOTE needs m_neighbors={self.m_neighbors} <= rows - 1 = {E.shape[0] - 1}",
                            "lower m_neighbors")
        kwargs: dict[str, Any] = {"sampling_strategy": strategy, "random_state": self.seed}
        if self.kind == "adasyn":
            kwargs["n_neighbors"] = self.k_neighbors
        else:
            kwargs["k_neighbors"] = self.k_neighbors
        if self.kind == "borderline":
            kwargs["m_neighbors"] = self.m_neighbors
        sampler = _import(_SMOTE_KINDS[self.kind])(**kwargs)
        try:
            E_res, y_res = sampler.fit_resample(E, y_arr)
        except (ValueError, RuntimeError) as exc:
            raise _wrap_imblearn(exc, f"{self.kind} over-sampling") from exc
        mask = np.zeros(len(y_res), dtype=bool)
        mask[E.shape[0]:] = True
        self.synthetic_mask_ = mask
        return np.asarray(E_res), np.asarray(y_res)


# -------------------------------------------------------------------------------------- batch samplers


def _dist_defaults(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    if num_replicas is None or rank is None:
        ready = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if ready else 1
        if rank is None:
            rank = dist.get_rank() if ready else 0
    if int(num_replicas) < 1 or not 0 <= int(rank) < int(num_replicas):
        raise ConfigError(f"rank {rank} is not in [0, num_replicas={num_replicas})", "check the DDP world size")
    return int(num_replicas), int(rank)


def class_sampling_weights(labels: Any, mode: str = "balanced") -> np.ndarray:
    """Per-row draw probabilities so that class ``c`` is drawn with probability ``∝ n_c^q``.

    ``balanced``: ``q = 0`` (each class equally likely; row weight ``1/n_c``); ``sqrt``: ``q = 1/2``
    (square-root frequency, row weight ``1/sqrt(n_c)``; Mahajan et al. 2018, Kang et al. 2020); ``instance``:
    ``q = 1`` (natural frequencies).
    """
    y = _labels_array(labels)
    q = {"balanced": 0.0, "sqrt": 0.5, "instance": 1.0}.get(mode)
    if q is None:
        raise unknown_name("class sampling mode", mode, ["balanced", "sqrt", "instance"])
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    w = np.power(counts.astype(np.float64), q - 1.0)[inverse]
    return w / w.sum()


class WeightedClassSampler(Sampler[int]):
    """Row-index sampler drawing classes with probability ``∝ n_c^q`` (see :func:`class_sampling_weights`).

    Works like ``DistributedSampler``: every epoch, all processes draw the same global sequence of
    ``num_replicas · num_samples`` positions from a generator seeded with ``seed + epoch`` and process ``rank``
    keeps positions ``rank, rank + num_replicas, ...``: disjoint shards of equal size ``num_samples``. Call
    :meth:`set_epoch` before each epoch. ``replacement=False`` draws distinct rows (needs
    ``num_replicas · num_samples <= len(labels)``); with replacement a row may recur, as in
    ``WeightedRandomSampler``. ``num_samples`` defaults to ``ceil(len(labels) / num_replicas)``.
    ``num_replicas``/``rank`` default to the initialised process group (else 1/0). With Accelerate, either shard
    here and do not ``prepare`` the DataLoader, or pass ``num_replicas=1, rank=0`` and let ``prepare`` shard the
    batches (the draw is identical on every process, so its batch sharding stays disjoint); never both.
    """

    stage = "batches"

    def __init__(self, labels: Any, mode: str = "balanced", num_samples: int | None = None, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None, replacement: bool = True,
                 num_classes: int | None = None) -> None:
        y = _labels_array(labels)
        _check_classes(y, num_classes)
        self.mode = mode
        self.weights = torch.as_tensor(class_sampling_weights(y, mode), dtype=torch.float64)
        self.num_replicas, self.rank = _dist_defaults(num_replicas, rank)
        per_rank = math.ceil(len(y) / self.num_replicas) if num_samples is None else int(num_samples)
        if per_rank < 1:
            raise ConfigError(f"num_samples must be >= 1, got {num_samples}", "use e.g. the training set size")
        self.num_samples = per_rank
        self.total_size = per_rank * self.num_replicas
        self.replacement = bool(replacement)
        if not self.replacement and self.total_size > len(y):
            raise ConfigError(
                f"cannot draw {self.total_size} distinct rows from {len(y)} without replacement",
                "use replacement=True or a smaller num_samples",
            )
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw :meth:`__iter__` yields (same on every rank)."""
        self.epoch = int(epoch)

    def global_indices(self) -> torch.Tensor:
        """The draw shared by all ranks for the current epoch, ``[num_replicas · num_samples]``."""
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.multinomial(self.weights, self.total_size, self.replacement, generator=g)

    def __iter__(self) -> Iterator[int]:
        shard = self.global_indices()[self.rank:self.total_size:self.num_replicas]
        return iter(shard.tolist())

    def __len__(self) -> int:
        return self.num_samples


class ClassBalancedBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` row indices from a :class:`WeightedClassSampler` (use as ``batch_sampler=``).

    Same DDP and epoch semantics; ``drop_last`` drops a final short batch.
    """

    stage = "batches"

    def __init__(self, labels: Any, batch_size: int, mode: str = "balanced", num_samples: int | None = None,
                 seed: int = 0, num_replicas: int | None = None, rank: int | None = None,
                 replacement: bool = True, drop_last: bool = False, num_classes: int | None = None) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}", "use e.g. 32")
        self.sampler = WeightedClassSampler(labels, mode, num_samples, seed, num_replicas, rank, replacement,
                                            num_classes)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        for i in self.sampler:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


# ------------------------------------------------------------------------------------------- registry

_TARGETS: dict[str, type] = {}
for _name in _ROW_METHODS:
    SAMPLERS.add(_name, lambda _m=_name, **kw: TextResampler(_m, **kw))
    _TARGETS[_name] = TextResampler
SAMPLERS.add("smote", lambda **kw: EmbeddingSMOTE("smote", **kw))
SAMPLERS.add("adasyn", lambda **kw: EmbeddingSMOTE("adasyn", **kw))
SAMPLERS.add("borderline_smote", lambda **kw: EmbeddingSMOTE("borderline", **kw))
SAMPLERS.add("class_balanced", lambda labels, **kw: WeightedClassSampler(labels, "balanced", **kw))
SAMPLERS.add("sqrt_frequency", lambda labels, **kw: WeightedClassSampler(labels, "sqrt", **kw))
_TARGETS.update(smote=EmbeddingSMOTE, adasyn=EmbeddingSMOTE, borderline_smote=EmbeddingSMOTE,
                class_balanced=WeightedClassSampler, sqrt_frequency=WeightedClassSampler)

ROW_METHODS: tuple[str, ...] = tuple(_ROW_METHODS)


def build_sampler(name: str, **kw: Any) -> TextResampler | EmbeddingSMOTE | WeightedClassSampler:
    """Build sampler ``name`` from :data:`SAMPLERS`; check ``.stage`` (``rows``/``embeddings``/``batches``).

    Row samplers take the keywords of :class:`TextResampler` (extra ones go to the imbalanced-learn class),
    embedding samplers those of :class:`EmbeddingSMOTE`; batch samplers (``class_balanced``,
    ``sqrt_frequency``) need ``labels=`` plus the keywords of :class:`WeightedClassSampler`.
    """
    factory = SAMPLERS.get(name)
    target = _TARGETS[name]
    if target is not TextResampler:
        fixed = {"self", "method", "kind", "mode"}
        allowed = [p for p in inspect.signature(target).parameters if p not in fixed]
        unknown = sorted(set(kw) - set(allowed))
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown} for sampler '{name}'",
                              f"sampler '{name}' accepts: {', '.join(allowed)}")
        if target is WeightedClassSampler and "labels" not in kw:
            raise ConfigError(f"sampler '{name}' needs the training labels", "pass labels=<train label ids>")
    return factory(**kw)
