"""Store a completed prediction's outputs in a destination: streamed, verified, atomic, concurrent."""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from airflow_provider_wavespeed.api.client import WaveSpeedClient
from airflow_provider_wavespeed.api.download import download, remote_size
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.progress import TransferProgress
from airflow_provider_wavespeed.destinations import Destination

log = logging.getLogger(__name__)

_EXTENSION = re.compile(r"^\.[A-Za-z0-9]{1,5}$")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def output_name(prediction_id: str, index: int, count: int, url: str, stem: str | None = None) -> str:
    """``<stem or prediction id>[_<index>]<ext>``: stable across retries, so stored outputs are found again."""
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
    urls = prediction.output_urls()
    jobs = [(i, url, output_name(prediction.id, i, len(urls), url, stem)) for i, url in enumerate(urls)]
    jobs = [job for job in jobs if job[0] not in skip]
    results: dict[int, str] = {}
    lock = threading.Lock()

    def run(job: tuple[int, str, str]) -> None:
        index, url, name = job
        stored = store_output(client, url, destination, name)
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
