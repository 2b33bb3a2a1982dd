"""Fixtures for the emulator tests: an emulator on a hand-driven clock, plus small HTTP helpers.

Nothing here sleeps to reach a state: the ``clock`` fixture is the emulator's only time source, so a
test moves a prediction on by advancing it, and sees every intermediate state for as long as it likes.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.pytest_plugin import FAST_QUEUE_SECONDS, FAST_RUN_SECONDS

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}
TERMINAL = {"completed", "failed", "cancelled", "timeout", "deleted"}
#: One TLS context for every client: httpx otherwise loads the CA bundle per client (~0.1 s of CPU each).
SHARED_TLS = ssl.create_default_context()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def wavespeed_emulator(clock: ManualClock) -> Iterator[WaveSpeedEmulator]:
    """The plugin fixture's emulator (queue 0.05 s, run 0.3 s), on the hand-driven ``clock``."""
    config = EmulatorConfig(queue_seconds=FAST_QUEUE_SECONDS, run_seconds=FAST_RUN_SECONDS)
    with WaveSpeedEmulator(config, clock=clock) as emulator:
        yield emulator


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain client without Authorization (outputs, uploads and control endpoints need none)."""
    with httpx.Client(timeout=30, verify=SHARED_TLS) as client:
        yield client


@pytest.fixture
def api(wavespeed_emulator: WaveSpeedEmulator) -> Iterator[httpx.Client]:
    """An authenticated keep-alive client for the emulator."""
    headers = {"Authorization": f"Bearer {wavespeed_emulator.api_key}"}
    with httpx.Client(base_url=wavespeed_emulator.base_url, headers=headers, timeout=30, verify=SHARED_TLS) as client:
        yield client


@pytest.fixture
def submit(api: httpx.Client) -> Callable[..., dict[str, Any]]:
    """POST a prediction and return the envelope's ``data`` (asserting HTTP 200)."""

    def _submit(model: str = AVATAR, **inputs: Any) -> dict[str, Any]:
        body = inputs or dict(AVATAR_INPUTS)
        response = api.post(f"/api/v3/{model}", json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    return _submit


@pytest.fixture
def wait_terminal(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, clock: ManualClock
) -> Callable[[str], dict[str, Any]]:
    """Advance the clock to the end of a prediction's run and return its (terminal) ``data``."""

    def _finish(prediction_id: str) -> dict[str, Any]:
        record = wavespeed_emulator.predictions[prediction_id]
        start = record.started_monotonic if record.started_monotonic is not None else record.eligible_at
        clock.advance(max(0.0, start + record.run_seconds - clock.monotonic()))
        data: dict[str, Any] = api.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"]
        assert data["status"] in TERMINAL, data
        return data

    return _finish


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """Wait (bounded, generously) for something another thread or process does; never for time itself."""

    def _wait(condition: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():  # bounded by the deadline
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    return _wait
