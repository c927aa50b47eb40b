"""One code path for user-facing errors.

Every problem a user can fix raises a :class:`SkewtuneError` subclass carrying the problem and the fix.
The CLI wrapper (:func:`skewtune.cli.main.main`) prints ``error: <problem> (fix: <hint>)`` on one line and exits
with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class SkewtuneError(Exception):
    """A problem in the user's input, with the fix in ``hint``; entry points exit with ``exit_code``."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f" (fix: {self.hint})"
        return " ".join(text.split())


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
    return ConfigError(f"unknown {kind} '{name}'", f"use one of: {', '.join(sorted(valid))}")
