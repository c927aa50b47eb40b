"""``skewtune hub push|pull|ls|search|info|verify``: share and fetch verified adapters.

The hub is ``--hub URL`` (a folder, ``file://``, any fsspec URL such as ``s3://bucket/hub``, or
``hf://<user or org>``), defaulting to ``$SKEWTUNE_HUB``. fsspec options come from its own config, e.g.
``FSSPEC_S3_ENDPOINT_URL`` / ``AWS_*`` for an S3-compatible server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from skewtune.adapters.io import task_names
from skewtune.errors import HubError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("hub", help="share, find and pull adapters (folder, fsspec URL, HF Hub)")
    sub = parser.add_subparsers(dest="hub_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", default=None,
                        help="the hub to use: a local folder, file://, s3://, gs://, memory:// (any fsspec "
                             "URL) or hf://<user or org> (default: $SKEWTUNE_HUB)")

    push = sub.add_parser("push", parents=[common], help="share an adapter folder as a new version")
    push.add_argument("adapter_dir", help="adapter folder saved by skewtune (safetensors + skewtune.json)")
    push.add_argument("--name", default=None,
                      help="adapter name on the hub (default: the manifest's name, e.g. tweets-minilm-lora)")
    push.add_argument("--tag", action="append", default=None,
                      help="extra tag for the card and for 'hub search --tag' (repeatable)")
    push.add_argument("--language", action="append", default=None,
                      help="language code (repeatable; replaces the manifest's languages)")
    push.set_defaults(func=_run_push)

    pull = sub.add_parser("pull", parents=[common], help="download and verify NAME or NAME@vN")
    pull.add_argument("ref", help="adapter to download: NAME (its latest version) or NAME@vN (that version)")
    pull.add_argument("--dest", default=None,
                      help="folder to download the adapter into (default: <user cache>/hub/..., reused when "
                           "already verified there)")
    pull.add_argument("--force", action="store_true",
                      help="replace an existing --dest folder, or download again over a cached copy")
    pull.add_argument("--base", default=None,
                      help="backbone name or folder: refuse the adapter, before downloading, when its "
                           "recorded base-model fingerprint differs")
    pull.add_argument("--force_base", action="store_true",
                      help="with --base: download even when the base-model fingerprint differs (a warning)")
    pull.set_defaults(func=_run_pull)

    listing = sub.add_parser("ls", parents=[common], help="adapters on the hub (latest version of each)")
    listing.add_argument("--json", action="store_true",
                         help="print the rows as a JSON list instead of a table")
    listing.set_defaults(func=_run_ls)

    search = sub.add_parser("search", parents=[common], help="find adapters by base, task, language, labels, metric")
    search.add_argument("--base_model", default=None, help="base model id or backbone name (e.g. minilm)")
    search.add_argument("--task", default=None, choices=["seq_cls", "token_cls"],
                        help="task type: seq_cls (text classification) or token_cls (tagging)")
    search.add_argument("--language", default=None, help="language code the adapter lists, e.g. en")
    search.add_argument("--tag", default=None, help="card tag the adapter carries")
    search.add_argument("--labels", default=None,
                        help="only adapters with exactly this label set, any order, comma separated "
                             "(e.g. negative,neutral,positive)")
    search.add_argument("--min_metric", default=None,
                        help="only adapters whose manifest score METRIC is at least VALUE: METRIC=VALUE, "
                             "e.g. eval_macro_f1=0.7")
    search.add_argument("--all_versions", action="store_true", help="match every version, not only the latest")
    search.add_argument("--json", action="store_true",
                        help="print the matches as a JSON list instead of a table")
    search.set_defaults(func=_run_search)

    info = sub.add_parser("info", parents=[common], help="facts, versions and manifest of NAME[@vN]")
    info.add_argument("ref", help="NAME (latest version) or NAME@vN")
    info.add_argument("--json", action="store_true", help="print the raw facts and manifest as JSON")
    info.set_defaults(func=_run_info)

    verify = sub.add_parser("verify", parents=[common], help="check a local adapter folder or NAME[@vN] on the hub")
    verify.add_argument("target", help="adapter folder, or NAME[@vN] with --hub")
    verify.add_argument("--base", default=None,
                        help="backbone name or folder: also check the adapter's recorded base fingerprint against it")
    verify.add_argument("--force_base", action="store_true", help="report a base-model mismatch instead of failing")
    verify.set_defaults(func=_run_verify)


def _hub(args: argparse.Namespace, required: bool = True) -> str | None:
    url = args.hub or os.environ.get("SKEWTUNE_HUB")
    if not url and required:
        raise HubError("no hub given", "pass --hub URL or set SKEWTUNE_HUB")
    return url


def _run_push(args: argparse.Namespace) -> int:
    from skewtune.hub import push

    ref = push(Path(args.adapter_dir), _hub(args), args.name, tags=args.tag, languages=args.language)
    print(f"pushed {ref} to {_hub(args)}")
    return 0


def _run_pull(args: argparse.Namespace) -> int:
    from skewtune.hub import check_base_compatible, info, pull

    if args.base:  # before downloading: a refused adapter must leave nothing behind
        check_base_compatible(info(args.ref, _hub(args))["manifest"], args.base, force=args.force_base)
    folder = pull(args.ref, _hub(args), args.dest, force=args.force)
    print(folder)
    return 0


def _table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(no adapters)")
        return
    cols = ("ref", "base_model", "task_type", "adapter_type", "languages", "labels", "metric")
    lines = [cols]
    for row in rows:
        metrics = row.get("metrics") or {}
        metric = next((f"{k}={v:.4f}" for k, v in metrics.items() if k == "eval_macro_f1"), "")
        lines.append((row["ref"], str(row.get("base_model") or row.get("backbone") or ""), str(row.get("task_type") or ""),
                      str(row.get("adapter_type") or ""), ",".join(row.get("languages") or []),
                      ",".join(row.get("labels") or []), metric))
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def _emit(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _table(rows)


def _run_ls(args: argparse.Namespace) -> int:
    from skewtune.hub import ls

    _emit(ls(_hub(args)), args.json)
    return 0


def _parse_metric(text: str | None) -> tuple[str, float] | None:
    if text is None:
        return None
    key, sep, value = text.partition("=")
    try:
        if not sep or not key:
            raise ValueError(text)
        return key, float(value)
    except ValueError:
        raise HubError(f"invalid --min_metric {text!r}", "use METRIC=VALUE, e.g. eval_macro_f1=0.7") from None


def _run_search(args: argparse.Namespace) -> int:
    from skewtune.hub import search

    labels = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels is not None else None
    rows = search(_hub(args), base_model=args.base_model, task=args.task, language=args.language, tag=args.tag,
                  labels=labels, min_metric=_parse_metric(args.min_metric), all_versions=args.all_versions)
    _emit(rows, args.json)
    return 0


def _run_info(args: argparse.Namespace) -> int:
    from skewtune.hub import info

    data = info(args.ref, _hub(args))
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(info_summary(data))
    return 0


def _labels(id2label: dict[str, Any] | None) -> str:
    items = sorted((id2label or {}).items(), key=lambda kv: int(kv[0]) if str(kv[0]).isdigit() else 0)
    return ", ".join(str(v) for _, v in items) or "-"


def info_summary(data: dict[str, Any]) -> str:
    """``hub info`` for people: name, versions, task(s) and labels, base model, metrics (``--json``: everything)."""
    m = data.get("manifest") or {}
    base = m.get("base_model") or m.get("backbone") or "-"
    if m.get("backbone") and m.get("backbone") != base:
        base = f"{base} (backbone {m['backbone']})"
    rows = [
        ("adapter", f"{data.get('ref')} (versions: {', '.join(f'v{v}' for v in data.get('versions') or [])})"),
        ("name", str(m.get("name") or data.get("name"))),
        ("type", f"{m.get('adapter_type', '-')} · {m.get('task_type', 'seq_cls')} · {m.get('quant', 'none')} backbone"),
        ("base model", str(base)),
    ]
    tasks = m.get("tasks") or {}
    if tasks:
        default = m.get("default_task")
        for t in task_names(m):
            mark = " (default)" if t == default else ""
            rows.append(("task", f"{t}{mark}: {_labels((tasks[t] or {}).get('id2label'))}"))
        rows.append(("", "multi-task: choose with 'skewtune predict --task NAME'"))
    else:
        rows.append(("labels", _labels(m.get("id2label"))))
    rows += [("dataset", str(m.get("dataset") or "-")), ("languages", ", ".join(m.get("languages") or []) or "-")]
    metrics = [(k, v) for k, v in (m.get("metrics") or {}).items() if isinstance(v, int | float) and not isinstance(v, bool)]
    rows.append(("metrics", ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics) or "-"))
    if data.get("size_bytes") is not None:
        size = int(data["size_bytes"])
        rows.append(("size", f"{size / 1e6:.2f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"))
    if m.get("created_at"):
        rows.append(("created", str(m["created_at"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)


def _run_verify(args: argparse.Namespace) -> int:
    from skewtune.adapters.io import verify_report
    from skewtune.hub import check_base_compatible, verify

    manifest = verify(args.target, _hub(args, required=False))
    matches = check_base_compatible(manifest, args.base, force=args.force_base) if args.base else None
    print(f"ok: {args.target} ({verify_report(manifest, base=args.base, base_matches=matches)})")
    return 0
