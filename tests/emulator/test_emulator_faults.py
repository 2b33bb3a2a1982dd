"""Fault switches behave exactly as documented, so client retry logic can be tested against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock

Submit = Callable[..., dict[str, Any]]
Wait = Callable[[str], dict[str, Any]]

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}


def test_rate_limit_next_gets_429_with_retry_after_then_recovers(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.configure(rate_limit_next=2, rate_limit_retry_after=3)
    for _ in range(2):
        response = api.get("/api/v3/balance")
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.json()["code"] == 429 and response.json()["data"] is None
    assert api.get("/api/v3/balance").status_code == 200
    assert wavespeed_emulator.config.rate_limit_next == 0
    assert wavespeed_emulator.stats.rate_limited == 2
    assert wavespeed_emulator.stats.requests_by_status == {429: 2, 200: 1}


def test_rate_limited_submit_creates_no_prediction(wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client) -> None:
    wavespeed_emulator.config.rate_limit_next = 1
    assert api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code == 429
    assert wavespeed_emulator.predictions == {}
    assert wavespeed_emulator.stats.submit_attempts == 1 and wavespeed_emulator.stats.submits_accepted == 0


def test_fail_every_nth_gets_503_and_a_failed_submit_creates_no_prediction(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.config.fail_every_nth = 3
    statuses = [api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code for _ in range(6)]
    assert statuses == [200, 200, 503, 200, 200, 503]
    assert len(wavespeed_emulator.predictions) == 4
    assert wavespeed_emulator.stats.submits_accepted == 4
    assert wavespeed_emulator.stats.submit_attempts == 6
    assert wavespeed_emulator.config.balance == pytest.approx(100 - 4 * 0.15)
    response = api.get("/api/v3/balance")
    assert response.status_code == 200  # 7th
    wavespeed_emulator.config.fail_every_nth = 0
    assert all(api.get("/api/v3/balance").status_code == 200 for _ in range(4))


def test_fail_every_nth_applies_to_polls_too(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit
) -> None:
    prediction = submit()
    wavespeed_emulator.config.fail_every_nth = 2
    first = api.get(f"/api/v3/predictions/{prediction['id']}/result")
    second = api.get(f"/api/v3/predictions/{prediction['id']}/result")
    assert (first.status_code, second.status_code) == (200, 503)
    assert second.json() == {"code": 503, "message": second.json()["message"], "data": None}
    assert wavespeed_emulator.stats.polls_by_prediction[prediction["id"]] == 2


def test_lost_submit_reply_is_a_connection_error_but_the_prediction_exists_and_is_billed(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.config.lose_submit_replies = 1
    with pytest.raises(httpx.TransportError):
        api.post(f"/api/v3/{AVATAR}", json={**AVATAR_INPUTS, "prompt": "lost"})
    assert wavespeed_emulator.stats.submits_accepted == 1
    assert wavespeed_emulator.stats.lost_submit_replies == 1
    assert wavespeed_emulator.config.balance == pytest.approx(100 - 0.15)
    (record,) = wavespeed_emulator.predictions.values()
    # The client can find the orphaned prediction through history, as the docs recommend.
    items = api.post("/api/v3/predictions", json={"model": AVATAR}).json()["data"]["items"]
    assert [item["id"] for item in items] == [record.id]
    assert api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code == 200  # switch counted down


def test_cut_download_sends_full_content_length_then_closes_early(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, submit: Submit, wait_terminal: Wait
) -> None:
    wavespeed_emulator.config.run_seconds = 0.05
    wavespeed_emulator.config.output_size = 200_000
    url = wait_terminal(submit()["id"])["outputs"][0]
    wavespeed_emulator.configure(cut_downloads=1, cut_after_bytes=5000)
    received = bytearray()
    with http.stream("GET", url) as response:
        assert response.headers["content-length"] == "200000"
        with pytest.raises(httpx.TransportError):
            for chunk in response.iter_raw():
                received += chunk
    assert len(received) == 5000
    stats = wavespeed_emulator.stats
    assert (stats.downloads_started, stats.downloads_completed, stats.cut_downloads) == (1, 0, 1)

    ranged = http.get(url, headers={"Range": "bytes=5000-"})  # resume works, switch counted down
    assert ranged.status_code == 206 and len(ranged.content) == 195_000
    prediction_id = url.split("/")[-2]
    assert bytes(received) + ranged.content == wavespeed_emulator.expected_output_bytes(prediction_id)


def test_latency_holds_api_responses_back_until_a_client_times_out(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    # No elapsed-time window: a reply 60 s late can only ever miss a 0.5 s client timeout.
    wavespeed_emulator.config.latency_seconds = 60
    with pytest.raises(httpx.ReadTimeout):
        api.get("/api/v3/balance", timeout=0.5)
    wavespeed_emulator.config.latency_seconds = 0
    assert api.get("/api/v3/balance").status_code == 200


def test_per_model_run_seconds_override_applies(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.config.model_run_seconds = {AVATAR: 60}
    slow = submit()
    fast = submit("wavespeed-ai/flux-dev", prompt="x")
    clock.advance(0.45)
    assert api.get(f"/api/v3/predictions/{slow['id']}/result").json()["data"]["status"] == "processing"
    assert api.get(f"/api/v3/predictions/{fast['id']}/result").json()["data"]["status"] == "completed"
