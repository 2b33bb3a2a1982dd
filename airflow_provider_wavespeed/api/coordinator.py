"""Coalesced polling: one history sweeper per event loop and account, answering every wait registered with it.

Triggers of one account in one triggerer loop register their waits with the loop's
:class:`HistoryCoordinator` and await :meth:`HistoryCoordinator.wait`. One background task follows the
:class:`~airflow_provider_wavespeed.api.history_sweep.HistorySweepPlan` with the loop's shared client and
hands each wait what the history says about its own prediction. Nothing here can lose a wait: a timeout,
a stale wait, too few waits to sweep, or a sweeper that crashed all answer ``None``, and the trigger then
polls its prediction by id as it would without coalescing.

Like the shared clients (``loop_clients``), coordinators are never shared across loops, and they hold no
state worth keeping: a trigger re-created on another triggerer simply registers there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from airflow_provider_wavespeed.api.client import AsyncWaveSpeedClient
from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.api.history_sweep import HistorySweepPlan, Idle, Query, status_rank
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.timestamps import iso_utc

log = logging.getLogger(__name__)

#: Pages of one sweep's query asked at once. The first page tells the total; with thousands of waits a sweep
#: is tens of pages, and one after another they would stretch a cycle past its seconds on a real API's
#: latency (benchmarks/bench_polling.py: p95 14-35 s at 5,000 waits with one lane, under 9 s with four).
PAGE_LANES = 4

#: One history per account: the key and the API it is sent to (kept in memory only, never logged).
AccountKey = tuple[str, str]


@dataclass
class SweepCounters:
    """What the sweeper did (tests, benchmarks)."""

    pages: int = 0
    failed_pages: int = 0
    observations: int = 0
    stale: int = 0


class Ticket:
    """One trigger's registration (two triggers may wait for the same prediction: each has its own)."""

    def __init__(self, prediction_id: str) -> None:
        self.prediction_id = prediction_id
        #: Sequence number of the newest news this wait was given.
        self.seen = 0
        self.wakeup: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)


