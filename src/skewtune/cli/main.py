"""Entry point of the ``skewtune`` console script.

Each sub-command lives in a module exposing ``add_parser(subparsers)``; the parser it adds sets
``func=callable(args) -> int | None``. Every :class:`SkewtuneError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from skewtune.errors import EXIT_USER_ERROR, SkewtuneError

# module paths, each with add_parser(subparsers); imported lazily so `skewtune --help` stays fast
COMMAND_MODULES: list[str] = [
    "skewtune.cli.train",
    "skewtune.cli.train_tokens",
    "skewtune.cli.predict",
    "skewtune.cli.backbones",
    "skewtune.cli.hub",
    "skewtune.cli.merge",
]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (argparse's own convention)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (fix: see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="skewtune", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(sub)
    return parser


def run_guarded(func, *args, debug: bool = False, **kwargs) -> int:
    """Run ``func``; turn a SkewtuneError into one stderr line and exit status 2."""
    try:
        result = func(*args, **kwargs)
    except SkewtuneError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(exc.one_line() + "\n")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_guarded(args.func, args, debug=debug)


if __name__ == "__main__":
    sys.exit(main())
