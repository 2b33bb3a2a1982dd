"""The history (``POST /api/v3/predictions``) as documented: 100 a page, most recent first, the filters,
the 7-day window on the emulator's clock, and other pipelines' predictions on the same account."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.state import background_outcome
from tests.emulator.conftest import AVATAR

Submit = Callable[..., dict[str, Any]]
Wait = Callable[[str], dict[str, Any]]
DAY = 24 * 3600.0


def query(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/api/v3/predictions", json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def all_pages(api: httpx.Client, **body: Any) -> list[dict[str, Any]]:
    """Every item of a query, page by page (bounded by the first page's total)."""
    first = query(api, page=1, page_size=100, **body)
    items = list(first["items"])
    for page in range(2, -(-first["total"] // 100) + 1):
        items += query(api, page=page, page_size=100, **body)["items"]
    return items


def test_pages_hold_at_most_100_most_recent_first_with_a_stable_order(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock
) -> None:
    # 250 other predictions, one a second, already there when the traffic starts (backfill).
    wavespeed_emulator.configure(
        background_traffic_per_minute=60.0, background_backfill_seconds=249.0, background_run_seconds=1.0
    )
    first = query(api, page=1, page_size=1000)
    assert first["page_size"] == 100 and len(first["items"]) == 100
    total = first["total"]
    assert total == 250 - sum(background_outcome(i) == "deleted" for i in range(250))
    pages = [first["items"], query(api, page=2, page_size=100)["items"], query(api, page=3, page_size=100)["items"]]
    assert [len(p) for p in pages] == [100, 100, total - 200]
    assert query(api, page=4, page_size=100)["items"] == []
    ids = [item["id"] for page in pages for item in page]
    assert len(set(ids)) == total  # disjoint pages, nothing lost
    created = [item["created_at"] for page in pages for item in page]
    assert created == sorted(created, reverse=True)
    assert len(set(created)) == total  # one a second: distinct times

    # Several created at the same instant (a manual clock that stands still): creation order breaks
    # the tie, the same way on every query.
    wavespeed_emulator.configure(background_traffic_per_minute=0.0)
    same = [wavespeed_emulator.call_in_loop(lambda: _add_other(wavespeed_emulator, clock)) for _ in range(5)]
    listed = [i["id"] for i in query(api, page=1, page_size=5)["items"]]
    assert listed == list(reversed(same))
    assert [i["id"] for i in query(api, page=1, page_size=5)["items"]] == listed


def _add_other(emulator: WaveSpeedEmulator, clock: ManualClock) -> str:
    state = emulator._ctx.state  # type: ignore[union-attr]
    return state.add_other_prediction("other-team/model", clock.monotonic(), 1.0).id


def test_status_filter_matches_only_its_own_status(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, wait_terminal: Wait, clock: ManualClock
) -> None:
    ids: dict[str, str] = {}
    for outcome in ("completed", "failed", "cancelled", "timeout", "deleted"):
        marker = "completed" if outcome == "deleted" else outcome
        ids[outcome] = submit("wavespeed-ai/flux-dev", prompt=f"x [emulator:{marker}]")["id"]
        wait_terminal(ids[outcome])
    api.post("/api/v3/predictions/delete", json={"ids": [ids["deleted"]]})
    wavespeed_emulator.configure(run_seconds=600.0)
    ids["processing"] = submit()["id"]
    clock.advance(1.0)
    wavespeed_emulator.configure(queue_seconds=600.0)
    ids["created"] = submit()["id"]

    def listed(**body: Any) -> set[str]:
        return {item["id"] for item in all_pages(api, **body)}

    assert listed(status="completed") == {ids["completed"]}
    assert listed(status="failed") == {ids["failed"]}  # not cancelled, not timeout
    assert listed(status="processing") == {ids["processing"]}  # not the queued one
    # The queued, cancelled and timed-out ones match none of the documented filters, but are listed
    # without one; the deleted one is absent either way.
    documented = listed(status="completed") | listed(status="failed") | listed(status="processing")
    assert set(ids.values()) - documented == {ids["created"], ids["cancelled"], ids["timeout"], ids["deleted"]}
    assert listed() == set(ids.values()) - {ids["deleted"]}
    statuses = {item["id"]: item["status"] for item in all_pages(api)}
    assert statuses[ids["created"]] == "created" and statuses[ids["timeout"]] == "timeout"
    assert api.post("/api/v3/predictions", json={"status": "bogus"}).status_code == 400


def test_items_are_the_result_endpoints_prediction_objects(
    api: httpx.Client, submit: Submit, wait_terminal: Wait
) -> None:
    done = wait_terminal(submit()["id"])
    failed = wait_terminal(submit("wavespeed-ai/flux-dev", prompt="x [emulator:failed]")["id"])
    items = {item["id"]: item for item in query(api)["items"]}
    assert items[done["id"]] == done and items[failed["id"]] == failed
    assert done["outputs"] and failed["error"] and failed["status"] == "failed"
    for key in ("id", "model", "status", "outputs", "error", "created_at", "timings", "executionTime"):
        assert key in items[done["id"]]


def test_created_filters_and_the_7_day_window_follow_the_emulators_clock(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    old = submit()
    clock.advance(3 * DAY)
    middle = submit()
    clock.advance(1.0)
    new = submit()
    assert [i["id"] for i in query(api, created_after=middle["created_at"])["items"]] == [new["id"], middle["id"]]
    assert [i["id"] for i in query(api, created_before=middle["created_at"])["items"]] == [middle["id"], old["id"]]
    window = query(api, created_after=old["created_at"], created_before=middle["created_at"])
    assert [i["id"] for i in window["items"]] == [middle["id"], old["id"]]

    clock.advance(4 * DAY - 1.0 + 0.5)  # old is now 7 days + 0.5 s old: gone, even when asked for
    assert [i["id"] for i in query(api)["items"]] == [new["id"], middle["id"]]
    assert query(api, created_before=old["created_at"])["total"] == 0
    # The result endpoint still knows it: only the history forgets.
    assert api.get(f"/api/v3/predictions/{old['id']}/result").json()["data"]["id"] == old["id"]


def test_other_traffic_fills_the_history_with_predictions_that_are_not_ours(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(
        background_traffic_per_minute=1.0,
        background_run_seconds=10.0,
        background_models=[AVATAR, "other-team/upscaler"],
        background_backfill_seconds=8 * DAY,  # older than the window: only the last 7 days show
    )
    per_week = 60 * 24 * 7
    assert 0.98 * per_week < query(api, page=1, page_size=100)["total"] <= per_week + 1
    wavespeed_emulator.configure(background_traffic_per_minute=120.0)  # one every 0.5 s from now on
    ours = submit()
    clock.advance(30.0)
    recent = all_pages(api, created_after=ours["created_at"])
    others = [item for item in recent if item["id"] != ours["id"]]
    assert ours["id"] in {item["id"] for item in recent}
    assert 55 <= len(others) <= 62  # ~30 s of traffic at 2 a second, less the deleted ones
    assert {item["model"] for item in others} == {AVATAR, "other-team/upscaler"}  # our model too
    statuses = {item["status"] for item in all_pages(api, created_after=ours["created_at"])}
    assert {"completed", "processing"} <= statuses
    failed = query(api, status="failed", created_after=ours["created_at"])
    assert all(item["error"] for item in failed["items"])

    # Nobody polls them, but they are real predictions of the account: the result endpoint answers.
    other = others[-1]
    assert api.get(f"/api/v3/predictions/{other['id']}/result").json()["data"]["status"] == other["status"]
    # Switched off, no more are made; the ones made stay.
    wavespeed_emulator.configure(background_traffic_per_minute=0.0)
    before = query(api, created_after=ours["created_at"])["total"]
    clock.advance(60.0)
    assert query(api, created_after=ours["created_at"])["total"] == before


@pytest.mark.parametrize("value", [["ok", 3], "model", [""]])
def test_background_models_switch_is_validated(wavespeed_emulator: WaveSpeedEmulator, value: Any) -> None:
    with pytest.raises(ValueError, match="background_models"):
        wavespeed_emulator.configure(background_models=value)


def test_background_outcomes_mix_every_terminal_kind() -> None:
    outcomes = [background_outcome(i) for i in range(100)]
    assert outcomes.count("failed") == 3 and outcomes.count("timeout") == 1
    assert outcomes.count("cancelled") == 1 and outcomes.count("deleted") == 1
    assert outcomes.count("completed") == 94
