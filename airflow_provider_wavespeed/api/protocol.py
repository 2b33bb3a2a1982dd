"""Sans-I/O WaveSpeed v3 protocol: build requests, parse replies into data or typed errors.

The sync and async clients differ only in how they send an :class:`ApiRequest`; everything about
paths, bodies, the ``code/message/data`` envelope and error mapping lives here, once.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedAPIError,
    WaveSpeedAuthError,
    WaveSpeedConfigError,
    WaveSpeedNotFoundError,
    WaveSpeedRateLimitError,
    WaveSpeedRequestError,
    WaveSpeedServerError,
)

API_PREFIX = "/api/v3"
HISTORY_PAGE_SIZE_MAX = 100

_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")
_PREDICTION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


@dataclass(frozen=True)
class ApiRequest:
    """One WaveSpeed API call. ``retry_safe`` says whether repeating it can never create or bill anything."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    retry_safe: bool = True
    #: Read timeout for this request instead of the client's (a sync-mode submit waits for the result).
    read_timeout: float | None = None


#: A sync-mode submit waits for the result; the API's sync window is 90-120 s (not documented exactly).
SYNC_MODE_READ_TIMEOUT = 150.0


def check_model_id(model: str) -> str:
    model = model.strip() if isinstance(model, str) else model
    if not isinstance(model, str) or not _MODEL_ID.match(model) or ".." in model:
        raise WaveSpeedConfigError(
            f"model must be a WaveSpeed model id such as 'wavespeed-ai/hunyuan-avatar' (owner/name), got {model!r}"
        )
    return model


def check_prediction_id(prediction_id: str) -> str:
    if not isinstance(prediction_id, str) or not _PREDICTION_ID.match(prediction_id.strip()):
        raise WaveSpeedConfigError(
            f"prediction_id must be the id returned by a submit (letters, digits, '-' or '_'), got {prediction_id!r}"
        )
    return prediction_id.strip()


def check_submit_options(inputs: Mapping[str, Any], webhook: str | None) -> None:
    """Combinations the API rejects, refused before anything is sent."""
    if webhook and inputs.get("enable_base64_output") is True:
        raise WaveSpeedConfigError(
            "enable_base64_output cannot be combined with a webhook (the API answers 400: webhooks carry "
            "URLs, not base64): drop the webhook or enable_base64_output"
        )


def submit(model: str, inputs: Mapping[str, Any], *, webhook: str | None = None) -> ApiRequest:
    """The billed, non-idempotent POST. The body is the model's flat inputs (no ``input`` wrapper).

    With ``enable_sync_mode: true`` the reply carries the finished prediction, so the read timeout
    covers the API's sync window.
    """
    if not isinstance(inputs, Mapping):
        raise WaveSpeedConfigError(f"inputs must be a dict of model inputs, got {type(inputs).__name__}")
    check_submit_options(inputs, webhook)
    params = {"webhook": webhook} if webhook else {}
    sync = inputs.get("enable_sync_mode") is True
    return ApiRequest(
        "POST",
        f"{API_PREFIX}/{check_model_id(model)}",
        dict(inputs),
        params,
        retry_safe=False,
        read_timeout=SYNC_MODE_READ_TIMEOUT if sync else None,
    )


def get_result(prediction_id: str) -> ApiRequest:
    return ApiRequest("GET", f"{API_PREFIX}/predictions/{check_prediction_id(prediction_id)}/result")


def list_predictions(
    *,
    model: str | None = None,
    status: str | None = None,
    created_after: str | None = None,
    created_before: str | None = None,
    page: int = 1,
    page_size: int = HISTORY_PAGE_SIZE_MAX,
) -> ApiRequest:
    """Prediction history (last 7 days, most recent first). A POST, but a read: safe to retry."""
    body: dict[str, Any] = {"page": page, "page_size": min(page_size, HISTORY_PAGE_SIZE_MAX)}
    for key, value in (
        ("model", model),
        ("status", status),
        ("created_after", created_after),
        ("created_before", created_before),
    ):
        if value is not None:
            body[key] = value
    return ApiRequest("POST", f"{API_PREFIX}/predictions", body)


