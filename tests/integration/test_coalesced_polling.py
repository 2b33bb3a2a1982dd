"""Coalesced polling against the emulator: many real triggers in one event loop, answered from the history.

The triggers are re-created from their serialized kwargs like the triggerer does, and run together in one
loop with one coordinator whose plan is made fast (sweeps every 0.1 s) so the test is short; every wait is
ended by conditions (the emulator holds the predictions until the sweeps have been seen), never by sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from airflow_provider_wavespeed.api.coordinator import HistoryCoordinator, loop_coordinator, use_coordinator
from airflow_provider_wavespeed.api.history_sweep import HistorySweepPlan
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger
from tests.integration.test_trigger import first_event, recreate
from tests.support import AVATAR_INPUTS, raw_submit

WAITS = 30
OTHERS = 120  # other traffic on the account: more than a page of someone else's predictions
BOUND = 60.0


def fast_plan() -> HistorySweepPlan:
    return HistorySweepPlan(cycle_seconds=0.1, audit_seconds=0.3, stale_seconds=1.0, margin=30.0, min_waits=3)


def make_trigger(prediction_id: str, coalesce: bool | None, poll_interval: float = 5.0) -> WaveSpeedPredictionTrigger:
    """A wait as the triggerer re-creates it. Its own pause (5 s) outlasts the test's sweeps: a poll by id
    seen after the first one comes from a fallback, not from the schedule."""
    return recreate(
        WaveSpeedPredictionTrigger(
            prediction_id=prediction_id, deadline=time.time() + BOUND, poll_interval=poll_interval, coalesce=coalesce
        )
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for ``condition`` while the loop runs the triggers."""
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.02)


def submit_batch(raw_api: httpx.Client, failed: int = 0) -> list[str]:
    ids = [raw_submit(raw_api, **AVATAR_INPUTS, prompt="[emulator:failed]") for _ in range(failed)]
    return ids + [raw_submit(raw_api) for _ in range(WAITS - failed)]


def run_waits(
    emulator: WaveSpeedEmulator,
    ids: list[str],
    *,
    coalesce: bool | None,
    while_held: Callable[[HistoryCoordinator | None], object] = lambda c: None,
    release_when: Callable[[HistoryCoordinator], bool] = lambda c: True,
) -> tuple[list[dict[str, Any] | None], HistoryCoordinator | None]:
    """Run one trigger per id in one loop; the predictions are held until every wait is registered and a few
    sweeps have run (or, per-id, until each was polled twice); then ``while_held`` runs, and the predictions
    are released once ``release_when(coordinator)`` holds."""

    async def main() -> tuple[list[dict[str, Any] | None], HistoryCoordinator | None]:
        coordinator: HistoryCoordinator | None = None
        if coalesce is not False:
            coordinator = HistoryCoordinator(await WaveSpeedHook().get_async_conn(), fast_plan())
            use_coordinator(coordinator)
        pause = 5.0 if coalesce is not False else 0.2
        tasks = [asyncio.create_task(first_event(make_trigger(pid, coalesce, pause), BOUND)) for pid in ids]
        if coordinator is not None:
            c = coordinator
            await until(lambda: len(c.plan.waits) == len(ids) and c.counters.pages >= 6, "sweeps of every wait")
        else:
            await until(lambda: all(emulator.stats.polls_by_prediction.get(p, 0) >= 2 for p in ids), "two polls each")
        while_held(coordinator)
        if coordinator is not None:
            await until(lambda: release_when(c), "the release condition")
        emulator.configure(hold_predictions=False)
        return list(await asyncio.gather(*tasks)), coordinator

    emulator.configure(hold_predictions=True)
    try:
        return asyncio.run(main())
    finally:
        emulator.configure(hold_predictions=False)


def test_thirty_waits_are_answered_from_the_history_each_with_its_own_prediction_and_few_result_polls(
    emulator, raw_api
):
    emulator.configure(hold_predictions=True)
    for _ in range(OTHERS):  # someone else's predictions, nobody waits for them
        raw_submit(raw_api)
    ids = submit_batch(raw_api, failed=1)
    emulator.stats.reset()
    events, coordinator = run_waits(emulator, ids, coalesce=None)  # None: the config's default (on)

    assert coordinator is not None
    for pid, event in zip(ids, events, strict=True):
        assert event is not None and event["event"] == "terminal", (pid, event)
        assert event["prediction_id"] == pid and event["prediction"]["id"] == pid
    assert [e["status"] for e in events if e] == ["failed"] + ["completed"] * (WAITS - 1)
    failed = events[0]
    assert failed is not None and failed["prediction"]["code"] == 1403 and failed["prediction"]["error"]
    assert all(e["prediction"]["outputs"] == [emulator.output_url(e["prediction_id"])] for e in events[1:] if e)
    # One poll by id each (the first), everything after from the history: the waits registered before the
    # break-even was reached stopped their own pause when the sweeps started.
    assert emulator.stats.result_polls == WAITS, emulator.stats.polls_by_prediction
    pages = coordinator.counters.pages  # (+1: a page may still have been in flight when the last wait ended)
    assert 0 < pages <= emulator.stats.history_queries <= pages + 1
    print(f"coalesced: {emulator.stats.result_polls} result polls + {emulator.stats.history_queries} history pages")
    assert coordinator.counters.observations >= WAITS
    assert not coordinator.plan.waits  # every trigger unregistered


