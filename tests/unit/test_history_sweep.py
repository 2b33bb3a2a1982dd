"""The coalesced poller's decisions (api.history_sweep.HistorySweepPlan): no I/O, an explicit clock."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_wavespeed.api.history_sweep import HistorySweepPlan, Idle, Query
from airflow_provider_wavespeed.api.models import Prediction

T0 = 1_800_000_000.0


def item(prediction_id: str, status: str = "completed", **extra: Any) -> Prediction:
    return Prediction.from_api({"id": prediction_id, "model": "m/x", "status": status, **extra})


def plan_with(ids: list[str], *, created: float = T0, status: str = "processing", **kwargs: Any) -> HistorySweepPlan:
    """A plan holding ``ids``; the tables below sweep from 3 waits on (the default break-even is higher)."""
    plan = HistorySweepPlan(**{"min_waits": 3, "cycle_seconds": 2.0, "margin": 30.0, **kwargs})
    for n, prediction_id in enumerate(ids):
        plan.register(prediction_id, created + n, status, T0)
    return plan


def query(plan: HistorySweepPlan, now: float) -> Query:
    step = plan.next(now)
    assert isinstance(step, Query), step
    return step


def run_sweep(plan: HistorySweepPlan, now: float, pages: dict[str | None, list[list[Prediction]]]) -> list[Query]:
    """Answer every query of one sweep from ``pages`` (per status filter, page by page); returns the queries."""
    asked = []
    while isinstance(step := plan.next(now), Query):
        asked.append(step)
        answers = pages.get(step.status, [[]])
        total = sum(len(p) for p in answers)
        plan.after_page(answers[step.page - 1] if step.page <= len(answers) else [], total, now)
        if plan._sweep is None:
            break
    return asked


# -- break-even ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waits", "min_waits", "sweeps"),
    [(0, 3, False), (1, 3, False), (2, 3, False), (3, 3, True), (30, 3, True), (1, 1, True)],
)
def test_below_the_break_even_number_of_waits_nothing_is_swept(waits, min_waits, sweeps):
    plan = plan_with([f"p{n}" for n in range(waits)], min_waits=min_waits)
    step = plan.next(T0)
    assert plan.sweeping is sweeps
    assert isinstance(step, Query) is sweeps
    if not sweeps:
        assert step == Idle(plan.cycle_seconds)
        assert plan.take_stale(T0 + 10_000) == []  # nobody is handed back: they all poll by id anyway


def test_a_sweep_in_progress_stops_when_waits_fall_below_the_break_even():
    plan = plan_with(["a", "b", "c"])
    query(plan, T0)
    plan.unregister("c")
    assert plan.next(T0) == Idle(plan.cycle_seconds)


# -- windows and filters -------------------------------------------------------------------------------------


def test_a_terminal_sweep_asks_completed_then_failed_over_the_pending_created_window_with_a_margin():
    plan = plan_with(["a", "b", "c"], created=T0 - 100, margin=30)  # created T0-100, T0-99, T0-98
    asked = run_sweep(plan, T0, {})
    assert [(q.status, q.page) for q in asked] == [("completed", 1), ("failed", 1)]
    assert all(q.created_after == T0 - 130 for q in asked)
    assert all(q.created_before == T0 + 30 for q in asked)  # the sweep's start (later than any created) + M
    assert all(q.page_size == 100 for q in asked)


def test_the_window_ends_after_the_newest_created_time_when_the_server_clock_is_ahead():
    plan = HistorySweepPlan(margin=5, min_waits=3)
    for n, created in enumerate([T0 - 10, T0 + 40, T0 + 50]):  # the API's clock is ahead of ours
        plan.register(f"p{n}", created, "processing", T0)
    assert query(plan, T0).created_before == T0 + 55


def test_the_window_follows_the_waits_still_pending():
    plan = plan_with(["old", "b", "c", "d"], created=T0 - 500, margin=0)
    plan.unregister("old")
    assert query(plan, T0).created_after == T0 - 499


# -- cadence ---------------------------------------------------------------------------------------------------


def test_cycles_start_every_cycle_seconds_counted_from_the_last_sweeps_start():
    plan = plan_with(["a", "b", "c"], cycle_seconds=2)
    run_sweep(plan, T0, {})
    assert plan.next(T0 + 0.5) == Idle(pytest.approx(1.5))
    assert isinstance(plan.next(T0 + 2), Query)


@pytest.mark.parametrize(
    ("at", "kind"),
    [(T0, "terminal"), (T0 + 28, "terminal"), (T0 + 30, "audit"), (T0 + 32, "terminal"), (T0 + 60, "audit")],
)
def test_every_audit_seconds_a_cycle_is_one_unfiltered_sweep_that_sees_every_status(at, kind):
    plan = plan_with(["a", "b", "c"], cycle_seconds=2, audit_seconds=30)
    now = T0
    while now < at:  # sweep every cycle up to ``at``
        run_sweep(plan, now, {})
        now += 2
    filters = [q.status for q in run_sweep(plan, at, {})]
    assert filters == ([None] if kind == "audit" else ["completed", "failed"])


# -- paging -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "pages"), [(0, 1), (1, 1), (100, 1), (101, 2), (250, 3)])
def test_a_sweep_pages_until_page_times_page_size_reaches_the_total(total, pages):
    plan = plan_with(["a", "b", "c"])
    asked = 0
    while (step := plan.next(T0)) != Idle(plan.cycle_seconds) and isinstance(step, Query):
        if step.status != "completed":
            break
        asked += 1
        size = max(0, min(100, total - (step.page - 1) * 100))
        plan.after_page([item(f"other{step.page}-{n}") for n in range(size)], total, T0)
    assert asked == pages


def test_without_a_total_a_short_page_is_the_last():
    plan = plan_with(["a", "b", "c"])
    assert query(plan, T0).page == 1
    plan.after_page([item(f"x{n}") for n in range(100)], None, T0)
    assert query(plan, T0) == Query(2, "completed", pytest.approx(T0 - 30), pytest.approx(T0 + 30))
    plan.after_page([item("x")], None, T0)
    assert query(plan, T0).status == "failed"


# -- who gets what ---------------------------------------------------------------------------------------------


def test_only_registered_ids_are_handed_out_and_each_gets_its_own_prediction():
    plan = plan_with(["a", "b", "c"])
    query(plan, T0)
    page = [item("someone-else"), item("b", outputs=["https://cdn/b.png"]), item("a-but-not-a"), item("c")]
    found = plan.after_page(page, 4, T0)
    assert set(found) == {"b", "c"}
    assert found["b"].id == "b" and found["b"].outputs == ["https://cdn/b.png"]


def test_a_prediction_on_two_pages_is_handed_out_once():
    plan = plan_with(["a", "b", "c"])
    query(plan, T0)
    first = plan.after_page([item("a")] + [item(f"x{n}") for n in range(99)], 150, T0)
    second = plan.after_page([item("a")] + [item(f"y{n}") for n in range(49)], 150, T0)  # shifted by a newcomer
    assert set(first) == {"a"} and second == {}


@pytest.mark.parametrize(
    ("known", "seen", "handed"),
    [
        ("processing", "completed", True),
        ("created", "processing", True),
        ("", "created", True),  # the first poll failed: anything is news
        ("processing", "processing", False),  # no news
        ("processing", "created", False),  # a late page never moves a status backwards
        ("completed", "processing", False),
        ("failed", "completed", False),  # terminal stays as first seen
    ],
)
def test_a_status_is_handed_out_only_when_it_moves_forward(known, seen, handed):
    plan = plan_with(["a", "b", "c"], status=known)
    query(plan, T0)
    assert bool(plan.after_page([item("a", seen)], 1, T0)) is handed
    assert plan.waits["a"].status == (seen if handed else known)


def test_a_per_id_poll_moves_the_known_status_so_a_sweep_does_not_repeat_it():
    plan = plan_with(["a", "b", "c"], status="created")
    plan.polled(item("a", "processing"), T0 + 1)
    query(plan, T0 + 1)
    assert plan.after_page([item("a", "processing")], 1, T0 + 1) == {}


def test_a_failed_prediction_is_handed_out_with_its_error_and_code():
    plan = plan_with(["a", "b", "c"])
    asked = run_sweep(plan, T0, {"failed": [[item("a", "failed", error="boom", code=1403)]]})
    assert [q.status for q in asked] == ["completed", "failed"]
    assert plan.waits["a"].status == "failed"


# -- fallbacks ----------------------------------------------------------------------------------------------


def test_a_failing_page_ends_the_sweep_hands_out_nothing_and_spreads_the_next_cycles():
    plan = plan_with(["a", "b", "c"], cycle_seconds=2, max_backoff=60)
    query(plan, T0)
    assert plan.after_page(RuntimeError("503"), None, T0) == {}
    assert plan.next(T0) == Idle(4.0)  # 2 s x 2^1
    query(plan, T0 + 4)
    plan.after_page(RuntimeError("503"), None, T0 + 4)
    assert plan.next(T0 + 4) == Idle(8.0)
    step = query(plan, T0 + 12)
    assert step.status == "completed" and step.page == 1  # started over
    plan.after_page([], 0, T0 + 12)
    assert plan.errors == 0


def test_an_audit_that_fails_is_tried_again_next_cycle():
    plan = plan_with(["a", "b", "c"], audit_seconds=30, cycle_seconds=2)
    assert query(plan, T0 + 30).status is None
    plan.after_page(RuntimeError("503"), None, T0 + 30)
    assert query(plan, T0 + 34).status is None


@pytest.mark.parametrize(
    ("seen_at", "now", "stale"),
    [(None, T0 + 59, []), (None, T0 + 60, ["a", "b", "c"]), (T0 + 30, T0 + 60, ["b", "c"])],
)
def test_waits_no_sweep_saw_for_stale_seconds_are_handed_back_to_a_per_id_poll(seen_at, now, stale):
    plan = plan_with(["a", "b", "c"], stale_seconds=60)
    if seen_at is not None:  # an audit saw "a" still processing
        query(plan, seen_at)
        plan.after_page([item("a", "processing")], 1, seen_at)
    assert sorted(plan.take_stale(now)) == stale
    assert plan.take_stale(now) == []  # once: the per-id poll restarts its timer


def test_a_deleted_prediction_that_left_the_history_goes_stale_while_the_others_are_seen():
    plan = plan_with(["a", "b", "c"], stale_seconds=60, audit_seconds=30)
    now = T0
    while now <= T0 + 60:
        run_sweep(plan, now, {None: [[item("b", "processing"), item("c", "processing")]]})  # "a" is gone
        now += 2
    assert plan.take_stale(now) == ["a"]


def test_unregistered_waits_are_forgotten_and_a_late_page_ignores_them():
    plan = plan_with(["a", "b", "c", "d"])
    query(plan, T0)
    plan.unregister("a")
    assert plan.after_page([item("a")], 1, T0) == {}
    assert "a" not in plan.waits


@pytest.mark.parametrize(
    "kwargs",
    [{"cycle_seconds": 0}, {"audit_seconds": -1}, {"stale_seconds": 0}, {"margin": -1}, {"min_waits": 0}],
)
def test_nonsense_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        HistorySweepPlan(**kwargs)
