"""Deterministic output files: a real MP4/PNG/WAV header followed by seeded padding up to an exact size.

The bytes are a pure function of ``(prediction_id, index, size, kind)``. They are generated on the
fly in ~1 MiB slices of a pre-built window (a 64 KiB seeded block repeated), so serving a 1 GiB
output costs no memory beyond that window and no disk at all.

* ``mp4``: a real, playable 2 s H.264 clip (``ftyp`` + ``moov`` + ``mdat``, faststart; see
  ``sample_video``) followed by one top-level ``free`` box holding the padding, which players skip,
  so browsers can play, seek (Range requests) and show a frame of any size of output.
* ``png``: signature, ``IHDR`` and ``IDAT`` of a real 8x8 RGB image, the padding inside private
  ancillary ``wsPd`` chunk(s), then ``IEND``. Every CRC is valid; the padding chunk's CRC is computed
  arithmetically (CRC-32 combination), so even a huge PNG is laid out in microseconds.
* ``wav``: a 44-byte RIFF/WAVE header (PCM, mono, 16 kHz, 16-bit) and the padding as samples, so
  the file plays as noise and its duration is known: ``(size - 44) / 32000`` seconds (pricing reads it).
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from airflow_provider_wavespeed.emulator.sample_video import SAMPLE_MP4

OutputKind = Literal["mp4", "png", "wav"]

CONTENT_TYPES: dict[str, str] = {"mp4": "video/mp4", "png": "image/png", "wav": "audio/wav"}
WAV_SAMPLE_RATE = 16_000
WAV_BYTE_RATE = WAV_SAMPLE_RATE * 2  # mono, 16-bit
WAV_HEADER_SIZE = 44
CHUNK_SIZE = 1 << 20
BLOCK_SIZE = 1 << 16
PNG_PAD_CHUNK_TYPE = b"wsPd"  # ancillary, private, reserved bit clear, safe-to-copy
_MAX_PNG_CHUNK = 0x7FFFFFFF
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SIDE = 8


# --------------------------------------------------------------------------------------------------
# CRC-32 combination (port of zlib's crc32_combine): crc(A + B) from crc(A), crc(B) and len(B).
# --------------------------------------------------------------------------------------------------


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    i = 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


@functools.cache
def _zero_byte_operators() -> tuple[list[int], ...]:
    """operators[k] appends 2**k zero bytes to a CRC-32 state."""
    one_bit = [0xEDB88320] + [1 << (n - 1) for n in range(1, 32)]
    op = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # 8 zero bits = 1 byte
    ops = [op]
    for _ in range(63):
        op = _gf2_square(op)
        ops.append(op)
    return tuple(ops)


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC-32 of the concatenation A + B given crc32(A), crc32(B) and len(B)."""
    ops = _zero_byte_operators()
    k = 0
    while len2:
        if len2 & 1:
            crc1 = _gf2_times(ops[k], crc1)
        len2 >>= 1
        k += 1
    return crc1 ^ crc2


def _repeated_block_crc(block: bytes, length: int) -> int:
    """CRC-32 of the first ``length`` bytes of ``block`` repeated for ever."""
    count, rest = divmod(length, len(block))
    acc = 0
    cur, cur_len = zlib.crc32(block), len(block)
    while count:
        if count & 1:
            acc = crc32_combine(acc, cur, cur_len)
        count >>= 1
        if count:
            cur = crc32_combine(cur, cur, cur_len)
            cur_len *= 2
    return crc32_combine(acc, zlib.crc32(block[:rest]), rest)


# --------------------------------------------------------------------------------------------------
# Layout: literal byte segments and padding segments (padding always starts at offset 0 of the block).
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pad:
    length: int


_Segment = bytes | _Pad


@dataclass(frozen=True)
class OutputLayout:
    """The byte layout of one output file."""

    kind: str
    size: int
    segments: tuple[_Segment, ...]
    window: memoryview  # the seeded block repeated, CHUNK_SIZE + BLOCK_SIZE bytes long

    def iter_bytes(self, start: int = 0, end: int | None = None) -> Iterator[bytes | memoryview]:
        """Yield bytes ``[start, end)`` in pieces of at most CHUNK_SIZE (zero-copy slices where possible)."""
        end = self.size if end is None else min(end, self.size)
        offset = 0
        for segment in self.segments:
            seg_len = segment.length if isinstance(segment, _Pad) else len(segment)
            seg_start, seg_end = offset, offset + seg_len
            offset = seg_end
            lo, hi = max(start, seg_start), min(end, seg_end)
            if lo >= hi:
                continue
            if isinstance(segment, bytes):
                yield segment[lo - seg_start : hi - seg_start]
                continue
            pos = lo - seg_start
            stop = hi - seg_start
            while pos < stop:
                n = min(CHUNK_SIZE, stop - pos)
                at = pos % BLOCK_SIZE
                yield self.window[at : at + n]
                pos += n


def _seed_block(prediction_id: str, index: int) -> bytes:
    return hashlib.shake_256(f"wavespeed-emulator:{prediction_id}:{index}".encode()).digest(BLOCK_SIZE)