def test_with_the_switch_off_every_wait_polls_by_id_and_never_asks_the_history(emulator, raw_api):
    emulator.configure(hold_predictions=True)
    ids = submit_batch(raw_api)
    emulator.stats.reset()
    events, _ = run_waits(emulator, ids, coalesce=False)
    assert all(e is not None and e["event"] == "terminal" and e["status"] == "completed" for e in events)
    assert emulator.stats.history_queries == 0
    assert all(emulator.stats.polls_by_prediction[pid] >= 3 for pid in ids)  # 2 held + the one that saw it done
    print(f"per id: {emulator.stats.result_polls} result polls")


def test_a_deleted_prediction_leaves_the_history_and_is_reported_as_a_poll_by_id_reports_it(emulator, raw_api):
    emulator.configure(hold_predictions=True)
    ids = submit_batch(raw_api)
    chosen: list[str] = []

    def delete(coordinator: HistoryCoordinator | None) -> None:
        assert coordinator is not None
        chosen.append(list(coordinator.plan.waits)[-1])  # the last to register: it never polled before sweeps
        reply = raw_api.post("/api/v3/predictions/delete", json={"ids": chosen})
        assert reply.status_code == 200 and reply.json()["data"]["deleted_count"] == 1

    emulator.stats.reset()
    events, coordinator = run_waits(
        emulator, ids, coalesce=True, while_held=delete, release_when=lambda c: c.counters.stale >= 1
    )
    deleted = chosen[0]
    polls = emulator.stats.polls_by_prediction[deleted]
    today = asyncio.run(first_event(make_trigger(deleted, coalesce=False), BOUND))  # what per-id polling says

    assert coordinator is not None and coordinator.counters.stale >= 1
    assert polls == 2  # the first poll, and the one when no sweep had seen it for stale_seconds
    event = events[ids.index(deleted)]
    assert event is not None and today is not None
    assert (event["event"], event["status"], event["prediction_id"]) == (today["event"], today["status"], deleted)
    assert event["status"] == "deleted"
    others = [e for pid, e in zip(ids, events, strict=True) if pid != deleted]
    assert all(e is not None and e["status"] == "completed" for e in others)


def test_fewer_waits_than_the_break_even_poll_by_id_as_before(emulator, raw_api):
    ids = [raw_submit(raw_api) for _ in range(2)]

    async def main() -> tuple[list[dict[str, Any] | None], bool]:
        events = await asyncio.gather(*(first_event(make_trigger(pid, True, 0.5), BOUND) for pid in ids))
        return list(events), loop_coordinator(await WaveSpeedHook().get_async_conn()).sweeping

    events, sweeping = asyncio.run(main())
    assert all(e is not None and e["status"] == "completed" for e in events)
    assert not sweeping and emulator.stats.history_queries == 0


def test_a_coalesced_wait_ends_at_its_own_deadline_without_any_news_and_unregisters(emulator, raw_api):
    emulator.configure(hold_predictions=True)
    ids = [raw_submit(raw_api) for _ in range(4)]

    async def main() -> tuple[list[dict[str, Any] | None], HistoryCoordinator]:
        coordinator = HistoryCoordinator(await WaveSpeedHook().get_async_conn(), fast_plan())
        use_coordinator(coordinator)
        triggers = [make_trigger(pid, True) for pid in ids]
        for trigger in triggers:
            trigger.deadline = time.time() + 1.0
        events = await asyncio.gather(*(first_event(t, BOUND) for t in triggers))
        return list(events), coordinator

    try:
        events, coordinator = asyncio.run(main())
    finally:
        emulator.configure(hold_predictions=False)
    assert all(e is not None and e["event"] == "deadline" and e["status"] == "processing" for e in events)
    assert coordinator.counters.pages > 0 and not coordinator.plan.waits
    # The first poll and one at the deadline (one more if its own pause ended before the sweeps began).
    assert all(emulator.stats.polls_by_prediction[pid] <= 3 for pid in ids)
    assert sum(emulator.stats.polls_by_prediction[pid] for pid in ids) <= 2 * len(ids) + coordinator.plan.min_waits


