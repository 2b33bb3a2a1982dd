"""Price quotes (wavespeed-api.md 5.4): a fixed base price, or base price per started unit of audio.

The real API prices with a formula over the inputs; with a price-driving input missing or unknown,
the formula collapses to the base price (which is how a quote can understate the cost). The emulator
knows an audio input's duration only for audio it serves itself (its uploads and its WAV outputs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

CURRENCY = "USD"

#: Given a media URL, its duration in seconds when known.
DurationOf = Callable[[str], float | None]


@dataclass(frozen=True)
class PerSecondsPricing:
    """``base_price`` per started ``unit_seconds`` of the media in input ``input_name``, capped."""

    input_name: str
    unit_seconds: float
    max_seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"per_seconds_of": self.input_name, "unit_seconds": self.unit_seconds, "max_seconds": self.max_seconds}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PerSecondsPricing:
        name, unit, cap = value.get("per_seconds_of"), value.get("unit_seconds"), value.get("max_seconds")
        if not isinstance(name, str) or not name:
            raise ValueError("pricing.per_seconds_of must name an input")
        if not isinstance(unit, int | float) or isinstance(unit, bool) or unit <= 0:
            raise ValueError("pricing.unit_seconds must be a number > 0")
        if not isinstance(cap, int | float) or isinstance(cap, bool) or cap <= 0:
            raise ValueError("pricing.max_seconds must be a number > 0")
        return cls(name, float(unit), float(cap))

    def units(self, seconds: float) -> int:
        return max(1, math.ceil(min(seconds, self.max_seconds) / self.unit_seconds - 1e-9))


def quote(
    base_price: float, rule: PerSecondsPricing | None, inputs: Mapping[str, Any], duration_of: DurationOf
) -> float:
    """The price in USD of one run with ``inputs``."""
    if rule is None:
        return base_price
    value = inputs.get(rule.input_name)
    seconds = duration_of(value) if isinstance(value, str) else None
    if seconds is None:
        return base_price
    return round(base_price * rule.units(seconds), 6)
