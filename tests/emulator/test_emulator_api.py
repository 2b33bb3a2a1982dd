"""The emulated /api/v3 endpoints speak the real WaveSpeed wire format (over real HTTP)."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator, expected_output_bytes
from airflow_provider_wavespeed.emulator.clock import ManualClock

Submit = Callable[..., dict[str, Any]]
Wait = Callable[[str], dict[str, Any]]

AVATAR = "wavespeed-ai/hunyuan-avatar"
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}
UNAUTHORIZED = {"code": 401, "message": "Unauthorized: invalid API key", "data": None}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "ws-emulator-key"}])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/api/v3/{AVATAR}"),
        ("GET", "/api/v3/predictions/0123/result"),
        ("GET", "/api/v3/balance"),
        ("GET", "/api/v3/models"),
        ("POST", "/api/v3/predictions"),
        ("POST", "/api/v3/media/uploads"),
    ],
)
def test_missing_or_wrong_api_key_is_rejected_with_401_envelope(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, headers: dict[str, str], method: str, path: str
) -> None:
    response = http.request(method, wavespeed_emulator.base_url + path, headers=headers, json=AVATAR_INPUTS)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    assert wavespeed_emulator.stats.submits_accepted == 0


def test_submit_returns_created_prediction_in_success_envelope(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    response = api.post(
        f"/api/v3/{AVATAR}",
        params={"webhook": "https://hooks.example.com/ws"},
        json={**AVATAR_INPUTS, "prompt": "hello", "not_a_schema_field": 42},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    envelope = response.json()
    assert envelope["code"] == 200 and envelope["message"] == "success"
    data = envelope["data"]
    assert re.fullmatch(r"[0-9a-f]{32}", data["id"])
    assert data == {
        "id": data["id"],
        "model": AVATAR,
        "outputs": [],
        "urls": {"get": f"{wavespeed_emulator.base_url}/api/v3/predictions/{data['id']}/result"},
        "has_nsfw_contents": [],
        "status": "created",
        "created_at": data["created_at"],
        "error": "",
        "code": 0,
        "executionTime": 0,
        "timings": {"inference": 0},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", data["created_at"])
    record = wavespeed_emulator.predictions[data["id"]]
    assert record.model == AVATAR
    assert record.inputs["resolution"] == "480p"  # default filled in
    assert record.webhook == "https://hooks.example.com/ws"
    assert wavespeed_emulator.stats.submits_accepted == 1
    assert wavespeed_emulator.stats.submits_by_model == {AVATAR: 1}


@pytest.mark.parametrize(
    ("model", "body", "message"),
    [
        (AVATAR, {"image": "https://e.com/a.png"}, "Missing required parameter: audio"),
        (AVATAR, {"audio": "https://e.com/a.mp3", "image": None}, "Missing required parameter: image"),
        (
            AVATAR,
            {**AVATAR_INPUTS, "resolution": "1080p"},
            "Invalid parameter 'resolution': must be one of 480p, 720p",
        ),
        (
            AVATAR,
            {**AVATAR_INPUTS, "seed": -2},
            "Invalid parameter 'seed': must be between -1 and 2147483647",
        ),
        (
            AVATAR,
            {**AVATAR_INPUTS, "seed": 2**31},
            "Invalid parameter 'seed': must be between -1 and 2147483647",
        ),
        (AVATAR, {**AVATAR_INPUTS, "seed": "7"}, "Invalid parameter 'seed': expected integer, got string"),
        (AVATAR, {**AVATAR_INPUTS, "seed": True}, "Invalid parameter 'seed': expected integer, got boolean"),
        (AVATAR, {**AVATAR_INPUTS, "prompt": 5}, "Invalid parameter 'prompt': expected string, got integer"),
        ("wavespeed-ai/infinitetalk", {"image": "https://e.com/a.png"}, "Missing required parameter: audio"),
        ("wavespeed-ai/flux-dev", {}, "Missing required parameter: prompt"),
        (
            "wavespeed-ai/flux-dev",
            {"prompt": "x", "num_images": 5},
            "Invalid parameter 'num_images': must be between 1 and 4",
        ),
        ("wavespeed-ai/flux-dev", {"prompt": "x", "output_format": "gif"}, "must be one of jpeg, png, webp"),
        (
            "wavespeed-ai/flux-dev",
            {"prompt": "x", "enable_safety_checker": "yes"},
            "expected boolean, got string",
        ),
    ],
)
def test_invalid_inputs_get_400_naming_the_field_and_create_nothing(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, model: str, body: dict[str, Any], message: str
) -> None:
    response = api.post(f"/api/v3/{model}", json=body)
    assert response.status_code == 400
    envelope = response.json()
    assert envelope["code"] == 400 and envelope["data"] is None
    assert message in envelope["message"]
    assert wavespeed_emulator.predictions == {}
    assert wavespeed_emulator.stats.submit_attempts == 1
    assert wavespeed_emulator.stats.submits_accepted == 0
    assert wavespeed_emulator.config.balance == 100.0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]"])
def test_submit_body_that_is_not_a_json_object_gets_400(api: httpx.Client, raw: bytes) -> None:
    response = api.post(f"/api/v3/{AVATAR}", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid JSON body")


def test_unknown_model_gets_404_naming_it(api: httpx.Client) -> None:
    response = api.post("/api/v3/acme/no-such-model", json={"prompt": "x"})
    assert response.status_code == 404
    assert response.json() == {"code": 404, "message": "model not found: acme/no-such-model", "data": None}


def test_unknown_prediction_id_gets_404(api: httpx.Client) -> None:
    for path in ("/api/v3/predictions/deadbeef/result", "/api/v3/predictions/deadbeef"):
        response = api.get(path)
        assert response.status_code == 404
        assert response.json() == {"code": 404, "message": "prediction not found: deadbeef", "data": None}


def test_status_progresses_created_processing_completed_and_output_bytes_match(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    prediction = submit()
    seen: list[str] = []
    data: dict[str, Any] = {}
    polls = 0
    for step in (0.0, 0.05, 0.3):  # queue 0.05 s, then run 0.3 s
        clock.advance(step)
        polls += 1
        data = api.get(f"/api/v3/predictions/{prediction['id']}/result").json()["data"]
        seen.append(data["status"])
    assert seen == ["created", "processing", "completed"]
    assert data["executionTime"] == 300 and data["timings"] == {"inference": 300}
    assert data["has_nsfw_contents"] == [False]
    assert data["outputs"] == [f"{wavespeed_emulator.base_url}/media/outputs/{prediction['id']}/0.mp4"]
    # The bare /predictions/{id} form answers the same object.
    assert api.get(f"/api/v3/predictions/{prediction['id']}").json()["data"] == data

    download = http.get(data["outputs"][0])  # no Authorization, like the CDN
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    assert int(download.headers["content-length"]) == 64 * 1024
    assert download.content == expected_output_bytes(prediction["id"], 0, 64 * 1024, "mp4")
    assert download.content == wavespeed_emulator.expected_output_bytes(prediction["id"])
    stats = wavespeed_emulator.stats
    assert stats.downloads_started == stats.downloads_completed == 1
    assert stats.bytes_served == 64 * 1024
    assert stats.result_polls == stats.polls_by_prediction[prediction["id"]] == polls + 1


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(body, zlib.crc32(kind)) == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


def test_outputs_are_valid_png_and_mp4_files(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator, submit: Submit, wait_terminal: Wait
) -> None:
    wavespeed_emulator.config.run_seconds = 0.05
    wavespeed_emulator.config.model_output_size = {"wavespeed-ai/flux-dev": 5000}
    image = submit("wavespeed-ai/flux-dev", prompt="a cat", num_images=2, output_format="jpeg")
    video = submit()
    image_done, video_done = wait_terminal(image["id"]), wait_terminal(video["id"])

    assert len(image_done["outputs"]) == 2 and image_done["has_nsfw_contents"] == [False, False]
    bodies = []
    for index, url in enumerate(image_done["outputs"]):
        assert url.endswith(f"/{index}.png")
        response = http.get(url)
        assert response.headers["content-type"] == "image/png"
        assert len(response.content) == 5000
        chunks = _png_chunks(response.content)
        assert [kind for kind, _ in chunks] == [b"IHDR", b"IDAT", b"wsPd", b"IEND"]
        width, height, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
        assert (width, height, depth, color) == (8, 8, 8, 2)
        assert len(zlib.decompress(chunks[1][1])) == 8 * (1 + 8 * 3)
        bodies.append(response.content)
    assert bodies[0] != bodies[1]  # deterministic per (prediction, index), not identical

    mp4 = http.get(video_done["outputs"][0]).content
    assert mp4[4:12] == b"ftypisom"
    assert len(mp4) == 64 * 1024
    pos, kinds = 0, []
    while pos < len(mp4):
        (size,) = struct.unpack(">I", mp4[pos : pos + 4])
        kinds.append(mp4[pos + 4 : pos + 8])
        pos += size
    assert pos == len(mp4) and kinds == [b"ftyp", b"moov", b"free", b"mdat", b"free"]  # a playable video, padded


@pytest.mark.parametrize(("outcome", "code"), [("failed", 1403), ("cancelled", 1405), ("timeout", 5004)])
def test_prompt_magic_forces_failure_outcome_reported_with_http_200(
    api: httpx.Client, submit: Submit, wait_terminal: Wait, outcome: str, code: int
) -> None:
    prediction = submit(**AVATAR_INPUTS, prompt=f"smile [emulator:{outcome}]")
    assert prediction["status"] == "created"
    data = wait_terminal(prediction["id"])
    response = api.get(f"/api/v3/predictions/{prediction['id']}/result")
    assert response.status_code == 200 and response.json()["code"] == 200
    assert data["status"] == outcome
    assert data["code"] == code
    assert data["error"]
    assert data["outputs"] == [] and data["has_nsfw_contents"] == []


def test_next_outcomes_are_popped_in_order_including_nsfw(
    wavespeed_emulator: WaveSpeedEmulator, submit: Submit, wait_terminal: Wait
) -> None:
    wavespeed_emulator.config.next_outcomes = ["failed", "nsfw"]
    first, second, third = submit(), submit(), submit()
    assert wavespeed_emulator.config.next_outcomes == []
    failed, nsfw, normal = wait_terminal(first["id"]), wait_terminal(second["id"]), wait_terminal(third["id"])
    assert (failed["status"], failed["code"]) == ("failed", 1403)
    assert "Task Execution Failed" in failed["error"]
    assert nsfw["status"] == "completed" and nsfw["has_nsfw_contents"] == [True] and len(nsfw["outputs"]) == 1
    assert normal["status"] == "completed" and normal["has_nsfw_contents"] == [False]
    assert [wavespeed_emulator.predictions[p["id"]].outcome for p in (first, second, third)] == [
        "failed",
        "nsfw",
        "completed",
    ]


def test_media_input_that_is_not_an_http_url_fails_with_1402_after_the_run(submit: Submit, wait_terminal: Wait) -> None:
    prediction = submit(image="/home/me/face.png", audio="https://example.com/voice.mp3")
    assert prediction["status"] == "created"  # accepted (and billed) first, like the real API
    data = wait_terminal(prediction["id"])
    assert data["status"] == "failed"
    assert data["code"] == 1402
    assert data["error"] == "Failed to download image from the provided URL."


def test_history_lists_recent_first_and_filters_by_model_status_and_time(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, wait_terminal: Wait, clock: ManualClock
) -> None:
    wavespeed_emulator.config.run_seconds = 0.05
    a = submit()
    clock.advance(0.001)
    b = submit("wavespeed-ai/flux-dev", prompt="x [emulator:failed]")
    wait_terminal(b["id"])
    wavespeed_emulator.config.queue_seconds = 60
    c = submit()
    assert c["created_at"] > b["created_at"]  # the clock moved on while b ran

    def query(**body: Any) -> dict[str, Any]:
        response = api.post("/api/v3/predictions", json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    everything = query(page=1, page_size=100)
    assert everything["total"] == 3 and everything["page"] == 1 and everything["page_size"] == 100
    assert [item["id"] for item in everything["items"]] == [c["id"], b["id"], a["id"]]
    assert everything["items"][1]["status"] == "failed"
    assert [i["id"] for i in query(model="wavespeed-ai/flux-dev")["items"]] == [b["id"]]
    assert [i["id"] for i in query(status="failed")["items"]] == [b["id"]]
    assert [i["id"] for i in query(status="created")["items"]] == [c["id"]]
    assert [i["id"] for i in query(created_after=b["created_at"])["items"]] == [c["id"], b["id"]]
    assert [i["id"] for i in query(created_before=b["created_at"])["items"]] == [b["id"], a["id"]]
    assert query(created_after="2000-01-01T00:00:00+02:00", created_before="2000-01-02")["total"] == 0
    page2 = query(page=2, page_size=2)
    assert page2["total"] == 3 and [i["id"] for i in page2["items"]] == [a["id"]]
    assert query(page_size=1000)["page_size"] == 100
    bad = api.post("/api/v3/predictions", json={"created_after": "yesterday"})
    assert bad.status_code == 400 and "created_after" in bad.json()["message"]
    assert wavespeed_emulator.stats.history_queries == 10


def test_delete_marks_predictions_deleted_and_their_outputs_404(
    http: httpx.Client,
    wavespeed_emulator: WaveSpeedEmulator,
    api: httpx.Client,
    submit: Submit,
    wait_terminal: Wait,
) -> None:
    done = wait_terminal(submit()["id"])
    other = submit()
    output_url = done["outputs"][0]
    assert http.get(output_url).status_code == 200

    response = api.post("/api/v3/predictions/delete", json={"ids": [done["id"], "unknown-id", done["id"]]})
    assert response.json() == {"code": 200, "message": "success", "data": {"deleted_count": 1}}
    data = api.get(f"/api/v3/predictions/{done['id']}/result").json()["data"]
    assert data["status"] == "deleted" and data["outputs"] == [] and data["has_nsfw_contents"] == []
    assert http.get(output_url).status_code == 404
    history = api.post("/api/v3/predictions", json={}).json()["data"]
    assert [item["id"] for item in history["items"]] == [other["id"]]
    again = api.post("/api/v3/predictions/delete", json={"ids": [done["id"]]})
    assert again.json()["data"] == {"deleted_count": 0}
    assert api.post("/api/v3/predictions/delete", json={"ids": "x"}).status_code == 400


def test_balance_is_debited_by_model_price_per_accepted_submit(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit
) -> None:
    assert api.get("/api/v3/balance").json() == {
        "code": 200,
        "message": "success",
        "data": {"balance": 100.0},
    }
    submit()
    submit("wavespeed-ai/flux-dev", prompt="x")
    api.post(f"/api/v3/{AVATAR}", json={})  # rejected: not billed
    assert api.get("/api/v3/balance").json()["data"]["balance"] == pytest.approx(100.0 - 0.15 - 0.025)
    wavespeed_emulator.config.balance = 1.5
    assert api.get("/api/v3/balance").json()["data"]["balance"] == 1.5


def test_models_endpoint_lists_catalogue_with_json_schemas(api: httpx.Client) -> None:
    envelope = api.get("/api/v3/models").json()
    assert envelope["code"] == 200
    models = {m["model_id"]: m for m in envelope["data"]}
    assert set(models) >= {
        "wavespeed-ai/hunyuan-avatar",  # README, example DAGs, scripts/demo.py
        "wavespeed-ai/infinitetalk",
        "wavespeed-ai/flux-dev",  # the daily example DAG
        "wavespeed-ai/z-image/turbo",  # the official Python SDK's README
    }
    assert any(m["type"].endswith("-to-video") and m["model_id"] != AVATAR for m in models.values())
    avatar = models[AVATAR]
    assert avatar["type"] == "image-to-video" and avatar["base_price"] == 0.15 and avatar["name"]
    (schema_entry,) = avatar["api_schema"]["api_schemas"]
    assert schema_entry["type"] == "model_run"
    schema = schema_entry["request_schema"]
    assert schema["type"] == "object"
    assert schema["required"] == ["image", "audio"]
    assert schema["x-order-properties"] == ["image", "audio", "prompt", "resolution", "seed"]
    props = schema["properties"]
    assert props["resolution"] == {
        "type": "string",
        "description": "The resolution of the output video.",
        "enum": ["480p", "720p"],
        "default": "480p",
    }
    assert (props["seed"]["type"], props["seed"]["minimum"], props["seed"]["maximum"]) == (
        "integer",
        -1,
        2147483647,
    )
    flux = models["wavespeed-ai/flux-dev"]
    assert flux["type"] == "text-to-image" and flux["base_price"] == 0.025
    flux_props = flux["api_schema"]["api_schemas"][0]["request_schema"]["properties"]
    assert flux_props["num_images"]["minimum"] == 1 and flux_props["num_images"]["maximum"] == 4
    assert flux_props["enable_safety_checker"]["type"] == "boolean"


def test_models_endpoint_status_switch_simulates_catalogue_outage(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client
) -> None:
    wavespeed_emulator.config.models_endpoint_status = 503
    response = api.get("/api/v3/models")
    assert response.status_code == 503
    assert response.json()["code"] == 503 and response.json()["data"] is None
