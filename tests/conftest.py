"""Test-wide set-up: a private AIRFLOW_HOME with a fresh SQLite metadata DB, created before Airflow loads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="wavespeed-tests-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
os.environ["AIRFLOW__CORE__TEST_CONNECTION"] = "Enabled"

import pytest  # noqa: E402

pytest_plugins = ["airflow_provider_wavespeed.emulator.pytest_plugin"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata DB, shared by the whole session (dag.test() needs one)."""
    from airflow.utils.db import resetdb

    resetdb(skip_init=False)
    return _HOME
