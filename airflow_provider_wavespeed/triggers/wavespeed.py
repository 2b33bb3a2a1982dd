"""WaveSpeedPredictionTrigger: wait for a prediction in the triggerer, without blocking the loop."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_wavespeed.api.client import AsyncWaveSpeedClient
from airflow_provider_wavespeed.api.coordinator import HistoryCoordinator, Ticket, loop_coordinator
from airflow_provider_wavespeed.api.errors import (
    WaveSpeedError,
)
from airflow_provider_wavespeed.api.models import TERMINAL_FAILURE_STATUSES, Prediction, PredictionStatus
from airflow_provider_wavespeed.api.waiting import DeadlinePassed, Failed, Finished, Sleep, WaitPlan
from airflow_provider_wavespeed.cancellation import shielded, should_cancel, task_state_in_triggerer
from airflow_provider_wavespeed.coalescing import coalesced_polling
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.triggers.events import deadline_event, error_event, terminal_event


class WaveSpeedPredictionTrigger(BaseTrigger):
    """
    Poll ``GET /api/v3/predictions/{id}/result`` until the prediction is terminal or ``deadline`` passes.

    Every kwarg is plain JSON (never the key, never a client): the triggerer may re-create this
    trigger from them at any time, and ``run()`` then starts again from the top, which only
    re-reads the prediction; it never submits anything.

    :param prediction_id: the prediction to wait for.
    :param wavespeed_conn_id: connection holding the API key.
    :param deadline: absolute end of the wait, epoch seconds (survives triggerer restarts).
    :param started_at: epoch seconds the prediction started; the poll interval grows with the time
        waited since then.
    :param poll_interval: shortest pause between polls (default 2 s for images, 5 s for video models).
    :param max_poll_interval: longest pause between polls.
    :param model: the prediction's model id, used to pick the default ``poll_interval``.
    :param expected_runtime: a hint (seconds) of the prediction's run time: the first poll waits for
        half of it, so fewer polls find it on time.
    :param not_before: epoch seconds before which no event is yielded (see
        ``deferral.min_deferral_seconds``: resuming a task too soon after it deferred races Airflow).
    :param queue_grace: seconds past ``deadline`` that a prediction still queued (``created``: the
        account's concurrency limit is full) is waited for; it is waiting, not stuck.
    :param cancel_on_kill: when a user stops the wait (marks the task or its DAG run failed), delete the
        prediction. Airflow >= 3.3 calls ``on_kill``; 3.1/3.2 only ``cleanup``, checked the same way. Only a task
        instance that now stands ``failed`` cancels (see ``cancellation``): success, a clear, a timeout, a
        triggerer restart or hand-over never do.
    :param coalesce: share history sweeps with the other waits of this account in the triggerer
        (``api.coordinator``) instead of polling by id after the first poll; None: ``[wavespeed]
        coalesced_polling``. Deadlines, ``queue_grace``, ``expected_runtime`` and the events stay the same:
        every answer goes through the same :class:`WaitPlan`, and whatever the history cannot answer in time
        is polled by id.
    """

    #: Seconds the delete may take inside ``on_kill`` / ``cleanup``.
    CANCEL_LIMIT_SECONDS = 15.0

    def __init__(
        self,
        prediction_id: str,
        wavespeed_conn_id: str = WaveSpeedHook.default_conn_name,
        *,
        deadline: float | None = None,
        started_at: float | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float = 60.0,
        model: str = "",
        request_timeout: float = 30.0,
        queue_grace: float = 0.0,
        expected_runtime: float | None = None,
        not_before: float | None = None,
        cancel_on_kill: bool = False,
        coalesce: bool | None = None,
    ) -> None:
        super().__init__()
        self.prediction_id = prediction_id
        self.wavespeed_conn_id = wavespeed_conn_id
        self.deadline = deadline
        self.started_at = started_at if started_at is not None else time.time()
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.model = model
        self.request_timeout = request_timeout
        self.queue_grace = queue_grace
        self.expected_runtime = expected_runtime
        self.not_before = not_before
        self.cancel_on_kill = cancel_on_kill
        self.coalesce = coalesce
        # Time source and pause; tests replace them. Not serialized: a re-created trigger uses the real ones.
        self.clock: Callable[[], float] = time.time
        self.sleep: Callable[[float], Awaitable[object]] = asyncio.sleep

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "prediction_id": self.prediction_id,
                "wavespeed_conn_id": self.wavespeed_conn_id,
                "deadline": self.deadline,
                "started_at": self.started_at,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "model": self.model,
                "request_timeout": self.request_timeout,
                "queue_grace": self.queue_grace,
                "expected_runtime": self.expected_runtime,
                "not_before": self.not_before,
                "cancel_on_kill": self.cancel_on_kill,
                "coalesce": self.coalesce,
            },
        )

    def plan(self) -> WaitPlan:
        """This wait's decisions (the same plan the worker-side waits follow)."""
        return WaitPlan(
            prediction_id=self.prediction_id,
            started_at=self.started_at,
            deadline=self.deadline,
            queue_grace=self.queue_grace,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            model=self.model,
            expected_runtime=self.expected_runtime,
            log=self.log,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = WaveSpeedHook(self.wavespeed_conn_id, timeout=self.request_timeout)
        try:
            client = await hook.get_async_conn()
        except (WaveSpeedError, ValueError) as exc:
            yield TriggerEvent(error_event(self.prediction_id, exc))
            return
        plan = self.plan()
        coalesce = coalesced_polling() if self.coalesce is None else self.coalesce
        coordinator = loop_coordinator(client) if coalesce else None
        ticket: Ticket | None = None
        try:
            if coordinator is not None and coordinator.sweeping:
                # The account's waits are already swept together: this one starts there too, with no poll by id
                # of its own (the operators pass the API's created_at as started_at). The next sweep sees it if
                # it already finished; the stale fallback polls it if the history never lists it.
                ticket = coordinator.register(self.prediction_id, self.started_at, "")
                outcome = await self._next_outcome(client, coordinator, ticket, plan, 0.0)
            else:
                outcome = await self._poll(client, coordinator)
            created = (outcome.created_epoch if isinstance(outcome, Prediction) else None) or self.started_at
            while True:
                decision = plan.after_poll(outcome, self.clock())
                if not isinstance(decision, Sleep) and self.not_before is not None:
                    early = self.not_before - self.clock()
                    if early > 0:
                        await self.sleep(early)
                if isinstance(decision, Finished):
                    yield TriggerEvent(terminal_event(decision.prediction))
                    return
                if isinstance(decision, DeadlinePassed):
                    yield TriggerEvent(deadline_event(self.prediction_id, decision.status, decision.waited))
                    return
                if isinstance(decision, Failed):
                    yield TriggerEvent(error_event(self.prediction_id, decision.error))
                    return
                if coordinator is not None and ticket is None:
                    ticket = coordinator.register(self.prediction_id, created, plan.status)
                outcome = await self._next_outcome(client, coordinator, ticket, plan, decision.seconds)
        finally:
            if coordinator is not None and ticket is not None:
                coordinator.unregister(ticket)

    async def _poll(
        self, client: AsyncWaveSpeedClient, coordinator: HistoryCoordinator | None
    ) -> Prediction | WaveSpeedError:
        """One ``GET .../result`` of this prediction (what every wait did before coalescing)."""
        try:
            prediction = await client.get_prediction(self.prediction_id)
        except WaveSpeedError as exc:
            return exc
        if coordinator is not None:
            coordinator.polled(prediction)
        return prediction

    async def _next_outcome(
        self,
        client: AsyncWaveSpeedClient,
        coordinator: HistoryCoordinator | None,
        ticket: Ticket | None,
        plan: WaitPlan,
        pause: float,
    ) -> Prediction | WaveSpeedError:
        """What the plan sees next: after ``pause``, a poll by id; or, while the account's waits are swept
        together, the history's news of this prediction, falling back to a poll by id at the wait's deadline,
        when no sweep has seen it for a while, or when sweeping stopped."""
        if coordinator is None or ticket is None:
            await self.sleep(pause)
            return await self._poll(client, coordinator)
        if not await coordinator.sleep_unless_sweeping(lambda: self.sleep(pause)):
            return await self._poll(client, coordinator)
        began = self.clock()
        until = plan.deadline_for(plan.status) - began
        news = await coordinator.wait(ticket, None if until == float("inf") else max(0.0, until))
        if news is not None and is_whole(news):
            return news
        if news is None and not coordinator.sweeping:  # back to this wait's own schedule
            await self.sleep(max(0.0, pause - (self.clock() - began)))
        return await self._poll(client, coordinator)

    async def on_kill(self) -> None:
        """Airflow >= 3.3: the trigger was stopped by a user action (or handed to another triggerer)."""
        await self._cancel_if_stopped_by_user()

    async def cleanup(self) -> None:
        """Airflow 3.1/3.2 have no ``on_kill``: a cancel in flight here is the same user action (or a deferral
        timeout, a shutdown, a hand-over, which the task instance's state tells apart)."""
        if not _TRIGGERS_HAVE_ON_KILL and isinstance(sys.exc_info()[1], asyncio.CancelledError):
            await self._cancel_if_stopped_by_user()
        await super().cleanup()

    async def _cancel_if_stopped_by_user(self) -> None:
        if not self.cancel_on_kill or self.task_instance is None:
            return
        state = await task_state_in_triggerer(self.task_instance)
        if not should_cancel(state):
            self.log.info(
                "Wait for prediction %s stopped with the task %s: the prediction is kept",
                self.prediction_id,
                state or "in an unknown state",
            )
            return
        outcome = await shielded(self._delete, self.CANCEL_LIMIT_SECONDS)
        self.log.warning("%s", outcome or f"Deleting prediction {self.prediction_id} did not finish in time")

    async def _delete(self) -> str:
        hook = WaveSpeedHook(self.wavespeed_conn_id, timeout=self.request_timeout)
        try:
            how = await hook.adelete_prediction(self.prediction_id)
        except WaveSpeedError as exc:
            return f"The task was marked failed, but deleting prediction {self.prediction_id} failed: {exc}"
        return (
            f"Cancelled prediction {self.prediction_id} ({how}): the task was marked failed. Whether WaveSpeed "
            "stops a running prediction at once, or refunds it, is not documented."
        )


def is_whole(prediction: Prediction) -> bool:
    """Whether a history item can stand for the result reply: a finished prediction from the history must
    carry what the result would (outputs, or the failure's error); otherwise the wait reads the result by id."""
    if prediction.status == PredictionStatus.COMPLETED:
        return bool(prediction.outputs)
    if prediction.status in TERMINAL_FAILURE_STATUSES:
        return bool(prediction.error) or prediction.code is not None
    return True


_TRIGGERS_HAVE_ON_KILL = "on_kill" in vars(BaseTrigger)
