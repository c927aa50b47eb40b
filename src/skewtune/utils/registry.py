"""A registry by name, as used by every capability folder (backbones, datasets, adapters, losses, …)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from skewtune.errors import ConfigError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps short names to objects; unknown names raise a ConfigError listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._items[name] = obj
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        self._items[name] = obj

    def get(self, name: str) -> T:
        if name not in self._items:
            raise unknown_name(self.kind, name, list(self._items))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))


def parse_options(text: str | None, flag: str) -> dict[str, Any]:
    """``"tau=1.5,drw_start=none,mode=auto"`` → ``{"tau": 1.5, "drw_start": None, "mode": "auto"}``.

    Values: int, float, ``none``/``true``/``false``, otherwise the string. ``flag`` names the option in errors.
    """
    out: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, raw = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier() or not raw:
            raise ConfigError(f"invalid {flag} item {item.strip()!r}", f"use KEY=VALUE pairs, e.g. {flag} tau=1.5")
        if key in out:
            raise ConfigError(f"{flag} sets '{key}' twice", "give each option once")
        value: Any = {"none": None, "true": True, "false": False}.get(raw.lower(), raw)
        if isinstance(value, str):
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    pass
        out[key] = value
    return out


def check_keywords(kind: str, name: str, factory: Callable[..., Any], given: dict[str, Any],
                   skip: tuple[str, ...] = (), extra: tuple[str, ...] = ()) -> None:
    """ConfigError naming the accepted keywords if ``given`` has one that ``factory`` (minus ``skip``) lacks."""
    own = [p.name for p in inspect.signature(factory).parameters.values()
           if p.name not in skip and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    allowed = [*own, *extra]
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown} for {kind} '{name}'",
                          f"{kind} '{name}' accepts: {', '.join(allowed) or 'no options'}")
