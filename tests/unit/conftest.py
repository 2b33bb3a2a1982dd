"""Unit tests: no HTTP and no Airflow metadata DB (see the rule in ``tests/conftest.py``).

Enforced, so a test that needs either fails here and moves to ``integration/``: network connects
(TCP/UDP, loopback included) raise, and fixtures that start the emulator or migrate the DB are refused.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

#: Fixtures that belong to other layers (the emulator is HTTP; ``airflow_db`` and ``run_dag`` are the DB).
NOT_IN_UNIT = frozenset(
    {"airflow_db", "run_dag", "emulator", "wavespeed_emulator", "long_key_emulator", "raw_api", "s3", "s3_server"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = NOT_IN_UNIT.intersection(getattr(item, "fixturenames", ()))
        if used and item.path.is_relative_to(config.rootpath / "tests" / "unit"):
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(used)}: that is an integration test, not a unit test")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any TCP/UDP connect from a unit test fails loudly (Unix sockets, e.g. asyncio's self-pipe, are fine)."""
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def _guard(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"unit tests do not use the network: connect to {address!r} (move it to integration/)")

    def connect(sock: socket.socket, address: Any) -> None:
        _guard(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        _guard(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
