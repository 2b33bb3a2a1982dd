"""Fixtures for the emulator tests: the plugin's ``wavespeed_emulator`` plus small HTTP helpers."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import pytest_plugin
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator

# Re-exported here (a non-root conftest may not use ``pytest_plugins``), so these tests work whether or
# not the package's pytest11 entry point is installed.
wavespeed_emulator = pytest_plugin.wavespeed_emulator

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}
TERMINAL = {"completed", "failed", "cancelled", "timeout", "deleted"}
#: One TLS context for every client: httpx otherwise loads the CA bundle per client (~0.1 s of CPU each).
SHARED_TLS = ssl.create_default_context()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain client without Authorization (outputs, uploads and control endpoints need none)."""
    with httpx.Client(timeout=10, verify=SHARED_TLS) as client:
        yield client


@pytest.fixture
def api(wavespeed_emulator: WaveSpeedEmulator) -> Iterator[httpx.Client]:
    """An authenticated keep-alive client for the emulator."""
    headers = {"Authorization": f"Bearer {wavespeed_emulator.api_key}"}
    with httpx.Client(base_url=wavespeed_emulator.base_url, headers=headers, timeout=10, verify=SHARED_TLS) as client:
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
def wait_terminal(api: httpx.Client) -> Callable[[str], dict[str, Any]]:
    """Poll a prediction (bounded: 5 s) until it reaches a terminal status; return ``data``."""

    def _wait(prediction_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            data: dict[str, Any] = api.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"]
            if data["status"] in TERMINAL:
                return data
            time.sleep(0.02)
        raise AssertionError(f"prediction {prediction_id} did not finish in 5 s")

    return _wait
