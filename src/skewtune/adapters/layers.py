"""``--lora_layers``: which transformer layers an adapter goes into, one syntax for every command and recipe.

``all`` (or unset) — every layer; ``topN`` — the last N layers (no backward below them: faster); ``3,4,5`` — those
0-based layer indices (a single index needs its comma: ``2,``). A bare integer is refused: it used to mean "the top N"
in ``skewtune train`` and "layer N" in the few-shot recipe.
"""

from __future__ import annotations

from skewtune.errors import ConfigError

_FORMS = "pass topN for the last N layers (e.g. top2) or 0-based indices with commas (e.g. 3,4,5, or 2, for layer 2 alone)"


def check_layers_spec(spec: str | None) -> None:
    """ConfigError unless ``spec`` is None, ``all``, ``topN`` or a comma list of indices (no model needed)."""
    _parse(spec)


def parse_layers(spec: str | None, num_layers: int) -> list[int] | None:
    """``None``/``"all"`` → None (all layers); ``"top2"`` → the last two; ``"3,4,5"`` → those (0-based), sorted."""
    kind, values = _parse(spec)
    if kind == "all":
        return None
    if kind == "top":
        (n,) = values
        if not 1 <= n <= num_layers:
            raise ConfigError(f"--lora_layers {spec}: the backbone has {num_layers} layers",
                              f"pass top1 … top{num_layers}")
        return list(range(num_layers - n, num_layers))
    bad = [x for x in values if not 0 <= x < num_layers]
    if bad:
        raise ConfigError(f"--lora_layers {spec}: layers must be in 0..{num_layers - 1}", _FORMS)
    return values


def _parse(spec: str | None) -> tuple[str, list[int]]:
    text = "" if spec is None else str(spec).strip().lower()
    if text in ("", "all"):
        return "all", []
    if text.lstrip("+-").isdigit():
        raise ConfigError(f"--lora_layers {spec} is ambiguous (a count of top layers, or one layer index?)", _FORMS)
    if text.startswith("top"):
        digits = text[3:]
        if not digits.isdigit() or int(digits) < 1:
            raise ConfigError(f"--lora_layers '{spec}' is not all, topN or a comma list", _FORMS)
        return "top", [int(digits)]
    try:
        layers = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"--lora_layers '{spec}' is not all, topN or a comma list", _FORMS) from None
    if not layers:
        raise ConfigError(f"--lora_layers '{spec}' names no layer", _FORMS)
    return "list", layers
