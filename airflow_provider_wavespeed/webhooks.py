"""Verify the webhooks WaveSpeed sends when a prediction finishes (no Airflow imports).

WaveSpeed POSTs the bare prediction object to the ``?webhook=`` URL of the submit, signed the way
https://wavespeed.ai/docs/docs-api/verifying_webhook describes: ``webhook-signature: v3,<hex>``
where ``<hex>`` is the lowercase HMAC-SHA256 of ``{webhook-id}.{webhook-timestamp}.{raw body}``,
keyed with your webhook secret (``GET /api/v3/webhook/secret``) minus its ``whsec_`` prefix, and
NOT base64-decoded (unlike "Standard Webhooks").

>>> prediction = verify_webhook(request.headers, request.get_data(), secret)  # raises on any doubt
>>> prediction["id"], prediction["status"], prediction["outputs"]

Pass the raw body bytes exactly as received: a re-serialised JSON body does not verify.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_wavespeed.api.errors import WaveSpeedWebhookError

__all__ = ["DEFAULT_TOLERANCE", "WaveSpeedWebhookError", "verify_webhook", "webhook_signature"]

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v3"
#: The replay window of the official examples (``WebhookMaxAgeSeconds``), in seconds.
DEFAULT_TOLERANCE = 300.0


def webhook_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 WaveSpeed puts after ``v3,`` for this message."""
    key = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    return hmac.new(key.encode(), f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            if not value.strip():
                break
            return value.strip()
    raise WaveSpeedWebhookError(f"Invalid webhook: the {name} header is missing or empty")


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a received webhook and return the prediction it carries.

    ``headers`` are matched case-insensitively; ``body`` is the raw request body; ``secret`` is the
    ``whsec_...`` value of ``GET /api/v3/webhook/secret``. The timestamp must be within
    ``tolerance`` seconds of ``now`` (default: the current time) either way.

    Raises ``WaveSpeedWebhookError`` for missing or malformed headers, a timestamp outside the replay
    window, a signature that does not match (compared in constant time) or a body that is not a
    JSON object.
    """
    if not secret:
        raise WaveSpeedWebhookError("Cannot verify a webhook without the webhook secret")
    webhook_id = _header(headers, "webhook-id")
    timestamp = _header(headers, "webhook-timestamp")
    signature_header = _header(headers, "webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WaveSpeedWebhookError(
            f"Invalid webhook: webhook-timestamp must be unix seconds, got {timestamp[:40]!r}"
        ) from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WaveSpeedWebhookError(
            f"Invalid webhook: its timestamp is {current - sent_at:+.0f} s from now, outside the "
            f"{tolerance:g} s replay window (a replayed or delayed delivery, or a wrong clock)"
        )
    candidates = []
    for entry in signature_header.split():  # several signatures may be sent, space-separated
        version, _, value = entry.partition(",")
        if version == SIGNATURE_VERSION and value:
            candidates.append(value)
    if not candidates:
        raise WaveSpeedWebhookError("Invalid webhook: webhook-signature must look like 'v3,<hex signature>'")
    expected = webhook_signature(secret, webhook_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in candidates):
        raise WaveSpeedWebhookError(
            "Invalid webhook: the signature does not match (wrong secret, or the body was changed; "
            "verify the raw bytes as received)"
        )
    try:
        prediction = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WaveSpeedWebhookError(f"Invalid webhook: the body is not JSON ({exc})") from None
    if not isinstance(prediction, dict):
        raise WaveSpeedWebhookError("Invalid webhook: the body is not a JSON object")
    return prediction
