"""Fixtures for the production-shaped cluster suite (marker ``cluster``).

One cluster per module, all on 127.0.0.1: a private PostgreSQL (metadata DB) and Redis (Celery
broker + result backend), and Airflow as ``tests/e2e/airflow_cluster.py`` runs it, with
``CeleryExecutor``: api-server, dag-processor, two schedulers, two triggerers, two Celery
workers. Everything is stopped by the fixture finalizers, by :mod:`atexit` when the interpreter
ends, and on SIGTERM (turned into KeyboardInterrupt so pytest runs the finalizers).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.cluster_settings import (
    CELERY_WORKER_CONCURRENCY,
    CLUSTER_CONFIG,
    HEARTBEAT_SEC,
    MEASUREMENTS,
    TRIGGERER_HEALTH_CHECK_THRESHOLD,
)
from tests.cluster.services import PostgresServer, RedisServer, missing_services
from tests.e2e.airflow_cluster import AirflowCluster, close_pg_connections

_FAILED = pytest.StashKey[bool]()
_LOG_CHARS_PER_FILE = 15_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: production-shaped Airflow (PostgreSQL, Celery, 2 schedulers, 2 triggerers)"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASUREMENTS:
        terminalreporter.section("production-shaped cluster: measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


def _sigterm_to_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def test_services() -> Iterator[tuple[PostgresServer, RedisServer]]:
    """A private PostgreSQL and Redis for this module (skips when the servers are not installed)."""
    missing = missing_services()
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: run scripts/install-test-services.sh")
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _sigterm_to_keyboard_interrupt)
    postgres, redis = PostgresServer(), RedisServer()
    try:
        postgres.start()
        redis.start()
        yield postgres, redis
    finally:
        close_pg_connections()
        redis.stop()
        postgres.stop()
        if previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


ClusterFactory = Callable[..., AirflowCluster]


@pytest.fixture(scope="module")
def production_cluster_factory(
    test_services: tuple[PostgresServer, RedisServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    """``make(dags, env=None, **overrides) -> AirflowCluster``: started, stopped at module end."""
    postgres, redis = test_services
    clusters: list[AirflowCluster] = []

    def make(dags: Mapping[str, str] | list[Path], env: Mapping[str, str] | None = None, **kwargs: Any):
        cluster_env = {
            **CLUSTER_CONFIG,
            "AIRFLOW__CELERY__BROKER_URL": redis.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": redis.url[: -len("/0")] + "/1",
            **(env or {}),
        }
        options: dict[str, Any] = {
            "database_url": postgres.url,
            "executor": "CeleryExecutor",
            "schedulers": 2,
            "triggerers": 2,
            "celery_workers": 2,
            "celery_worker_concurrency": CELERY_WORKER_CONCURRENCY,
            "distinct_hostnames": True,
            "triggerer_health_check_threshold": TRIGGERER_HEALTH_CHECK_THRESHOLD,
            "heartbeat_sec": HEARTBEAT_SEC,
            **kwargs,
        }
        cluster = AirflowCluster(tmp_path_factory.mktemp("airflow-cluster"), dags, cluster_env, **options)
        clusters.append(cluster)
        cluster.start(timeout=300)
        return cluster

    make.clusters = clusters  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for cluster in clusters:
            cluster.stop()


def cluster_logs(cluster: AirflowCluster, services: tuple[PostgresServer, RedisServer] | None = None) -> str:
    """Process logs of the cluster (and the services), tails only: what to read when a test failed."""
    parts = []
    for path in sorted(cluster.process_logs_folder.glob("*.log")):
        text = path.read_text(errors="replace")[-_LOG_CHARS_PER_FILE:]
        parts.append(f"===== {path.name} (tail) =====\n{text}")
    for service in services or ():
        parts.append(f"===== {service.name}.log (tail) =====\n{service.log_text()[-_LOG_CHARS_PER_FILE:]}")
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def _print_cluster_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not request.node.stash.get(_FAILED, False):
        return
    if "production_cluster_factory" not in request.fixturenames:
        return
    factory = request.getfixturevalue("production_cluster_factory")
    services = request.getfixturevalue("test_services")
    for cluster in factory.clusters:
        print(cluster_logs(cluster, services))
