"""The connection test: ``airflow connections test`` (the UI's Test button) and ``WaveSpeedHook.test_connection``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from tests.support import LONG_KEY, connection_json, env_without_pytest

AIRFLOW = Path(sys.executable).with_name("airflow")


def start_connections_test(connection: str) -> subprocess.Popen[str]:
    env = env_without_pytest()
    env["AIRFLOW_CONN_WAVESPEED_DEFAULT"] = connection
    env["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
    return subprocess.Popen(
        [str(AIRFLOW), "connections", "test", "wavespeed_default"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_airflow_connections_test_succeeds_with_the_balance_and_fails_with_the_api_reason_never_the_key(
    emulator, airflow_db
):
    emulator.config.balance = 42.5
    # Both CLI runs at once: each pays Airflow's start-up, not one after the other.
    good = start_connections_test(emulator.connection_json())
    bad = start_connections_test(connection_json(emulator, key=LONG_KEY))
    try:
        good_out, _ = good.communicate(timeout=120)
        bad_out, _ = bad.communicate(timeout=120)
    finally:
        for process in (good, bad):
            if process.poll() is None:
                process.kill()

    assert "Connection success!" in good_out, good_out[-2000:]  # (the CLI prints no message on success)
    assert "Connection failed!" in bad_out, bad_out[-2000:]
    assert "Connection success!" not in bad_out
    assert "Unauthorized: invalid API key" in bad_out  # the API's own reason
    assert "check the API key in the connection's password field" in bad_out  # and what to do next
    assert LONG_KEY not in bad_out
    assert LONG_KEY[:24] not in bad_out and LONG_KEY[-24:] not in bad_out
    assert emulator.stats.requests_by_status.get(401) == 1  # the wrong key really reached the API
    assert emulator.stats.requests_by_status.get(200) == 1  # ... and so did the right one


def test_hook_test_connection_reports_the_base_url_and_the_balance(emulator):
    emulator.config.balance = 7.25
    ok, message = WaveSpeedHook().test_connection()
    assert ok is True
    assert message == f"Connected to {emulator.base_url}; account balance 7.25 USD"


def test_hook_test_connection_with_a_wrong_key_returns_the_reason_without_the_key(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY))
    ok, message = WaveSpeedHook().test_connection()
    assert ok is False
    assert "Unauthorized: invalid API key" in message
    assert LONG_KEY not in message
