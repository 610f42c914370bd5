"""How the gate rounds and prints numbers, in one place: the expected ranges (runner), the
observed values and trends (reports) and the proposed bounds (parameters). Standard library
only."""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def significant(value: Any, digits: int = 4) -> Any:
    """A float rounded to ``digits`` significant digits; anything else as it is."""
    if not isinstance(value, float) or value == 0 or not math.isfinite(value):
        return value
    return round(value, -math.floor(math.log10(abs(value))) + digits - 1)


def format_value(value: Any) -> str:
    """Whole numbers as whole numbers (thousands separated from 10,000 up, so a year stays
    2026), other floats to 4 significant digits, long lists and mappings cut."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return str(significant(value))
    if isinstance(value, list):
        shown = ", ".join(format_value(v) for v in value[:6])
        return f"[{shown}{', …' if len(value) > 6 else ''}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in list(value.items())[:6]) + "}"
    return str(value)
