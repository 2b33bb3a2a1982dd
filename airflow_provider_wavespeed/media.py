"""Media inputs from anywhere: a public URL passes through; a local file or an object-storage URI
(``ObjectStoragePath``, e.g. ``s3://conn@bucket/key``) is uploaded first and replaced by its URL."""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from airflow_provider_wavespeed.destinations import local_path

PASS_THROUGH_SCHEMES = ("http://", "https://", "data:")


MEDIA_FIELD_HINTS = ("image", "audio", "video", "mask", "media", "file")


def is_media_reference(value: Any, field: str = "") -> bool:
    """True for values that must be uploaded: ``file://``/object-storage URIs, and local paths that
    exist or are given for a media field (so a mistyped path fails before anything is billed)."""
    if not isinstance(value, str) or not value.strip() or "\n" in value:
        return False
    text = value.strip()
    if text.startswith(PASS_THROUGH_SCHEMES):
        return False
    if "://" in text:
        scheme = text.split("://", 1)[0]
        return scheme.replace("+", "").replace("-", "").isalnum()
    if text.startswith(("/", "~", "./", "../")):
        return Path(text).expanduser().is_file() or any(hint in field.lower() for hint in MEDIA_FIELD_HINTS)
    return False


@contextmanager
def open_media(reference: str, conn_id: str | None = None) -> Iterator[tuple[BinaryIO, str, int, str | None]]:
    """Open a local path or object-storage URI: ``(stream, filename, size, content_type)``."""
    text = reference.strip()
    if "://" not in text or text.startswith("file://"):
        path = local_path(text)
        if not path.is_file():
            raise FileNotFoundError(f"media input {reference!r} is not a readable file")
        with path.open("rb") as stream:
            yield stream, path.name, path.stat().st_size, mimetypes.guess_type(path.name)[0]
        return
    from airflow.sdk import ObjectStoragePath

    remote = ObjectStoragePath(text, conn_id=conn_id)
    if not remote.is_file():
        raise FileNotFoundError(f"media input {reference!r} does not exist in object storage")
    size = int(remote.stat()["size"])
    with remote.open("rb") as stream:
        yield stream, remote.name, size, mimetypes.guess_type(remote.name)[0]


def _holds_media_reference(value: Any, field: str = "") -> bool:
    """True when ``value`` is uploaded before a submit: a media reference, or a list containing one."""
    if isinstance(value, list):
        return any(is_media_reference(item, field) for item in value)
    return is_media_reference(value, field)


def comparable_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs as a prediction's history ``input`` shows them: the fields that are sent as given.

    A field holding a media reference is left out: it was uploaded, so the API saw (and shows) a URL
    where the task has a path. Every other field is kept and must match.
    """
    return {name: value for name, value in inputs.items() if not _holds_media_reference(value, name)}


def resolve_media_inputs(inputs: Mapping[str, Any], upload: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``inputs`` with every media reference (also inside lists) replaced by its uploaded URL."""
    resolved: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, list):
            resolved[name] = [upload(v) if is_media_reference(v, name) else v for v in value]
        else:
            resolved[name] = upload(value) if is_media_reference(value, name) else value
    return resolved
