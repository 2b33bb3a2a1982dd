"""Plain helpers (no fixtures) shared by the integration tests: constants, emulator set-up, dag.test()."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator

AVATAR = "wavespeed-ai/hunyuan-avatar"
FLUX = "wavespeed-ai/flux-dev"
AVATAR_INPUTS: dict[str, Any] = {
    "image": "https://example.com/portrait.png",
    "audio": "https://example.com/voice.mp3",
}
TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})

#: A long, distinctive key: any leak into a message, XCom or log line is unmistakable.
LONG_KEY = "wsk-live-" + "Q7zX9vK2mP4tR8wN" * 4

#: Small, fast bounds for tests that exercise the retry policy (a few ms between tries).
FAST_RETRY = RetryPolicy(max_attempts=4, max_elapsed=10.0, initial_wait=0.01, max_wait=0.05)

#: Bound for every wait loop in these tests.
WAIT_SECONDS = 10.0


def connection_json(emulator: WaveSpeedEmulator, *, key: str | None = None, host: str | None = None) -> str:
    """An env-var connection value pointing at ``emulator``, optionally with another key/host."""
    return json.dumps(
        {
            "conn_type": "wavespeed",
            "password": emulator.api_key if key is None else key,
            "host": emulator.base_url if host is None else host,
        }
    )


def raw_submit(client: httpx.Client, model: str = AVATAR, **inputs: Any) -> str:
    """Create a prediction without going through the provider; return its id."""
    reply = client.post(f"/api/v3/{model}", json=inputs or dict(AVATAR_INPUTS))
    assert reply.status_code == 200, reply.text
    return str(reply.json()["data"]["id"])


def wait_terminal(emulator: WaveSpeedEmulator, prediction_id: str) -> str:
    """Wait (bounded) until the emulator reports the prediction terminal; return its status."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        status = emulator.predictions[prediction_id].status(time.monotonic())
        if status in TERMINAL:
            return status
        time.sleep(0.02)
    raise AssertionError(f"prediction {prediction_id} did not finish within {WAIT_SECONDS} s")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- dag.test() ------------------------------------------------------------------------------------------


def dags_folder() -> Path:
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_dag(dag_id: str, source: str) -> Path:
    """Write ``source`` (dedented) as ``<dags folder>/<dag_id>.py`` and return the path."""
    path = dags_folder() / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def load_dag(path: Path, dag_id: str) -> Any:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.3
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} not found in {path}"
    return dag


def task_states(dag_run: Any) -> dict[str, str | None]:
    return {ti.task_id: (str(ti.state) if ti.state else None) for ti in dag_run.get_task_instances()}


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom of one task of ``dag_run``, read back from the metadata DB (None when absent)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key=key)
            .one_or_none()
        )
        return None if row is None else row.value
