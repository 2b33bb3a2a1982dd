"""Test-wide set-up and the fixtures shared by every layer.

Where a test goes (one rule; a test lives in the first layer whose limits it fits):

- ``unit/``        no HTTP and no Airflow metadata DB: pure functions and objects, an explicit clock
                   (enforced by ``unit/conftest.py``: loopback connects fail, DB fixtures are refused).
- ``integration/`` against the WaveSpeed emulator on 127.0.0.1 through the real hook, trigger and
                   operators; Airflow only in-process (``dag.test()`` on the session's SQLite DB).
                   Needs no service besides the emulator (and, behind the ``s3test`` extra, an offline
                   moto S3; those tests skip without it).
- ``e2e/``         real Airflow processes (api-server, scheduler, triggerer), marker ``e2e``.
- ``emulator/``    the emulator's own tests (wire format, switches, clock, SDK conformance).
- ``cluster/``     the production-shaped cluster (PostgreSQL, Celery + Redis, 2 schedulers, 2 triggerers),
                   marker ``cluster``.
- ``benchmarks/``  every benchmark runs at its ``--quick`` size (no timing assertions).

Plain helpers (no fixtures) live in ``tests/support.py`` (``from tests.support import ...``);
fixtures used by more than one test module live here, layer-only ones in the layer's ``conftest.py``.
``make test-fast`` runs unit + integration; ``make test`` runs everything.

The set-up below runs before Airflow loads: a private AIRFLOW_HOME with a fresh SQLite metadata DB.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_HOME = Path(tempfile.mkdtemp(prefix="wavespeed-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"
# dag.test() runs triggers inline, with no separate worker to race: resume deferred tasks at once.
os.environ["AIRFLOW__WAVESPEED__MIN_DEFERRAL_SECONDS"] = "0"

import pytest  # noqa: E402

from airflow_provider_wavespeed.api.retry import RetryPolicy  # noqa: E402
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator  # noqa: E402

pytest_plugins = ["airflow_provider_wavespeed.emulator.pytest_plugin"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB, shared by the whole session (dag.test() needs one)."""
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)
    return _HOME


@pytest.fixture
def emulator(wavespeed_emulator: WaveSpeedEmulator, monkeypatch: pytest.MonkeyPatch) -> WaveSpeedEmulator:
    """The plugin's fast emulator (queue 0.05 s, run 0.3 s), set as ``wavespeed_default``."""
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", wavespeed_emulator.connection_json())
    return wavespeed_emulator


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> RetryPolicy:
    """Hooks built without an explicit policy (the operators') try 4 times, a few ms apart."""
    import airflow_provider_wavespeed.hooks.wavespeed as hook_module

    policy = functools.partial(RetryPolicy, max_attempts=4, max_elapsed=10.0, initial_wait=0.01, max_wait=0.02)
    monkeypatch.setattr(hook_module, "RetryPolicy", policy)
    return policy()


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., Any]:
    """``run_dag(dag, **conf)``: ``dag.test(run_conf=conf)``; returns the finished DagRun."""

    def _run(dag: Any, **conf: Any) -> Any:
        return dag.test(run_conf=conf or None)

    return _run


@pytest.fixture
def all_output(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Callable[[], str]:
    """Everything printed to stdout/stderr plus every log record (INFO and up) captured so far in this test."""
    caplog.set_level(logging.INFO)
    seen: list[str] = []

    def _read() -> str:
        out, err = capfd.readouterr()
        seen.extend((out, err))
        return "".join(seen) + "\n" + caplog.text

    return _read
