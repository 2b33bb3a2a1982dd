"""The one retry policy (tenacity) for every retry-safe WaveSpeed call, sync and async.

Retried: 429, 5xx, network errors and cut downloads, with exponential backoff and full jitter,
honouring ``Retry-After``, bounded in attempts and in total time. Never retried: 4xx rejections
(they will not change) and the billed submit POST (see ``client.submit_prediction``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import tenacity

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedConnectionError,
    WaveSpeedIncompleteDownload,
    WaveSpeedRateLimitError,
    WaveSpeedServerError,
)

log = logging.getLogger(__name__)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(
        exc,
        WaveSpeedRateLimitError | WaveSpeedServerError | WaveSpeedConnectionError | WaveSpeedIncompleteDownload,
    )


def retry_after_of(exc: BaseException | None) -> float | None:
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds for retrying one call. ``max_attempts`` counts the first try."""

    max_attempts: int = 6
    max_elapsed: float = 180.0
    initial_wait: float = 0.5
    max_wait: float = 30.0
    max_retry_after: float = 120.0

    def next_wait(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds before try ``attempt + 1``: the server's Retry-After, else capped exponential full jitter."""
        server_says = retry_after_of(exc)
        if server_says is not None:
            return min(server_says, self.max_retry_after)
        ceiling = min(self.max_wait, self.initial_wait * (2 ** (attempt - 1)))
        return random.uniform(self.initial_wait / 2, max(ceiling, self.initial_wait / 2))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.next_wait(state.attempt_number, exc)

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "WaveSpeed call failed (%s); retry %d/%d in %.1f s",
            exc,
            state.attempt_number,
            self.max_attempts - 1,
            wait,
        )

    def _kwargs(self) -> dict[str, Any]:
        return {
            "retry": tenacity.retry_if_exception(is_retryable),
            "wait": self._wait,
            "stop": tenacity.stop_after_attempt(self.max_attempts) | tenacity.stop_after_delay(self.max_elapsed),
            "before_sleep": self._before_sleep,
            "reraise": True,
        }

    def retrying(self) -> tenacity.Retrying:
        return tenacity.Retrying(**self._kwargs())

    def async_retrying(self) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(**self._kwargs())
