"""Price quotes on both documented endpoints, per-model formulas, and billing by the quote."""

from __future__ import annotations

import io
import struct
import wave
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.audio import wav_duration
from airflow_provider_wavespeed.emulator.media import expected_output_bytes, wav_duration_for_size
from airflow_provider_wavespeed.emulator.pricing import PerSecondsPricing

Submit = Callable[..., dict[str, Any]]
Wait = Callable[[str], dict[str, Any]]

AVATAR = "wavespeed-ai/hunyuan-avatar"
TTS = "minimax/speech-02-hd"
FACE = "https://example.com/face.png"


def _wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x00" * round(seconds * rate))
    return buffer.getvalue()


def _upload(api: httpx.Client, http: httpx.Client, name: str, payload: bytes) -> str:
    ticket = api.post("/api/v3/media/uploads", json={"filename": name, "size": len(payload)}).json()["data"]
    assert http.put(ticket["upload"]["url"], content=payload, headers=ticket["upload"]["headers"]).is_success
    url: str = ticket["download_url"]
    return url


def _pricing(api: httpx.Client, model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/v3/model/pricing", json={"model_id": model, "inputs": inputs})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _price(api: httpx.Client, model: str, inputs: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/v3/model/price", json={"model_id": model, "inputs": inputs})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def test_both_pricing_endpoints_quote_the_base_price_in_their_own_shapes(api: httpx.Client) -> None:
    inputs = {"image": FACE, "audio": "https://example.com/voice.mp3"}  # duration unknown: base price
    assert _pricing(api, AVATAR, inputs) == {"model_id": AVATAR, "unit_price": 0.15, "currency": "USD"}
    assert _price(api, AVATAR, inputs) == {
        "model_id": AVATAR,
        "price": 0.15,
        "discounted_price": 0.15,
        "currency": "USD",
    }
    assert _pricing(api, "wavespeed-ai/flux-dev", {"prompt": "x"})["unit_price"] == 0.025
    assert _pricing(api, AVATAR, {})["unit_price"] == 0.15  # a partial quote collapses to the base price


@pytest.mark.parametrize(
    ("seconds", "price"),
    [(0.5, 0.15), (5.0, 0.15), (5.01, 0.30), (12.0, 0.45), (119.0, 3.60), (120.0, 3.60), (300.0, 3.60)],
)
def test_hunyuan_avatar_costs_015_per_started_5_seconds_of_uploaded_audio_up_to_120_s(
    api: httpx.Client, http: httpx.Client, seconds: float, price: float
) -> None:
    audio = _upload(api, http, "voice.wav", _wav_bytes(seconds))
    inputs = {"image": FACE, "audio": audio}
    assert _pricing(api, AVATAR, inputs)["unit_price"] == pytest.approx(price)
    assert _price(api, AVATAR, inputs)["price"] == pytest.approx(price)


def test_the_emulators_own_speech_output_has_a_known_duration_that_prices_the_avatar(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, wait_terminal: Wait
) -> None:
    wavespeed_emulator.config.model_output_size = {TTS: 44 + 32_000 * 12}  # 12 s of 16 kHz 16-bit mono
    speech = wait_terminal(submit(TTS, text="hello")["id"])
    (audio_url,) = speech["outputs"]
    assert audio_url.endswith(".wav")
    data = httpx.get(audio_url).content
    with wave.open(io.BytesIO(data)) as clip:  # a real WAV file
        assert clip.getnframes() / clip.getframerate() == pytest.approx(12.0)
    assert _pricing(api, AVATAR, {"image": FACE, "audio": audio_url})["unit_price"] == pytest.approx(0.45)


def test_an_accepted_submit_is_billed_its_quote(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, http: httpx.Client, submit: Submit
) -> None:
    audio = _upload(api, http, "voice.wav", _wav_bytes(60))
    quoted = _pricing(api, AVATAR, {"image": FACE, "audio": audio})["unit_price"]
    assert quoted == pytest.approx(1.80)
    prediction = submit(AVATAR, image=FACE, audio=audio)
    assert api.get("/api/v3/balance").json()["data"]["balance"] == pytest.approx(100 - 1.80)
    assert wavespeed_emulator.predictions[prediction["id"]].price == pytest.approx(1.80)
    assert wavespeed_emulator.stats.quotes == 1


def test_mp3_or_foreign_audio_is_priced_at_the_base_price(api: httpx.Client, http: httpx.Client) -> None:
    mp3 = _upload(api, http, "voice.mp3", b"ID3" + b"\x00" * 1000)
    assert _pricing(api, AVATAR, {"image": FACE, "audio": mp3})["unit_price"] == 0.15


@pytest.mark.parametrize(
    ("switch", "path", "other"),
    [
        ("pricing_endpoint_enabled", "/api/v3/model/pricing", "/api/v3/model/price"),
        ("price_endpoint_enabled", "/api/v3/model/price", "/api/v3/model/pricing"),
    ],
)
def test_each_pricing_endpoint_can_be_switched_off_on_its_own(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, switch: str, path: str, other: str
) -> None:
    wavespeed_emulator.configure(**{switch: False})
    body = {"model_id": AVATAR, "inputs": {}}
    off = api.post(path, json=body)
    assert off.status_code == 404 and off.json()["data"] is None
    assert api.post(other, json=body).status_code == 200
    assert wavespeed_emulator.stats.submit_attempts == 0  # not mistaken for a model called "model/..."


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"inputs": {}}, 400, "Missing required parameter: model_id"),
        ({"model_id": AVATAR, "inputs": [1]}, 400, "Invalid parameter 'inputs'"),
        ({"model_id": "acme/none", "inputs": {}}, 404, "model not found: acme/none"),
    ],
)
def test_pricing_requests_are_validated(api: httpx.Client, body: dict[str, Any], status: int, message: str) -> None:
    for path in ("/api/v3/model/pricing", "/api/v3/model/price"):
        response = api.post(path, json=body)
        assert response.status_code == status and message in response.json()["message"]


def test_pricing_needs_the_api_key(http: httpx.Client, wavespeed_emulator: WaveSpeedEmulator) -> None:
    response = http.post(f"{wavespeed_emulator.base_url}/api/v3/model/pricing", json={"model_id": AVATAR})
    assert response.status_code == 401


def test_wav_header_parsing_and_sizes_agree() -> None:
    data = expected_output_bytes("p", 0, 44 + 32_000 * 3 + 1, "wav")
    assert wav_duration(data[:4096], len(data)) == pytest.approx(3.0) == wav_duration_for_size(len(data))
    assert wav_duration(_wav_bytes(2.5)) == pytest.approx(2.5)
    assert wav_duration(b"ID3\x00" * 10) is None
    riff_with_extra_chunk = _wav_bytes(1.0).replace(b"data", b"LIST" + struct.pack("<I", 4) + b"INFOdata", 1)
    assert wav_duration(riff_with_extra_chunk) == pytest.approx(1.0)


def test_pricing_rule_rounds_up_to_started_units_and_caps() -> None:
    rule = PerSecondsPricing("audio", unit_seconds=5, max_seconds=120)
    assert [rule.units(s) for s in (0, 4.9, 5, 5.1, 119.9, 120, 500)] == [1, 1, 1, 2, 24, 24, 24]
