"""Running the emulator as a service: HTTP control endpoints, the CLI process, many keep-alive clients."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.cli import main

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_http_control_endpoints_set_switches_report_stats_and_reset(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    control = f"{wavespeed_emulator.base_url}/_emulator"
    update = http.post(f"{control}/config", json={"balance": 5.0, "next_outcomes": ["failed"], "run_seconds": 2})
    assert update.status_code == 200
    assert update.json()["data"]["balance"] == 5.0
    assert wavespeed_emulator.config.next_outcomes == ["failed"]
    assert wavespeed_emulator.config.run_seconds == 2.0
    assert api.post(f"/api/v3/{AVATAR}", json=AVATAR_INPUTS).status_code == 200

    stats = http.get(f"{control}/stats").json()["data"]
    assert stats["submits_accepted"] == 1 and stats["submits_by_model"] == {AVATAR: 1}
    assert stats["requests_by_status"]["200"] >= 2
    assert stats["balance"] == pytest.approx(4.85) and stats["predictions"] == 1
    predictions = http.get(f"{control}/predictions").json()["data"]
    assert [p["outcome"] for p in predictions.values()] == ["failed"]
    assert http.get(f"{control}/config").json()["data"]["run_seconds"] == 2.0

    assert http.post(f"{control}/reset").json()["data"] == {"reset": True}
    assert wavespeed_emulator.predictions == {}
    assert wavespeed_emulator.config.balance == 100.0
    assert wavespeed_emulator.config.run_seconds == 0.3  # the fixture's start-up value, not the class default
    assert wavespeed_emulator.config.next_outcomes == []
    assert http.get(f"{control}/stats").json()["data"]["submits_accepted"] == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"no_such_switch": 1}, "Unknown switch: no_such_switch"),
        ({"run_seconds": "fast"}, "Invalid switch 'run_seconds'"),
        ({"next_outcomes": ["exploded"]}, "Invalid switch 'next_outcomes'"),
        ({"rate_limit_next": -1}, "Invalid switch 'rate_limit_next'"),
    ],
)
def test_control_config_rejects_bad_switches_without_changing_anything(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, body: dict[str, object], message: str
) -> None:
    before = wavespeed_emulator.config.to_json()
    response = http.post(f"{wavespeed_emulator.base_url}/_emulator/config", json={"balance": 1.0, **body})
    assert response.status_code == 400 and message in response.json()["message"]
    assert wavespeed_emulator.config.to_json() == before


def test_connection_json_points_airflow_at_the_emulator(wavespeed_emulator: WaveSpeedEmulator) -> None:
    value = wavespeed_emulator.connection_json()
    assert json.loads(value) == {
        "conn_type": "wavespeed",
        "password": "ws-emulator-key",
        "host": wavespeed_emulator.base_url,
    }
    assert value.startswith('{"conn_type":"wavespeed","password":')
    assert wavespeed_emulator.base_url.startswith("http://127.0.0.1:")


def test_embedded_emulator_refuses_non_loopback_host() -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        WaveSpeedEmulator(host="0.0.0.0")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_serves_on_the_given_port_and_exits_cleanly_on_sigterm(http: httpx.Client) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "airflow_provider_wavespeed.emulator", "--port", str(port)]
    command += ["--api-key", "k1", "--run-seconds", "0", "--queue-seconds", "0", "--output-size", "1000"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, "the CLI did not print its banner within 15 s"
        assert process.stdout.readline().strip() == f"WaveSpeed emulator listening on http://127.0.0.1:{port}"
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": "Bearer k1"}
        created = http.post(f"{base}/api/v3/{AVATAR}", headers=headers, json=AVATAR_INPUTS).json()["data"]
        done = http.get(created["urls"]["get"], headers=headers).json()["data"]
        assert done["status"] == "completed"
        assert len(http.get(done["outputs"][0]).content) == 1000
        assert http.get(f"{base}/_emulator/stats").json()["data"]["submits_accepted"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == 0
    assert process.stdout.read() == ""  # exactly one line on stdout


def test_cli_refuses_non_loopback_host_without_opt_in(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert "--allow-non-loopback" in capsys.readouterr().err


def test_300_concurrent_keepalive_clients_poll_without_errors(http: httpx.Client) -> None:
    clients, polls_each = 300, 3
    config = EmulatorConfig(queue_seconds=0.05, run_seconds=0.3)
    with WaveSpeedEmulator(config) as emulator:
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        submitted = http.post(f"{emulator.base_url}/api/v3/{AVATAR}", headers=headers, json=AVATAR_INPUTS)
        prediction_id = submitted.json()["data"]["id"]
        url = f"{emulator.base_url}/api/v3/predictions/{prediction_id}/result"
        tls = ssl.create_default_context()  # shared: httpx loads the CA bundle per client otherwise

        async def poller(all_connected: asyncio.Barrier) -> list[str]:
            statuses = []
            async with httpx.AsyncClient(headers=headers, timeout=30, verify=tls) as client:
                for poll in range(polls_each):  # bounded
                    response = await client.get(url)
                    response.raise_for_status()
                    statuses.append(response.json()["data"]["status"])
                    if poll == 0:
                        await asyncio.wait_for(all_connected.wait(), 60)  # all 300 connections open at once
            return statuses

        async def run_all() -> list[list[str]]:
            barrier = asyncio.Barrier(clients)
            return await asyncio.gather(*(poller(barrier) for _ in range(clients)))

        results = asyncio.run(run_all())
        stats = emulator.stats
        assert len(results) == clients and all(len(r) == polls_each for r in results)
        assert all(s in {"created", "processing", "completed"} for r in results for s in r)
        assert stats.polls_by_prediction[prediction_id] == clients * polls_each
        assert stats.requests_by_status == {200: clients * polls_each + 1}
        assert stats.connections_opened == clients + 1  # keep-alive: one connection per client
        assert stats.connections_peak >= clients
