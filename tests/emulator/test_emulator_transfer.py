"""Byte transfer: media uploads (ticket + PUT, legacy multipart) and output downloads with Range."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator

Submit = Callable[..., dict[str, Any]]
Wait = Callable[[str], dict[str, Any]]

PAYLOAD = os.urandom(300_000) + b"tail"


def test_upload_ticket_then_unauthenticated_put_makes_download_url_serve_the_bytes(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    response = api.post(
        "/api/v3/media/uploads",
        json={"filename": "face.png", "size": len(PAYLOAD), "content_type": "image/png"},
    )
    assert response.status_code == 200
    data = response.json()["data"]
    base = wavespeed_emulator.base_url
    assert data["type"] == "image" and data["filename"] == "face.png" and data["size"] == len(PAYLOAD)
    assert data["upload"]["method"] == "PUT"
    assert data["upload"]["url"].startswith(f"{base}/_uploads/")
    assert data["upload"]["headers"] == {"Content-Type": "image/png"}
    assert data["download_url"].startswith(f"{base}/media/uploads/") and data["download_url"].endswith("/face.png")
    assert http.get(data["download_url"]).status_code == 404  # nothing uploaded yet

    put = http.put(data["upload"]["url"], content=PAYLOAD, headers=data["upload"]["headers"])  # no auth
    assert 200 <= put.status_code < 300
    download = http.get(data["download_url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert download.content == PAYLOAD
    assert wavespeed_emulator.stats.uploads == 1
    spool = wavespeed_emulator.spool_dir
    assert spool is not None and any(name.startswith("upload-") for name in os.listdir(spool))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"size": 3}, "Missing required parameter: filename"),
        ({"filename": "a.mp3"}, "Missing required parameter: size"),
        ({"filename": "a.mp3", "size": -1}, "Invalid parameter 'size'"),
    ],
)
def test_upload_ticket_validates_its_body(api: httpx.Client, body: dict[str, Any], message: str) -> None:
    response = api.post("/api/v3/media/uploads", json=body)
    assert response.status_code == 400 and message in response.json()["message"]


def test_upload_ticket_guesses_type_from_filename(http: httpx.Client, api: httpx.Client) -> None:
    data = api.post("/api/v3/media/uploads", json={"filename": "voice.mp3", "size": 10}).json()["data"]
    assert data["type"] == "audio" and data["upload"]["headers"]["Content-Type"] == "audio/mpeg"
    assert http.put(f"{data['upload']['url']}-bogus", content=b"x").status_code == 404


def test_legacy_multipart_upload_stores_the_file_field(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    response = api.post(
        "/api/v3/media/upload/binary",
        files={"file": ("voice.wav", PAYLOAD, "audio/wav")},
        data={"note": "ignored"},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"type", "download_url", "filename", "size"}
    assert (data["type"], data["filename"], data["size"]) == ("audio", "voice.wav", len(PAYLOAD))
    download = http.get(data["download_url"])
    assert download.content == PAYLOAD and download.headers["content-type"] == "audio/wav"
    ranged = http.get(data["download_url"], headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == PAYLOAD[10:20]
    assert wavespeed_emulator.stats.uploads == 1
    missing = api.post("/api/v3/media/upload/binary", files={"other": ("x.bin", b"1")})
    assert missing.status_code == 400 and missing.json()["message"] == "Missing required parameter: file"


def test_upload_ticket_switch_off_answers_404_so_clients_fall_back_to_legacy(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.config.upload_ticket_supported = False
    ticket = api.post("/api/v3/media/uploads", json={"filename": "a.png", "size": 1})
    assert ticket.status_code == 404 and ticket.json()["data"] is None
    legacy = api.post("/api/v3/media/upload/binary", files={"file": ("a.png", b"\x89PNG", "image/png")})
    assert legacy.status_code == 200 and legacy.json()["data"]["type"] == "image"


def test_stop_removes_uploaded_files(http: httpx.Client) -> None:
    emulator = WaveSpeedEmulator().start()
    try:
        headers = {"Authorization": f"Bearer {emulator.api_key}"}
        url = f"{emulator.base_url}/api/v3/media/upload/binary"
        assert http.post(url, headers=headers, files={"file": ("a.bin", b"abc")}).status_code == 200
        spool = emulator.spool_dir
        assert spool is not None and os.listdir(spool)
    finally:
        emulator.stop()
    assert not os.path.exists(spool)


@pytest.fixture
def finished_output(wavespeed_emulator: WaveSpeedEmulator, submit: Submit, wait_terminal: Wait) -> str:
    wavespeed_emulator.config.run_seconds = 0.05
    wavespeed_emulator.config.output_size = 10_000
    data = wait_terminal(submit()["id"])
    url: str = data["outputs"][0]
    return url


def test_output_range_requests_get_206_with_content_range(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, finished_output: str
) -> None:
    prediction_id = finished_output.split("/")[-2]
    full = wavespeed_emulator.expected_output_bytes(prediction_id)
    assert len(full) == 10_000
    plain = http.get(finished_output)
    assert plain.status_code == 200 and plain.headers["accept-ranges"] == "bytes"
    cases = {"bytes=100-199": (100, 199), "bytes=9000-": (9000, 9999), "bytes=-10": (9990, 9999)}
    for header, (first, last) in cases.items():
        response = http.get(finished_output, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.headers["content-range"] == f"bytes {first}-{last}/10000"
        assert int(response.headers["content-length"]) == last - first + 1
        assert response.content == full[first : last + 1]
    beyond = http.get(finished_output, headers={"Range": "bytes=10000-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10000"
    head = http.head(finished_output)
    assert head.status_code == 200 and head.headers["content-length"] == "10000" and head.content == b""
    assert wavespeed_emulator.stats.downloads_started == 4  # HEAD and 416 are not downloads


def test_range_support_off_serves_full_body_without_accept_ranges(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, finished_output: str
) -> None:
    wavespeed_emulator.config.range_support = False
    response = http.get(finished_output, headers={"Range": "bytes=100-199"})
    assert response.status_code == 200
    assert "accept-ranges" not in response.headers and "content-range" not in response.headers
    assert len(response.content) == 10_000


def test_outputs_are_404_until_the_prediction_completes(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, submit: Submit
) -> None:
    wavespeed_emulator.config.queue_seconds = 60
    prediction = submit()
    assert http.get(wavespeed_emulator.output_url(prediction["id"])).status_code == 404
    assert http.get(f"{wavespeed_emulator.base_url}/media/outputs/nope/0.mp4").status_code == 404
