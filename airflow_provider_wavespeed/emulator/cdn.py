"""The unauthenticated byte endpoints: generated outputs, presigned upload PUTs and uploaded files."""

from __future__ import annotations

import os
from collections.abc import Iterator

from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.media import CHUNK_SIZE, CONTENT_TYPES, iter_output_bytes
from airflow_provider_wavespeed.emulator.state import EXTENSIONS
from airflow_provider_wavespeed.emulator.wire import Request, Response, StreamBody, error, ranged_response


def serve_output(ctx: AppContext, request: Request, prediction_id: str, filename: str) -> Response:
    """``GET|HEAD /media/outputs/<prediction_id>/<index>.<ext>``; only completed, undeleted predictions."""
    record = ctx.state.get(prediction_id)
    stem, _, ext = filename.partition(".")
    if (
        record is None
        or not stem.isdigit()
        or int(stem) >= record.output_count
        or ext != EXTENSIONS[record.output_kind]
        or record.status(ctx.state.now(), hold=ctx.config.hold_predictions) != "completed"
    ):
        return error(404, f"output not found: {request.path}")
    index, size, kind = int(stem), record.output_size, record.output_kind
    is_get = request.method == "GET"
    config, stats = ctx.config, ctx.stats

    def make_stream(start: int, end: int) -> StreamBody:
        cut_after = None
        if is_get:
            stats.downloads_started += 1
            if config.cut_downloads > 0:
                config.cut_downloads -= 1
                stats.cut_downloads += 1
                cut_after = config.cut_after_bytes

        def progress(n: int) -> None:
            stats.bytes_served += n

        def complete() -> None:
            stats.downloads_completed += 1

        return StreamBody(
            length=end - start,
            chunks=iter_output_bytes(prediction_id, index, size, kind, start, end),
            cut_after=cut_after,
            on_progress=progress,
            on_complete=complete,
        )

    return ranged_response(request, size, CONTENT_TYPES[kind], make_stream, config.range_support)


def receive_upload(ctx: AppContext, request: Request, token: str) -> Response:
    """``PUT /_uploads/<token>``: the presigned-URL upload (no Authorization needed, any 2xx is success)."""
    record = ctx.state.uploads.get(token)
    spooled = request.body_file
    if record is None or spooled is None:
        return error(404, f"upload not found: {token}")
    target = ctx.upload_path(token)
    os.replace(spooled.path, target)
    ctx.state.complete_upload(token, target, 0, spooled.size)
    content_type = request.header("content-type")
    if content_type:
        record.content_type = content_type
    ctx.stats.uploads += 1
    return Response(200, [("ETag", f'"{token}"')])


def _file_chunks(path: str, offset: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        fh.seek(offset)
        remaining = length
        while remaining > 0:
            data = fh.read(min(CHUNK_SIZE, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data


def serve_upload(ctx: AppContext, request: Request, token: str, filename: str) -> Response:
    """``GET|HEAD /media/uploads/<token>/<filename>``: the bytes of a finished upload."""
    record = ctx.state.uploads.get(token)
    if record is None or record.path is None or filename != record.filename:
        return error(404, f"file not found: {request.path}")
    path, base = record.path, record.offset

    def make_stream(start: int, end: int) -> StreamBody:
        return StreamBody(length=end - start, chunks=_file_chunks(path, base + start, end - start))

    return ranged_response(request, record.length, record.content_type, make_stream, ctx.config.range_support)
