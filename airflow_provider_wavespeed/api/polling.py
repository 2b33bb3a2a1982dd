"""When to poll next: short at first, growing with the time already waited, with jitter.

A poll interval proportional to the time already waited bounds the detection delay to a fraction
of the job's own run time, and makes the number of polls grow with the logarithm of the run time
instead of linearly. Jitter keeps 1,000 triggers started together from polling in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

IMAGE_MIN_INTERVAL = 2.0
VIDEO_MIN_INTERVAL = 5.0
_VIDEO_HINTS = (
    "video", "avatar", "talk", "t2v", "i2v", "v2v", "lipsync", "animate", "kling", "seedance",
    "wan-", "wan2", "veo", "sora", "hailuo", "omni-human", "infinitetalk", "skyreels",
)  # fmt: skip


def default_min_interval(model: str) -> float:
    """The API's guidance: at least 2 s between checks for images, 5 s for video."""
    name = model.lower()
    return VIDEO_MIN_INTERVAL if any(hint in name for hint in _VIDEO_HINTS) else IMAGE_MIN_INTERVAL


@dataclass(frozen=True)
class PollSchedule:
    """``min_interval``/``max_interval`` bound each sleep; ``growth`` is the sleep as a share of time waited.

    With ``expected_runtime`` (a hint, seconds) the first sleep goes straight to half of it, so a
    job that runs as long as expected is found in a few polls, and one that runs half as long is
    still found on time; from there the usual rule applies.
    """

    min_interval: float = IMAGE_MIN_INTERVAL
    max_interval: float = 60.0
    growth: float = 0.2
    jitter: float = 0.1
    expected_runtime: float | None = None

    def __post_init__(self) -> None:
        if self.min_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {self.min_interval}")
        if self.max_interval < self.min_interval:
            raise ValueError(f"max_poll_interval ({self.max_interval}) must be >= poll_interval ({self.min_interval})")
        if self.expected_runtime is not None and self.expected_runtime <= 0:
            raise ValueError(f"expected_runtime must be > 0 seconds, got {self.expected_runtime}")

    def next_interval(self, waited: float) -> float:
        hint = self.expected_runtime
        if hint is not None and waited < hint / 2:
            return max(self.min_interval, hint / 2 - waited)
        base = min(self.max_interval, max(self.min_interval, waited * self.growth))
        spread = base * self.jitter
        return max(self.min_interval, base + random.uniform(-spread, spread))
