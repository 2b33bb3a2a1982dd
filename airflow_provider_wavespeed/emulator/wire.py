"""Transport-independent request/response types, JSON envelopes and ``Range`` parsing."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json"


@dataclass
class BodyFile:
    """A request body that was streamed to disk (uploads). The handler may move the file away."""

    path: str
    size: int


@dataclass
class Request:
    method: str
    path: str  # percent-decoded, without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes = b""
    body_file: BodyFile | None = None

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class StreamBody:
    """A response body produced lazily, written chunk by chunk with backpressure."""

    length: int
    chunks: Iterable[bytes | memoryview]
    #: Close the connection after this many body bytes (emulated broken download).
    cut_after: int | None = None
    on_progress: Callable[[int], None] | None = None
    on_complete: Callable[[], None] | None = None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: StreamBody | None = None
    #: Close the connection without sending anything (emulated lost reply).
    drop_connection: bool = False

    @property
    def content_length(self) -> int:
        return self.stream.length if self.stream is not None else len(self.body)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(value: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, [("Content-Type", JSON_TYPE), *(headers or [])], json_bytes(value))


def ok(data: Any) -> Response:
    """``{"code": 200, "message": "success", "data": ...}``"""
    return json_response({"code": 200, "message": "success", "data": data})


def error(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    """``{"code": <status>, "message": <text>, "data": null}`` with the same HTTP status."""
    return json_response({"code": status, "message": message, "data": None}, status, headers)


def dropped() -> Response:
    return Response(0, drop_connection=True)


class RangeNotSatisfiable(ValueError):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into an inclusive ``(first, last)`` pair.

    Returns None when the header is absent, malformed or asks for several ranges (serve the full
    body, as RFC 9110 allows). Raises ``RangeNotSatisfiable`` when it cannot be served (416).
    """
    header = header.strip()
    if not header.lower().startswith("bytes="):
        return None
    spec = header[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first_text, last_text = (part.strip() for part in spec.split("-", 1))
    if not first_text:
        if not last_text.isdigit():
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return None
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(header)
    return first, min(last, size - 1)


def ranged_response(
    request: Request,
    size: int,
    content_type: str,
    make_stream: Callable[[int, int], StreamBody],
    range_support: bool,
) -> Response:
    """200/206/416 for a byte resource of ``size`` bytes; ``make_stream(start, end_exclusive)``."""
    headers = [("Content-Type", content_type)]
    if not range_support:
        return Response(200, headers, stream=make_stream(0, size))
    headers.append(("Accept-Ranges", "bytes"))
    try:
        wanted = parse_range(request.header("range"), size)
    except RangeNotSatisfiable:
        return Response(416, [*headers, ("Content-Range", f"bytes */{size}")])
    if wanted is None:
        return Response(200, headers, stream=make_stream(0, size))
    first, last = wanted
    headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
    return Response(206, headers, stream=make_stream(first, last + 1))
