"""Routing: which handler answers a request, plus the cross-cutting latency, fault and auth checks.

URL layout (``<base>`` = ``http://127.0.0.1:<port>``):

* ``/api/v3/...``                     authenticated WaveSpeed API (see ``api.py``)
* ``/media/outputs/<id>/<i>.<ext>``   generated outputs (GET/HEAD, Range)
* ``/_uploads/<token>``               presigned upload target (PUT)
* ``/media/uploads/<token>/<name>``   uploaded files (GET/HEAD, Range)
* ``/_emulator/{stats,config,reset,predictions}``  control endpoints
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from airflow_provider_wavespeed.emulator import api, cdn
from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.control import handle_control
from airflow_provider_wavespeed.emulator.webhooks import WebhookDispatcher
from airflow_provider_wavespeed.emulator.wire import Request, Response, error, ok

log = logging.getLogger(__name__)

API_PREFIX = "/api/v3/"


@dataclass(frozen=True)
class ApiRoute:
    name: str  # submit|result|history|delete|delete_one|balance|models|upload_ticket|upload_binary|...
    arg: str = ""


def resolve_api_route(method: str, rest: str) -> ApiRoute:
    """Map ``METHOD /api/v3/<rest>`` to a route; ``not_found`` / ``method_not_allowed`` otherwise."""
    parts = rest.split("/")
    fixed = {
        "balance": ("GET", "balance"),
        "models": ("GET", "models"),
        "predictions": ("POST", "history"),
        "predictions/delete": ("POST", "delete"),
        "media/uploads": ("POST", "upload_ticket"),
        "media/upload/binary": ("POST", "upload_binary"),
        "model/pricing": ("POST", "pricing"),
        "model/price": ("POST", "price"),
        "webhook/secret": ("GET", "webhook_secret"),
    }
    if rest in fixed:
        wanted, name = fixed[rest]
        if method == wanted:
            return ApiRoute(name)
        if not (method == "GET" and rest == "predictions/delete"):
            return ApiRoute("method_not_allowed", wanted)
    if parts[0] == "predictions" and (len(parts) == 2 or (len(parts) == 3 and parts[2] == "result")) and parts[1]:
        if method == "GET":
            return ApiRoute("result", parts[1])
        if method == "DELETE" and len(parts) == 2:
            return ApiRoute("delete_one", parts[1])
        return ApiRoute("method_not_allowed", "GET")
    if method == "POST" and rest:
        return ApiRoute("submit", rest)
    return ApiRoute("not_found")


class EmulatorApp:
    """Turns a parsed ``Request`` into a ``Response``. Runs on the emulator's event loop only."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.webhooks = WebhookDispatcher(ctx)

    def start(self) -> None:
        """Start the background work (webhook delivery); call on the loop that serves requests."""
        self.webhooks.start()

    async def close(self) -> None:
        await self.webhooks.close()

    @staticmethod
    def wants_file_body(method: str, path: str) -> bool:
        """Request bodies of these routes are streamed to a temp file instead of memory."""
        return (method == "PUT" and path.startswith("/_uploads/")) or (
            method == "POST" and path.rstrip("/") == "/api/v3/media/upload/binary"
        )

    async def handle(self, request: Request) -> Response:
        self.ctx.stats.requests_total += 1
        try:
            self.ctx.refresh()
            return await self._dispatch(request)
        except Exception as exc:
            log.exception("emulator handler failed for %s %s", request.method, request.path)
            return error(500, f"emulator internal error: {exc}")

    async def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path.startswith(API_PREFIX):
            return await self._api(request, path[len(API_PREFIX) :].strip("/"))
        parts = path.strip("/").split("/")
        if path.startswith("/media/outputs/") and len(parts) == 4:
            if request.method not in ("GET", "HEAD"):
                return error(405, f"method not allowed: {request.method} {path}")
            return cdn.serve_output(self.ctx, request, parts[2], parts[3])
        if path.startswith("/media/uploads/") and len(parts) == 4:
            if request.method not in ("GET", "HEAD"):
                return error(405, f"method not allowed: {request.method} {path}")
            return cdn.serve_upload(self.ctx, request, parts[2], parts[3])
        if path.startswith("/_uploads/") and len(parts) == 2:
            if request.method != "PUT":
                return error(405, f"method not allowed: {request.method} {path}")
            return cdn.receive_upload(self.ctx, request, parts[1])
        if path.startswith("/_emulator/"):
            return handle_control(self.ctx, request)
        if path in ("/", "/healthz") and request.method in ("GET", "HEAD"):
            return ok({"service": "wavespeed-emulator", "api": f"{self.ctx.base_url}/api/v3"})
        return error(404, f"not found: {path}")

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.header("authorization").strip().partition(" ")
        expected = self.ctx.config.api_key
        if scheme.lower() != "bearer":
            return False
        return secrets.compare_digest(token.strip().encode(), expected.encode())

    async def _api(self, request: Request, rest: str) -> Response:
        ctx = self.ctx
        config, stats = ctx.config, ctx.stats
        route = resolve_api_route(request.method, rest)
        if route.name == "submit":
            stats.submit_attempts += 1
        elif route.name == "result":
            stats.count_poll(route.arg)
        elif route.name == "history":
            stats.history_queries += 1
        if config.latency_seconds > 0:
            await asyncio.sleep(config.latency_seconds)
        if config.rate_limit_next > 0:
            config.rate_limit_next -= 1
            stats.rate_limited += 1
            retry_after = str(config.rate_limit_retry_after)
            return error(
                429,
                f"Too many requests: rate limit exceeded, retry after {retry_after} seconds",
                [("Retry-After", retry_after)],
            )
        if ctx.state.nth_request_fails(config.fail_every_nth):
            stats.faults_injected += 1
            return error(503, "Service temporarily unavailable, please try again later")
        if not self._authorized(request):
            return error(401, "Unauthorized: invalid API key")
        return await self._api_route(request, route)

    async def _api_route(self, request: Request, route: ApiRoute) -> Response:
        ctx = self.ctx
        match route.name:
            case "submit":
                return await api.submit(ctx, request, route.arg)
            case "result":
                return api.get_prediction(ctx, route.arg)
            case "history":
                return api.history(ctx, request)
            case "delete":
                return api.delete_predictions(ctx, request)
            case "delete_one":
                return api.delete_one(ctx, route.arg)
            case "balance":
                return api.balance(ctx)
            case "models":
                return api.models(ctx)
            case "upload_ticket":
                return api.upload_ticket(ctx, request)
            case "upload_binary":
                return api.upload_binary(ctx, request)
            case "pricing":
                return api.model_pricing(ctx, request)
            case "price":
                return api.model_price(ctx, request)
            case "webhook_secret":
                return api.webhook_secret(ctx)
            case "method_not_allowed":
                return error(405, f"method not allowed: {request.method} {request.path}")
        return error(404, f"not found: {request.path}")
