"""HTTP/1.1 transport: asyncio streams + h11, keep-alive, streamed bodies with write backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import parse_qs, unquote

import h11

from airflow_provider_wavespeed.emulator.app import EmulatorApp
from airflow_provider_wavespeed.emulator.media import CHUNK_SIZE
from airflow_provider_wavespeed.emulator.wire import BodyFile, Request, Response, StreamBody, error

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
MAX_MEMORY_BODY = 32 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
BACKLOG = 4096
SERVER_HEADER = b"wavespeed-emulator"
FLUSH_BYTES = 64 * 1024


def url_host(host: str) -> str:
    """Host part for URLs: wildcard binds are reached via loopback; IPv6 literals get brackets."""
    if host in ("", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def raise_open_file_limit(target: int = 65536) -> None:
    """Lift the soft RLIMIT_NOFILE towards the hard limit (1,000+ keep-alive sockets need it)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


class _ClientGone(Exception):
    pass


class _BodyTooLarge(Exception):
    pass


class _HttpConnection:
    """One client connection: a loop of request -> response cycles until either side closes."""

    def __init__(self, app: EmulatorApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._pending: list[bytes] = []

    async def run(self) -> None:
        try:
            while True:
                event = await self._next_event()
                if not isinstance(event, h11.Request):
                    break
                if not await self._cycle(event):
                    break
                if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                    break
                self.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            await self._reply_protocol_error(exc)
        except (_ClientGone, ConnectionError, h11.LocalProtocolError):
            pass
        finally:
            self.writer.close()  # flushes what is buffered, then FIN (abort() on shutdown discards it)

    # -- reading -----------------------------------------------------------------------------------

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.conn.they_are_waiting_for_100_continue:
                self._send(h11.InformationalResponse(status_code=100, headers=[]))
                self._flush()
            data = await self.reader.read(READ_SIZE)
            self.conn.receive_data(data)

    async def _read_body(self, sink: Any, limit: int | None) -> int:
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if limit is not None and size > limit:
                    raise _BodyTooLarge
                sink(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return size
            else:
                raise _ClientGone

    async def _read_request(self, event: h11.Request) -> Request | Response:
        method = event.method.decode("ascii").upper()
        raw_path, _, raw_query = event.target.decode("latin-1").partition("?")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        request = Request(method, unquote(raw_path), parse_qs(raw_query, keep_blank_values=True), headers)
        if self.app.wants_file_body(method, request.path):
            path = self.app.ctx.new_spool_path()
            try:
                with open(path, "wb") as fh:
                    size = await self._read_body(fh.write, None)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                raise
            request.body_file = BodyFile(path, size)
            return request
        chunks: list[bytes] = []
        try:
            await self._read_body(chunks.append, MAX_MEMORY_BODY)
        except _BodyTooLarge:
            return error(413, f"request body too large (limit {MAX_MEMORY_BODY} bytes)")
        request.body = b"".join(chunks)
        return request

    # -- one request/response cycle ----------------------------------------------------------------

    async def _cycle(self, event: h11.Request) -> bool:
        """Handle one request; False means "close the connection now"."""
        parsed = await self._read_request(event)
        if isinstance(parsed, Response):
            await self._respond(parsed, event.method)
            return False
        try:
            response = await self.app.handle(parsed)
        finally:
            if parsed.body_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(parsed.body_file.path)
        if response.drop_connection:
            return False
        return await self._respond(response, event.method)

    def _send(self, event: Any) -> None:
        """Queue an event's bytes; ``_flush`` writes them with one syscall (h11 yields many small pieces)."""
        self._pending.extend(self.conn.send_with_data_passthrough(event) or ())

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if len(pending) == 1:
            self.writer.write(pending[0])  # large stream chunks: no copy
        elif pending:
            self.writer.write(b"".join(pending))

    async def _respond(self, response: Response, request_method: bytes) -> bool:
        headers: list[tuple[bytes, bytes]] = [
            (name.encode("latin-1", "replace"), value.encode("latin-1", "replace")) for name, value in response.headers
        ]
        headers += [
            (b"content-length", str(response.content_length).encode()),
            (b"date", _http_date()),
            (b"server", SERVER_HEADER),
        ]
        status = response.status
        self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        self.app.ctx.stats.count_status(response.status)
        if request_method == b"HEAD":
            self._close_stream(response.stream)
        elif response.stream is not None:
            return await self._send_stream(response.stream)
        elif response.body:
            self._send(h11.Data(data=response.body))
        self._send(h11.EndOfMessage())
        self._flush()
        await self.writer.drain()
        return True

    @staticmethod
    def _close_stream(stream: StreamBody | None) -> None:
        close = getattr(stream.chunks, "close", None) if stream is not None else None
        if close is not None:
            close()

    async def _send_stream(self, stream: StreamBody) -> bool:
        """Write a streamed body with backpressure; False if the connection must be closed.

        Small pieces are batched with the response head; every write of >= FLUSH_BYTES is
        followed by ``drain()`` so a slow reader throttles generation instead of filling memory.
        """
        limit = stream.length if stream.cut_after is None else min(stream.cut_after, stream.length)
        sent = 0
        buffered = 0
        try:
            for chunk in stream.chunks:
                if sent + len(chunk) > limit:
                    chunk = chunk[: limit - sent]
                if chunk:
                    # h11 passes any bytes-like object through untouched (zero-copy memoryview slices).
                    self._send(h11.Data(data=cast(bytes, chunk)))
                    sent += len(chunk)
                    buffered += len(chunk)
                    if stream.on_progress is not None:
                        stream.on_progress(len(chunk))
                    if sent == stream.length and stream.on_complete is not None:
                        stream.on_complete()  # before the last bytes leave: clients never see stale stats
                    if buffered >= FLUSH_BYTES:
                        self._flush()
                        buffered = 0
                        await self.writer.drain()
                if sent >= limit:
                    break
        finally:
            self._close_stream(stream)
        if sent < stream.length:
            if stream.cut_after is None:
                log.warning("body source ended after %d of %d bytes; closing", sent, stream.length)
            self._flush()
            await self.writer.drain()
            return False
        if stream.length == 0 and stream.on_complete is not None:
            stream.on_complete()
        self._send(h11.EndOfMessage())
        self._flush()
        await self.writer.drain()
        return True

    async def _reply_protocol_error(self, exc: h11.RemoteProtocolError) -> None:
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        with contextlib.suppress(Exception):
            await self._respond(error(exc.error_status_hint, f"bad request: {exc}"), b"GET")


class EmulatorServer:
    """Listening socket + connection tasks. Start and close it on the loop that will run it."""

    def __init__(self, app: EmulatorApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = "127.0.0.1" if host == "localhost" else host
        self.port = port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_client, self.host, self.port, backlog=BACKLOG, limit=READ_SIZE
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.app.ctx.base_url = self.base_url
        self.app.start()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        stats = self.app.ctx.stats
        stats.connections_opened += 1
        stats.connections_open += 1
        stats.connections_peak = max(stats.connections_peak, stats.connections_open)
        writer.transport.set_write_buffer_limits(high=4 * CHUNK_SIZE)
        try:
            await _HttpConnection(self.app, reader, writer).run()
        except asyncio.CancelledError:
            writer.transport.abort()
        finally:
            stats.connections_open -= 1
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.app.close()
        await self._server.wait_closed()
        self._server = None
