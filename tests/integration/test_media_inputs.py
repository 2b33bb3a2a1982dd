"""Media inputs from anywhere: local paths and file:// URIs are uploaded first and replaced by their URL.

Through the real submit operator (dag.test()) and the public ``WaveSpeedHook.upload``, against the
emulator's ticket upload (presigned PUT) and its legacy multipart endpoint. The big-file test runs
the upload in a subprocess and measures its peak RSS.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from tests.support import (
    AVATAR,
    dag_file,
    env_without_pytest,
    sha256_of_file,
    sha256_of_url,
    task_states,
    tis_of,
    write_sized_file,
    xcom_value,
)

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
MP3_BYTES = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(reversed(range(256))) * 12


def uploaded_url_prefix(emulator) -> str:
    return emulator.base_url + "/media/uploads/"


def served_bytes(url: str) -> bytes:
    reply = httpx.get(url, timeout=10)
    assert reply.status_code == 200, (url, reply.status_code)
    return reply.content


@pytest.fixture
def media_files(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "media"
    folder.mkdir()
    image = folder / "portrait.png"
    audio = folder / "voice.mp3"
    image.write_bytes(PNG_BYTES)
    audio.write_bytes(MP3_BYTES)
    return image, audio


def test_a_submit_uploads_a_local_path_and_a_file_uri_and_the_prediction_receives_their_download_urls(
    emulator, run_dag, media_files
):
    image, audio = media_files
    dag = dag_file(
        "wavespeed_ft_media_local",
        f"""
        with DAG(dag_id="wavespeed_ft_media_local", **DAG_ARGS):
            WaveSpeedSubmitOperator(
                task_id="submit",
                model="{AVATAR}",
                inputs={{"image": "{image}", "audio": "{audio.as_uri()}", "prompt": "hello"}},
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success"}
    assert emulator.stats.uploads == 2
    assert emulator.stats.submits_accepted == 1
    prediction_id = xcom_value(dr, "submit")
    sent = emulator.predictions[prediction_id].inputs
    assert sent["image"].startswith(uploaded_url_prefix(emulator)) and sent["image"].endswith("/portrait.png")
    assert sent["audio"].startswith(uploaded_url_prefix(emulator)) and sent["audio"].endswith("/voice.mp3")
    assert served_bytes(sent["image"]) == PNG_BYTES
    assert served_bytes(sent["audio"]) == MP3_BYTES
    assert sent["prompt"] == "hello"  # other inputs pass through untouched


def test_hook_upload_is_public_takes_a_path_object_and_returns_a_url_serving_the_file(emulator, media_files):
    image, _ = media_files
    hook = WaveSpeedHook()
    try:
        url = hook.upload(image)
    finally:
        hook.close()
    assert isinstance(url, str) and url.startswith(uploaded_url_prefix(emulator))
    assert served_bytes(url) == PNG_BYTES
    assert emulator.stats.uploads == 1
    assert emulator.stats.submit_attempts == 0  # an upload alone submits nothing


def test_uploads_fall_back_to_the_legacy_multipart_endpoint_when_upload_tickets_are_not_offered(emulator, media_files):
    emulator.config.upload_ticket_supported = False
    image, audio = media_files
    hook = WaveSpeedHook()
    try:
        resolved = hook.resolve_media_inputs({"image": str(image), "audio": audio.as_uri(), "seed": 7})
    finally:
        hook.close()
    assert emulator.stats.requests_by_status.get(404) == 2  # the ticket endpoint, refused once per file
    assert emulator.stats.uploads == 2  # ... and both files arrived through the multipart endpoint
    assert served_bytes(resolved["image"]) == PNG_BYTES
    assert served_bytes(resolved["audio"]) == MP3_BYTES
    assert resolved["seed"] == 7


def _run_missing_media_dag(run_dag, dag_id: str, reference: str):
    dag = dag_file(
        dag_id,
        f"""
        with DAG(dag_id="{dag_id}", **DAG_ARGS):
            WaveSpeedSubmitOperator(
                task_id="submit",
                model="{AVATAR}",
                inputs={{"image": "{reference}", "audio": "https://example.com/voice.mp3"}},
                retries=2,
            )
        """,
    )
    return run_dag(dag)


def test_a_missing_file_uri_fails_the_submit_with_a_clear_message_and_nothing_is_submitted(
    emulator, run_dag, tmp_path, all_output
):
    missing = (tmp_path / "nowhere" / "portrait.png").as_uri()
    dr = _run_missing_media_dag(run_dag, "wavespeed_ft_media_missing_uri", missing)

    assert task_states(dr) == {"submit": "failed"}
    assert tis_of(dr, "submit")[0].try_number == 1  # final: a retry cannot make the file appear
    assert emulator.stats.submit_attempts == 0
    assert emulator.stats.uploads == 0
    output = all_output()
    assert f"media input {missing!r} is not a readable file" in output


def test_a_missing_local_path_fails_the_submit_with_a_clear_message_and_nothing_is_submitted(
    emulator, run_dag, tmp_path, all_output
):
    missing = tmp_path / "nowhere" / "portrait.png"
    dr = _run_missing_media_dag(run_dag, "wavespeed_ft_media_missing_path", str(missing))

    assert emulator.stats.submit_attempts == 0, "a prediction was submitted (and billed) with a missing file"
    assert task_states(dr) == {"submit": "failed"}
    assert str(missing) in all_output()


# -- a big file is streamed, not read into memory --------------------------------------------------------

UPLOAD_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook

    warmup, big = sys.argv[1], sys.argv[2]
    hook = WaveSpeedHook()
    hook.upload(warmup)  # load every code path (httpx, multipart, retry) before measuring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    url = hook.upload(big)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"url": url, "before_kib": before, "after_kib": after}))
    """
)


@pytest.mark.parametrize("ticket", [True, False], ids=["presigned-put", "legacy-multipart"])
def test_a_50_mb_upload_streams_from_disk_with_peak_memory_growth_under_40_mb(emulator, tmp_path, ticket):
    emulator.config.upload_ticket_supported = ticket
    big = write_sized_file(tmp_path / "talk.mp3", 50 * 1024 * 1024)
    warmup = write_sized_file(tmp_path / "warmup.mp3", 64 * 1024)
    script = tmp_path / "upload_rss.py"
    script.write_text(UPLOAD_SCRIPT)

    done = subprocess.run(
        [sys.executable, str(script), str(warmup), str(big)],
        env=env_without_pytest(),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    growth_mb = (result["after_kib"] - result["before_kib"]) / 1024
    assert growth_mb < 40, f"peak RSS grew by {growth_mb:.1f} MB while uploading 50 MB"
    assert emulator.stats.uploads == 2
    assert emulator.stats.requests_by_status.get(404, 0) == (0 if ticket else 2)
    assert sha256_of_url(result["url"]) == sha256_of_file(big)