def test_cancelled_waits_unregister_and_the_sweeper_stops(emulator, raw_api):
    emulator.configure(hold_predictions=True)
    ids = [raw_submit(raw_api) for _ in range(5)]

    async def main() -> HistoryCoordinator:
        coordinator = HistoryCoordinator(await WaveSpeedHook().get_async_conn(), fast_plan())
        use_coordinator(coordinator)
        tasks = [asyncio.create_task(first_event(make_trigger(pid, True), BOUND)) for pid in ids]
        await until(lambda: len(coordinator.plan.waits) == len(ids) and coordinator.counters.pages >= 2, "sweeps")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await until(lambda: not coordinator.running, "the sweeper to stop")
        return coordinator

    try:
        coordinator = asyncio.run(main())
    finally:
        emulator.configure(hold_predictions=False)
    assert not coordinator.plan.waits and not coordinator._tickets


class BrokenHistory:
    """The shared client's settings, but a history call that fails with a bug (not an API error)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    async def history_page(self, **filters: Any) -> Any:
        raise RuntimeError("a bug in the sweeper")


def test_a_sweeper_that_crashes_hands_every_wait_back_to_polling_by_id(emulator, raw_api):
    emulator.configure(hold_predictions=True)
    ids = submit_batch(raw_api)

    async def main() -> tuple[list[dict[str, Any] | None], HistoryCoordinator]:
        client = await WaveSpeedHook().get_async_conn()
        coordinator = HistoryCoordinator(BrokenHistory(client.settings), fast_plan())  # type: ignore[arg-type]
        use_coordinator(coordinator)
        tasks = [asyncio.create_task(first_event(make_trigger(pid, True, 0.5), BOUND)) for pid in ids]
        # The sweeper ended although every wait is still registered: it crashed.
        await until(lambda: len(coordinator.plan.waits) == len(ids) and not coordinator.running, "the crash")
        assert not coordinator.sweeping
        emulator.configure(hold_predictions=False)
        return list(await asyncio.gather(*tasks)), coordinator

    try:
        events, coordinator = asyncio.run(main())
    finally:
        emulator.configure(hold_predictions=False)
    assert all(e is not None and e["event"] == "terminal" and e["status"] == "completed" for e in events)
    assert emulator.stats.history_queries == 0 and not coordinator.running


def test_the_config_switch_turns_coalescing_off_for_triggers_that_do_not_choose(emulator, raw_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW__WAVESPEED__COALESCED_POLLING", "False")
    ids = [raw_submit(raw_api) for _ in range(4)]

    async def main() -> list[dict[str, Any] | None]:
        return list(await asyncio.gather(*(first_event(make_trigger(pid, None, 0.2), BOUND) for pid in ids)))

    assert all(e is not None and e["status"] == "completed" for e in asyncio.run(main()))
    assert emulator.stats.history_queries == 0


def test_the_pages_of_a_long_sweep_are_asked_four_at_a_time_and_every_wait_still_gets_its_own_prediction(
    emulator, raw_api
):
    emulator.configure(hold_predictions=True)
    for _ in range(OTHERS):
        raw_submit(raw_api)
    ids = submit_batch(raw_api)
    in_flight, most = 0, 0

    async def main() -> list[dict[str, Any] | None]:
        client = await WaveSpeedHook().get_async_conn()
        real_page = client.history_page

        async def counted(**filters: Any) -> Any:  # the real request, with how many are under way at once
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                return await real_page(**filters)
            finally:
                in_flight -= 1

        client.history_page = counted  # type: ignore[method-assign]
        plan = HistorySweepPlan(cycle_seconds=0.1, audit_seconds=0.3, stale_seconds=5.0, margin=30.0, min_waits=3)
        plan.page_size = 10  # 150 predictions in the window: 15 pages a query
        coordinator = HistoryCoordinator(client, plan, page_lanes=4)
        use_coordinator(coordinator)
        tasks = [asyncio.create_task(first_event(make_trigger(pid, None), BOUND)) for pid in ids]
        await until(lambda: coordinator.counters.pages >= 30, "two long sweeps")
        emulator.configure(hold_predictions=False)
        return list(await asyncio.gather(*tasks))

    try:
        events = asyncio.run(main())
    finally:
        emulator.configure(hold_predictions=False)

    assert [e["prediction_id"] if e else None for e in events] == ids
    assert all(
        e is not None and e["status"] == "completed" and e["prediction"]["id"] == e["prediction_id"] for e in events
    )
    assert 2 <= most <= 4 + 1  # four pages ahead plus the one the plan is taking
    assert emulator.stats.result_polls <= 2 * WAITS  # answered from the sweeps, not by id
