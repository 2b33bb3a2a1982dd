"""Fixtures for the integration tests: the real hook, trigger and operators against the emulator.

Everything here talks real HTTP to a ``WaveSpeedEmulator`` on 127.0.0.1; Airflow runs for real
through ``dag.test()`` on the session's SQLite DB (see ``tests/conftest.py``). Plain helpers live
in ``integration_helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration_helpers import LONG_KEY, connection_json

from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator


@pytest.fixture
def emulator(wavespeed_emulator: WaveSpeedEmulator, monkeypatch: pytest.MonkeyPatch) -> WaveSpeedEmulator:
    """The plugin's fast emulator (queue 0.05 s, run 0.3 s), set as ``wavespeed_default``."""
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", wavespeed_emulator.connection_json())
    return wavespeed_emulator


@pytest.fixture
def long_key_emulator(emulator: WaveSpeedEmulator, monkeypatch: pytest.MonkeyPatch) -> WaveSpeedEmulator:
    """The emulator accepting only ``LONG_KEY``, and ``wavespeed_default`` holding it."""
    emulator.config.api_key = LONG_KEY
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY))
    return emulator


@pytest.fixture
def raw_api(emulator: WaveSpeedEmulator) -> Iterator[httpx.Client]:
    """A plain httpx client for the emulator, independent of the provider (to set up state)."""
    with httpx.Client(
        base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., Any]:
    """``run_dag(dag, **conf)``: ``dag.test(run_conf=conf)``; returns the finished DagRun."""

    def _run(dag: Any, **conf: Any) -> Any:
        return dag.test(run_conf=conf or None)

    return _run


@pytest.fixture
def all_output(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Everything printed to stdout/stderr plus every log record captured so far in this test."""
    seen: list[str] = []

    def _read() -> str:
        out, err = capfd.readouterr()
        seen.extend((out, err))
        return "".join(seen) + "\n" + caplog.text

    return _read