class HistoryCoordinator:
    """The waits of one account in one event loop, answered from the history (see the module docstring)."""

    def __init__(
        self,
        client: AsyncWaveSpeedClient,
        plan: HistorySweepPlan | None = None,
        *,
        clock: Callable[[], float] = time.time,
        page_lanes: int = PAGE_LANES,
    ) -> None:
        self.client = client
        self.plan = plan if plan is not None else HistorySweepPlan()
        self.clock = clock
        self.page_lanes = max(1, page_lanes)
        #: Pages of the current query fetched ahead of the plan asking for them (see ``_fetch``).
        self._ahead: dict[Query, asyncio.Task[tuple[list[Prediction], int | None]]] = {}
        self.counters = SweepCounters()
        self._tickets: dict[str, set[Ticket]] = {}
        #: prediction id -> (sequence number, newest news from a sweep).
        self._news: dict[str, tuple[int, Prediction]] = {}
        self._sequence = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sweeping = asyncio.Event()
        self._broken = False

    # -- the triggers' side ----------------------------------------------------------------------------

    def register(self, prediction_id: str, created: float, status: str) -> Ticket:
        """Answer ``prediction_id`` (created at ``created``, epoch seconds; just seen in ``status``) from now on."""
        ticket = Ticket(prediction_id)
        tickets = self._tickets.setdefault(prediction_id, set())
        tickets.add(ticket)
        if len(tickets) == 1:
            was_sweeping = self.plan.sweeping
            self.plan.register(prediction_id, created, status, self.clock())
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name="wavespeed-history-sweeps")
            elif self.plan.sweeping and not was_sweeping:
                self._wake.set()
            self._note_sweeping()
        return ticket

    def unregister(self, ticket: Ticket) -> None:
        ticket.wake()
        tickets = self._tickets.get(ticket.prediction_id, set())
        tickets.discard(ticket)
        if not tickets:
            self._tickets.pop(ticket.prediction_id, None)
            self._news.pop(ticket.prediction_id, None)
            self.plan.unregister(ticket.prediction_id)
            self._note_sweeping()

    def polled(self, prediction: Prediction) -> None:
        """A wait polled its prediction by id itself (first poll, stale, deadline)."""
        self.plan.polled(prediction, self.clock())
        _, news = self._news.get(prediction.id, (0, None))
        if news is not None and status_rank(news.status) <= status_rank(prediction.status):
            del self._news[prediction.id]  # older than what the poll just saw

    @property
    def sweeping(self) -> bool:
        """Whether waits are answered from the history now; otherwise each polls by id on its own schedule."""
        return self.plan.sweeping and not self._broken

    def _note_sweeping(self) -> None:
        if self.sweeping:
            self._sweeping.set()
        else:
            self._sweeping.clear()

    async def sleep_unless_sweeping(self, sleep: Callable[[], Awaitable[object]]) -> bool:
        """Await ``sleep()`` (a wait's own pause before its next poll by id), cut short when sweeping starts;
        returns whether it was (then the wait takes its news from the sweeps instead of polling)."""
        if self.sweeping:
            return True
        pause = asyncio.ensure_future(sleep())
        started = asyncio.ensure_future(self._sweeping.wait())
        try:
            await asyncio.wait({pause, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pause.cancel()
            started.cancel()
        return self.sweeping and not (pause.done() and not pause.cancelled())

    @property
    def running(self) -> bool:
        """Whether the background sweeper is alive (it stops when no waits remain)."""
        return self._task is not None and not self._task.done()

    async def wait(self, ticket: Ticket, timeout: float | None) -> Prediction | None:
        """The next news of the ticket's prediction from a sweep, or None: ``timeout`` seconds passed, no sweep
        has seen it for a while (stale), or sweeping stopped. After None, poll the prediction by id."""
        news = self._newer(ticket)
        if news is not None or not self.sweeping or ticket not in self._tickets.get(ticket.prediction_id, ()):
            return news
        ticket.wakeup = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(ticket.wakeup, timeout)
        except TimeoutError:
            pass
        finally:
            ticket.wakeup = None
        return self._newer(ticket)

    def _newer(self, ticket: Ticket) -> Prediction | None:
        sequence, news = self._news.get(ticket.prediction_id, (0, None))
        if news is None or sequence <= ticket.seen:
            return None
        ticket.seen = sequence
        return news

    # -- the sweeper -----------------------------------------------------------------------------------

    def _tell(self, prediction_id: str, news: Prediction | None) -> None:
        """Wake the waits of ``prediction_id``: with ``news``, or (None) to poll by id."""
        if news is not None:
            self._sequence += 1
            self._news[prediction_id] = (self._sequence, news)
        for ticket in self._tickets.get(prediction_id, ()):
            ticket.wake()

    def _wake_all(self) -> None:
        for tickets in self._tickets.values():
            for ticket in tickets:
                ticket.wake()

    async def _run(self) -> None:
        try:
            while self.plan.waits:
                await self._step()
                for prediction_id in self.plan.take_stale(self.clock()):
                    self.counters.stale += 1
                    self._tell(prediction_id, None)
                if not self.plan.sweeping:
                    self._wake_all()
        except Exception:
            # Never let a sweeper bug end a wait: every wait goes back to polling by id.
            log.exception("History sweeps stopped; the waits poll their predictions one by one")
            self._broken = True
            self._note_sweeping()
            self._wake_all()
        finally:
            self._drop_ahead()

    async def _step(self) -> None:
        step = self.plan.next(self.clock())
        if isinstance(step, Idle):
            self._drop_ahead()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), step.seconds)
            return
        page: list[Prediction] | Exception
        total: int | None = None
        try:
            page, total = await self._fetch(step)
        except WaveSpeedError as exc:
            log.warning("A history page failed (%s); waits not seen in time poll by id", exc)
            page = exc
            self.counters.failed_pages += 1
        self.counters.pages += 1
        news = self.plan.after_page(page, total, self.clock())
        self.counters.observations += len(news)
        for prediction_id, prediction in news.items():
            self._tell(prediction_id, prediction)
        if isinstance(page, Exception):
            self._drop_ahead()
        elif step.page == 1 and total is not None:
            self._fetch_ahead(step, total)

    async def _fetch(self, query: Query) -> tuple[list[Prediction], int | None]:
        """One page: fetched ahead already (then awaited), or asked now."""
        ahead = self._ahead.pop(query, None)
        if ahead is not None:
            return await ahead
        self._drop_ahead()  # the plan moved on to another query: what was fetched for the last one is stale
        return await self._ask(query)

    async def _ask(self, query: Query) -> tuple[list[Prediction], int | None]:
        return await self.client.history_page(
            status=query.status,
            created_after=iso_utc(query.created_after),
            created_before=iso_utc(query.created_before),
            page=query.page,
            page_size=query.page_size,
        )

    def _fetch_ahead(self, first: Query, total: int) -> None:
        """Ask for the next pages of ``first``'s query at once (``page_lanes`` at a time); the plan still takes
        them one by one, in order, so it decides exactly as with pages asked one after another."""
        if self.page_lanes < 2:
            return
        last_page = -(-total // first.page_size)
        lanes = asyncio.Semaphore(self.page_lanes)

        async def laned(query: Query) -> tuple[list[Prediction], int | None]:
            async with lanes:
                return await self._ask(query)

        for number in range(2, last_page + 1):
            query = Query(number, first.status, first.created_after, first.created_before, first.page_size)
            self._ahead[query] = asyncio.get_running_loop().create_task(laned(query))

    def _drop_ahead(self) -> None:
        for task in self._ahead.values():
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not report it as never retrieved
            task.cancel()
        self._ahead.clear()


_coordinators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[AccountKey, HistoryCoordinator]] = (
    weakref.WeakKeyDictionary()
)


def account_key(client: AsyncWaveSpeedClient) -> AccountKey:
    return (client.settings.api_key, client.settings.base_url)


def loop_coordinator(client: AsyncWaveSpeedClient) -> HistoryCoordinator:
    """The running loop's coordinator for ``client``'s account, created (with the default plan) on first use."""
    per_loop = _coordinators.setdefault(asyncio.get_running_loop(), {})
    key = account_key(client)
    coordinator = per_loop.get(key)
    if coordinator is None:
        coordinator = per_loop[key] = HistoryCoordinator(client)
    return coordinator


def use_coordinator(coordinator: HistoryCoordinator) -> None:
    """Make ``coordinator`` the running loop's one for its client's account (tests and benchmarks choose
    the plan's numbers this way)."""
    _coordinators.setdefault(asyncio.get_running_loop(), {})[account_key(coordinator.client)] = coordinator
