"""Upload a media file and get back the URL to pass as a model input.

Current flow: ``POST /api/v3/media/uploads`` returns a ticket, the bytes are PUT to its presigned
URL (without the API key), and ``download_url`` is the input URL. When the ticket endpoint does
not exist, fall back to the legacy multipart ``POST /api/v3/media/upload/binary`` (field ``file``).
The file is streamed in chunks, never read whole into memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import httpx

from airflow_provider_wavespeed.api import protocol
from airflow_provider_wavespeed.api.client import WaveSpeedClient, connection_error
from airflow_provider_wavespeed.api.errors import WaveSpeedNotFoundError, WaveSpeedServerError
from airflow_provider_wavespeed.api.progress import TransferProgress

log = logging.getLogger(__name__)

UPLOAD_CHUNK_SIZE = 1024 * 1024


class ProgressReader:
    """A read-only view of an upload stream that reports its progress as it is read."""

    def __init__(self, stream: BinaryIO, size: int, name: str) -> None:
        self.stream, self.size = stream, size
        self.sent = 0
        self.progress = TransferProgress("Uploading", name)

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if data:
            self.sent += len(data)
            self.progress(self.sent, self.size)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.stream.seek(offset, whence)
        self.sent = position
        return position

    def tell(self) -> int:
        return self.stream.tell()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(UPLOAD_CHUNK_SIZE):
            yield chunk


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
            reply = client.http.request("PUT", url, content=iter(ProgressReader(stream, size, name)), headers=headers)
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
        reader = ProgressReader(stream, size, filename)
        return _legacy_upload(client, reader, filename=filename, content_type=content_type)
    _put(client, ticket, stream, size, filename)
    url = ticket.get("download_url")
    if not isinstance(url, str) or not url:
        raise WaveSpeedServerError(200, "upload ticket has no download_url", path="/media/uploads")
    return url


def _legacy_upload(client: WaveSpeedClient, stream: ProgressReader, *, filename: str, content_type: str | None) -> str:
    request = protocol.ApiRequest("POST", protocol.LEGACY_UPLOAD_PATH, retry_safe=False)
    stream.seek(0)
    try:
        reply = client.http.post(
            client.settings.url(request.path),
            # httpx reads any object with read(); the reader logs progress as the part streams out.
            files={"file": (filename, cast(BinaryIO, stream), content_type or "application/octet-stream")},
            headers=client.settings.headers(),
        )
    except httpx.HTTPError as exc:
        raise connection_error(exc, request.path) from exc
    data = protocol.parse_reply(request, reply.status_code, reply.headers, reply.content) or {}
    url = data.get("download_url") or data.get("url")
    if not isinstance(url, str) or not url:
        raise WaveSpeedServerError(200, "legacy upload reply has no download_url", path=request.path)
    return url
