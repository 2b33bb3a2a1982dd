"""The API's timestamps: ISO 8601 UTC strings (``2025-09-25T09:12:48.239112031Z``) <-> epoch seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(epoch: float) -> str:
    """Epoch seconds as the ISO UTC string the history filters take (microseconds, ``Z``)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> float | None:
    """Epoch seconds of an API timestamp (nanosecond fractions and ``Z`` included); None when unreadable."""
    trimmed = text.strip()
    if not trimmed:
        return None
    if trimmed.endswith(("Z", "z")):
        trimmed = trimmed[:-1] + "+00:00"
    head, dot, rest = trimmed.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        trimmed = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(trimmed)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
