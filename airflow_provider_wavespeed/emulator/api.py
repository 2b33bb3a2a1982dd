"""Handlers of the authenticated ``/api/v3`` endpoints (routing, auth and faults live in ``app.py``)."""

from __future__ import annotations

import asyncio
import functools
import json
import mimetypes
import os
from typing import Any
from urllib.parse import quote as url_quote

from airflow_provider_wavespeed.emulator.audio import served_media_duration
from airflow_provider_wavespeed.emulator.config import OUTCOMES
from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.limits import retry_after_header
from airflow_provider_wavespeed.emulator.models import (
    BASE64_FLAG,
    SYNC_FLAG,
    InputError,
    ModelSpec,
    catalogue_json,
    media_problem,
    validate_inputs,
)
from airflow_provider_wavespeed.emulator.multipart import (
    MultipartError,
    boundary_from_content_type,
    parse_multipart_file,
)
from airflow_provider_wavespeed.emulator.pricing import CURRENCY, quote
from airflow_provider_wavespeed.emulator.state import (
    MAX_PAGE_SIZE,
    MEDIA_FAILURE_CODE,
    STATUSES,
    HistoryQuery,
    OtherTraffic,
    PredictionRecord,
    UploadRecord,
    parse_timestamp,
)
from airflow_provider_wavespeed.emulator.wire import Request, Response, dropped, error, json_response, ok

#: Prompt markers that force a terminal outcome, e.g. "a cat [emulator:failed]".
PROMPT_MAGIC = {f"[emulator:{outcome}]": outcome for outcome in OUTCOMES}
#: wavespeed-api.md 6.1 / the base64-output doc: the API's words for this 400.
BASE64_WEBHOOK_ERROR = "webhook callback does not support base64 output, please use the normal API to use base64 output"
SYNC_TIMEOUT_CODE = 5004
SYNC_POLL_SECONDS = 0.01
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout", "deleted"})


class BadRequest(ValueError):
    """Answer 400 with this message."""


def parse_json_object(request: Request, *, empty_ok: bool = True) -> dict[str, Any]:
    if not request.body.strip():
        if empty_ok:
            return {}
        raise BadRequest("Invalid JSON body: the request body is empty")
    try:
        value = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Invalid JSON body: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest("Invalid JSON body: expected a JSON object")
    return value


def choose_outcome(ctx: AppContext, inputs: dict[str, Any]) -> str:
    """Prompt magic first; otherwise pop ``next_outcomes``; otherwise ``completed``."""
    prompt = inputs.get("prompt")
    if isinstance(prompt, str):
        for marker, outcome in PROMPT_MAGIC.items():
            if marker in prompt:
                return outcome
    if ctx.config.next_outcomes:
        outcome = ctx.config.next_outcomes.pop(0)
        if outcome not in OUTCOMES:
            raise ValueError(f"next_outcomes holds an unknown outcome {outcome!r}; use one of {OUTCOMES}")
        return outcome
    return "completed"


def price_of(ctx: AppContext, spec: ModelSpec, inputs: dict[str, Any]) -> float:
    return quote(spec.base_price, spec.pricing, inputs, lambda url: served_media_duration(ctx, url))


def _api_key(request: Request) -> str:
    return request.header("authorization").partition(" ")[2].strip()


