"""Account limits (wavespeed-api.md 7.4): submits started per minute, and concurrency with a queue.

Both are off by default. The docs say a prediction over the concurrency limit "will wait until one
finishes": it stays ``created`` until a slot frees, then runs for its full run time. They document
no ``Retry-After`` on a 429, so the emulator sends none unless asked to.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

WINDOW_SECONDS = 60.0


class Schedulable(Protocol):
    """The parts of a prediction the concurrency queue reads and writes."""

    seq: int
    deleted: bool
    started_monotonic: float | None

    @property
    def eligible_at(self) -> float: ...

    @property
    def end_at(self) -> float | None: ...


@dataclass
class SubmitWindow:
    """Accepted submits per API key in the last minute (a sliding window on the emulator's clock)."""

    _times: dict[str, deque[float]] = field(default_factory=dict)
    #: Length of the window; tests shorten "a minute" to keep a rate-limited batch quick.
    seconds: float = WINDOW_SECONDS

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - self.seconds:  # bounded by the deque's length
            times.popleft()
        return times

    def retry_after(self, key: str, now: float, per_minute: int) -> float | None:
        """Seconds until ``key`` may submit again, or None when it may submit now (or no limit)."""
        if per_minute <= 0:
            return None
        times = self._recent(key, now)
        if len(times) < per_minute:
            return None
        return max(0.0, times[-per_minute] + self.seconds - now)

    def record(self, key: str, now: float) -> None:
        self._recent(key, now).append(now)

    def clear(self) -> None:
        self._times.clear()


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def _earliest_free_slot(busy: Sequence[tuple[float, float]], not_before: float, limit: int) -> float | None:
    """The first moment >= ``not_before`` at which fewer than ``limit`` (start, end) runs overlap."""
    candidates = sorted({not_before, *(end for _, end in busy if end > not_before)})
    for moment in candidates:
        if sum(1 for start, end in busy if start <= moment < end) < limit:
            return moment
    return None  # pragma: no cover - the last end time always frees a slot


def schedule_starts(pending: Iterable[Schedulable], running: Iterable[Schedulable], now: float, limit: int) -> None:
    """Give queued predictions their start time, first come first served, up to ``now``.

    ``pending`` have no start yet; ``running`` are every started prediction (finished ones included:
    their end times are when slots freed). ``limit <= 0`` means no limit: everything starts once its
    queue phase is over (or now, if a limit was just lifted).
    """
    queue = sorted((p for p in pending if not p.deleted), key=lambda p: (p.eligible_at, p.seq))
    if limit <= 0:
        for prediction in queue:
            prediction.started_monotonic = max(prediction.eligible_at, now)
        return
    spans = [
        (r.started_monotonic, r.end_at) for r in running if r.started_monotonic is not None and r.end_at is not None
    ]
    for prediction in queue:
        start = _earliest_free_slot(spans, prediction.eligible_at, limit)
        if start is None or start > now:
            return  # first come first served: nobody behind it starts earlier
        prediction.started_monotonic = start
        end = prediction.end_at
        spans.append((start, end if end is not None else math.inf))
