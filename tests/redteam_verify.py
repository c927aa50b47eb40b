"""Red-team cases of issue 23, classes 1 (``hub pull --dest``), 3 (verification that verifies), 4 (hub symlinks) and 6
(malformed manifest fields): each is one command that must exit 2 with one ``error: … (fix: …)`` line and write
nothing. Run by ``tests/test_hostile_inputs.py`` (``-k rt-ver``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.hostile_support import Case, World, _hub_copy, _manifest_edit, altered, merge, predict


def _canonical_sha(manifest: dict[str, Any]) -> str:
    """The manifest's own hash as skewtune computes it (sorted compact JSON without ``manifest_sha256``)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def _stamped(**changes: Any) -> Callable[[Path], None]:
    """Edit manifest fields and re-stamp its own hash: a consistent manifest whose only fault is the edit."""
    def edit(folder: Path) -> None:
        manifest = json.loads((folder / "skewtune.json").read_text())
        manifest.update(changes)
        manifest["manifest_sha256"] = _canonical_sha(manifest)
        (folder / "skewtune.json").write_text(json.dumps(manifest, indent=2))
    return edit


def _raw_manifest_tail(tail: str) -> Callable[[Path], None]:
    """Append raw JSON text as the last field of the manifest (for nesting no json.dumps would write)."""
    def edit(folder: Path) -> None:
        text = (folder / "skewtune.json").read_text().rstrip().rstrip("}")
        (folder / "skewtune.json").write_text(text + ', "extra": ' + tail + "}")
    return edit


def _edited(w: World, t: Path, change: Callable[[Path], None]) -> Path:
    return altered(w, t, change, rehash=False)


def _swap_labels(w: World, t: Path) -> Path:
    return _edited(w, t, _manifest_edit(id2label={"0": "positive", "1": "neutral", "2": "negative"}))


def _inflated(w: World, t: Path) -> Path:
    return _edited(w, t, _manifest_edit(metrics={"eval_macro_f1": 0.99, "eval_accuracy": 0.99}))


