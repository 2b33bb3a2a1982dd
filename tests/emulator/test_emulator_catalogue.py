"""A catalogue users extend: model objects in the shape GET /api/v3/models lists, from a file, code or HTTP."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import CATALOGUE, EmulatorConfig, ModelSpec, WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.cli import main
from airflow_provider_wavespeed.emulator.models import ModelCatalogueError, load_models

REPO_ROOT = Path(__file__).resolve().parents[2]
AVATAR = "wavespeed-ai/hunyuan-avatar"

LIPSYNC: dict[str, Any] = {
    "model_id": "acme/lipsync-pro",
    "name": "Lipsync Pro",
    "description": "A user's own model.",
    "type": "video-to-video",
    "base_price": 0.4,
    "api_schema": {
        "api_schemas": [
            {
                "type": "model_run",
                "request_schema": {
                    "type": "object",
                    "properties": {
                        "video": {"type": "string", "description": "Video", "x-ui-component": "uploader"},
                        "audio": {"type": "string", "description": "Audio", "x-ui-component": "uploader"},
                        "fps": {"type": "integer", "description": "Frames per second", "enum": [24, 30]},
                        "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
                    },
                    "required": ["video", "audio"],
                    "x-order-properties": ["video", "audio", "fps", "strength"],
                },
            }
        ]
    },
}


DATE = {"type": "date"}


def _emulator_api(emulator: WaveSpeedEmulator) -> httpx.Client:
    return httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Bearer {emulator.api_key}"}, timeout=30)


def test_user_models_are_listed_validated_and_run_like_built_ins() -> None:
    config = EmulatorConfig(queue_seconds=0, run_seconds=0)
    with WaveSpeedEmulator(config, models=[LIPSYNC]) as emulator, _emulator_api(emulator) as api:
        listed = {m["model_id"]: m for m in api.get("/api/v3/models").json()["data"]}
        assert set(listed) == set(CATALOGUE) | {"acme/lipsync-pro"}
        schema = listed["acme/lipsync-pro"]["api_schema"]["api_schemas"][0]["request_schema"]
        assert schema["required"] == ["video", "audio"] and schema["properties"]["fps"]["enum"] == [24, 30]

        bad = api.post("/api/v3/acme/lipsync-pro", json={"video": "https://e.com/v.mp4", "audio": "x", "fps": 25})
        assert bad.status_code == 400 and "Invalid parameter 'fps': must be one of 24, 30" in bad.json()["message"]
        missing = api.post("/api/v3/acme/lipsync-pro", json={"video": "https://e.com/v.mp4"})
        assert missing.json()["message"] == "Missing required parameter: audio"

        body = {"video": "https://e.com/v.mp4", "audio": "https://e.com/a.mp3", "fps": 30}
        created = api.post("/api/v3/acme/lipsync-pro", json=body).json()["data"]
        done = api.get(created["urls"]["get"]).json()["data"]
        assert done["status"] == "completed" and done["outputs"][0].endswith(".mp4")  # a video type: mp4
        assert emulator.predictions[created["id"]].inputs["strength"] == 0.5  # default filled in
        assert api.get("/api/v3/balance").json()["data"]["balance"] == pytest.approx(100 - 0.4)
        local = api.post("/api/v3/acme/lipsync-pro", json={**body, "video": "/tmp/v.mp4"}).json()["data"]
        assert api.get(local["urls"]["get"]).json()["data"]["code"] == 1402  # uploader fields are media


def test_a_models_file_may_hold_a_list_or_a_saved_models_reply_and_replaces_built_ins_by_id(tmp_path: Path) -> None:
    cheaper = {**CATALOGUE[AVATAR].to_api(), "base_price": 0.01}
    plain, saved = tmp_path / "models.json", tmp_path / "saved.json"
    plain.write_text(json.dumps([LIPSYNC]))
    saved.write_text(json.dumps({"code": 200, "message": "success", "data": [cheaper]}))
    with WaveSpeedEmulator(models=str(plain)) as first:
        assert "acme/lipsync-pro" in first.catalogue
    with WaveSpeedEmulator(models=saved) as second:
        assert second.catalogue[AVATAR].base_price == 0.01
        assert len(second.catalogue) == len(CATALOGUE)


def test_every_built_in_model_round_trips_through_its_served_json() -> None:
    for spec in CATALOGUE.values():
        assert ModelSpec.from_api(json.loads(json.dumps(spec.to_api()))) == spec


def test_hunyuan_avatar_stays_exactly_as_documented() -> None:
    entry = CATALOGUE[AVATAR].to_api()
    schema = entry["api_schema"]["api_schemas"][0]["request_schema"]
    assert set(schema["properties"]) == {"audio", "image", "prompt", "resolution", "seed"}
    assert sorted(schema["required"]) == ["audio", "image"]
    assert schema["properties"]["resolution"]["enum"] == ["480p", "720p"]
    assert schema["properties"]["resolution"]["default"] == "480p"
    assert "default" not in schema["properties"]["seed"]
    assert (schema["properties"]["seed"]["minimum"], schema["properties"]["seed"]["maximum"]) == (-1, 2147483647)
    assert entry["base_price"] == 0.15 and entry["type"] == "image-to-video"


def test_models_whose_real_schema_declares_sync_and_base64_declare_them() -> None:
    for model_id in ("wavespeed-ai/z-image/turbo", "wavespeed-ai/flux-dev", "bytedance/seedream-v4.5"):
        props = CATALOGUE[model_id].request_schema()["properties"]
        assert props["enable_sync_mode"] == {**props["enable_sync_mode"], "type": "boolean", "default": False}
        assert props["enable_base64_output"]["type"] == "boolean"
    for model_id in (AVATAR, "wavespeed-ai/infinitetalk", "wavespeed-ai/wan-2.2/t2v-480p"):
        assert not CATALOGUE[model_id].declares("enable_sync_mode")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "x"}, "model_id must be a non-empty path"),
        ({"model_id": "a/b", "base_price": -1}, "base_price must be a number >= 0"),
        ({"model_id": "a/b"}, "request_schema is missing"),
        (
            {
                "model_id": "a/b",
                "api_schema": {"api_schemas": [{"request_schema": {"properties": {"x": {"type": "date"}}}}]},
            },
            "property 'x': type must be one of",
        ),
        (
            {**LIPSYNC, "x-emulator": {"output_kind": "gif"}},
            "x-emulator.output_kind must be one of mp4, png, wav",
        ),
        (
            {**LIPSYNC, "x-emulator": {"pricing": {"per_seconds_of": "audio", "unit_seconds": 0, "max_seconds": 5}}},
            "pricing.unit_seconds must be a number > 0",
        ),
    ],
)
def test_a_bad_model_object_is_refused_naming_the_model_and_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelCatalogueError, match=message):
        load_models([entry])


def test_a_user_model_can_price_by_audio_duration(tmp_path: Path) -> None:
    priced = {**LIPSYNC, "x-emulator": {"pricing": {"per_seconds_of": "audio", "unit_seconds": 10, "max_seconds": 60}}}
    config = EmulatorConfig(
        queue_seconds=0, run_seconds=0, model_output_size={"minimax/speech-02-hd": 44 + 32_000 * 25}
    )
    with WaveSpeedEmulator(config, models=[priced]) as emulator, _emulator_api(emulator) as api:
        speech = api.post("/api/v3/minimax/speech-02-hd", json={"text": "hi"}).json()["data"]
        audio = api.get(speech["urls"]["get"]).json()["data"]["outputs"][0]
        quote = api.post("/api/v3/model/pricing", json={"model_id": "acme/lipsync-pro", "inputs": {"audio": audio}})
        assert quote.json()["data"]["unit_price"] == pytest.approx(3 * 0.4)  # 25 s: three started 10 s units


def test_models_can_be_added_over_http_and_reset_forgets_them(
    http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator
) -> None:
    control = f"{wavespeed_emulator.base_url}/_emulator"
    added = http.post(f"{control}/models", json=[LIPSYNC])
    assert added.status_code == 200 and added.json()["data"] == {"added": ["acme/lipsync-pro"]}
    assert "acme/lipsync-pro" in wavespeed_emulator.catalogue
    refused = http.post(f"{control}/models", json=[{"model_id": ""}])
    assert refused.status_code == 400 and "model_id" in refused.json()["message"]
    assert http.post(f"{control}/models", json={"not": "a list"}).status_code == 400
    wavespeed_emulator.reset()
    assert "acme/lipsync-pro" not in wavespeed_emulator.catalogue
    assert wavespeed_emulator.add_models([LIPSYNC]) == ["acme/lipsync-pro"]


def test_cli_models_flag_serves_the_files_models(tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps([LIPSYNC]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "airflow_provider_wavespeed.emulator", "--port", "0", "--models", str(models)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the CLI did not print its banner within 60 s"
        base = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        headers = {"Authorization": "Bearer ws-emulator-key"}
        listed = httpx.get(f"{base}/api/v3/models", headers=headers).json()["data"]
        assert "acme/lipsync-pro" in {m["model_id"] for m in listed}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def test_cli_refuses_an_unreadable_models_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["--models", str(broken)]) == 2
    assert "cannot read models file" in capsys.readouterr().err
    assert main(["--models", str(tmp_path / "absent.json")]) == 2
