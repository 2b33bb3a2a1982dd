"""WaveSpeedPredictionSensor: wait for a prediction to finish (deferrable by default)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseSensorOperator, Context, PokeReturnValue

from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.protocol import check_prediction_id
from airflow_provider_wavespeed.api.waiting import is_final
from airflow_provider_wavespeed.deferral import default_deferrable, min_deferral_seconds
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.task_results import (
    AirflowFailException,
    check_expected_runtime,
    check_nsfw_policy,
    completed_result,
    final_error,
    prediction_from_event,
)
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

# Airflow's own deferral timeout is a backstop behind the trigger's deadline, never the first to fire.
DEFER_TIMEOUT_GRACE = timedelta(minutes=5)


class WaveSpeedPredictionSensor(BaseSensorOperator):
    """
    Wait until a WaveSpeed prediction reaches a terminal status; return the completed prediction.

    Deferrable by default: the wait runs in the triggerer and frees the worker slot. With
    ``deferrable=False`` the sensor pokes from the worker every ``poke_interval`` seconds.

    :param prediction_id: the id returned by ``WaveSpeedSubmitOperator`` (templated).
    :param wavespeed_conn_id: connection holding the API key.
    :param deferrable: wait in the triggerer instead of the worker (default: the ``[wavespeed]
        default_deferrable`` option, True unless set to False).
    :param poll_interval: shortest pause between polls while deferred (default 2 s for images,
        5 s for video models); the pause grows with the time waited, up to ``max_poll_interval``.
    :param max_poll_interval: longest pause between polls while deferred.
    :param nsfw_policy: what to do when ``has_nsfw_contents`` flags outputs: ``keep`` (warn),
        ``skip`` (warn; the download operator skips them) or ``fail``.
    :param timeout: give up after this many seconds (also enforced while deferred).
    :param expected_runtime: how long the prediction is expected to run (seconds), e.g. the usual run
        time of this model for these inputs: the first poll waits for half of it (fewer polls). A wrong
        hint costs at most a few polls.
    :param queue_timeout: a prediction still queued (``created``: the account's concurrency is full)
        when ``timeout`` passes is waited for this much longer while deferred (default 1 hour).
    """

    template_fields: Sequence[str] = ("prediction_id",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        prediction_id: str,
        wavespeed_conn_id: str = WaveSpeedHook.default_conn_name,
        deferrable: bool = default_deferrable(),
        poll_interval: float | None = None,
        max_poll_interval: float = 60.0,
        nsfw_policy: str = "keep",
        poke_interval: float = 5.0,
        queue_timeout: float = 3600.0,
        expected_runtime: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.prediction_id = prediction_id
        self.wavespeed_conn_id = wavespeed_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.nsfw_policy = check_nsfw_policy(nsfw_policy)
        if not isinstance(queue_timeout, int | float) or isinstance(queue_timeout, bool) or queue_timeout < 0:
            raise ValueError(f"queue_timeout must be a non-negative number of seconds, got {queue_timeout!r}")
        self.queue_timeout = float(queue_timeout)
        self.expected_runtime = check_expected_runtime(expected_runtime)

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def _get_prediction(self, prediction_id: str) -> Prediction:
        """The prediction, with API errors sorted by the operators' policy: a bad key or an unknown id
        fails at once; network errors, 5xx and 429 stay retryable."""
        try:
            return self.hook.get_prediction(prediction_id)
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None

    def _check_prediction_id(self) -> str:
        try:
            return check_prediction_id(self.prediction_id)
        except WaveSpeedError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

    def execute(self, context: Context) -> Any:
        prediction_id = self._check_prediction_id()
        if not self.deferrable:
            return super().execute(context)
        prediction = self._get_prediction(prediction_id)
        if prediction.is_terminal:
            return completed_result(prediction, self.nsfw_policy, self.log)
        self.log.info("Prediction %s is %s; deferring to the triggerer", prediction_id, prediction.status)
        deadline = time.time() + self.timeout
        self.defer(
            trigger=WaveSpeedPredictionTrigger(
                prediction_id=prediction_id,
                wavespeed_conn_id=self.wavespeed_conn_id,
                deadline=deadline,
                started_at=prediction.created_epoch or time.time(),
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                model=prediction.model,
                not_before=time.time() + min_deferral_seconds(),
                queue_grace=self.queue_timeout,
                expected_runtime=self.expected_runtime,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + self.queue_timeout) + DEFER_TIMEOUT_GRACE,
        )

    def poke(self, context: Context) -> bool | PokeReturnValue:
        try:
            prediction = self.hook.get_prediction(self._check_prediction_id())
        except WaveSpeedError as exc:
            if is_final(exc):
                raise final_error(exc, self.task_id) from None
            self.log.warning("Polling prediction %s failed (%s); will poke again", self.prediction_id, exc)
            return False
        if not prediction.is_terminal:
            self.log.info("Prediction %s is %s", prediction.id, prediction.status)
            return False
        return PokeReturnValue(True, completed_result(prediction, self.nsfw_policy, self.log))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Resume after the trigger fired: validate the event, return the completed prediction or fail."""
        return completed_result(prediction_from_event(event, self.task_id), self.nsfw_policy, self.log)
