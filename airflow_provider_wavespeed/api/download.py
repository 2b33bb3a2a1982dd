"""Stream one output URL into a sink with bounded memory, resuming a cut transfer with ``Range``.

The byte count is checked against ``Content-Length``/``Content-Range`` before the caller may
commit the file; a short transfer is resumed from where it stopped (or restarted when the server
ignores ``Range``), under the shared retry policy.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
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


class OutputSink(Protocol):
    def write(self, data: bytes) -> None: ...

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
                # Unsized reads: every byte received before a cut is written, so a resume loses nothing.
                for chunk in reply.iter_raw():
                    self.sink.write(chunk)
                    self.offset += len(chunk)
                    if progress:
                        progress(self.offset, self.total)
        except httpx.HTTPError as exc:
            raise WaveSpeedConnectionError(
                f"download interrupted after {self.offset} bytes ({type(exc).__name__}: {exc})", path=self.path
            ) from exc
        if self.total is not None and self.offset != self.total:
            raise WaveSpeedIncompleteDownload(f"download of {self.path} stopped at {self.offset} of {self.total} bytes")
        self.done = True

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