async def submit(ctx: AppContext, request: Request, model_id: str) -> Response:
    spec = ctx.catalogue.get(model_id)
    if spec is None:
        return error(404, f"model not found: {model_id}")
    try:
        inputs = validate_inputs(spec, parse_json_object(request))
    except (InputError, BadRequest) as exc:
        return error(400, str(exc))
    webhook = request.query.get("webhook", [None])[-1] or None
    if inputs.get(BASE64_FLAG) is True and webhook is not None:
        return json_response(
            {"code": 400, "message": BASE64_WEBHOOK_ERROR, "data": None, "error": BASE64_WEBHOOK_ERROR}, 400
        )
    config = ctx.config
    key, now = _api_key(request), ctx.state.now()
    ctx.submit_window.seconds = config.submit_window_seconds
    wait = ctx.submit_window.retry_after(key, now, config.submits_per_minute)
    if wait is not None:
        ctx.stats.submits_rate_limited += 1
        headers = [("Retry-After", retry_after_header(wait))] if config.submit_limit_retry_after else []
        return error(429, "Too many requests: the account's per-minute submit limit was reached", headers)
    outcome = choose_outcome(ctx, inputs)
    bad_media = media_problem(spec, inputs)
    failure = None
    if bad_media is not None:
        failure = (MEDIA_FAILURE_CODE, f"Failed to download {bad_media} from the provided URL.")
    price = price_of(ctx, spec, inputs)
    record = ctx.state.create_prediction(
        model=spec.model_id,
        inputs=inputs,
        queue_seconds=config.queue_seconds,
        run_seconds=config.run_seconds_for(spec.model_id),
        run_seconds_for_id=functools.partial(config.run_seconds_for, spec.model_id),
        outcome=outcome,
        output_kind=spec.output_kind,
        output_count=spec.output_count(inputs),
        output_size=config.output_size_for(spec.model_id),
        error=failure,
        webhook=webhook,
        max_concurrency=config.max_concurrency,
        base64_output=spec.declares(BASE64_FLAG) and inputs.get(BASE64_FLAG) is True,
        price=price,
    )
    ctx.submit_window.record(key, now)
    ctx.webhooks.track(record)
    config.balance = round(config.balance - price, 6)
    ctx.stats.count_accepted_submit(spec.model_id)
    if spec.declares(SYNC_FLAG) and inputs.get(SYNC_FLAG) is True:
        data = await wait_for_sync_result(ctx, record)
    else:
        data = prediction_json(ctx, record)
    if config.lose_submit_replies > 0:
        config.lose_submit_replies -= 1
        ctx.stats.lost_submit_replies += 1
        return dropped()
    if ctx.state.nth_submit_loses_reply(config.lose_submit_reply_every_nth):
        ctx.stats.lost_submit_replies += 1
        return error(502, "Bad Gateway: the upstream reply was lost")
    return ok(data)


async def wait_for_sync_result(ctx: AppContext, record: PredictionRecord) -> dict[str, Any]:
    """Hold the submit until the prediction is final or the sync window (emulator clock) passes.

    Bounded twice: by the window on the emulator's clock, and by as many polls as the window holds
    in real time (so a manual clock nobody advances cannot hold the request for ever).
    """
    window = ctx.config.sync_window_seconds
    deadline = ctx.state.now() + window
    for _ in range(int(window / SYNC_POLL_SECONDS) + 1):
        now = ctx.refresh()
        if record.status(now, hold=ctx.config.hold_predictions) in FINAL_STATUSES or now >= deadline:
            break
        await asyncio.sleep(SYNC_POLL_SECONDS)
    data = prediction_json(ctx, record)
    if data["status"] in FINAL_STATUSES:
        return data
    ctx.stats.sync_timeouts += 1
    seconds = int(window) if float(window).is_integer() else window
    data["status"] = "processing"  # the API's sync-timeout shape, even while the task is still queued
    data["code"] = SYNC_TIMEOUT_CODE
    data["error"] = f"Sync mode timed out after {seconds} seconds. The prediction is still processing asynchronously."
    return data


def prediction_json(ctx: AppContext, record: PredictionRecord, *, with_input: bool = False) -> dict[str, Any]:
    """``record`` as the API reports it now, with the hold switch applied."""
    return record.to_api(ctx.base_url, ctx.state.now(), hold=ctx.config.hold_predictions, with_input=with_input)


def _quote_request(ctx: AppContext, request: Request) -> tuple[ModelSpec, float] | Response:
    try:
        body = parse_json_object(request, empty_ok=False)
    except BadRequest as exc:
        return error(400, str(exc))
    model_id = body.get("model_id")
    if not isinstance(model_id, str) or not model_id:
        return error(400, "Missing required parameter: model_id")
    inputs = body.get("inputs", {})
    if inputs is None:
        inputs = {}
    if not isinstance(inputs, dict):
        return error(400, "Invalid parameter 'inputs': must be an object")
    spec = ctx.catalogue.get(model_id.strip("/"))
    if spec is None:
        return error(404, f"model not found: {model_id}")
    ctx.stats.quotes += 1
    return spec, price_of(ctx, spec, inputs)


