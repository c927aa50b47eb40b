"""Entry point of the ``skewtune`` console script, and the argument parser every entry point shares.

Each sub-command lives in a module exposing ``add_parser(subparsers)``; the parser it adds sets
``func=callable(args) -> int | None``. :class:`ArgumentParser` reports a bad flag as one line and exit status 2;
:func:`run_guarded` turns a :class:`SkewtuneError` into one line and its ``exit_code``. The recipes use both.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import traceback

from skewtune.errors import EXIT_USER_ERROR, SkewtuneError
from skewtune.utils.console import quiet_libraries

# module paths, each with add_parser(subparsers); imported lazily so `skewtune --help` stays fast
COMMAND_MODULES: list[str] = [
    "skewtune.cli.train",
    "skewtune.cli.train_tokens",
    "skewtune.cli.predict",
    "skewtune.cli.backbones",
    "skewtune.cli.hub",
    "skewtune.cli.merge",
    "skewtune.cli.plan",
    "skewtune.cli.serve",
]


DESCRIPTION = ("skewtune: parameter-efficient adapters (LoRA and friends) on 8-bit or 4-bit backbones for scarce, "
               "skewed and cross-lingual text classification. Run 'skewtune COMMAND --help' for a command's flags.")
EPILOG = ("Errors are one line, 'error: <problem> (fix: <hint>)', with exit status 2 (130 when a training was "
          "interrupted); --debug shows the traceback.")


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions, keeps multi-line ones (a recipe's docstring) as written, and appends
    ``(default: X)`` to a flag's help when it has a real default the text does not already state."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.default in (None, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit status 2 (argparse's own convention).

    Used by every ``skewtune`` command and by the recipes, so a bad flag reads the same everywhere.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (fix: see '{self.prog} --help')\n")
        raise SystemExit(EXIT_USER_ERROR)


def positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (``0``, ``-5``, ``2.5`` and words are refused as one line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got '{text}'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="skewtune", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    sub.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(sub)
    return parser


BUG_HINT = "rerun with --debug for the traceback and report it as a bug"


class _LineTracker:
    """A stand-in for ``sys.stderr`` that remembers whether the last character written ended a line (a progress
    bar leaves the cursor mid-line), so an error line can start on a fresh line; everything else is delegated."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.at_line_start = True

    def write(self, text: str) -> int:
        written = self._stream.write(text)
        if text:
            self.at_line_start = text.endswith("\n")
        return written

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _unexpected_line(exc: BaseException) -> str:
    """One line for an exception that is no :class:`SkewtuneError`."""
    if isinstance(exc, MemoryError):
        return ("error: out of memory (MemoryError) (fix: use a smaller input, batch or model, or a machine with "
                "more memory; rerun with --debug for the traceback)")
    if isinstance(exc, RecursionError):
        return ("error: an input is nested too deeply (RecursionError: maximum recursion depth exceeded) "
                "(fix: flatten the input; rerun with --debug for the traceback)")
    if isinstance(exc, RuntimeError) and "torch.distributed" in sys.modules:  # a lost peer outside the training loop
        from skewtune.training.engine import distributed_failure

        lost = distributed_failure(exc)
        if lost is not None:
            return lost.one_line()
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")[:300]
    text = f"error: unexpected {type(exc).__name__}" + (f": {first}" if first else "") + f" (fix: {BUG_HINT})"
    return " ".join(text.split())


def run_guarded(func, *args, debug: bool = False, **kwargs) -> int:
    """Run ``func`` with the libraries quieted (an entry point's choice, :func:`quiet_libraries`); turn a
    SkewtuneError into one stderr line and its exit status (2; 130 for an interrupted training), and any other
    exception (MemoryError and RecursionError included) into one line ``error: unexpected <Type>: … (fix: …)``
    with status 2; ``debug`` prints the traceback first. The line always starts on a fresh line of stderr."""
    quiet_libraries()
    tracker = None if isinstance(sys.stderr, _LineTracker) else _LineTracker(sys.stderr)
    if tracker is not None:
        sys.stderr = tracker
    try:
        result = func(*args, **kwargs)
    except SkewtuneError as exc:
        _report(exc.one_line(), debug)
        return exc.exit_code
    except KeyboardInterrupt:
        _report("error: interrupted", False)
        return 130
    except BrokenPipeError:  # the reader of stdout went away: main() stops quietly, as unix tools do
        raise
    except Exception as exc:  # noqa: BLE001 (the contract: success, or exit 2 with one line)
        _report(_unexpected_line(exc), debug)
        return EXIT_USER_ERROR
    finally:
        if tracker is not None and sys.stderr is tracker:
            sys.stderr = tracker._stream
    return int(result or 0)


def _report(line: str, debug: bool) -> None:
    """Write ``line`` on a fresh line of stderr (after the traceback of the exception being handled if ``debug``)."""
    if debug:
        traceback.print_exc()
    stream = sys.stderr
    if isinstance(stream, _LineTracker) and not stream.at_line_start:
        stream.write("\n")
    stream.write(line + "\n")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        stream.flush()


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cat big | head` reports for cat


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return run_guarded(args.func, args, debug=debug)
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of stdout went away (``skewtune hub info X | head``): stop quietly, as unix tools do.

    stdout is pointed at /dev/null so the interpreter's final flush cannot raise a second BrokenPipeError.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured in tests)
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
