"""Fixtures for the feature tests: the emulator as ``wavespeed_default``, dag.test(), captured output, offline S3.

Everything talks real HTTP on 127.0.0.1: the WaveSpeed emulator, and (for the ``s3test`` extra) a
moto S3 server reached through a real Airflow ``aws`` connection. Plain helpers live in
``feature_helpers.py``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator

S3_CONN_ID = "aws_s3_test"
S3_BUCKET = "wavespeed-features"


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
    """Everything printed to stdout/stderr plus every log record captured so far in this test."""
    caplog.set_level(logging.INFO)
    seen: list[str] = []

    def _read() -> str:
        out, err = capfd.readouterr()
        seen.extend((out, err))
        return "".join(seen) + "\n" + caplog.text

    return _read


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