def model_pricing(ctx: AppContext, request: Request) -> Response:
    """``POST /api/v3/model/pricing`` (the docs' shape): ``data: {model_id, unit_price, currency}``."""
    if not ctx.config.pricing_endpoint_enabled:
        return error(404, f"not found: {request.path}")
    quoted = _quote_request(ctx, request)
    if isinstance(quoted, Response):
        return quoted
    spec, price = quoted
    return ok({"model_id": spec.model_id, "unit_price": price, "currency": CURRENCY})


def model_price(ctx: AppContext, request: Request) -> Response:
    """``POST /api/v3/model/price`` (the MCP server's shape): ``data: {model_id, price, discounted_price, ...}``."""
    if not ctx.config.price_endpoint_enabled:
        return error(404, f"not found: {request.path}")
    quoted = _quote_request(ctx, request)
    if isinstance(quoted, Response):
        return quoted
    spec, price = quoted
    return ok({"model_id": spec.model_id, "price": price, "discounted_price": price, "currency": CURRENCY})


def webhook_secret(ctx: AppContext) -> Response:
    return ok({"secret": ctx.config.webhook_secret})


def get_prediction(ctx: AppContext, prediction_id: str) -> Response:
    record = ctx.state.get(prediction_id)
    if record is None:
        return error(404, f"prediction not found: {prediction_id}")
    return ok(prediction_json(ctx, record))


