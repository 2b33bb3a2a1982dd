"""Destinations anywhere: the download operator writes to file:// URIs and to S3 (an offline moto server).

The S3 tests need the ``s3test`` extra (amazon provider, s3fs, moto[server]) and are skipped without
it. They go through a real Airflow ``aws`` connection (``AIRFLOW_CONN_AWS_S3_TEST``) and
``ObjectStoragePath``, exactly as a user's DAG would; the bucket is inspected with boto3.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support import (
    AVATAR,
    completed_prediction,
    dag_file,
    delete_prediction,
    part_files,
    task_states,
    tis_of,
    xcom_value,
)

DOWNLOAD_DAG = """
with DAG(dag_id="{dag_id}", **DAG_ARGS):
    WaveSpeedDownloadOperator(
        task_id="store",
        prediction_id="{{{{ dag_run.conf['prediction_id'] }}}}",
        destination="{destination}",
        {extra}
    )
"""


def download_dag(dag_id: str, destination: str, extra: str = ""):
    return dag_file(dag_id, DOWNLOAD_DAG.format(dag_id=dag_id, destination=destination, extra=extra))


# -- file:// ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["file:///abs", "file://localhost/abs"])
def test_the_download_operator_writes_into_a_file_uri_destination(emulator, run_dag, tmp_path, form):
    prediction_id = completed_prediction(emulator)
    target = tmp_path / "stored videos"  # a space: the URI is percent-encoded, the folder is not
    uri = target.as_uri() if form == "file:///abs" else target.as_uri().replace("file://", "file://localhost", 1)
    dag = download_dag(f"wavespeed_ft_dest_file_{form.count('localhost')}", uri)

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"store": "success"}
    stored = target / f"{prediction_id}.mp4"
    assert xcom_value(dr, "store") == [str(stored)]
    assert stored.read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert part_files(tmp_path) == []
    assert not (tmp_path / "stored%20videos").exists()


# -- S3 ----------------------------------------------------------------------------------------------------


def unique_prefix(label: str) -> str:
    return f"avatars/{label}-{uuid.uuid4().hex[:8]}/"


def test_the_download_operator_stores_the_exact_output_in_s3_via_the_uri_or_destination_conn_id(emulator, run_dag, s3):
    emulator.config.output_size = 3 * 1024 * 1024
    prediction_id = completed_prediction(emulator)
    in_uri, by_conn = unique_prefix("uri"), unique_prefix("conn")
    dag = dag_file(
        "wavespeed_ft_dest_s3",
        f"""
        with DAG(dag_id="wavespeed_ft_dest_s3", **DAG_ARGS):
            prediction_id = "{{{{ dag_run.conf['prediction_id'] }}}}"
            WaveSpeedDownloadOperator(
                task_id="conn_in_uri",
                prediction_id=prediction_id,
                destination="s3://{s3.conn_id}@{s3.bucket}/{in_uri}",
            ) >> WaveSpeedDownloadOperator(
                task_id="destination_conn_id",
                prediction_id=prediction_id,
                destination="s3://{s3.bucket}/{by_conn}",
                destination_conn_id="{s3.conn_id}",
            )
        """,
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"conn_in_uri": "success", "destination_conn_id": "success"}
    expected = emulator.expected_output_bytes(prediction_id)
    for task_id, prefix in (("conn_in_uri", in_uri), ("destination_conn_id", by_conn)):
        key = f"{prefix}{prediction_id}.mp4"
        assert s3.object_keys(prefix) == [key], task_id  # the final object and nothing else (no .part)
        assert s3.read(key) == expected, task_id
        [returned] = xcom_value(dr, task_id)
        assert returned.startswith("s3://") and returned.endswith(f"{s3.bucket}/{key}"), returned


def test_a_cut_download_into_s3_resumes_and_ends_bit_identical_with_no_part_objects(
    emulator, run_dag, s3, fast_retries
):
    emulator.config.output_size = 2 * 1024 * 1024
    prediction_id = completed_prediction(emulator)
    emulator.config.cut_downloads = 2
    emulator.config.cut_after_bytes = 700_000
    prefix = unique_prefix("cut")
    dag = download_dag("wavespeed_ft_dest_s3_cut", f"s3://{s3.conn_id}@{s3.bucket}/{prefix}")

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"store": "success"}
    assert emulator.stats.cut_downloads == 2
    size = len(emulator.expected_output_bytes(prediction_id))
    assert emulator.stats.bytes_served < size + 700_000  # resumed where it was cut, not restarted
    key = f"{prefix}{prediction_id}.mp4"
    assert s3.object_keys(prefix) == [key]
    assert s3.read(key) == emulator.expected_output_bytes(prediction_id)


def test_a_download_cut_more_often_than_retries_allow_leaves_nothing_in_s3(emulator, run_dag, s3, fast_retries):
    emulator.config.output_size = 1024 * 1024
    prediction_id = completed_prediction(emulator)
    emulator.config.cut_downloads = 50
    emulator.config.cut_after_bytes = 100_000
    prefix = unique_prefix("exhausted")
    dag = download_dag("wavespeed_ft_dest_s3_exhausted", f"s3://{s3.conn_id}@{s3.bucket}/{prefix}")

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"store": "failed"}
    assert emulator.stats.cut_downloads == fast_retries.max_attempts  # it really was cut every time
    assert s3.object_keys(prefix) == []  # no final object, no .part object


def test_an_output_gone_mid_download_fails_the_task_and_leaves_nothing_in_s3(emulator, run_dag, s3, all_output):
    emulator.config.output_size = 1024 * 1024
    prediction_id = completed_prediction(emulator)
    emulator.config.cut_downloads = 1
    emulator.config.cut_after_bytes = 300_000
    prefix = unique_prefix("gone")
    dag = download_dag("wavespeed_ft_dest_s3_gone", f"s3://{s3.conn_id}@{s3.bucket}/{prefix}", "retries=2,")

    def delete_once_the_cut_download_starts() -> None:
        deadline = time.monotonic() + 30
        while emulator.stats.cut_downloads == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        delete_prediction(emulator, prediction_id)  # the resume (>= 0.25 s later) then gets a 404

    watcher = threading.Thread(target=delete_once_the_cut_download_starts, daemon=True)
    watcher.start()
    try:
        dr = run_dag(dag, prediction_id=prediction_id)
    finally:
        watcher.join(35)

    assert task_states(dr) == {"store": "failed"}
    assert tis_of(dr, "store")[0].try_number == 1  # a gone output is final: no retry
    assert emulator.stats.cut_downloads == 1
    assert emulator.stats.requests_by_status.get(404, 0) >= 1
    assert s3.object_keys(prefix) == []
    assert "is gone or refused (HTTP 404)" in all_output()


def test_s3_media_inputs_are_uploaded_before_the_submit(emulator, run_dag, s3, tmp_path: Path):
    image, audio = b"\x89PNG\r\n\x1a\n" + b"s3-portrait" * 100, b"ID3" + b"s3-voice" * 120
    s3.put("inputs/portrait.png", image)
    s3.put("inputs/voice.mp3", audio)
    dag = dag_file(
        "wavespeed_ft_media_s3",
        f"""
        with DAG(dag_id="wavespeed_ft_media_s3", **DAG_ARGS):
            WaveSpeedSubmitOperator(
                task_id="conn_in_uri",
                model="{AVATAR}",
                inputs={{
                    "image": "s3://{s3.conn_id}@{s3.bucket}/inputs/portrait.png",
                    "audio": "https://example.com/voice.mp3",
                }},
            ) >> WaveSpeedSubmitOperator(
                task_id="media_conn_id",
                model="{AVATAR}",
                inputs={{"image": "https://example.com/portrait.png", "audio": "s3://{s3.bucket}/inputs/voice.mp3"}},
                media_conn_id="{s3.conn_id}",
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"conn_in_uri": "success", "media_conn_id": "success"}
    assert emulator.stats.uploads == 2
    first = emulator.predictions[xcom_value(dr, "conn_in_uri")].inputs
    second = emulator.predictions[xcom_value(dr, "media_conn_id")].inputs
    assert first["image"].startswith(emulator.base_url + "/media/uploads/")
    assert httpx.get(first["image"]).content == image
    assert first["audio"] == "https://example.com/voice.mp3"
    assert second["audio"].startswith(emulator.base_url + "/media/uploads/")
    assert httpx.get(second["audio"]).content == audio


def test_asset_events_for_s3_outputs_name_the_object_without_the_connection_id(emulator, run_dag, s3):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    prediction_id = completed_prediction(emulator)
    prefix = unique_prefix("asset")
    dag = download_dag(
        "wavespeed_ft_dest_s3_asset",
        f"s3://{s3.conn_id}@{s3.bucket}/{prefix}",
        'asset_alias="wavespeed_ft_s3_videos",',
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"store": "success"}
    key = f"{prefix}{prediction_id}.mp4"
    assert s3.object_keys(prefix) == [key]
    with create_session() as session:
        uris = [e.asset.uri for e in session.query(AssetEvent).filter_by(source_run_id=dr.run_id)]
    assert uris == [f"s3://{s3.bucket}/{key}"]
