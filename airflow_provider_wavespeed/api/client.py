"""Sync and async WaveSpeed clients: thin senders over the shared protocol and retry policy."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from airflow_provider_wavespeed import __version__
from airflow_provider_wavespeed.api import protocol
from airflow_provider_wavespeed.api.errors import (
    WaveSpeedConfigError,
    WaveSpeedConnectionError,
    WaveSpeedError,
    WaveSpeedNotFoundError,
    WaveSpeedServerError,
)
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.reconcile import ServerClock
from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.api.submit_plan import Accepted, SubmitOutcome, Unanswered, classify, is_unanswered

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wavespeed.ai"
#: How a prediction was deleted: the documented endpoint, or the older one.
DELETE_DOCUMENTED = "POST /api/v3/predictions/delete"
DELETE_LEGACY = "DELETE /api/v3/predictions/{id}"
CLIENT_NAME = "airflow-provider-wavespeed"


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_base_url(value: str | None) -> str:
    """``https://api.wavespeed.ai`` from a host, a URL, or a URL with ``/api/v3`` pasted on."""
    raw = (value or "").strip()
    if not raw:
        return DEFAULT_BASE_URL
    if "://" not in raw:
        host = raw.split("/", 1)[0].split(":", 1)[0]
        raw = ("http://" if is_loopback_host(host) else "https://") + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WaveSpeedConfigError(
            f"base URL must look like https://api.wavespeed.ai, got {value!r} (set it in the connection's host)"
        )
    if parts.username or parts.password:
        raise WaveSpeedConfigError("base URL must not carry credentials; put the API key in the password field")
    path = parts.path.rstrip("/")
    if path.endswith(protocol.API_PREFIX):
        path = path[: -len(protocol.API_PREFIX)]
    return f"{parts.scheme}://{parts.netloc}{path}"


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client needs. The key is kept out of ``repr``; it is only ever put in a header."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 30.0
    connect_timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, str) or not self.api_key.strip():
            raise WaveSpeedConfigError(
                "the WaveSpeed API key is missing or empty: put it in the connection's password field"
            )
        base = normalize_base_url(self.base_url)
        object.__setattr__(self, "base_url", base)
        parts = urlsplit(base)
        if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
            raise WaveSpeedConfigError(
                f"refusing to send the API key over plain http to {parts.hostname}: use an https:// base URL "
                "(plain http is only allowed to a loopback host such as the emulator)"
            )

    def url(self, path: str) -> str:
        return self.base_url + path

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key.strip()}",
            "X-Client-Name": CLIENT_NAME,
            "X-Client-Version": __version__,
        }

    def request_args(self, request: protocol.ApiRequest) -> dict[str, Any]:
        """httpx arguments for an API request; the key goes in this request's headers only."""
        args: dict[str, Any] = {
            "method": request.method,
            "url": self.url(request.path),
            "json": request.json,
            "params": dict(request.params) or None,
            "headers": self.headers(),
        }
        if request.read_timeout is not None:
            args["timeout"] = httpx.Timeout(request.read_timeout, connect=self.connect_timeout)
        return args

    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)


def connection_error(exc: httpx.HTTPError, path: str) -> WaveSpeedConnectionError:
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    reason = type(exc).__name__
    return WaveSpeedConnectionError(
        f"no reply from the WaveSpeed API ({reason}: {exc})", path=path, request_sent=not not_sent
    )