def _same_shaped_base(w: World, t: Path) -> Path:
    """A copy of the adapter's base with one weight changed: same shapes, another fingerprint."""
    from safetensors.numpy import load_file, save_file

    base = shutil.copytree(w.adapter_base, t / "look-alike-base")
    tensors = load_file(str(base / "model.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + 0.5
    save_file(tensors, str(base / "model.safetensors"))
    return base


def _on_other_base(w: World, t: Path) -> Path:
    base = _same_shaped_base(w, t)
    return altered(w, t, _manifest_edit(backbone=str(base)))


def _retarget_index(hub: Path, name: str = "demo") -> None:
    """A hostile hub owner keeps its index consistent with the manifest it rewrote."""
    index = json.loads((hub / "index.json").read_text())
    raw = (hub / name / "v1" / "skewtune.json").read_bytes()
    index["adapters"][name]["versions"][0]["manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    (hub / "index.json").write_text(json.dumps(index, indent=2))


def _planted_symlink(w: World, t: Path) -> Path:
    """A hub whose demo@v1 holds ``notes.txt`` -> a file of the puller's machine, listed in a consistent manifest."""
    hub = _hub_copy(w, t)
    secret = t / "secret.txt"
    secret.write_text("the puller's private key\n")
    version = hub / "demo" / "v1"
    (version / "notes.txt").symlink_to(secret)
    manifest = json.loads((version / "skewtune.json").read_text())
    manifest["files"]["notes.txt"] = hashlib.sha256(secret.read_bytes()).hexdigest()
    manifest["manifest_sha256"] = _canonical_sha(manifest)
    (version / "skewtune.json").write_text(json.dumps(manifest, indent=2))
    _retarget_index(hub)
    return hub


def _symlinked_version(w: World, t: Path) -> Path:
    """A hub whose demo/v1 folder is a link to a folder elsewhere (a consistent adapter copy)."""
    hub = _hub_copy(w, t)
    elsewhere = shutil.move(str(hub / "demo" / "v1"), str(t / "elsewhere"))
    (hub / "demo" / "v1").symlink_to(elsewhere, target_is_directory=True)
    return hub


def _cache_with_pull(w: World, t: Path) -> Path:
    cache = Path(os.environ["SKEWTUNE_CACHE"])
    (cache / "hub").mkdir(parents=True, exist_ok=True)
    (cache / "hub" / "kept.txt").write_text("an earlier pull")
    return cache


def _pull(hub: Path | str, dest: Path | str, *extra: str) -> list[str]:
    return ["hub", "pull", "demo", "--hub", str(hub), "--dest", str(dest), *extra]


CASES: list[Case] = [
    # --- class 3: the manifest is covered by its own hash; the base fingerprint is checked on load
    Case("rt-ver-manifest-labels-verify", "verify", "`hub verify` of a folder whose id2label was swapped by hand",
         "was edited after skewtune wrote it", lambda w, t: ["hub", "verify", str(_swap_labels(w, t))]),
    Case("rt-ver-manifest-metrics-push", "verify", "`hub push` of a folder whose metrics were inflated by hand",
         "was edited after skewtune wrote it",
         lambda w, t: ["hub", "push", str(_inflated(w, t)), "--hub", str(_hub_copy(w, t)), "--name", "inflated"]),
    Case("rt-ver-manifest-labels-predict", "verify", "`predict` with an adapter whose id2label was swapped by hand",
         "was edited after skewtune wrote it", lambda w, t: predict(_swap_labels(w, t), t)),
    Case("rt-ver-manifest-labels-merge", "verify", "`merge` of an adapter whose id2label was swapped by hand",
         "was edited after skewtune wrote it", lambda w, t: merge(w.adapter, _swap_labels(w, t), tmp=t)),
    Case("rt-ver-base-lookalike-predict", "verify",
         "`predict` with an adapter pointed at a same-shaped base with other weights", "base-model mismatch",
         lambda w, t: predict(_on_other_base(w, t), t)),
    # --- class 4: nothing but regular files is read from a hub
    Case("rt-ver-pull-symlink", "hub", "`hub pull` of a version holding a symlink to a file of the puller",
         "which is a symbolic link, not a regular file",
         lambda w, t: _pull(_planted_symlink(w, t), t / "dest")),
    Case("rt-ver-pull-symlinked-version", "hub", "`hub pull` where the version folder is a symlink",
         "which is a symbolic link, not a regular file",
         lambda w, t: _pull(_symlinked_version(w, t), t / "dest")),
    Case("rt-ver-info-symlink", "hub", "`hub info` of a version whose skewtune.json is a symlink",
         "which is a symbolic link, not a regular file",
         lambda w, t: ["hub", "info", "demo", "--hub", str(_symlinked_manifest(w, t))]),
    # --- class 1: hub pull --dest must not overlap the hub or the cache
    Case("rt-ver-pull-dest-hub", "hub", "`hub pull --dest <the hub> --force`", "is the hub",
         lambda w, t: _pull(_hub_copy(w, t), t / "hub", "--force")),
    Case("rt-ver-pull-dest-in-hub", "hub", "`hub pull --dest <hub>/demo --force`", "lies inside the hub",
         lambda w, t: _pull(_hub_copy(w, t), t / "hub" / "demo", "--force")),
    Case("rt-ver-pull-dest-above-hub", "hub", "`hub pull --dest <folder holding the hub> --force`", "contains the hub",
         lambda w, t: _pull(_hub_copy(w, t), t, "--force")),
    Case("rt-ver-pull-dest-cache", "hub", "`hub pull --dest <the hub cache> --force`", "the hub cache",
         lambda w, t: _pull(w.hub, _cache_with_pull(w, t), "--force")),
    # --- class 6: malformed manifest fields (consistent hashes: the field is the only fault)
    Case("rt-ver-field-id2label-keys", "manifest", "id2label with string keys ('a', 'b', 'c')",
         "field 'id2label' has the key 'a'",
         lambda w, t: predict(_edited(w, t, _stamped(id2label={"a": "x", "b": "y", "c": "z"})), t)),
    Case("rt-ver-field-id2label-list", "manifest", "id2label as a list", "field 'id2label' must be a map",
         lambda w, t: predict(_edited(w, t, _stamped(id2label=["negative", "neutral", "positive"])), t)),
    Case("rt-ver-field-id2label-gap", "manifest", "id2label with a gap (0, 1, 3)", "skips class index 2",
         lambda w, t: predict(_edited(w, t, _stamped(id2label={"0": "a", "1": "b", "3": "c"})), t)),
    Case("rt-ver-field-id2label-value", "manifest", "id2label mapping a class to a map",
         "field 'id2label' maps 1 to a map",
         lambda w, t: predict(_edited(w, t, _stamped(id2label={"0": "a", "1": {"x": 1}, "2": "c"})), t)),
    Case("rt-ver-field-deep-nesting", "manifest", "a manifest nested 100,000 levels deep", "nested too deeply",
         lambda w, t: predict(_edited(w, t, _raw_manifest_tail("[" * 100_000 + "]" * 100_000)), t)),
    Case("rt-ver-field-nesting-verify", "manifest", "`hub verify` of a manifest nested 40 levels deep",
         "nested more than 32 levels deep",
         lambda w, t: ["hub", "verify", str(_edited(w, t, _raw_manifest_tail("[" * 40 + "]" * 40)))]),
    Case("rt-ver-field-decision", "manifest", "decision with non-numeric logit biases",
         "has a logit_bias that is not a list of finite numbers",
         lambda w, t: predict(_edited(w, t, _stamped(decision={"logit_bias": ["a", "b", "c"]})), t)),
    Case("rt-ver-field-decision-huge", "manifest", "decision with logit biases of 1e308 (NaN probabilities)",
         "has a logit bias beyond ±10000",
         lambda w, t: predict(_edited(w, t, _stamped(decision={"logit_bias": [1e308, 0.0, 0.0]})), t)),
    Case("rt-ver-field-decision-count", "manifest", "decision with 2 logit biases for 3 labels",
         "has 2 logit biases for 3 labels",
         lambda w, t: ["hub", "verify", str(_edited(w, t, _stamped(decision={"logit_bias": [0.1, 0.2]})))]),
    Case("rt-ver-field-tasks-list", "manifest", "`hub verify` of a manifest whose tasks is a list",
         "field 'tasks' must be a map",
         lambda w, t: ["hub", "verify", str(_edited(w, t, _stamped(tasks=["a", "b"])))]),
    Case("rt-ver-field-files-list", "manifest", "`hub verify` of a manifest whose files table is a list",
         "field 'files' must be a map",
         lambda w, t: ["hub", "verify", str(_edited(w, t, _stamped(files=["adapter_model.safetensors"])))]),
    Case("rt-ver-field-metrics-list", "manifest", "`hub push` of a manifest whose metrics is a list",
         "field 'metrics' must be a map",
         lambda w, t: ["hub", "push", str(_edited(w, t, _stamped(metrics=[0.9]))), "--hub", str(_hub_copy(w, t)),
                       "--name", "listy"]),
    Case("rt-ver-field-merge", "manifest", "`merge` of an adapter whose id2label is a list",
         "field 'id2label' must be a map",
         lambda w, t: merge(w.adapter, _edited(w, t, _stamped(id2label=["a", "b", "c"])), tmp=t)),
]


def _symlinked_manifest(w: World, t: Path) -> Path:
    """A hub whose demo@v1/skewtune.json is a link to a JSON file of the puller's machine."""
    hub = _hub_copy(w, t)
    version = hub / "demo" / "v1"
    private = t / "private.json"
    private.write_text((version / "skewtune.json").read_text())
    (version / "skewtune.json").unlink()
    (version / "skewtune.json").symlink_to(private)
    return hub
