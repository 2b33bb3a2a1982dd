"""Webhook delivery like the real API (wavespeed-api.md 6): the bare prediction, signed, on completion.

When a prediction submitted with ``?webhook=<url>`` completes or fails, the emulator POSTs the
prediction object (no envelope, with ``input``) to the URL with ``webhook-id``,
``webhook-timestamp`` (unix seconds) and ``webhook-signature: v3,<hex HMAC-SHA256>`` of
``{id}.{timestamp}.{raw body}``, keyed with the webhook secret minus its ``whsec_`` prefix.

It only calls loopback hosts (it is offline by design): other URLs are recorded as skipped. A
non-2xx answer or a network error is retried ``webhook_max_attempts`` times in all, retry N after
N x ``webhook_retry_seconds`` on the emulator's clock. Every attempt is in the stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h11

from airflow_provider_wavespeed.emulator.webhook_queue import Delivery
from airflow_provider_wavespeed.emulator.wire import is_loopback_host, json_bytes

if TYPE_CHECKING:
    from airflow_provider_wavespeed.emulator.context import AppContext

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v3"
#: Statuses that fire a webhook ("when complete (or failed)"; whether deletion does is undocumented).
FIRING_STATUSES = frozenset({"completed", "failed", "cancelled", "timeout"})
POLL_SECONDS = 0.02
MAX_RESPONSE_READS = 1024
LOG_LIMIT = 1000


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """``v3,<lowercase hex HMAC-SHA256 of "{id}.{timestamp}.{body}">``; the key is the secret minus ``whsec_``."""
    key = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return f"{SIGNATURE_VERSION},{hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()}"


def signed_headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> list[tuple[str, str]]:
    stamp = str(timestamp)
    return [
        ("Content-Type", "application/json"),
        ("webhook-id", webhook_id),
        ("webhook-timestamp", stamp),
        ("webhook-signature", signature(secret, webhook_id, stamp, body)),
    ]


def deliverable(url: str) -> str | None:
    """None if the emulator may call ``url``; otherwise why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL"
    if not is_loopback_host(parts.hostname):
        return "the emulator only delivers webhooks to loopback hosts"
    return None


async def post(url: str, body: bytes, headers: list[tuple[str, str]], timeout: float) -> int:
    """POST ``body`` to ``url`` (one request, connection closed after); returns the HTTP status."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        try:
            conn = h11.Connection(h11.CLIENT)
            request = h11.Request(
                method="POST",
                target=target,
                headers=[
                    ("Host", parts.netloc),
                    ("Content-Length", str(len(body))),
                    ("Connection", "close"),
                    ("User-Agent", "wavespeed-emulator"),
                    *headers,
                ],
            )
            writer.write(conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            await writer.drain()
            for _ in range(MAX_RESPONSE_READS):
                event = conn.next_event()
                if isinstance(event, h11.Response):
                    return int(event.status_code)
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.ConnectionClosed):
                    break
            raise ConnectionError("the webhook receiver closed the connection without answering")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class WebhookDispatcher:
    """A background task on the emulator's loop: fires due webhooks while any are pending."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.ctx.webhooks.wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wavespeed-emulator-webhooks")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._attempts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def _run(self) -> None:
        queue = self.ctx.webhooks
        assert queue.wakeup is not None
        while True:  # ends when close() cancels it
            if not queue.pending:
                queue.wakeup.clear()
                await queue.wakeup.wait()
                continue
            self.tick()
            await asyncio.sleep(POLL_SECONDS)

    def tick(self) -> None:
        """Start every attempt that is due now."""
        ctx = self.ctx
        now = ctx.refresh()
        hold = ctx.config.hold_predictions
        for delivery in list(ctx.webhooks.pending.values()):
            record = ctx.state.get(delivery.prediction_id)
            if record is None or delivery.in_flight:
                if record is None:
                    ctx.webhooks.pending.pop(delivery.prediction_id, None)
                continue
            if delivery.body is None:
                status = record.status(now, hold=hold)
                if status == "deleted":
                    ctx.webhooks.pending.pop(delivery.prediction_id, None)
                if status not in FIRING_STATUSES:
                    continue
                delivery.body = json_bytes(record.to_api(ctx.base_url, now, hold=hold, with_input=True))
                delivery.next_attempt_at = now
                refusal = deliverable(delivery.url)
                if refusal is not None:
                    ctx.stats.webhooks_skipped += 1
                    self._log(delivery, status=None, error=refusal)
                    ctx.webhooks.pending.pop(delivery.prediction_id, None)
                    continue
            if now >= delivery.next_attempt_at:
                delivery.in_flight = True
                task = asyncio.get_running_loop().create_task(self._attempt(delivery))
                self._attempts.add(task)
                task.add_done_callback(self._attempts.discard)

    async def _attempt(self, delivery: Delivery) -> None:
        ctx = self.ctx
        assert delivery.body is not None
        timestamp = ctx.state.wall_clock_ns() // 1_000_000_000
        headers = signed_headers(ctx.config.webhook_secret, delivery.webhook_id, timestamp, delivery.body)
        status: int | None = None
        problem = ""
        try:
            status = await post(delivery.url, delivery.body, headers, ctx.config.webhook_timeout_seconds)
        except (OSError, TimeoutError, h11.ProtocolError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        delivery.attempts += 1
        delivery.in_flight = False
        ctx.stats.webhook_attempts += 1
        self._log(delivery, status=status, error=problem)
        if status is not None and 200 <= status < 300:
            ctx.stats.webhooks_delivered += 1
            ctx.webhooks.pending.pop(delivery.prediction_id, None)
        elif delivery.attempts >= ctx.config.webhook_max_attempts:
            ctx.stats.webhooks_failed += 1
            ctx.webhooks.pending.pop(delivery.prediction_id, None)
            log.warning(
                "webhook for %s to %s failed after %d attempts", delivery.prediction_id, delivery.url, delivery.attempts
            )
        else:
            delivery.next_attempt_at = ctx.state.now() + ctx.config.webhook_retry_seconds * delivery.attempts

    def _log(self, delivery: Delivery, *, status: int | None, error: str) -> None:
        entries: list[dict[str, Any]] = self.ctx.stats.webhook_log
        entries.append(
            {
                "prediction_id": delivery.prediction_id,
                "url": delivery.url,
                "webhook_id": delivery.webhook_id,
                "attempt": delivery.attempts,
                "status": status,
                "error": error,
            }
        )
        del entries[:-LOG_LIMIT]
