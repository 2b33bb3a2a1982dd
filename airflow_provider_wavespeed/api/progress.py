"""One progress logger for every transfer (downloads and uploads): bytes, percent and MB/s, throttled."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: At most one progress line per transfer in this many seconds (the end is always reported).
PROGRESS_EVERY_SECONDS = 5.0
#: The clock of every transfer that is not given one (a module global so a test can replace it).
monotonic: Callable[[], float] = time.monotonic


class TransferProgress:
    """``progress(done, total)`` after each chunk; logs ``<verb> <name>: ...`` at most every interval.

    :param verb: ``Downloading`` or ``Uploading``.
    :param name: what is moved (a file name, never a URL that could carry a signature).
    :param clock: monotonic seconds (default: this module's ``monotonic``).
    """

    def __init__(self, verb: str, name: str, *, clock: Callable[[], float] | None = None) -> None:
        self.verb, self.name = verb, name
        self.clock = clock or monotonic
        self.started = self.last = self.clock()

    def __call__(self, done: int, total: int | None) -> None:
        now = self.clock()
        finished = total is not None and done >= total
        if now - self.last < PROGRESS_EVERY_SECONDS and not finished:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-6) / 1e6
        if total:
            log.info(
                "%s %s: %.1f of %.1f MB (%.0f%%) at %.1f MB/s",
                self.verb,
                self.name,
                done / 1e6,
                total / 1e6,
                100 * done / total,
                rate,
            )
        else:
            log.info("%s %s: %.1f MB at %.1f MB/s", self.verb, self.name, done / 1e6, rate)
