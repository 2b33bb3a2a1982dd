"""The switches tests use to hold states and lose replies: hold/release, every Nth reply lost, history input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock

Submit = Callable[..., dict[str, Any]]

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}


def _status(api: httpx.Client, prediction_id: str) -> str:
    status: str = api.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"]["status"]
    return status


def test_hold_predictions_keeps_every_prediction_processing_until_switched_off(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(hold_predictions=True)
    first, second = submit(), submit("wavespeed-ai/flux-dev", prompt="x")
    assert _status(api, first["id"]) == "created"  # hold does not skip the queue phase
    clock.advance(3600)
    assert [_status(api, p["id"]) for p in (first, second)] == ["processing", "processing"]
    history = api.post("/api/v3/predictions", json={}).json()["data"]["items"]
    assert {item["status"] for item in history} == {"processing"}
    assert httpx.get(wavespeed_emulator.output_url(first["id"])).status_code == 404  # no output while held

    wavespeed_emulator.configure(hold_predictions=False)
    assert [_status(api, p["id"]) for p in (first, second)] == ["completed", "completed"]


def test_release_lets_one_held_prediction_finish_while_the_others_stay_held(
    wavespeed_emulator: WaveSpeedEmulator, http: httpx.Client, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(hold_predictions=True)
    kept, let_go, by_http = submit(), submit(), submit()
    clock.advance(60)
    wavespeed_emulator.release(let_go["id"])
    control = f"{wavespeed_emulator.base_url}/_emulator/release"
    assert http.post(control, json={"ids": [by_http["id"], "unknown"]}).json()["data"] == {"released": [by_http["id"]]}
    assert [_status(api, p["id"]) for p in (kept, let_go, by_http)] == ["processing", "completed", "completed"]
    assert http.post(control, json={"ids": "x"}).status_code == 400


def test_a_released_prediction_still_runs_for_its_full_run_time(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(hold_predictions=True, run_seconds=10)
    prediction = submit()
    wavespeed_emulator.release(prediction["id"])
    clock.advance(5)
    assert _status(api, prediction["id"]) == "processing"
    clock.advance(5.05)
    assert _status(api, prediction["id"]) == "completed"


def test_lose_submit_reply_every_nth_creates_and_bills_then_answers_502(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.configure(lose_submit_reply_every_nth=2)
    statuses = [api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code for _ in range(4)]
    assert statuses == [200, 502, 200, 502]
    assert api.post(f"/api/v3/{AVATAR}", json={}).status_code == 400  # rejected submits are not counted
    assert api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code == 200
    stats = wavespeed_emulator.stats
    assert len(wavespeed_emulator.predictions) == 5 == stats.submits_accepted
    assert stats.lost_submit_replies == 2
    assert wavespeed_emulator.config.balance == pytest.approx(100 - 5 * 0.15)
    # The lost ones are in history, as a client resolving the ambiguity would find them.
    assert api.post("/api/v3/predictions", json={"model": AVATAR}).json()["data"]["total"] == 5
    wavespeed_emulator.configure(lose_submit_reply_every_nth=0)
    assert all(api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code == 200 for _ in range(3))


def test_lose_submit_reply_every_nth_counts_afresh_when_set_again(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.configure(lose_submit_reply_every_nth=3)
    assert [api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code for _ in range(2)] == [200, 200]
    wavespeed_emulator.configure(lose_submit_reply_every_nth=2)
    assert [api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code for _ in range(2)] == [200, 502]


def test_history_includes_input_only_when_switched_on(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit
) -> None:
    submit(**AVATAR_INPUTS, prompt="hello")
    (item,) = api.post("/api/v3/predictions", json={}).json()["data"]["items"]
    assert "input" not in item
    wavespeed_emulator.configure(history_includes_input=True)
    (item,) = api.post("/api/v3/predictions", json={}).json()["data"]["items"]
    assert item["input"] == {**AVATAR_INPUTS, "prompt": "hello", "resolution": "480p"}
    # The result endpoint never carries it (only webhooks and, when asked, history do).
    assert "input" not in api.get(f"/api/v3/predictions/{item['id']}/result").json()["data"]