def delete_predictions(prediction_ids: list[str]) -> ApiRequest:
    """The documented delete (``POST /api/v3/predictions/delete``, ``{"ids": [...]}``): reply ``deleted_count``.
    Unknown ids are ignored by the API, so repeating it is safe."""
    return ApiRequest("POST", f"{API_PREFIX}/predictions/delete", json={"ids": list(prediction_ids)})


def delete_prediction_legacy(prediction_id: str) -> ApiRequest:
    """The older ``DELETE /api/v3/predictions/{id}`` ("cancel or delete tasks"): reply ``status: deleted``."""
    return ApiRequest("DELETE", f"{API_PREFIX}/predictions/{check_prediction_id(prediction_id)}")


def get_balance() -> ApiRequest:
    return ApiRequest("GET", f"{API_PREFIX}/balance")


def list_models() -> ApiRequest:
    return ApiRequest("GET", f"{API_PREFIX}/models")


PRICING_PATH = f"{API_PREFIX}/model/pricing"
PRICE_PATH = f"{API_PREFIX}/model/price"


def quote(model: str, inputs: Mapping[str, Any], *, path: str = PRICING_PATH) -> ApiRequest:
    """A price quote for one run (a POST, but a read: safe to retry). The docs name ``/model/pricing``
    (``data.unit_price``); the official MCP server uses ``/model/price`` (``data.price``,
    ``data.discounted_price``): :func:`price_of` reads either."""
    return ApiRequest("POST", path, {"model_id": check_model_id(model), "inputs": dict(inputs)})


def price_of(data: Any) -> float | None:
    """USD to be billed from either pricing reply: the discounted price when given, else the price."""
    if not isinstance(data, dict):
        return None
    for key in ("discounted_price", "unit_price", "price"):
        value = data.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
    return None


def create_upload(filename: str, size: int, content_type: str | None) -> ApiRequest:
    body: dict[str, Any] = {"filename": filename, "size": size}
    if content_type:
        body["content_type"] = content_type
    # Creating a ticket bills nothing, so a retry can at worst leave an unused ticket.
    return ApiRequest("POST", f"{API_PREFIX}/media/uploads", body)


LEGACY_UPLOAD_PATH = f"{API_PREFIX}/media/upload/binary"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _error_message(payload: Any, body: bytes) -> str:
    if isinstance(payload, dict):
        for key in ("message", "error", "detail", "msg"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
    text = body.decode("utf-8", errors="replace").strip()
    return text[:300] if text else "(empty reply)"


def error_for(
    status_code: int, message: str, *, path: str, headers: Mapping[str, str] | None = None
) -> WaveSpeedAPIError:
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    if status_code in (401, 403):
        return WaveSpeedAuthError(status_code, message, path=path)
    if status_code == 404:
        return WaveSpeedNotFoundError(status_code, message, path=path)
    if status_code == 429:
        return WaveSpeedRateLimitError(message, path=path, retry_after=retry_after)
    if status_code >= 500:
        return WaveSpeedServerError(status_code, message, path=path, retry_after=retry_after)
    return WaveSpeedRequestError(status_code, message, path=path)


def parse_reply(request: ApiRequest, status_code: int, headers: Mapping[str, str], body: bytes) -> Any:
    """Return the envelope's ``data``, or raise the typed error for an HTTP or envelope failure."""
    try:
        payload: Any = json.loads(body) if body else None
    except ValueError:
        payload = None
    if not 200 <= status_code < 300:
        raise error_for(status_code, _error_message(payload, body), path=request.path, headers=headers)
    if not isinstance(payload, dict):
        raise WaveSpeedServerError(status_code, f"reply is not a JSON envelope: {body[:200]!r}", path=request.path)
    code = payload.get("code", 200)
    if isinstance(code, int) and code != 200:
        raise error_for(code, _error_message(payload, body), path=request.path, headers=headers)
    return payload.get("data")
