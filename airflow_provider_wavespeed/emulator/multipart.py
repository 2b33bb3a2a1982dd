"""Locate the parts of a ``multipart/form-data`` body that was spooled to disk, without loading it."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import BinaryIO

_SCAN = 1 << 20
_MAX_PART_HEADERS = 16 * 1024


class MultipartError(ValueError):
    pass


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None
    content_type: str | None
    offset: int  # where the part's content starts in the file
    length: int


def boundary_from_content_type(content_type: str) -> str:
    """The ``boundary`` parameter of a multipart/form-data Content-Type, or raise MultipartError."""
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "multipart/form-data":
        raise MultipartError("expected Content-Type multipart/form-data")
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', params, re.IGNORECASE)
    if not match:
        raise MultipartError("multipart/form-data without a boundary")
    return match.group(1) or match.group(2)


def _find_all(path: str, needle: bytes) -> list[int]:
    """Offsets of every occurrence of ``needle`` in the file (chunked scan with overlap)."""
    found: list[int] = []
    overlap = len(needle) - 1
    with open(path, "rb") as fh:
        base = 0
        carry = b""
        while True:
            chunk = fh.read(_SCAN)
            if not chunk:
                break
            data = carry + chunk
            start = 0
            while (hit := data.find(needle, start)) != -1:
                found.append(base - len(carry) + hit)
                start = hit + 1
            carry = data[-overlap:] if overlap else b""
            base += len(chunk)
    return sorted(set(found))


def _parse_disposition(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for match in re.finditer(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))', value):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = quoted if quoted is not None else bare.strip()
    return params


def _is_delimiter_line(fh: BinaryIO, after: int) -> bool:
    """A real delimiter is followed by "--" (the last one) or optional blanks and CRLF (RFC 2046)."""
    fh.seek(after)
    tail = fh.read(80)
    return tail.startswith(b"--") or tail.lstrip(b" \t").startswith(b"\r\n") or not tail


def parse_multipart_file(path: str, boundary: str) -> list[Part]:
    """Parse the part headers of a multipart body stored at ``path``; contents stay on disk."""
    delimiter = b"--" + boundary.encode("latin-1")
    with open(path, "rb") as fh:
        starts_with_delimiter = fh.read(len(delimiter)) == delimiter
    hits = _find_all(path, b"\r\n" + delimiter)
    # Each entry: offset of the delimiter line's "--" and the offset where the previous part ends.
    bounds = [(h + 2, h) for h in hits]
    if starts_with_delimiter:
        bounds.insert(0, (0, 0))
    with open(path, "rb") as fh:
        bounds = [b for b in bounds if _is_delimiter_line(fh, b[0] + len(delimiter))]
    if not bounds:
        raise MultipartError("no multipart boundary found in the body")
    parts: list[Part] = []
    with open(path, "rb") as fh:
        for (delim_at, _), (_, next_end) in itertools.pairwise(bounds):
            fh.seek(delim_at + len(delimiter))
            head = fh.read(_MAX_PART_HEADERS)
            if head.startswith(b"--"):
                break
            blanks = len(head) - len(head.lstrip(b" \t"))
            head = head[blanks:]
            header_end = head.find(b"\r\n\r\n")
            if not head.startswith(b"\r\n") or header_end == -1:
                raise MultipartError("malformed multipart part headers")
            headers: dict[str, str] = {}
            for line in head[2:header_end].decode("utf-8", "replace").split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            disposition = _parse_disposition(headers.get("content-disposition", ""))
            content_start = delim_at + len(delimiter) + blanks + header_end + 4
            parts.append(
                Part(
                    name=disposition.get("name", ""),
                    filename=disposition.get("filename"),
                    content_type=headers.get("content-type"),
                    offset=content_start,
                    length=max(0, next_end - content_start),
                )
            )
    return parts
