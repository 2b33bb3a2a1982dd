"""Serving a stored output: which one a request may read, ``Range`` parsing, and streaming it in chunks.

A request names a task instance and an index into the ``outputs`` its record lists; nothing else is ever
opened. The output is a local path / ``file://`` URI (an existing regular file) or any other URI, read
through ``ObjectStoragePath`` with the record's ``destination_conn_id``.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote, urlparse

CHUNK_SIZE = 256 * 1024

#: Content types of the outputs WaveSpeed models produce, independent of the host's mime.types.
_CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".flac": "audio/flac",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
#: Types served inline. Anything else (html, svg, ...) is sent as an attachment, never rendered on
#: Airflow's origin.
_INLINE_PREFIXES = ("image/", "video/", "audio/")


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return _CONTENT_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def served_inline(ctype: str) -> bool:
    return ctype.startswith(_INLINE_PREFIXES) and not ctype.startswith("image/svg")


def media_kind(name: str) -> str:
    """image, video, audio or other: what the run tab renders the output as (what is served inline)."""
    ctype = content_type(name)
    return ctype.split("/", 1)[0] if served_inline(ctype) else "other"


# -- Range -------------------------------------------------------------------------------------------


class Unsatisfiable(Exception):
    """The Range header is valid but selects no byte of the file: answer 416."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``(first, last)`` one ``Range`` header asks for, or None for the whole file.

    One range only (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``); a header that is not that (another unit,
    several ranges, bad syntax) is ignored, as RFC 9110 allows. Raises :class:`Unsatisfiable`.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or (first_text and not first_text.isdigit()) or (last_text and not last_text.isdigit()):
        return None
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - suffix), size - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size:
        raise Unsatisfiable
    return first, min(int(last_text), size - 1) if last_text else size - 1


# -- opening an output -------------------------------------------------------------------------------


@dataclass
class OpenedOutput:
    """A stored output ready to stream: its size, its name and an opener positioned at a byte."""

    name: str
    size: int
    _open: Any

    def chunks(self, first: int, last: int) -> Iterator[bytes]:
        """Bytes ``first..last`` (inclusive), read ``CHUNK_SIZE`` at a time."""
        handle: IO[bytes] = self._open()
        try:
            handle.seek(first)
            remaining = last - first + 1
            while remaining > 0:
                data = handle.read(min(CHUNK_SIZE, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            handle.close()


class NotServable(Exception):
    """The recorded output cannot be read (missing, not a regular file, unreachable): answer 404."""


def _local_path(output: str) -> str | None:
    """The filesystem path of a local output (plain absolute path or ``file://``), else None."""
    parsed = urlparse(output)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise NotServable
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return output
    return None


def open_output(output: str, conn_id: str | None) -> OpenedOutput:
    """Open one recorded output for streaming, or raise :class:`NotServable`."""
    path = _local_path(output)
    if path is not None:
        return _open_local(path)
    return _open_remote(output, conn_id)


def _open_local(path: str) -> OpenedOutput:
    if not os.path.isabs(path):
        raise NotServable
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        raise NotServable from None
    if not stat.S_ISREG(info.st_mode):
        raise NotServable
    return OpenedOutput(name=os.path.basename(path), size=info.st_size, _open=lambda: open(path, "rb"))


def _open_remote(uri: str, conn_id: str | None) -> OpenedOutput:
    try:
        from airflow.sdk import ObjectStoragePath

        remote = ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)
        if not remote.is_file():
            raise NotServable
        size = int(remote.stat().st_size)
    except NotServable:
        raise
    except Exception:  # any storage error (missing object, no credentials, bad URI) is a 404 to the client
        raise NotServable from None
    return OpenedOutput(name=remote.name, size=size, _open=lambda: remote.open("rb"))


# -- which output a request may read -------------------------------------------------------------------
