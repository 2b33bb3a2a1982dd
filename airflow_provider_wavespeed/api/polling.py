"""When to poll next: short at first, growing with the time already waited, with jitter.

A poll interval proportional to the time already waited bounds the detection delay to a fraction
of the job's own run time, and makes the number of polls grow with the logarithm of the run time
instead of linearly. Jitter keeps 1,000 triggers started together from polling in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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
    """How long to sleep before the next poll, given the seconds ``waited`` since the prediction started.

    **Blind** (no ``expected_runtime``): sleep ``growth`` x ``waited`` (40 %), so consecutive polls
    are 1.4x apart: about 11 polls for a 30-120 s job at a mean detection delay of ~19 % of its run
    time (12 % on the benchmark's 30/60/120 s jobs, 20 % live), 4 polls and ~1.3 s for a 5 s image
    job (``benchmarks/bench_polling.py``; the old 20 % rule spent 12-20 polls for ~9 %). 35 % would
    cost ~12 polls, 50 % a ~23 % delay: 40 % keeps both goals (<= 12, <= 25 %) with a margin.

    **With a hint** (``expected_runtime`` E, seconds): the first sleep goes straight to E/2; from
    there until E the sleep is ``hint_growth`` x ``waited`` (20 %: polls 1.2x apart where the job
    is expected to end: ~6.4 polls at ~12 % delay when E is right); past E the hint has proven
    short and the blind rule takes over, so a hint 2x too short (~8.3 polls) or 2x too long (~3.1)
    costs fewer polls than no hint (~11). A first sleep that jitter ended just short of E/2 counts
    as there (no top-up poll seconds later).

    **Bounds**: every sleep is at least ``min_interval`` (the API's guidance, 2 s images / 5 s
    video, unless the user sets ``poll_interval``) and at most ``max_interval``, the hint's first
    sleep included: ``max_poll_interval`` is the longest a failed or finished prediction goes
    unseen, whatever the hint says (a prediction rejected after 3 s must not wait for E/2 = 5 min).
    For few polls on long jobs, raise ``max_poll_interval`` together with ``expected_runtime``
    (a 600 s job with a right hint: ~12 polls at the default 60 s cap, ~7 with a 300 s cap; a
    first sleep allowed past the cap would save 4 polls and see a failure 3 s in after 300 s, not 54).

    **Jitter**: each sleep is drawn uniformly from ``base`` +- ``jitter`` (10 %), cut to the
    bounds, so triggers started together (a triggerer restart) drift apart instead of polling in
    lockstep; at the floor the draw is ``[min_interval, (1 + jitter) x min_interval]``. Only when
    ``min_interval == max_interval`` (a fixed interval) may a sleep exceed ``max_interval``, by up
    to ``jitter``: otherwise a fixed interval would keep a burst in lockstep forever.

    ``rng`` (anything with ``uniform(a, b)``, e.g. ``random.Random(7)``) makes the draws
    reproducible in tests; default: the ``random`` module.
    """

    min_interval: float = IMAGE_MIN_INTERVAL
    max_interval: float = 60.0
    growth: float = 0.4
    jitter: float = 0.1
    expected_runtime: float | None = None
    hint_growth: float = 0.2
    rng: random.Random | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.min_interval <= 0:
            raise ValueError(f"poll_interval must be > 0 seconds, got {self.min_interval}")
        if self.max_interval < self.min_interval:
            raise ValueError(f"max_poll_interval ({self.max_interval}) must be >= poll_interval ({self.min_interval})")
        if self.expected_runtime is not None and self.expected_runtime <= 0:
            raise ValueError(f"expected_runtime must be > 0 seconds, got {self.expected_runtime}")
        if self.growth <= 0 or self.hint_growth <= 0:
            raise ValueError(f"growth and hint_growth must be > 0, got {self.growth}, {self.hint_growth}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    def base_interval(self, waited: float) -> float:
        """The sleep before jitter, within ``[min_interval, max_interval]``."""
        hint = self.expected_runtime
        # Within the jitter of E/2 counts as there: no top-up poll seconds after a jittered first sleep.
        if hint is not None and waited < hint / 2 * (1 - self.jitter):
            target = hint / 2 - waited
        elif hint is not None and waited < hint:
            target = self.hint_growth * waited
        else:
            target = self.growth * waited
        return min(self.max_interval, max(self.min_interval, target))

    def next_interval(self, waited: float) -> float:
        base = self.base_interval(waited)
        low = max(self.min_interval, base * (1 - self.jitter))
        high = min(self.max_interval, base * (1 + self.jitter))
        if high <= low:  # min_interval == max_interval: jitter upwards only, never under the minimum
            high = low * (1 + self.jitter)
        return (self.rng or random).uniform(low, high)
