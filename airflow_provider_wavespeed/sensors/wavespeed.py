"""WaveSpeedPredictionSensor: wait for a prediction to finish (deferrable by default)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
)

from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.protocol import check_prediction_id
from airflow_provider_wavespeed.api.waiting import DeadlinePassed, Finished, Sleep
from airflow_provider_wavespeed.cancellation import CancelsOnKill
from airflow_provider_wavespeed.deferral import DEFER_TIMEOUT_GRACE, default_deferrable, min_deferral_seconds
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.operators.recording import push_record, recording_failures
from airflow_provider_wavespeed.parameters import check_nsfw_policy, check_optional_seconds, check_seconds
from airflow_provider_wavespeed.task_record import new_record, prediction_fields
from airflow_provider_wavespeed.task_results import (
    AirflowFailException,
    completed_result,
    final_error,
    prediction_from_event,
)
from airflow_provider_wavespeed.triggers.events import PredictionEvent, deadline_event, error_event, terminal_event
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger


def _no_reschedule(task_id: str) -> str:
    return (
        f"{task_id}: mode='reschedule' is not supported with deferrable=False. The wait follows a plan whose "
        "first pauses are seconds long: a reschedule per pause would start a new try every few seconds and "
        "forget what the last poll saw. To free the worker slot while waiting use deferrable=True (the "
        "triggerer follows the same plan); to wait in the worker use mode='poke'."
    )


class WaveSpeedPredictionSensor(BaseSensorOperator, CancelsOnKill):
    """
    Wait until a WaveSpeed prediction reaches a terminal status; return the completed prediction.

    Deferrable by default: the wait runs in the triggerer and frees the worker slot. With
    ``deferrable=False`` the worker waits instead, holding its slot, and waits exactly as the triggerer
    would (one plan, ``api.waiting.WaitPlan``): the same deadline and queue grace, the same growing pauses,
    the same errors waited through or failed on, the same messages. ``poke_interval``,
    ``exponential_backoff`` and ``max_wait`` are not used; ``mode='reschedule'`` is refused with
    ``deferrable=False`` (use ``deferrable=True`` to free the slot).

    :param prediction_id: the id returned by ``WaveSpeedSubmitOperator`` (templated).
    :param wavespeed_conn_id: connection holding the API key.
    :param deferrable: wait in the triggerer instead of the worker (default: the ``[wavespeed]
        default_deferrable`` option, True unless set to False).
    :param poll_interval: shortest pause between polls (default 2 s for images, 5 s for video models);
        the pause grows with the time since the prediction started, up to ``max_poll_interval``.
    :param max_poll_interval: longest pause between polls.
    :param nsfw_policy: what to do when ``has_nsfw_contents`` flags outputs: ``keep`` (warn),
        ``skip`` (warn; the download operator skips them) or ``fail``.
    :param timeout: give up after this many seconds (also enforced while deferred).
    :param expected_runtime: how long the prediction is expected to run (seconds), e.g. the usual run
        time of this model for these inputs: the first poll waits for half of it (fewer polls). A wrong
        hint costs at most a few polls.
    :param queue_timeout: a prediction still queued (``created``: the account's concurrency is full)
        when ``timeout`` passes is waited for this much longer (default 1 hour).
    :param cancel_on_kill: when a user stops the wait (marks this task or its DAG run failed), delete the
        prediction so it is not billed on (default True). Marking success, clearing, a timeout or a triggerer
        restart never delete anything. Deferred waits need Airflow >= 3.3 or the 3.1/3.2 ``cleanup`` path.
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
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.cancel_on_kill = cancel_on_kill
        self.prediction_id = prediction_id
        self.wavespeed_conn_id = wavespeed_conn_id
        self.deferrable = deferrable
        if self.reschedule and not deferrable:
            raise ValueError(_no_reschedule(self.task_id))
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.nsfw_policy = check_nsfw_policy(nsfw_policy)
        self.queue_timeout = check_seconds("queue_timeout", queue_timeout, allow_zero=True)
        self.expected_runtime = check_optional_seconds("expected_runtime", expected_runtime)
        # Time source and pause of the wait in the worker; tests replace them (as they do the trigger's).
        self.clock: Callable[[], float] = time.time
        self.sleep: Callable[[float], object] = time.sleep

    def on_kill(self) -> None:
        CancelsOnKill.on_kill(self)

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

    @contextmanager
    def _soft_fail(self) -> Iterator[None]:
        """``soft_fail`` / ``never_fail`` turn a failure into a skip, as ``resume_execution`` does after a
        deferral: the same in both modes, the first look included."""
        try:
            yield
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            if self.soft_fail:
                raise AirflowSkipException("Skipping due to soft_fail is set to True.") from exc
            if self.never_fail:
                raise AirflowSkipException("Skipping due to never_fail is set to True.") from exc
            raise

    def execute(self, context: Context) -> Any:
        with self._soft_fail(), recording_failures(context, "wait", prediction_id=self.prediction_id):
            prediction_id = self._check_prediction_id()
            if self.reschedule and not self.deferrable:
                raise AirflowFailException(_no_reschedule(self.task_id))
            prediction = self._get_prediction(prediction_id)
            if prediction.is_terminal:
                return self._completed(context, prediction)
            trigger = WaveSpeedPredictionTrigger(
                prediction_id=prediction_id,
                wavespeed_conn_id=self.wavespeed_conn_id,
                deadline=self.clock() + self.timeout,
                started_at=prediction.created_epoch or self.clock(),
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                model=prediction.model,
                queue_grace=self.queue_timeout,
                expected_runtime=self.expected_runtime,
                cancel_on_kill=self.cancel_on_kill,
            )
            if not self.deferrable:
                self._wait_starts(context["ti"], prediction_id)
                try:
                    event = self._wait_in_worker(trigger, prediction)
                finally:
                    self._nothing_left_to_stop()
                return self.execute_complete(context, event)
            self.log.info("Prediction %s is %s; deferring to the triggerer", prediction_id, prediction.status)
            trigger.not_before = self.clock() + min_deferral_seconds()
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout + self.queue_timeout) + DEFER_TIMEOUT_GRACE,
            )

    def _wait_in_worker(self, trigger: WaveSpeedPredictionTrigger, first: Prediction) -> PredictionEvent:
        """The trigger's wait with blocking pauses (the same plan decides); returns the event the trigger
        would have fired, so both modes end through ``execute_complete``."""
        plan = trigger.plan()
        plan.log = self.log
        outcome: Prediction | WaveSpeedError = first  # the first look already happened
        while True:
            decision = plan.after_poll(outcome, self.clock())
            if isinstance(decision, Finished):
                return terminal_event(decision.prediction)
            if isinstance(decision, DeadlinePassed):
                return deadline_event(trigger.prediction_id, decision.status, decision.waited)
            if not isinstance(decision, Sleep):
                return error_event(trigger.prediction_id, decision.error)
            self.sleep(decision.seconds)
            self._stop_if_killed()
            try:
                outcome = self.hook.get_prediction(trigger.prediction_id)
            except WaveSpeedError as exc:
                outcome = exc

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One look (``execute`` never calls this: it waits by the plan); final errors fail, others raise."""
        prediction = self._get_prediction(self._check_prediction_id())
        if not prediction.is_terminal:
            return False
        return PokeReturnValue(True, completed_result(prediction, self.nsfw_policy, self.log))

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """Resume after the trigger fired (or the worker's wait ended): validate the event, return the
        completed prediction or fail."""
        with recording_failures(context, "wait", prediction_id=self.prediction_id):
            return self._completed(context, prediction_from_event(event, self.task_id))

    def _completed(self, context: Context, prediction: Prediction) -> Any:
        push_record(context, new_record("wait", **prediction_fields(prediction)))
        return completed_result(prediction, self.nsfw_policy, self.log)
