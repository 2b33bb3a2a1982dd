"""The one wait loop's decisions, sans I/O: given the last poll's outcome and the clock, what next.

The trigger (asyncio), the run operator's worker wait and the sensor's poke mode (blocking) all wait
for a prediction the same way: they poll, hand what came back to :meth:`WaitPlan.after_poll`, and do
what it says: stop with the terminal prediction, sleep N seconds, give up at the deadline, or fail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedAuthError,
    WaveSpeedConfigError,
    WaveSpeedError,
    WaveSpeedInputError,
    WaveSpeedRequestError,
    WaveSpeedSubmitRefused,
)
from airflow_provider_wavespeed.api.models import Prediction, PredictionStatus
from airflow_provider_wavespeed.api.polling import PollSchedule, default_min_interval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """The prediction reached a terminal status."""

    prediction: Prediction


@dataclass(frozen=True)
class Sleep:
    """Poll again after ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class DeadlinePassed:
    """The wait's deadline passed; ``status`` is the last one seen ("" if none)."""

    status: str
    waited: float


@dataclass(frozen=True)
class Failed:
    """Polling cannot go on: a retry would get the same answer (bad key, unknown prediction)."""

    error: WaveSpeedError


Decision = Finished | Sleep | DeadlinePassed | Failed


def is_final(error: WaveSpeedError) -> bool:
    """Errors that asking again cannot fix (bad key, bad input, unknown model or prediction, bad
    settings, a submit refused before anything was billed); everything else (network, 5xx, 429) is
    transient: waited through, or retried."""
    final = (
        WaveSpeedAuthError,
        WaveSpeedRequestError,
        WaveSpeedConfigError,
        WaveSpeedInputError,
        WaveSpeedSubmitRefused,
    )
    return isinstance(error, final)


@dataclass
class WaitPlan:
    """What to do next in one wait for ``prediction_id``.

    :param started_at: epoch seconds the prediction started; pauses grow with the time since.
    :param deadline: absolute epoch seconds to give up at (None: never).
    :param queue_grace: extra seconds past ``deadline`` while the prediction is still ``created``
        (queued behind the account's concurrency limit: waiting, not stuck).
    :param poll_interval: shortest pause (default: the API's guidance for the model, 2 s / 5 s).
    :param max_poll_interval: longest pause.
    :param model: the model id, when known; otherwise learned from the first poll.
    :param expected_runtime: a hint (seconds) of how long the prediction runs: fewer polls when known.
    :param log: where status changes are logged (the trigger passes its own logger).
    """

    prediction_id: str
    started_at: float
    deadline: float | None = None
    queue_grace: float = 0.0
    poll_interval: float | None = None
    max_poll_interval: float = 60.0
    model: str = ""
    expected_runtime: float | None = None
    status: str = ""
    log: Any = field(default=log, repr=False)
    _schedule: PollSchedule = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._schedule = self._schedule_for(self.model)

    def _schedule_for(self, model: str) -> PollSchedule:
        minimum = self.poll_interval if self.poll_interval is not None else default_min_interval(model)
        return PollSchedule(
            min_interval=minimum,
            max_interval=max(self.max_poll_interval, minimum),
            expected_runtime=self.expected_runtime,
        )

    def deadline_for(self, status: str) -> float:
        """When to give up on a prediction last seen in ``status``: later while it is queued."""
        if self.deadline is None:
            return float("inf")
        return self.deadline + (self.queue_grace if status == PredictionStatus.CREATED else 0.0)

    def after_poll(self, outcome: Prediction | WaveSpeedError, now: float) -> Decision:
        """The next step after a poll that returned ``outcome`` (a prediction, or the error it raised)."""
        if isinstance(outcome, WaveSpeedError):
            if is_final(outcome):
                return Failed(outcome)
            # This poll's own retries are spent; a flaky network must not end the wait.
            self.log.warning("Polling prediction %s failed (%s); will poll again", self.prediction_id, outcome)
        else:
            if outcome.status != self.status:
                self.log.info(
                    "Prediction %s is %s (%.0f s since it started)",
                    self.prediction_id,
                    outcome.status,
                    now - self.started_at,
                )
                self.status = outcome.status
                if not self.model and outcome.model:
                    self.model = outcome.model
                    self._schedule = self._schedule_for(outcome.model)
            if outcome.is_terminal:
                return Finished(outcome)
        deadline = self.deadline_for(self.status)
        if now >= deadline:
            return DeadlinePassed(self.status, now - self.started_at)
        return Sleep(min(self._schedule.next_interval(now - self.started_at), max(0.0, deadline - now)))
