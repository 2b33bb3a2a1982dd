"""A clock tests move by hand, so time-driven behaviour is checked without sleeping.

>>> clock = ManualClock()
>>> emulator = WaveSpeedEmulator(clock=clock)   # every status, queue and rate window reads it
>>> clock.advance(5.0)                          # five emulated seconds pass at once
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the emulator reads time from: monotonic seconds and wall-clock nanoseconds."""

    def monotonic(self) -> float: ...

    def wall_clock_ns(self) -> int: ...


class SystemClock:
    """The real clocks (the default)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_clock_ns(self) -> int:
        return time.time_ns()


class ManualClock:
    """Stands still until ``advance``; monotonic and wall time move together. Thread-safe."""

    def __init__(self, start: float = 1000.0, wall_start_ns: int | None = None) -> None:
        self._lock = threading.Lock()
        self._start = start
        self._now = start
        self._wall_start_ns = time.time_ns() if wall_start_ns is None else wall_start_ns

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def wall_clock_ns(self) -> int:
        with self._lock:
            return self._wall_start_ns + round((self._now - self._start) * 1_000_000_000)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