def _int_field(body: dict[str, Any], name: str, default: int, minimum: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadRequest(f"Invalid parameter '{name}': must be an integer >= {minimum}")
    return value


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid parameter '{name}': expected string")
    return value


def _time_field(body: dict[str, Any], name: str) -> int | None:
    text = _optional_str(body, name)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        raise BadRequest(f"Invalid parameter '{name}': must be an ISO 8601 timestamp") from None


def other_traffic(ctx: AppContext) -> OtherTraffic | None:
    """The other pipelines on the account, as the ``background_*`` switches describe them (None: none)."""
    config = ctx.config
    if config.background_traffic_per_minute <= 0:
        return None
    names = config.background_models or sorted(ctx.catalogue)
    models = tuple((name, ctx.catalogue[name].output_kind if name in ctx.catalogue else "png") for name in names)
    return OtherTraffic(
        per_minute=config.background_traffic_per_minute,
        run_seconds=config.background_run_seconds,
        queue_seconds=config.queue_seconds,
        backfill_seconds=config.background_backfill_seconds,
        models=models,
    )


def history(ctx: AppContext, request: Request) -> Response:
    try:
        body = parse_json_object(request)
        query = HistoryQuery(
            page=_int_field(body, "page", 1, 1),
            page_size=min(_int_field(body, "page_size", MAX_PAGE_SIZE, 1), MAX_PAGE_SIZE),
            model=_optional_str(body, "model"),
            status=_optional_str(body, "status"),
            created_after_ns=_time_field(body, "created_after"),
            created_before_ns=_time_field(body, "created_before"),
        )
        if query.status is not None and query.status not in STATUSES:
            raise BadRequest(f"Invalid parameter 'status': must be one of {', '.join(STATUSES)}")
    except BadRequest as exc:
        return error(400, str(exc))
    ctx.state.add_other_traffic(other_traffic(ctx))
    total, records = ctx.state.history(query, hold=ctx.config.hold_predictions)
    with_input = ctx.config.history_includes_input
    return ok(
        {
            "page": query.page,
            "page_size": query.page_size,
            "total": total,
            "items": [prediction_json(ctx, r, with_input=with_input) for r in records],
        }
    )


def delete_predictions(ctx: AppContext, request: Request) -> Response:
    if not ctx.config.delete_endpoint_enabled:
        return error(404, f"not found: {request.path}")
    try:
        body = parse_json_object(request, empty_ok=False)
    except BadRequest as exc:
        return error(400, str(exc))
    ids = body.get("ids")
    if ids is None:
        return error(400, "Missing required parameter: ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return error(400, "Invalid parameter 'ids': must be an array of strings")
    count = ctx.state.delete(ids)
    ctx.stats.predictions_deleted += count
    return ok({"deleted_count": count})


def delete_one(ctx: AppContext, prediction_id: str) -> Response:
    """Legacy ``DELETE /api/v3/predictions/{id}``."""
    if ctx.state.get(prediction_id) is None:
        return error(404, f"prediction not found: {prediction_id}")
    ctx.stats.predictions_deleted += ctx.state.delete([prediction_id])
    return ok({"id": prediction_id, "status": "deleted"})


def balance(ctx: AppContext) -> Response:
    return ok({"balance": ctx.config.balance})


def models(ctx: AppContext) -> Response:
    status = ctx.config.models_endpoint_status
    if status != 200:
        return error(status, "model catalogue temporarily unavailable")
    return ok(catalogue_json(ctx.catalogue))


def media_type_for(content_type: str) -> str:
    major = content_type.split("/", 1)[0].strip().lower()
    return major if major in ("image", "video", "audio") else "file"


def _guess_type(filename: str) -> str:
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _upload_urls(ctx: AppContext, record: UploadRecord) -> dict[str, Any]:
    return {
        "type": record.media_type,
        "download_url": f"{ctx.base_url}/media/uploads/{record.token}/{url_quote(record.filename)}",
        "filename": record.filename,
        "size": record.length if record.complete else record.declared_size,
    }


def _clean_filename(value: str) -> str:
    return os.path.basename(value.replace("\\", "/")).strip()


def upload_ticket(ctx: AppContext, request: Request) -> Response:
    if not ctx.config.upload_ticket_supported:
        return error(404, f"not found: {request.path}")
    try:
        body = parse_json_object(request, empty_ok=False)
    except BadRequest as exc:
        return error(400, str(exc))
    filename = body.get("filename")
    if filename is None or filename == "":
        return error(400, "Missing required parameter: filename")
    if not isinstance(filename, str) or not _clean_filename(filename):
        return error(400, "Invalid parameter 'filename': must be a non-empty file name")
    size = body.get("size")
    if size is None:
        return error(400, "Missing required parameter: size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        return error(400, "Invalid parameter 'size': must be an integer >= 0")
    content_type = body.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        return error(400, "Invalid parameter 'content_type': expected string")
    name = _clean_filename(filename)
    content_type = content_type or _guess_type(name)
    record = ctx.state.create_upload(name, content_type, media_type_for(content_type), size)
    data = _upload_urls(ctx, record)
    data["upload"] = {
        "method": "PUT",
        "url": f"{ctx.base_url}/_uploads/{record.token}",
        "headers": {"Content-Type": content_type},
    }
    return ok(data)


def upload_binary(ctx: AppContext, request: Request) -> Response:
    """Legacy ``POST /api/v3/media/upload/binary`` (multipart/form-data, field ``file``)."""
    spooled = request.body_file
    if spooled is None:
        return error(400, "Missing required parameter: file")
    try:
        boundary = boundary_from_content_type(request.header("content-type"))
        parts = parse_multipart_file(spooled.path, boundary)
    except MultipartError as exc:
        return error(400, f"Invalid multipart body: {exc}")
    part = next((p for p in parts if p.name == "file" and p.filename is not None), None)
    part = part or next((p for p in parts if p.name == "file"), None)
    if part is None:
        return error(400, "Missing required parameter: file")
    name = _clean_filename(part.filename or "") or "upload.bin"
    content_type = part.content_type or _guess_type(name)
    record = ctx.state.create_upload(name, content_type, media_type_for(content_type), part.length)
    target = ctx.upload_path(record.token)
    os.replace(spooled.path, target)
    ctx.state.complete_upload(record.token, target, part.offset, part.length)
    ctx.stats.uploads += 1
    return ok(_upload_urls(ctx, record))
