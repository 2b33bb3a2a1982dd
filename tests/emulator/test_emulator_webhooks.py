"""Webhooks delivered like the real API: the bare prediction, signed, POSTed to a loopback receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.webhooks import verify_webhook

WaitUntil = Callable[..., None]

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it gets and answers ``statuses`` in turn."""

    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = state.statuses.pop(0) if state.statuses else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/wavespeed?tenant=7"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _submit(api: httpx.Client, url: str, **inputs: Any) -> dict[str, Any]:
    response = api.post(f"/api/v3/{AVATAR}", params={"webhook": url}, json={**AVATAR_INPUTS, **inputs})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_webhook_secret_endpoint_serves_a_whsec_secret(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    envelope = api.get("/api/v3/webhook/secret").json()
    assert envelope == {"code": 200, "message": "success", "data": {"secret": wavespeed_emulator.config.webhook_secret}}
    assert envelope["data"]["secret"].startswith("whsec_") and len(envelope["data"]["secret"]) > 20
    assert httpx.get(f"{wavespeed_emulator.base_url}/api/v3/webhook/secret").status_code == 401


def test_a_completed_prediction_is_posted_bare_with_input_and_a_valid_v3_signature(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    receiver: Receiver,
    wait_until: WaitUntil,
) -> None:
    prediction = _submit(api, receiver.url, prompt="hi")
    clock.advance(0.2)
    assert receiver.received == [] and wavespeed_emulator.stats.webhook_attempts == 0  # still running
    clock.advance(0.2)
    wait_until(lambda: wavespeed_emulator.stats.webhooks_delivered == 1, what="the webhook")
    ((headers, body),) = receiver.received
    secret = api.get("/api/v3/webhook/secret").json()["data"]["secret"]
    timestamp = int(headers["webhook-timestamp"])
    assert timestamp == clock.wall_clock_ns() // 1_000_000_000
    payload = verify_webhook(headers, body, secret, now=timestamp)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"].startswith("v3,") and headers["webhook-id"]
    assert "code" not in payload or payload["code"] == 0  # the prediction itself, not an envelope
    assert "data" not in payload and "message" not in payload
    assert payload["id"] == prediction["id"] and payload["status"] == "completed"
    assert payload["input"] == {**AVATAR_INPUTS, "prompt": "hi", "resolution": "480p"}
    assert payload["outputs"] == [wavespeed_emulator.output_url(prediction["id"])]
    assert payload == {
        **api.get(f"/api/v3/predictions/{prediction['id']}/result").json()["data"],
        "input": payload["input"],
    }
    (entry,) = wavespeed_emulator.stats.webhook_log
    assert (entry["status"], entry["attempt"], entry["error"]) == (204, 1, "")


def test_a_failed_prediction_is_delivered_too(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    receiver: Receiver,
    wait_until: WaitUntil,
) -> None:
    _submit(api, receiver.url, prompt="x [emulator:failed]")
    clock.advance(1)
    wait_until(lambda: wavespeed_emulator.stats.webhooks_delivered == 1, what="the webhook")
    payload = json.loads(receiver.received[0][1])
    assert (payload["status"], payload["code"]) == ("failed", 1403) and payload["error"]


def test_no_webhook_while_predictions_are_held(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    receiver: Receiver,
    wait_until: WaitUntil,
) -> None:
    wavespeed_emulator.configure(hold_predictions=True)
    held, released = _submit(api, receiver.url), _submit(api, receiver.url)
    clock.advance(60)
    wavespeed_emulator.release(released["id"])
    wait_until(lambda: wavespeed_emulator.stats.webhooks_delivered == 1, what="the released one's webhook")
    assert [json.loads(body)["id"] for _, body in receiver.received] == [released["id"]]
    wavespeed_emulator.configure(hold_predictions=False)
    wait_until(lambda: wavespeed_emulator.stats.webhooks_delivered == 2, what="the held one's webhook")
    assert json.loads(receiver.received[1][1])["id"] == held["id"]


def test_failed_deliveries_are_retried_with_backoff_on_the_emulator_clock_then_given_up(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    receiver: Receiver,
    wait_until: WaitUntil,
) -> None:
    wavespeed_emulator.configure(webhook_max_attempts=3, webhook_retry_seconds=10.0)
    receiver.statuses = [500, 503, 500]
    _submit(api, receiver.url)
    clock.advance(1)
    stats = wavespeed_emulator.stats
    wait_until(lambda: stats.webhook_attempts == 1, what="attempt 1")
    clock.advance(9.9)
    clock.advance(0.2)  # retry 1 is due 10 s after attempt 1
    wait_until(lambda: stats.webhook_attempts == 2, what="attempt 2")
    clock.advance(20)  # retry 2 waits 2 x 10 s
    wait_until(lambda: stats.webhooks_failed == 1, what="the delivery to be given up")
    assert stats.webhook_attempts == 3 and stats.webhooks_delivered == 0
    assert [e["status"] for e in stats.webhook_log] == [500, 503, 500]
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1  # one message, retried


def test_a_retry_that_succeeds_counts_as_delivered(
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    clock: ManualClock,
    receiver: Receiver,
    wait_until: WaitUntil,
) -> None:
    wavespeed_emulator.configure(webhook_retry_seconds=1.0)
    receiver.statuses = [502]
    _submit(api, receiver.url)
    clock.advance(1)
    wait_until(lambda: wavespeed_emulator.stats.webhook_attempts == 1, what="attempt 1")
    clock.advance(1)
    wait_until(lambda: wavespeed_emulator.stats.webhooks_delivered == 1, what="the retried delivery")
    assert wavespeed_emulator.stats.webhooks_failed == 0


def test_an_unreachable_receiver_is_a_recorded_network_failure(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock, wait_until: WaitUntil
) -> None:
    wavespeed_emulator.configure(webhook_max_attempts=1)
    _submit(api, "http://127.0.0.1:9/closed")  # the discard port: nothing listens there
    clock.advance(1)
    wait_until(lambda: wavespeed_emulator.stats.webhooks_failed == 1, what="the failed delivery")
    (entry,) = wavespeed_emulator.stats.webhook_log
    assert entry["status"] is None and entry["error"]


def test_webhooks_to_non_loopback_hosts_are_never_sent_but_recorded(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock, wait_until: WaitUntil
) -> None:
    _submit(api, "https://hooks.example.com/wavespeed")
    clock.advance(1)
    wait_until(lambda: wavespeed_emulator.stats.webhooks_skipped == 1, what="the skip to be recorded")
    (entry,) = wavespeed_emulator.stats.webhook_log
    assert "loopback" in entry["error"] and wavespeed_emulator.stats.webhook_attempts == 0


def test_the_webhook_secret_is_a_switch(wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client) -> None:
    wavespeed_emulator.configure(webhook_secret="whsec_test")
    assert api.get("/api/v3/webhook/secret").json()["data"]["secret"] == "whsec_test"
