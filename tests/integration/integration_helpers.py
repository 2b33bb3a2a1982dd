"""Plain helpers (no fixtures) shared by the integration tests: constants, emulator set-up, dag.test()."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
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


class FakeClock:
    """A wall clock that moves only when the code under test sleeps: inject ``time`` and ``sleep``.

    Each sleep also yields to the event loop for a real ``real_pause`` seconds, so a loop driven by
    it cannot spin the CPU, but its schedule and deadlines never depend on how busy the machine is.
    """

    def __init__(self, start: float | None = None, real_pause: float = 0.005) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []
        self.real_pause = real_pause

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(self.real_pause)


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


@contextlib.contextmanager
def held_until(emulator: Any, condition: Callable[[], bool], timeout: float = 120.0) -> Iterator[None]:
    """Every prediction stays ``processing`` until ``condition()`` holds (or ``timeout`` passes), then moves on.

    Holds a state for as long as the test needs to observe it, instead of hoping a run time is long enough
    on a busy machine. ``condition`` is checked from a thread while the body (e.g. ``dag.test()``) runs.
    """
    stop = threading.Event()

    def watch() -> None:
        try:
            deadline = time.monotonic() + timeout
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if condition():
                        return
                stop.wait(0.02)
        finally:
            emulator.configure(hold_predictions=False)

    emulator.configure(hold_predictions=True)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def polled(emulator: WaveSpeedEmulator, times: int) -> Callable[[], bool]:
    """Condition: some prediction's result was read at least ``times`` times."""
    return lambda: max(emulator.stats.polls_by_prediction.values(), default=0) >= times


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
