"""Fixtures for end-to-end tests against a real multi-process Airflow (see ``airflow_cluster.py``).

``airflow_cluster_factory`` (one test) and ``airflow_cluster_module_factory`` (shared by a module)
return ``make(dags, env=None, **kwargs) -> AirflowCluster``: a started cluster that is stopped
at teardown. When a test fails, the logs of every cluster it used are printed (pytest shows them
under "Captured stdout teardown").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_cluster import AirflowCluster

ClusterFactory = Callable[..., AirflowCluster]

_FAILED = pytest.StashKey[bool]()
_LOG_CHARS_PER_FILE = 20_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test running a real Airflow (api-server, scheduler, triggerer)")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


class _Factory:
    def __init__(self, base: Callable[[], Path]) -> None:
        self._base = base
        self.clusters: list[AirflowCluster] = []

    def __call__(
        self,
        dags: Mapping[str, str] | list[Path],
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> AirflowCluster:
        cluster = AirflowCluster(self._base(), dags, env, **kwargs)
        self.clusters.append(cluster)
        cluster.start()
        return cluster

    def dump(self) -> str:
        return "\n".join(c.dump_logs(max_chars_per_file=_LOG_CHARS_PER_FILE) for c in self.clusters)

    def stop_all(self) -> None:
        for cluster in self.clusters:
            cluster.stop()


_MODULE_FACTORIES: list[_Factory] = []


@pytest.fixture
def airflow_cluster_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    """``make(dags, env=None, **kwargs)`` -> a started ``AirflowCluster`` owned by this test."""
    factory = _Factory(lambda: tmp_path_factory.mktemp("airflow-e2e"))
    yield factory
    try:
        if request.node.stash.get(_FAILED, False):
            print(factory.dump())
    finally:
        factory.stop_all()


@pytest.fixture(scope="module")
def airflow_cluster_module_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """Like ``airflow_cluster_factory``, but clusters live for the whole test module."""
    factory = _Factory(lambda: tmp_path_factory.mktemp("airflow-e2e"))
    _MODULE_FACTORIES.append(factory)
    try:
        yield factory
    finally:
        _MODULE_FACTORIES.remove(factory)
        factory.stop_all()


@pytest.fixture(autouse=True)
def _print_module_cluster_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.stash.get(_FAILED, False):
        for factory in _MODULE_FACTORIES:
            print(factory.dump())