class WaveSpeedClient:
    """Blocking client. One ``httpx.Client`` (connection pool); the key is sent per API request only,
    so the same pool can download outputs from the CDN without ever sending the key there."""

    def __init__(self, settings: ClientSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.Client(timeout=settings.http_timeout(), follow_redirects=True)
        #: Predictions this client submitted or adopted: never adopted again for another submit.
        self.submitted_ids: set[str] = set()
        self.server_clock = ServerClock()

    def __enter__(self) -> WaveSpeedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def send(self, request: protocol.ApiRequest) -> Any:
        """One attempt, no retry."""
        sent_at = time.time()
        try:
            reply = self.http.request(**self.settings.request_args(request))
        except httpx.HTTPError as exc:
            raise connection_error(exc, request.path) from exc
        self.server_clock.observe(reply.headers.get("date"), sent_at, time.time())
        return protocol.parse_reply(request, reply.status_code, reply.headers, reply.content)

    def call(self, request: protocol.ApiRequest) -> Any:
        """Send, retrying per the policy when the request is retry-safe."""
        if not request.retry_safe:
            return self.send(request)
        return self.settings.retry.retrying()(self.send, request)

    def get_prediction(self, prediction_id: str) -> Prediction:
        return Prediction.from_api(self.call(protocol.get_result(prediction_id)) or {})

    def get_balance(self) -> float:
        data = self.call(protocol.get_balance()) or {}
        return float(data.get("balance", 0.0))

    def delete_prediction(self, prediction_id: str) -> str:
        """Delete (and so stop, as far as the API does) a prediction; returns which endpoint did it."""
        try:
            self.call(protocol.delete_predictions([prediction_id]))
            return DELETE_DOCUMENTED
        except WaveSpeedNotFoundError:  # an API without the documented endpoint: the older form
            self.call(protocol.delete_prediction_legacy(prediction_id))
            return DELETE_LEGACY

    def quote(self, model: str, inputs: Mapping[str, Any]) -> float:
        """USD one run of ``model`` with ``inputs`` costs: the documented pricing endpoint, else the other one."""
        last: Exception | None = None
        for path in (protocol.PRICING_PATH, protocol.PRICE_PATH):
            try:
                data = self.call(protocol.quote(model, inputs, path=path))
            except WaveSpeedNotFoundError as exc:  # this API has the other endpoint (or prices nothing)
                last = exc
                continue
            price = protocol.price_of(data)
            if price is None:
                raise WaveSpeedServerError(200, f"price quote without a price: {data!r}"[:300], path=path)
            return price
        assert last is not None
        raise last

    def list_models(self) -> list[dict[str, Any]]:
        data = self.call(protocol.list_models())
        items = data.get("items", []) if isinstance(data, dict) else data
        return [m for m in items or [] if isinstance(m, dict)]

    def list_predictions(self, **filters: Any) -> list[Prediction]:
        data = self.call(protocol.list_predictions(**filters)) or {}
        return [Prediction.from_api(item) for item in data.get("items") or [] if isinstance(item, dict)]

    def send_submit(self, model: str, inputs: Mapping[str, Any], *, webhook: str | None = None) -> SubmitOutcome:
        """Send the submit POST once and say what happened. It is billed and not idempotent, so it is never
        retried here: what to do next is ``api.submit_plan``'s decision."""
        request = protocol.submit(model, inputs, webhook=webhook)
        sent_at = time.time()
        try:
            prediction = Prediction.from_api(self.send(request) or {})
        except WaveSpeedError as exc:
            if is_unanswered(exc):
                return Unanswered(exc, self.server_clock.window(model, sent_at, time.time()))
            return classify(exc)
        if not prediction.id:
            error = WaveSpeedServerError(200, "submit reply has no data.id", path=request.path)
            return Unanswered(error, self.server_clock.window(model, sent_at, time.time()))
        return Accepted(prediction)


# In-flight requests per shared async client. Past httpx's pool size requests queue inside httpcore,
# whose per-event cost grows with the queue (1,000 triggers starting together: 23 s of loop lag);
# waiting on a semaphore instead is O(1) (33 ms p99), see benchmarks/README.md.
ASYNC_MAX_IN_FLIGHT = 32


class AsyncWaveSpeedClient:
    """Non-blocking client for triggers: read calls only (a trigger never submits)."""

    def __init__(self, settings: ClientSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.AsyncClient(
            timeout=settings.http_timeout(),
            follow_redirects=True,
            limits=httpx.Limits(max_connections=ASYNC_MAX_IN_FLIGHT, max_keepalive_connections=ASYNC_MAX_IN_FLIGHT),
        )
        self._gate = asyncio.Semaphore(ASYNC_MAX_IN_FLIGHT)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def send(self, request: protocol.ApiRequest) -> Any:
        try:
            async with self._gate:
                reply = await self.http.request(**self.settings.request_args(request))
        except httpx.HTTPError as exc:
            raise connection_error(exc, request.path) from exc
        return protocol.parse_reply(request, reply.status_code, reply.headers, reply.content)

    async def call(self, request: protocol.ApiRequest) -> Any:
        if not request.retry_safe:
            return await self.send(request)
        return await self.settings.retry.async_retrying()(self.send, request)

    async def get_prediction(self, prediction_id: str) -> Prediction:
        return Prediction.from_api(await self.call(protocol.get_result(prediction_id)) or {})

    async def get_balance(self) -> float:
        data = await self.call(protocol.get_balance()) or {}
        return float(data.get("balance", 0.0))

    async def history_page(self, **filters: Any) -> tuple[list[Prediction], int | None]:
        """One page of the prediction history (``protocol.list_predictions`` filters): its items, most recent
        first, and the ``total`` matching the filters (None when the reply does not say)."""
        data = await self.call(protocol.list_predictions(**filters)) or {}
        items = [Prediction.from_api(item) for item in data.get("items") or [] if isinstance(item, dict)]
        total = data.get("total")
        return items, total if isinstance(total, int) else None

    async def delete_prediction(self, prediction_id: str) -> str:
        """``WaveSpeedClient.delete_prediction``, without blocking the event loop."""
        try:
            await self.call(protocol.delete_predictions([prediction_id]))
            return DELETE_DOCUMENTED
        except WaveSpeedNotFoundError:
            await self.call(protocol.delete_prediction_legacy(prediction_id))
            return DELETE_LEGACY
