"""Every check of an operator or sensor parameter that is a plain value, in one place: a clear ValueError
naming the parameter, raised when the DAG is built (or, for templated values, once rendered)."""

from __future__ import annotations

from typing import Any

NSFW_POLICIES = ("keep", "skip", "fail")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_usd(name: str, value: float | None, *, positive: bool = False) -> float | None:
    """``value`` when it is an amount of USD (None allowed); else a ValueError naming the parameter."""
    if value is None:
        return None
    if not _is_number(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} number of USD, got {value!r}")
    return float(value)


def check_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` as a number of seconds (positive, or with ``allow_zero`` non-negative)."""
    if not _is_number(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"{name} must be {kind} number of seconds, got {value!r}")
    return float(value)


def check_optional_seconds(name: str, value: float | None) -> float | None:
    """A positive number of seconds, or None (not given)."""
    return None if value is None else check_seconds(name, value)


def check_count(name: str, value: int, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_nsfw_policy(value: str) -> str:
    if value not in NSFW_POLICIES:
        raise ValueError(f"nsfw_policy must be one of {', '.join(NSFW_POLICIES)}, got {value!r}")
    return value
