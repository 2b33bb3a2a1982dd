"""Fixtures for the integration tests: the real hook, trigger and operators against the emulator.

Everything here talks real HTTP on 127.0.0.1: the WaveSpeed emulator, and (for the ``s3test`` extra) a
moto S3 server reached through a real Airflow ``aws`` connection. Airflow runs for real through
``dag.test()`` on the session's SQLite DB. Shared fixtures (``emulator``, ``fast_retries``, ``run_dag``,
``all_output``) are in ``tests/conftest.py``; plain helpers in ``tests/support.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from tests.support import LONG_KEY, connection_json

S3_CONN_ID = "aws_s3_test"
S3_BUCKET = "wavespeed-integration"


@pytest.fixture
def long_key_emulator(emulator: WaveSpeedEmulator, monkeypatch: pytest.MonkeyPatch) -> WaveSpeedEmulator:
    """The emulator accepting only ``LONG_KEY``, and ``wavespeed_default`` holding it."""
    emulator.config.api_key = LONG_KEY
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY))
    return emulator


@pytest.fixture
def raw_api(emulator: WaveSpeedEmulator) -> Iterator[httpx.Client]:
    """A plain httpx client for the emulator, independent of the provider (to set up state)."""
    with httpx.Client(
        base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=10
    ) as client:
        yield client


# -- offline S3 (moto) ---------------------------------------------------------------------------------


class OfflineS3:
    """A moto S3 server on 127.0.0.1 with one bucket, and a boto3 client to inspect it."""

    def __init__(self, endpoint: str, client: Any) -> None:
        self.endpoint = endpoint
        self.client = client
        self.bucket = S3_BUCKET
        self.conn_id = S3_CONN_ID

    def object_keys(self, prefix: str = "") -> list[str]:
        reply = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"] for item in reply.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def connection_json(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing-access-key",
                "password": "testing-secret-key",
                "extra": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
            }
        )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[OfflineS3]:
    """A moto S3 server for the whole session (skipped when the ``s3test`` extra is not installed)."""
    pytest.importorskip("moto", reason="the s3test extra (moto, s3fs, amazon provider) is not installed")
    pytest.importorskip("s3fs", reason="the s3test extra (moto, s3fs, amazon provider) is not installed")
    pytest.importorskip("airflow.providers.amazon", reason="the s3test extra is not installed")
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing-access-key",
            aws_secret_access_key="testing-secret-key",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=S3_BUCKET)
        yield OfflineS3(endpoint, client)
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: OfflineS3, monkeypatch: pytest.MonkeyPatch) -> OfflineS3:
    """The offline S3 server with an empty bucket, reachable as Airflow connection ``aws_s3_test``."""
    for key in s3_server.object_keys():
        s3_server.client.delete_object(Bucket=s3_server.bucket, Key=key)
    monkeypatch.setenv("AIRFLOW_CONN_AWS_S3_TEST", s3_server.connection_json())
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return s3_server
