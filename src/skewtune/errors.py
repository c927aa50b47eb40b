"""One code path for user-facing errors.

Every problem a user can fix raises a :class:`SkewtuneError` subclass carrying the problem and the fix.
The CLI wrapper (:func:`skewtune.cli.main.main`) prints ``error: <problem> (fix: <hint>)`` on one line and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_USER_ERROR = 2
MESSAGE_CHARS = 2000  # one_line keeps at most this much of the problem, and of the hint (a backstop)


class SkewtuneError(Exception):
    """A problem in the user's input, with the fix in ``hint``; entry points exit with ``exit_code``."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """``error: <problem> (fix: <hint>)`` on one line; a problem or hint over MESSAGE_CHARS is cut short."""
        text = f"error: {_cut(' '.join(self.message.split()), MESSAGE_CHARS)}"
        if self.hint:
            text += f" (fix: {_cut(' '.join(self.hint.split()), MESSAGE_CHARS)})"
        return text


class ConfigError(SkewtuneError):
    """A bad flag, config value or method name."""


class DataError(SkewtuneError):
    """A dataset file or split that cannot be used."""


class BackboneError(SkewtuneError):
    """A backbone name/path that cannot be resolved or loaded."""


class AdapterError(SkewtuneError):
    """An adapter folder that is missing, incomplete or unsafe."""


class OutputError(SkewtuneError):
    """An output location that cannot be written safely."""


class HubError(SkewtuneError):
    """A hub URL, index or shared adapter that cannot be used."""


class MergeError(SkewtuneError):
    """Adapters that cannot be merged as asked."""


class TrainingError(SkewtuneError):
    """Training stopped on a numeric or runtime fault."""


class TrainingInterrupted(SkewtuneError):
    """SIGINT/SIGTERM stopped training at a step boundary after a checkpoint was saved (exit 130, as a shell's)."""

    exit_code = 130

    def one_line(self) -> str:
        return " ".join(f"interrupted: {self.message}; {self.hint}".split())


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> ConfigError:
    """Error for a name missing from a registry, listing the valid ones."""
    return ConfigError(f"unknown {kind} '{name}'", f"use one of: {capped(sorted(valid), limit=40)}")


LIST_LIMIT = 10  # items an error message lists before "… and N more"


def capped(items: Iterable[object], limit: int = LIST_LIMIT, sep: str = ", ", item_chars: int = 80) -> str:
    """``items`` joined for an error message: the first ``limit`` (each cut to ``item_chars``), then
    ``… and N more``, so that a list of 100,000 classes stays a short line."""
    items = list(items)
    shown = [_cut(str(item), item_chars) for item in items[:limit]]
    more = len(items) - len(shown)
    return sep.join(shown) + (f"{sep}… and {more:,} more" if more > 0 else "")


def _cut(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
