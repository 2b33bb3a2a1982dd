"""Checks of operator parameters that are plain values: a clear ValueError naming the parameter."""

from __future__ import annotations


def check_usd(name: str, value: float | None, *, positive: bool = False) -> float | None:
    """``value`` when it is an amount of USD (None allowed); else a ValueError naming the parameter."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} number of USD, got {value!r}")
    return float(value)


def check_seconds(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)
