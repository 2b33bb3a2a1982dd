"""``verify_webhook``: the public helper for users who receive WaveSpeed webhooks (no HTTP here)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from airflow_provider_wavespeed.api.errors import WaveSpeedError, WaveSpeedWebhookError
from airflow_provider_wavespeed.emulator.webhooks import signature as emulator_signature
from airflow_provider_wavespeed.webhooks import verify_webhook, webhook_signature

SECRET = "whsec_e9EE3BdyXSxcB4ZyZUKjQUEoQX4sF9P1+eMpb/KluCM="  # the docs' example format
# The docs' signed example body (wavespeed-api.md 6.2), raw bytes.
BODY = (
    b'{"id":"45b392b22c3b449fa935bd4dc","model":"wavespeed-ai/flux-dev","outputs":["https://d2p7pge43lyniu'
    b'.cloudfront.net/output/18058184.jpeg"],"urls":{"get":"https://api.wavespeed.ai/api/v3/predictions/45b392b'
    b'22c3b449fa935bd4dc2219dfe/result"},"has_nsfw_contents":[false],"status":"completed","created_at":"2025-09'
    b'-25T09:12:48.239112031Z","error":"","executionTime":6710,"timings":{"inference":6710}}'
)
WEBHOOK_ID = "msg_2f8d1c"
NOW = 1_758_791_600


def official_demo_signature(payload: bytes, webhook_id: str, timestamp: str, secret: str) -> str:
    """The official Python demo's algorithm (wavespeed-api.md 6.3), line for line."""
    signed_content = f"{webhook_id}.{timestamp}.{payload.decode()}".encode()
    key_without_prefix = secret[6:] if secret.startswith("whsec_") else secret
    return hmac.new(key_without_prefix.encode(), signed_content, hashlib.sha256).hexdigest()


def _headers(timestamp: int = NOW, signature: str | None = None, body: bytes = BODY) -> dict[str, str]:
    sig = signature if signature is not None else "v3," + webhook_signature(SECRET, WEBHOOK_ID, str(timestamp), body)
    return {"webhook-id": WEBHOOK_ID, "webhook-timestamp": str(timestamp), "webhook-signature": sig}


def test_our_signature_and_the_emulators_match_the_official_python_demo() -> None:
    expected = official_demo_signature(BODY, WEBHOOK_ID, str(NOW), SECRET)
    assert webhook_signature(SECRET, WEBHOOK_ID, str(NOW), BODY) == expected
    assert emulator_signature(SECRET, WEBHOOK_ID, str(NOW), BODY) == f"v3,{expected}"
    assert expected == expected.lower() and len(expected) == 64
    # The key is the text after "whsec_", used as is: not base64-decoded.
    assert expected == hmac.new(SECRET[6:].encode(), f"{WEBHOOK_ID}.{NOW}.".encode() + BODY, "sha256").hexdigest()


def test_a_valid_webhook_returns_the_prediction() -> None:
    prediction = verify_webhook(_headers(), BODY, SECRET, now=NOW + 10)
    assert prediction == json.loads(BODY)


def test_header_names_are_matched_case_insensitively() -> None:
    headers = {name.title(): value for name, value in _headers().items()}
    assert verify_webhook(headers, BODY, SECRET, now=NOW)["id"] == "45b392b22c3b449fa935bd4dc"


def test_one_matching_signature_among_several_is_enough() -> None:
    good = _headers()["webhook-signature"]
    headers = _headers(signature=f"v3,{'0' * 64} {good}")
    assert verify_webhook(headers, BODY, SECRET, now=NOW)["status"] == "completed"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-signature": "v3," + "0" * 64}, "signature does not match"),
        ({"webhook-signature": "v1," + "0" * 64}, "must look like 'v3,<hex signature>'"),
        ({"webhook-signature": "deadbeef"}, "must look like 'v3,<hex signature>'"),
        ({"webhook-signature": ""}, "webhook-signature header is missing"),
        ({"webhook-id": "msg_other"}, "signature does not match"),
        ({"webhook-timestamp": "yesterday"}, "must be unix seconds"),
    ],
)
def test_bad_headers_are_rejected_with_a_clear_error(change: dict[str, str], message: str) -> None:
    with pytest.raises(WaveSpeedWebhookError, match=message):
        verify_webhook({**_headers(), **change}, BODY, SECRET, now=NOW)


def test_a_missing_header_is_named() -> None:
    headers = _headers()
    del headers["webhook-id"]
    with pytest.raises(WaveSpeedWebhookError, match="webhook-id header is missing"):
        verify_webhook(headers, BODY, SECRET, now=NOW)


def test_a_changed_body_or_a_wrong_secret_fails_the_signature() -> None:
    with pytest.raises(WaveSpeedWebhookError, match="signature does not match"):
        verify_webhook(_headers(), BODY.replace(b"completed", b"failed"), SECRET, now=NOW)
    with pytest.raises(WaveSpeedWebhookError, match="signature does not match"):
        verify_webhook(_headers(), BODY, "whsec_other", now=NOW)
    with pytest.raises(WaveSpeedWebhookError, match="without the webhook secret"):
        verify_webhook(_headers(), BODY, "", now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, 10_000])
def test_a_timestamp_outside_the_replay_window_is_rejected(offset: int) -> None:
    with pytest.raises(WaveSpeedWebhookError, match="outside the 300 s replay window"):
        verify_webhook(_headers(), BODY, SECRET, now=NOW + offset)


def test_the_replay_window_is_inclusive_and_adjustable() -> None:
    assert verify_webhook(_headers(), BODY, SECRET, now=NOW + 300)
    assert verify_webhook(_headers(), BODY, SECRET, now=NOW - 300)
    with pytest.raises(WaveSpeedWebhookError, match="outside the 30 s replay window"):
        verify_webhook(_headers(), BODY, SECRET, now=NOW + 31, tolerance=30)


def test_a_signed_body_that_is_not_a_json_object_is_rejected() -> None:
    for body in (b"[1, 2]", b"not json"):
        with pytest.raises(WaveSpeedWebhookError, match=r"not a JSON object|not JSON"):
            verify_webhook(_headers(body=body), body, SECRET, now=NOW)


def test_the_error_belongs_to_the_one_exception_hierarchy_and_never_shows_the_secret() -> None:
    with pytest.raises(WaveSpeedError) as info:
        verify_webhook(_headers(signature="v3,00"), BODY, SECRET, now=NOW)
    assert isinstance(info.value, WaveSpeedWebhookError) and SECRET[6:] not in str(info.value)
