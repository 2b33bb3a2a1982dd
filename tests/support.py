"""Plain helpers (no fixtures) shared by the tests: constants, emulator set-up, DAG files, dag.test() results.

Import as ``from tests.support import ...`` (``tests`` is a package; pytest's ``pythonpath`` puts the
repository root on ``sys.path``). Fixtures live in ``tests/conftest.py`` and the layers' ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import airflow
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
def when(condition: Callable[[], bool], action: Callable[[], object], timeout: float = 120.0) -> Iterator[None]:
    """Run ``action`` once ``condition()`` holds (or ``timeout`` passes), checked from a thread while the
    body (e.g. ``dag.test()``) runs; ``action`` runs exactly once, at the latest when the body ends."""
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
            action()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


@contextlib.contextmanager
def held_until(emulator: Any, condition: Callable[[], bool], timeout: float = 120.0) -> Iterator[None]:
    """Every prediction stays ``processing`` until ``condition()`` holds (or ``timeout`` passes), then moves on.

    Holds a state for as long as the test needs to observe it, instead of hoping a run time is long enough
    on a busy machine.
    """
    emulator.configure(hold_predictions=True)
    with when(condition, lambda: emulator.configure(hold_predictions=False), timeout):
        yield


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


# -- DAG files, dag.test() results, the metadata DB ------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent

HEADER = """
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_wavespeed.operators.wavespeed import (
    WaveSpeedDownloadOperator,
    WaveSpeedRunOperator,
    WaveSpeedSubmitOperator,
)

DAG_ARGS = dict(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retry_delay": timedelta(seconds=0)},
)
"""


def dag_file(dag_id: str, body: str) -> Any:
    """Write HEADER + body as ``<dags folder>/<dag_id>.py`` and load the DAG from it."""
    return load_dag(write_dag(dag_id, textwrap.dedent(HEADER) + textwrap.dedent(body)), dag_id)


def example_source(name: str) -> Path:
    """A shipped example DAG file (top-level ``example_dags/`` or inside the package)."""
    for folder in (ROOT / "example_dags", ROOT / "airflow_provider_wavespeed" / "example_dags"):
        if (folder / name).is_file():
            return folder / name
    raise AssertionError(f"example DAG {name} not found")


def copy_example_dag(name: str, dag_id: str) -> Any:
    """Copy an example DAG (and its ``data/`` folder) into the DAGs folder and load it from there."""
    source = example_source(name)
    target = dags_folder() / name
    shutil.copy(source, target)
    if (source.parent / "data").is_dir():
        shutil.copytree(source.parent / "data", dags_folder() / "data", dirs_exist_ok=True)
    return load_dag(target, dag_id)


AIRFLOW_VERSION = tuple(int(part) for part in airflow.__version__.split(".")[:2])


def log_events(dag_run: Any, task_id: str) -> list[str]:
    """The ``log`` table's events of one task of ``dag_run`` (``deferred`` marks a deferral on 3.3)."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(Log).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id)
        return [row.event for row in rows.order_by(Log.id)]


def went_through_deferral(dag_run: Any, task_id: str, output: Callable[[], str]) -> bool:
    """Airflow 3.3 records a 'deferred' log row; 3.1's dag.test() leaves only its inline-trigger log line."""
    if "deferred" in log_events(dag_run, task_id):
        return True
    return AIRFLOW_VERSION < (3, 3) and "[DAG TEST] running trigger in line" in output()


def tis_of(dag_run: Any, task_id: str) -> list[Any]:
    """The task instances of ``task_id`` in ``dag_run`` (one per map index), by map index."""
    return sorted((ti for ti in dag_run.get_task_instances() if ti.task_id == task_id), key=lambda t: t.map_index)


def part_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".part")]


def sha256_of_url(url: str) -> str:
    """SHA-256 of the bytes served at ``url``, streamed (fine for large files)."""
    digest = hashlib.sha256()
    with httpx.stream("GET", url, timeout=30) as reply:
        assert reply.status_code == 200, (url, reply.status_code)
        for chunk in reply.iter_bytes():
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def completed_prediction(emulator: Any, model: str = AVATAR, **inputs: Any) -> str:
    """Submit straight to the emulator (not through the provider), wait until it is terminal; return the id."""
    with httpx.Client(
        base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=10
    ) as client:
        reply = client.post(f"/api/v3/{model}", json=inputs or dict(AVATAR_INPUTS))
    assert reply.status_code == 200, reply.text
    prediction_id = str(reply.json()["data"]["id"])
    finished = wait_until(
        lambda: emulator.predictions[prediction_id].status(time.monotonic()) in ("completed", "failed"), 10.0
    )
    assert finished, f"prediction {prediction_id} did not finish"
    return prediction_id


def delete_prediction(emulator: Any, prediction_id: str) -> None:
    """Delete a prediction through the API (its outputs then answer 404)."""
    reply = httpx.post(
        emulator.base_url + "/api/v3/predictions/delete",
        json={"ids": [prediction_id]},
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text


def wait_until(condition: Callable[[], bool], seconds: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``condition`` (bounded); True as soon as it holds, False after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def write_sized_file(path: Path, size: int, seed: bytes = b"wavespeed") -> Path:
    """A file of exactly ``size`` bytes of seeded, non-repeating-looking content, written in 1 MiB blocks."""
    block = hashlib.shake_256(seed).digest(1 << 20)
    with path.open("wb") as handle:
        remaining = size
        while remaining > 0:
            n = min(remaining, len(block))
            handle.write(block[:n])
            remaining -= n
    return path


def env_without_pytest() -> dict[str, str]:
    """The current environment (private AIRFLOW_HOME included) for an Airflow subprocess."""
    env = dict(os.environ)
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def metadata_db_files() -> list[Path]:
    from airflow.configuration import conf

    db = Path(conf.get("database", "sql_alchemy_conn").removeprefix("sqlite:///"))
    return [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-journal")) if p.exists()]


def db_cells_containing(text: str) -> list[str]:
    """``table.column`` of every text/blob cell in the metadata DB that contains ``text``."""
    hits = []
    with sqlite3.connect(metadata_db_files()[0]) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
            for column in columns:
                query = f'SELECT COUNT(*) FROM "{table}" WHERE instr(CAST("{column}" AS TEXT), ?) > 0'
                if db.execute(query, (text,)).fetchone()[0]:
                    hits.append(f"{table}.{column}")
    return hits
