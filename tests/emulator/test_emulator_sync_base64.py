"""Sync mode (the submit waits for the result, or answers the sync-timeout body) and base64 outputs."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock

Submit = Callable[..., dict[str, Any]]
Wait = Callable[[str], dict[str, Any]]
WaitUntil = Callable[..., None]

IMAGE = "wavespeed-ai/z-image/turbo"
AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}
BASE64_WEBHOOK_ERROR = "webhook callback does not support base64 output, please use the normal API to use base64 output"


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def _post_in_background(
    pool: ThreadPoolExecutor, api: httpx.Client, model: str, body: dict[str, Any], **params: str
) -> Future[httpx.Response]:
    return pool.submit(api.post, f"/api/v3/{model}", json=body, params=params)


def test_sync_mode_holds_the_submit_until_the_prediction_completes_and_answers_with_outputs(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    background: ThreadPoolExecutor,
    wait_until: WaitUntil,
) -> None:
    reply = _post_in_background(background, api, IMAGE, {"prompt": "a cat", "enable_sync_mode": True})
    wait_until(lambda: wavespeed_emulator.stats.submits_accepted == 1, what="the submit to arrive")
    assert not reply.done()  # created, running: the submit is still open
    clock.advance(0.35)  # queue 0.05 + run 0.3
    response = reply.result(timeout=30)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["status"] == "completed" and data["code"] == 0 and data["error"] == ""
    (url,) = data["outputs"]
    assert httpx.get(url).content == wavespeed_emulator.expected_output_bytes(data["id"])
    assert wavespeed_emulator.stats.result_polls == 0  # one request, no polling


def test_sync_mode_reports_a_failed_prediction_in_the_reply(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0)
    response = api.post(f"/api/v3/{IMAGE}", json={"prompt": "x [emulator:failed]", "enable_sync_mode": True})
    data = response.json()["data"]
    assert response.status_code == 200
    assert (data["status"], data["code"]) == ("failed", 1403) and data["error"] and data["outputs"] == []


def test_sync_mode_answers_the_sync_timeout_shape_when_the_window_passes(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    background: ThreadPoolExecutor,
    wait_until: WaitUntil,
) -> None:
    wavespeed_emulator.configure(sync_window_seconds=1.0, run_seconds=30.0)
    reply = _post_in_background(background, api, IMAGE, {"prompt": "slow", "enable_sync_mode": True})
    wait_until(lambda: wavespeed_emulator.stats.submits_accepted == 1, what="the submit to arrive")
    clock.advance(1.0)
    response = reply.result(timeout=30)
    assert response.status_code == 200
    envelope = response.json()
    assert envelope["code"] == 200 and envelope["message"] == "success"
    data = envelope["data"]
    assert data["status"] == "processing"
    assert data["code"] == 5004
    assert data["error"] == ("Sync mode timed out after 1 seconds. The prediction is still processing asynchronously.")
    assert data["urls"]["get"] == f"{wavespeed_emulator.base_url}/api/v3/predictions/{data['id']}/result"
    assert wavespeed_emulator.stats.sync_timeouts == 1
    # Still the same prediction, still running, and it finishes on its own.
    clock.advance(30)
    done = api.get(data["urls"]["get"]).json()["data"]
    assert (done["id"], done["status"], done["code"]) == (data["id"], "completed", 0)
    assert len(wavespeed_emulator.predictions) == 1


def test_the_sync_window_defaults_to_90_seconds(wavespeed_emulator: WaveSpeedEmulator) -> None:
    assert wavespeed_emulator.config.sync_window_seconds == 90.0


def test_held_predictions_make_a_sync_submit_time_out(wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client) -> None:
    # A real-clock bound too: with nobody advancing the clock the window still ends (~0.2 s here).
    wavespeed_emulator.configure(hold_predictions=True, sync_window_seconds=0.2)
    data = api.post(f"/api/v3/{IMAGE}", json={"prompt": "x", "enable_sync_mode": True}).json()["data"]
    assert (data["status"], data["code"]) == ("processing", 5004)
    assert "after 0.2 seconds" in data["error"]


def test_sync_mode_is_ignored_by_a_model_that_does_not_declare_it(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    response = api.post(f"/api/v3/{AVATAR}", json={**AVATAR_INPUTS, "enable_sync_mode": True})
    assert response.status_code == 200 and response.json()["data"]["status"] == "created"


def test_a_sync_submit_whose_reply_is_lost_still_created_its_prediction(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0, lose_submit_reply_every_nth=1)
    response = api.post(f"/api/v3/{IMAGE}", json={"prompt": "x", "enable_sync_mode": True})
    assert response.status_code == 502
    (record,) = wavespeed_emulator.predictions.values()
    assert api.get(f"/api/v3/predictions/{record.id}/result").json()["data"]["status"] == "completed"


def test_base64_outputs_are_naked_base64_of_the_output_bytes_when_polled(
    wavespeed_emulator: WaveSpeedEmulator, submit: Submit, wait_terminal: Wait
) -> None:
    wavespeed_emulator.config.output_size = 3000
    prediction = submit("wavespeed-ai/flux-dev", prompt="x", num_images=2, enable_base64_output=True)
    assert prediction["outputs"] == []
    data = wait_terminal(prediction["id"])
    assert len(data["outputs"]) == 2
    for index, value in enumerate(data["outputs"]):
        assert not value.startswith(("data:", "http"))
        decoded = base64.b64decode(value, validate=True)
        assert decoded == wavespeed_emulator.expected_output_bytes(prediction["id"], index)
        assert decoded.startswith(b"\x89PNG")


def test_base64_outputs_come_in_the_sync_reply_too(wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0, output_size=2000)
    body = {"prompt": "x", "enable_sync_mode": True, "enable_base64_output": True}
    data = api.post(f"/api/v3/{IMAGE}", json=body).json()["data"]
    assert data["status"] == "completed"
    (value,) = data["outputs"]
    assert base64.b64decode(value, validate=True) == wavespeed_emulator.expected_output_bytes(data["id"])


def test_base64_output_with_a_webhook_is_rejected_with_400_and_creates_nothing(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    response = api.post(
        f"/api/v3/{IMAGE}",
        params={"webhook": "http://127.0.0.1:9/hook"},
        json={"prompt": "x", "enable_base64_output": True},
    )
    assert response.status_code == 400
    assert response.json()["error"] == BASE64_WEBHOOK_ERROR
    assert wavespeed_emulator.predictions == {} and wavespeed_emulator.config.balance == 100.0


def test_base64_is_ignored_by_a_model_that_does_not_declare_it(
    wavespeed_emulator: WaveSpeedEmulator, submit: Submit, wait_terminal: Wait
) -> None:
    data = wait_terminal(submit(AVATAR, **AVATAR_INPUTS, enable_base64_output=True)["id"])
    assert data["outputs"][0].startswith(wavespeed_emulator.base_url)
