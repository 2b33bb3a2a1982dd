"""Account limits: a per-minute submit window per key (429, no Retry-After unless asked) and a
concurrency limit whose overflow waits ``created`` and then runs for its full run time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.emulator.limits import SubmitWindow

Submit = Callable[..., dict[str, Any]]

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}


def _post(api: httpx.Client) -> httpx.Response:
    return api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS)


def _status(api: httpx.Client, prediction_id: str) -> str:
    status: str = api.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"]["status"]
    return status


def test_submits_over_the_per_minute_limit_get_429_without_retry_after_and_create_nothing(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(submits_per_minute=3)
    assert [_post(api).status_code for _ in range(3)] == [200, 200, 200]
    refused = _post(api)
    assert refused.status_code == 429
    assert "retry-after" not in refused.headers  # the API documents none
    assert refused.json()["code"] == 429 and refused.json()["data"] is None
    assert len(wavespeed_emulator.predictions) == 3
    assert wavespeed_emulator.config.balance == pytest.approx(100 - 3 * 0.15)  # the 429 was not billed
    assert wavespeed_emulator.stats.submits_rate_limited == 1
    assert api.get("/api/v3/balance").status_code == 200  # reads are not limited

    clock.advance(59.9)
    assert _post(api).status_code == 429
    clock.advance(0.1)  # the first three submits leave the window
    assert [_post(api).status_code for _ in range(4)] == [200, 200, 200, 429]


def test_the_window_slides_submit_by_submit(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(submits_per_minute=2)
    assert _post(api).status_code == 200
    clock.advance(30)
    assert _post(api).status_code == 200
    assert _post(api).status_code == 429
    clock.advance(30)  # only the first left the window
    assert [_post(api).status_code for _ in range(2)] == [200, 429]


def test_retry_after_is_sent_only_when_switched_on_and_says_when_a_slot_frees(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(submits_per_minute=1, submit_limit_retry_after=True)
    assert _post(api).status_code == 200
    clock.advance(20.5)
    refused = _post(api)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "40"


def test_rejected_and_invalid_submits_do_not_use_up_the_minute(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.configure(submits_per_minute=1)
    assert api.post(f"/api/v3/{AVATAR}", json={}).status_code == 400
    assert api.post("/api/v3/acme/none", json={}).status_code == 404
    assert _post(api).status_code == 200


def test_the_submit_window_is_kept_per_api_key() -> None:
    window = SubmitWindow()
    window.record("key-a", 0.0)
    assert window.retry_after("key-a", 1.0, 1) == pytest.approx(59.0)
    assert window.retry_after("key-b", 1.0, 1) is None
    assert window.retry_after("key-a", 60.0, 1) is None
    assert window.retry_after("key-a", 1.0, 0) is None  # 0 = no limit


def test_predictions_over_max_concurrency_wait_created_then_run_their_full_time(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(max_concurrency=2, queue_seconds=0.0, run_seconds=10.0)
    a, b, c, d = (submit() for _ in range(4))
    clock.advance(1)
    assert [_status(api, p["id"]) for p in (a, b, c, d)] == ["processing", "processing", "created", "created"]
    clock.advance(9)  # a and b finish at t=10: c and d start then
    assert [_status(api, p["id"]) for p in (a, b, c, d)] == ["completed", "completed", "processing", "processing"]
    clock.advance(9.9)
    assert _status(api, c["id"]) == "processing"  # a full 10 s run, counted from its start
    clock.advance(0.1)
    done = api.get(f"/api/v3/predictions/{c['id']}/result").json()["data"]
    assert done["status"] == "completed" and done["executionTime"] == 10_000
    assert _status(api, d["id"]) == "completed"


def test_a_queued_prediction_takes_the_first_slot_that_frees(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(max_concurrency=1, queue_seconds=0.0)
    wavespeed_emulator.config.model_run_seconds = {AVATAR: 30.0, "wavespeed-ai/flux-dev": 5.0}
    long = submit()
    short = submit("wavespeed-ai/flux-dev", prompt="x")
    clock.advance(29)
    assert (_status(api, long["id"]), _status(api, short["id"])) == ("processing", "created")
    # Looked at much later, the queue is replayed on the clock: short ran 30..35, not from "now".
    clock.advance(100)
    assert _status(api, short["id"]) == "completed"
    late = submit("wavespeed-ai/flux-dev", prompt="y")
    assert _status(api, late["id"]) == "processing"  # the slot is free: it starts at once


def test_deleting_a_running_prediction_frees_its_slot(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(max_concurrency=1, queue_seconds=0.0, run_seconds=60.0)
    running, waiting = submit(), submit()
    clock.advance(1)
    assert _status(api, waiting["id"]) == "created"
    api.post("/api/v3/predictions/delete", json={"ids": [running["id"]]})
    clock.advance(0.001)
    assert _status(api, waiting["id"]) == "processing"


def test_lifting_the_concurrency_limit_starts_the_queue(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(max_concurrency=1, queue_seconds=0.0, run_seconds=60.0)
    first, second = submit(), submit()
    clock.advance(1)
    assert _status(api, second["id"]) == "created"
    wavespeed_emulator.configure(max_concurrency=0)
    assert _status(api, second["id"]) == "processing"
    assert _status(api, first["id"]) == "processing"


def test_queued_predictions_show_as_created_in_history(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(max_concurrency=1, queue_seconds=0.0, run_seconds=60.0)
    submit(), submit()
    clock.advance(1)
    statuses = [i["status"] for i in api.post("/api/v3/predictions", json={}).json()["data"]["items"]]
    assert statuses == ["created", "processing"]
