"""Stream one output URL into a sink with bounded memory, resuming a cut transfer with ``Range``.

The byte count is checked against ``Content-Length``/``Content-Range`` before the caller may
commit the file; a short transfer is resumed from where it stopped (or restarted when the server
ignores ``Range``), under the shared retry policy.

Wire speed: the request, redirects, proxies (``HTTP(S)_PROXY``/``NO_PROXY``), TLS verification and
the connect timeout are all the caller's ``httpx.Client``'s (the one place they are configured).
Only the body of a plain ``Content-Length`` HTTP/1.x reply is read differently: after httpx hands
over the bytes it already buffered, the rest is read with ``recv_into`` straight from the
connection's own (TLS) socket into one reusable buffer, ``READ_BYTES`` at a time, under the
client's read timeout. httpcore's 64 KiB reads through h11 cost ~2.5x curl's CPU per byte and cap
a download at ~0.4x curl; this path measures 0.9-1.0x (benchmarks/README.md, section 3). The
connection is closed afterwards (h11 never saw the body end), never returned to the pool. Any other
reply (chunked, HTTP/2, TLS inside a TLS proxy tunnel, a mocked transport) streams through httpx.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from airflow_provider_wavespeed.api import protocol
from airflow_provider_wavespeed.api.errors import (
    WaveSpeedConnectionError,
    WaveSpeedDownloadError,
    WaveSpeedIncompleteDownload,
)
from airflow_provider_wavespeed.api.retry import RetryPolicy

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")

#: Bytes asked of the socket per read, into one buffer per transfer reused for every read (1 MiB: ten
#: outputs at once hold 10 MiB). A module global so a test can make reads smaller.
READ_BYTES = 1 << 20


class OutputSink(Protocol):
    def write(self, data: bytes) -> None:
        """Store ``data`` (may be a memoryview of a buffer reused after the call returns: copy to keep it)."""

    def restart(self) -> None:
        """Discard everything written so far (the server sent the whole body again)."""


@dataclass
class DownloadResult:
    url: str
    size: int
    content_type: str
    resumed: int = 0
    restarted: int = 0


class _Transfer:
    def __init__(self, http: httpx.Client, url: str, sink: OutputSink) -> None:
        self.http, self.url, self.sink = http, url, sink
        self.path = urlsplit(url).path or url
        self.offset = 0
        self.total: int | None = None
        self.content_type = ""
        self.resumed = 0
        self.restarted = 0
        self.done = False
        self.buffer: bytearray | None = None

    def _restart(self) -> None:
        if self.offset:
            self.sink.restart()
            self.restarted += 1
        self.offset = 0

    def attempt(self, progress: Callable[[int, int | None], None] | None) -> None:
        headers = {"Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            self.resumed += 1
        try:
            with self.http.stream("GET", self.url, headers=headers) as reply:
                self._start(reply)
                if self.done:
                    return
                self._receive(reply, progress)
        except httpx.HTTPError as exc:
            raise WaveSpeedConnectionError(
                f"download interrupted after {self.offset} bytes ({type(exc).__name__}: {exc})", path=self.path
            ) from exc
        if self.total is not None and self.offset != self.total:
            raise WaveSpeedIncompleteDownload(f"download of {self.path} stopped at {self.offset} of {self.total} bytes")
        self.done = True

    def _write(self, data: bytes, progress: Callable[[int, int | None], None] | None) -> None:
        self.sink.write(data)
        self.offset += len(data)
        if progress:
            progress(self.offset, self.total)

    def _receive(self, reply: httpx.Response, progress: Callable[[int, int | None], None] | None) -> None:
        sock = _body_socket(reply)
        end = self.offset + int(reply.headers["content-length"]) if sock is not None else 0
        # Unsized reads: every byte received before a cut is written, so a resume loses nothing.
        chunks = reply.iter_raw()
        try:
            for chunk in chunks:
                self._write(chunk, progress)
                if sock is not None and self.offset < end:
                    break  # what httpx buffered past the headers is written; the rest comes from the socket
            else:
                return  # the whole body came through httpx (and the connection goes back to the pool)
            assert sock is not None
            self._read_socket(sock, end, progress)
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # before the socket is closed under it, not whenever it is collected

    def _read_socket(self, sock: socket.socket, end: int, progress: Callable[[int, int | None], None] | None) -> None:
        if self.buffer is None:
            self.buffer = bytearray(READ_BYTES)
        view = memoryview(self.buffer)
        size = len(view)
        sock.settimeout(self.http.timeout.read)
        while self.offset < end:
            try:
                n = sock.recv_into(view, min(size, end - self.offset))
            except OSError as exc:  # a reset, a read timeout (TimeoutError), a TLS error (ssl.SSLError)
                raise WaveSpeedConnectionError(
                    f"download interrupted after {self.offset} bytes ({type(exc).__name__}: {exc})", path=self.path
                ) from exc
            if not n:
                raise WaveSpeedConnectionError(
                    f"download interrupted after {self.offset} bytes (the server closed the connection)",
                    path=self.path,
                )
            self._write(view[:n], progress)  # type: ignore[arg-type]

    def _start(self, reply: httpx.Response) -> None:
        status = reply.status_code
        if status == 416 and self.offset:
            match = _UNSATISFIED_RANGE.match(reply.headers.get("content-range", ""))
            if match and int(match.group(1)) == self.offset:
                self.total, self.done = self.offset, True
                return
            self._restart()
            raise WaveSpeedIncompleteDownload(f"server refused to resume {self.path}; starting over")
        if status == 206 and self.offset:
            match = _CONTENT_RANGE.match(reply.headers.get("content-range", ""))
            if not match or int(match.group(1)) != self.offset:
                self._restart()
                raise WaveSpeedIncompleteDownload(f"server resumed {self.path} at the wrong offset; starting over")
            self.total = None if match.group(3) == "*" else int(match.group(3))
        elif status == 200:
            if self.offset:
                log.info("Server ignored Range for %s; downloading it again from the start", self.path)
                self._restart()
            length = reply.headers.get("content-length")
            self.total = int(length) if length and length.isdigit() else None
        else:
            reply.read()
            if status in (401, 403, 404, 410):
                raise WaveSpeedDownloadError(
                    f"output {self.url} is gone or refused (HTTP {status}): WaveSpeed keeps outputs for 7 days"
                )
            raise protocol.error_for(
                status, reply.text[:200] or reply.reason_phrase, path=self.path, headers=reply.headers
            )
        self.content_type = reply.headers.get("content-type", "").split(";")[0].strip()


def _body_socket(reply: httpx.Response) -> socket.socket | None:
    """The socket the rest of ``reply``'s body can be read from with ``recv_into``, or None (stay on httpx).

    Only a plain HTTP/1.x body framed by ``Content-Length`` on httpcore's own socket stream (plain TCP
    or TLS, direct or through a proxy's CONNECT tunnel) qualifies; TLS inside TLS (an https proxy in
    front of an https URL) or any transport that is not a real socket keeps the httpx path.
    """
    if reply.http_version not in ("HTTP/1.1", "HTTP/1.0") or "transfer-encoding" in reply.headers:
        return None
    if not reply.headers.get("content-length", "").isdigit():
        return None
    stream = reply.extensions.get("network_stream")
    if stream is None or type(stream).__name__ != "SyncStream":
        return None
    sock = stream.get_extra_info("socket")
    return sock if isinstance(sock, socket.socket) else None


def download(
    http: httpx.Client,
    url: str,
    sink: OutputSink,
    *,
    retry: RetryPolicy,
    progress: Callable[[int, int | None], None] | None = None,
) -> DownloadResult:
    """Fetch ``url`` completely into ``sink`` or raise; on return the byte count has been verified."""
    transfer = _Transfer(http, url, sink)
    started = time.monotonic()
    retry.retrying()(transfer.attempt, progress)
    log.debug("Downloaded %s (%d bytes) in %.2f s", transfer.path, transfer.offset, time.monotonic() - started)
    return DownloadResult(url, transfer.offset, transfer.content_type, transfer.resumed, transfer.restarted)


def remote_size(http: httpx.Client, url: str) -> int | None:
    """The size a plain GET of ``url`` would send (HEAD ``Content-Length``), or None when not known."""
    try:
        reply = http.head(url, headers={"Accept-Encoding": "identity"})
    except httpx.HTTPError:
        return None
    length = reply.headers.get("content-length", "")
    return int(length) if reply.status_code == 200 and length.isdigit() else None