def _mp4_segments(size: int) -> tuple[int, tuple[_Segment, ...]]:
    size = max(size, len(SAMPLE_MP4) + 8)
    remaining = size - len(SAMPLE_MP4)
    if remaining <= 0xFFFFFFFF:
        free = struct.pack(">I", remaining) + b"free"
    else:  # 64-bit "largesize" box header
        free = struct.pack(">I", 1) + b"free" + struct.pack(">Q", remaining)
    return size, (SAMPLE_MP4 + free, _Pad(remaining - len(free)))


def _png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(chunk_type))
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", crc)


def _png_head(block: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", _PNG_SIDE, _PNG_SIDE, 8, 2, 0, 0, 0)  # 8x8, 8-bit RGB
    row_len = _PNG_SIDE * 3
    raw = b"".join(b"\x00" + block[r * row_len : (r + 1) * row_len] for r in range(_PNG_SIDE))
    # zlib stream with one stored deflate block: byte-for-byte stable across zlib versions.
    stored = b"\x01" + struct.pack("<HH", len(raw), len(raw) ^ 0xFFFF) + raw
    idat = b"\x78\x01" + stored + struct.pack(">I", zlib.adler32(raw))
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def _png_segments(size: int, block: bytes) -> tuple[int, tuple[_Segment, ...]]:
    head = _png_head(block)
    iend = _png_chunk(b"IEND", b"")
    size = max(size, len(head) + 12 + len(iend))
    available = size - len(head) - len(iend)
    chunks = 1
    while available - 12 * chunks > chunks * _MAX_PNG_CHUNK:
        chunks += 1
    data_total = available - 12 * chunks
    segments: list[_Segment] = [head]
    type_crc = zlib.crc32(PNG_PAD_CHUNK_TYPE)
    for i in range(chunks):
        n = min(_MAX_PNG_CHUNK, data_total - i * _MAX_PNG_CHUNK)
        crc = crc32_combine(type_crc, _repeated_block_crc(block, n), n)
        segments.append(struct.pack(">I", n) + PNG_PAD_CHUNK_TYPE)
        segments.append(_Pad(n))
        segments.append(struct.pack(">I", crc))
    segments.append(iend)
    return size, tuple(segments)


def wav_header(data_size: int) -> bytes:
    """RIFF/WAVE header of a PCM mono 16 kHz 16-bit file with ``data_size`` bytes of samples."""
    fmt = struct.pack("<HHIIHH", 1, 1, WAV_SAMPLE_RATE, WAV_BYTE_RATE, 2, 16)
    riff_size = min(0xFFFFFFFF, 4 + (8 + len(fmt)) + 8 + data_size + (data_size & 1))
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", min(0xFFFFFFFF, data_size))
    )


def _wav_segments(size: int) -> tuple[int, tuple[_Segment, ...]]:
    size = max(size, WAV_HEADER_SIZE)
    body = size - WAV_HEADER_SIZE
    samples = body - (body & 1)  # whole 16-bit samples; an odd last byte is the RIFF pad byte
    return size, (wav_header(samples), _Pad(body))


def wav_duration_for_size(size: int) -> float:
    """Seconds of audio in an emulator-made WAV output of ``size`` bytes."""
    body = max(0, size - WAV_HEADER_SIZE)
    return (body - (body & 1)) / WAV_BYTE_RATE


@functools.lru_cache(maxsize=16)
def output_layout(prediction_id: str, index: int, size: int, kind: str) -> OutputLayout:
    """Layout of output ``index`` of a prediction. ``size`` is clamped up to the smallest valid file."""
    block = _seed_block(prediction_id, index)
    if kind == "mp4":
        real_size, segments = _mp4_segments(size)
    elif kind == "png":
        real_size, segments = _png_segments(size, block)
    elif kind == "wav":
        real_size, segments = _wav_segments(size)
    else:
        raise ValueError(f"unknown output kind: {kind}")
    window = memoryview(block * (CHUNK_SIZE // BLOCK_SIZE + 1))
    return OutputLayout(kind=kind, size=real_size, segments=segments, window=window)


def output_file_size(size: int, kind: str) -> int:
    """The real size of an output of requested ``size`` (only differs for tiny sizes)."""
    return output_layout("size-probe", 0, size, kind).size


def iter_output_bytes(
    prediction_id: str, index: int, size: int, kind: str, start: int = 0, end: int | None = None
) -> Iterator[bytes | memoryview]:
    return output_layout(prediction_id, index, size, kind).iter_bytes(start, end)


def expected_output_bytes(prediction_id: str, index: int, size: int, kind: str = "mp4") -> bytes:
    """The exact bytes the emulator serves for an output (materialised: keep ``size`` modest)."""
    return b"".join(bytes(piece) for piece in iter_output_bytes(prediction_id, index, size, kind))


@functools.lru_cache(maxsize=64)
def output_sha256(prediction_id: str, index: int, size: int, kind: str = "mp4") -> str:
    """Hex SHA-256 of an output, computed by streaming (fine for 1 GiB)."""
    digest = hashlib.sha256()
    for piece in iter_output_bytes(prediction_id, index, size, kind):
        digest.update(piece)
    return digest.hexdigest()
