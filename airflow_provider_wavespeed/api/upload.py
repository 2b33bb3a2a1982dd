"""Upload a media file and get back the URL to pass as a model input.

Current flow: ``POST /api/v3/media/uploads`` returns a ticket, the bytes are PUT to its presigned
URL (without the API key), and ``download_url`` is the input URL. When the ticket endpoint does
not exist, fall back to the legacy multipart ``POST /api/v3/media/upload/binary`` (field ``file``).
The file is streamed in chunks, never read whole into memory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import httpx

from airflow_provider_wavespeed.api import protocol
from airflow_provider_wavespeed.api.client import WaveSpeedClient, connection_error
from airflow_provider_wavespeed.api.errors import WaveSpeedNotFoundError, WaveSpeedServerError

log = logging.getLogger(__name__)

UPLOAD_CHUNK_SIZE = 1024 * 1024
PROGRESS_EVERY_SECONDS = 5.0


def _chunks(stream: BinaryIO, size: int, name: str, progress: Callable[[int, int], None] | None) -> Iterator[bytes]:
    sent = 0
    while chunk := stream.read(UPLOAD_CHUNK_SIZE):
        sent += len(chunk)
        if progress:
            progress(sent, size)
        yield chunk


class UploadProgress:
    """Log bytes, percent and MB/s of an upload at most every few seconds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = self.last = time.monotonic()

    def __call__(self, sent: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_SECONDS and sent < total:
            return
        self.last = now
        rate = sent / max(now - self.started, 1e-6) / 1e6
        log.info("Uploading %s: %.1f of %.1f MB (%.0f%%) at %.1f MB/s", self.name, sent / 1e6, total / 1e6,
                 100 * sent / max(total, 1), rate)


def _put(client: WaveSpeedClient, ticket: dict[str, Any], stream: BinaryIO, size: int, name: str) -> None:
    upload = ticket.get("upload") or {}
    if str(upload.get("method", "PUT")).upper() != "PUT" or not upload.get("url"):
        raise WaveSpeedServerError(200, f"upload ticket has no PUT url: {sorted(upload)}", path="/media/uploads")
    headers = {str(k): str(v) for k, v in (upload.get("headers") or {}).items()}
    headers["Content-Length"] = str(size)
    url = str(upload["url"])

    def attempt() -> None:
        stream.seek(0)
        try:
            reply = client.http.request(
                "PUT", url, content=_chunks(stream, size, name, UploadProgress(name)), headers=headers
            )
        except httpx.HTTPError as exc:
            raise connection_error(exc, "presigned upload") from exc
        if not 200 <= reply.status_code < 300:
            raise protocol.error_for(reply.status_code, reply.text[:200], path="presigned upload")

    if stream.seekable():
        client.settings.retry.retrying()(attempt)
    else:
        attempt()


def upload_stream(
    client: WaveSpeedClient, stream: BinaryIO, *, filename: str, size: int, content_type: str | None
) -> str:
    """Upload ``size`` bytes from ``stream`` and return the URL to use as a model input."""
    try:
        ticket = client.call(protocol.create_upload(filename, size, content_type)) or {}
    except WaveSpeedNotFoundError:
        log.info("Upload tickets are not available here; using the legacy multipart upload")
        return _legacy_upload(client, stream, filename=filename, content_type=content_type)
    _put(client, ticket, stream, size, filename)
    url = ticket.get("download_url")
    if not isinstance(url, str) or not url:
        raise WaveSpeedServerError(200, "upload ticket has no download_url", path="/media/uploads")
    return url


def _legacy_upload(client: WaveSpeedClient, stream: BinaryIO, *, filename: str, content_type: str | None) -> str:
    request = protocol.ApiRequest("POST", protocol.LEGACY_UPLOAD_PATH, retry_safe=False)
    stream.seek(0)
    try:
        reply = client.http.post(
            client.settings.url(request.path),
            files={"file": (filename, stream, content_type or "application/octet-stream")},
            headers=client.settings.headers(),
        )
    except httpx.HTTPError as exc:
        raise connection_error(exc, request.path) from exc
    data = protocol.parse_reply(request, reply.status_code, reply.headers, reply.content) or {}
    url = data.get("download_url") or data.get("url")
    if not isinstance(url, str) or not url:
        raise WaveSpeedServerError(200, "legacy upload reply has no download_url", path=request.path)
    return url
