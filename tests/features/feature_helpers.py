"""Plain helpers (no fixtures) for the feature tests: DAG files, dag.test() results, the metadata DB."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

_INTEGRATION = Path(__file__).resolve().parent.parent / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

from integration_helpers import (  # noqa: E402
    AVATAR,
    AVATAR_INPUTS,
    FLUX,
    LONG_KEY,
    connection_json,
    dags_folder,
    held_until,
    load_dag,
    polled,
    task_states,
    write_dag,
    xcom_value,
)

__all__ = [
    "AVATAR",
    "AVATAR_INPUTS",
    "FLUX",
    "HEADER",
    "LONG_KEY",
    "ROOT",
    "completed_prediction",
    "connection_json",
    "copy_example_dag",
    "dag_file",
    "dags_folder",
    "delete_prediction",
    "held_until",
    "load_dag",
    "log_events",
    "part_files",
    "polled",
    "sha256_of_url",
    "task_states",
    "tis_of",
    "wait_until",
    "went_through_deferral",
    "write_dag",
    "xcom_value",
]

ROOT = Path(__file__).resolve().parents[2]

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


AIRFLOW_VERSION = tuple(int(part) for part in __import__("airflow").__version__.split(".")[:2])


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
