"""Durations of audio the emulator serves itself: its uploads (read from a WAV header) and WAV outputs."""

from __future__ import annotations

import struct
from urllib.parse import unquote, urlsplit

from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.media import wav_duration_for_size

_HEADER_PROBE = 4096


def wav_duration(head: bytes, total_size: int | None = None) -> float | None:
    """Seconds of audio from the start of a RIFF/WAVE file, or None if it is not one we can read.

    ``total_size`` (the file's length) caps the ``data`` chunk's declared size, as players do for
    streamed files whose header says 0xFFFFFFFF.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    byte_rate: int | None = None
    pos = 12
    for _ in range(64):  # bounded: a header has a handful of chunks
        if pos + 8 > len(head):
            return None
        chunk, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack("<I", head[pos + 16 : pos + 20])[0]  # after format, channels, rate
        elif chunk == b"data":
            if not byte_rate:
                return None
            if total_size is not None:
                size = min(size, max(0, total_size - (pos + 8)))
            return size / byte_rate
        pos += 8 + size + (size & 1)
    return None


def served_media_duration(ctx: AppContext, url: str) -> float | None:
    """Duration of ``url`` when it points at the emulator's own audio; None for anything else."""
    if not ctx.base_url or not url.startswith(ctx.base_url + "/media/"):
        return None
    parts = unquote(urlsplit(url).path).strip("/").split("/")
    if len(parts) != 4:
        return None
    _, area, key, name = parts
    if area == "uploads":
        upload = ctx.state.uploads.get(key)
        if upload is None or upload.path is None or name != upload.filename:
            return None
        with open(upload.path, "rb") as fh:
            fh.seek(upload.offset)
            head = fh.read(min(_HEADER_PROBE, upload.length))
        return wav_duration(head, upload.length)
    if area == "outputs":
        record = ctx.state.get(key)
        if record is None or record.output_kind != "wav" or not name.endswith(".wav"):
            return None
        return wav_duration_for_size(record.output_size)
    return None
