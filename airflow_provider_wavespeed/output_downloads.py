"""Store a completed prediction's outputs in a destination: streamed, verified, atomic, concurrent.

Outputs are CDN URLs (downloaded), or naked base64 (``enable_base64_output``: decoded, no CDN request);
either way they land under a temporary name and are moved into place only when complete.
"""

from __future__ import annotations

import base64
import binascii
import logging
import posixpath
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from airflow_provider_wavespeed.api.client import WaveSpeedClient
from airflow_provider_wavespeed.api.download import download, remote_size
from airflow_provider_wavespeed.api.errors import WaveSpeedDownloadError
from airflow_provider_wavespeed.api.models import Prediction, is_inline_output
from airflow_provider_wavespeed.api.progress import TransferProgress
from airflow_provider_wavespeed.destinations import Destination

log = logging.getLogger(__name__)

_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,5}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


#: File signatures of the media WaveSpeed models return: base64 outputs carry no name, the bytes say what they are.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", ".png"),
    (0, b"\xff\xd8\xff", ".jpeg"),
    (0, b"GIF8", ".gif"),
    (8, b"WEBP", ".webp"),
    (8, b"WAVE", ".wav"),
    (4, b"ftyp", ".mp4"),
    (0, b"ID3", ".mp3"),
    (0, b"\xff\xfb", ".mp3"),
    (0, b"fLaC", ".flac"),
    (0, b"OggS", ".ogg"),
)


def sniffed_extension(data: bytes) -> str:
    """The extension the bytes' signature names (``.png``, ``.mp4``...), or ``""`` when unknown."""
    for offset, signature, ext in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return ext
    return ""


def output_name(prediction_id: str, index: int, count: int, url: str, stem: str | None = None) -> str:
    """``<stem or prediction id>[_<index>]<ext>``: stable across retries, so stored outputs are found again.

    ``url`` gives the extension; for a base64 output pass ``"x" + sniffed_extension(data)``.
    """
    ext = posixpath.splitext(urlsplit(url).path)[1]
    base = _SAFE_NAME.sub("_", stem).strip("._") if stem else prediction_id
    if not base:
        raise ValueError(f"filename {stem!r} has no usable characters")
    suffix = f"_{index}" if count > 1 else ""
    return f"{base}{suffix}{ext if _EXTENSION.match(ext) else ''}"


def store_output(client: WaveSpeedClient, url: str, destination: Destination, name: str) -> str:
    """Download one output to ``destination/name`` unless a complete copy is already there."""
    target = destination.uri(name)
    existing = destination.existing_size(name)
    if existing is not None and existing == remote_size(client.http, url):
        log.info("Output %s is already stored completely (%d bytes); skipping", target, existing)
        return target
    sink = destination.open_part(name)
    try:
        result = download(
            client.http, url, sink, retry=client.settings.retry, progress=TransferProgress("Downloading", name)
        )
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    log.info("Stored %s (%d bytes%s)", target, result.size, f", resumed {result.resumed}x" if result.resumed else "")
    return target


def store_inline_output(data: bytes, destination: Destination, name: str) -> str:
    """Write one decoded base64 output to ``destination/name`` atomically (unless already there whole)."""
    target = destination.uri(name)
    if destination.existing_size(name) == len(data):
        log.info("Output %s is already stored completely (%d bytes); skipping", target, len(data))
        return target
    sink = destination.open_part(name)
    try:
        sink.write(data)
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    log.info("Stored %s (%d bytes, from the base64 output)", target, len(data))
    return target


def _decoded(prediction: Prediction, index: int, item: str) -> bytes:
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WaveSpeedDownloadError(
            f"output {index} of prediction {prediction.id} is not valid base64: {exc}"
        ) from None


def store_outputs(
    client: WaveSpeedClient,
    prediction: Prediction,
    destination: Destination,
    *,
    stem: str | None = None,
    skip: frozenset[int] = frozenset(),
    max_concurrency: int = 4,
    on_stored: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Store every output (except indexes in ``skip``) and return their paths/URIs in output order."""
    if prediction.has_left_out_outputs:
        raise WaveSpeedDownloadError(
            f"the base64 outputs of prediction {prediction.id} were left out of this copy of it: "
            "fetch the prediction from the API to store them"
        )
    count = len(prediction.outputs)
    jobs: list[tuple[int, str | bytes, str]] = []
    for index, item in enumerate(prediction.outputs):
        if index in skip:
            continue
        if is_inline_output(item):
            data = _decoded(prediction, index, item)
            jobs.append((index, data, output_name(prediction.id, index, count, "x" + sniffed_extension(data), stem)))
            continue
        url = item if isinstance(item, str) else item.get("url") if isinstance(item, dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            jobs.append((index, url, output_name(prediction.id, index, count, url, stem)))
        else:
            log.warning(
                "Output %d of prediction %s is neither a URL nor base64 media; not stored", index, prediction.id
            )
    results: dict[int, str] = {}
    lock = threading.Lock()

    def run(job: tuple[int, str | bytes, str]) -> None:
        index, source, name = job
        if isinstance(source, bytes):
            stored = store_inline_output(source, destination, name)
        else:
            stored = store_output(client, source, destination, name)
        with lock:
            results[index] = stored
        if on_stored:
            on_stored(index, stored)

    if len(jobs) <= 1 or max_concurrency <= 1:
        for job in jobs:
            run(job)
    else:
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(jobs))) as pool:
            for future in [pool.submit(run, job) for job in jobs]:
                future.result()
    return [results[i] for i, _, _ in jobs]
