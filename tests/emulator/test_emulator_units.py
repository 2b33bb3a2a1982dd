"""Pure-logic pieces of the emulator (no sockets): output bytes, CRC maths, status clock, switches."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib

import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, expected_output_bytes, output_sha256
from airflow_provider_wavespeed.emulator.config import ConfigError, apply_config_updates
from airflow_provider_wavespeed.emulator.media import (
    PNG_PAD_CHUNK_TYPE,
    _Pad,
    crc32_combine,
    iter_output_bytes,
    output_layout,
)
from airflow_provider_wavespeed.emulator.multipart import parse_multipart_file
from airflow_provider_wavespeed.emulator.state import EmulatorState, format_timestamp, parse_timestamp
from airflow_provider_wavespeed.emulator.wire import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(("len_a", "len_b"), [(0, 0), (0, 5), (7, 0), (100, 1), (1000, 70_000)])
def test_crc32_combine_matches_zlib(len_a: int, len_b: int) -> None:
    a, b = os.urandom(len_a), os.urandom(len_b)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("kind", ["mp4", "png"])
@pytest.mark.parametrize("size", [0, 1, 1000, 65_536, 1_000_003])
def test_output_bytes_have_exact_size_and_are_deterministic(kind: str, size: int) -> None:
    data = expected_output_bytes("a" * 32, 0, size, kind)
    minimum = len(expected_output_bytes("a" * 32, 0, 0, kind))
    assert len(data) == max(size, minimum)
    assert data == expected_output_bytes("a" * 32, 0, size, kind)
    if size > minimum + 100:  # padding (and the PNG's pixels) are seeded per (prediction, index)
        assert data != expected_output_bytes("a" * 32, 1, size, kind)
    assert output_sha256("a" * 32, 0, size, kind) == hashlib.sha256(data).hexdigest()


def test_iter_output_bytes_slices_agree_with_full_body() -> None:
    full = expected_output_bytes("p", 0, 3_000_000, "png")
    for start, end in [(0, 10), (5, 70_000), (1_048_570, 2_100_000), (2_999_990, 3_000_000)]:
        assert b"".join(bytes(x) for x in iter_output_bytes("p", 0, 3_000_000, "png", start, end)) == full[start:end]
    assert max(len(x) for x in iter_output_bytes("p", 0, 3_000_000, "png")) <= 1 << 20


def test_huge_png_layout_splits_padding_into_valid_chunks_without_materialising() -> None:
    size = 5 * 1024**3  # PNG chunks hold at most 2**31 - 1 bytes
    layout = output_layout("big", 0, size, "png")
    assert layout.size == size
    pads = [s for s in layout.segments if isinstance(s, _Pad)]
    assert len(pads) == 3 and all(p.length <= 0x7FFFFFFF for p in pads)
    total = sum(s.length if isinstance(s, _Pad) else len(s) for s in layout.segments)
    assert total == size
    headers = [s for s in layout.segments if isinstance(s, bytes) and s[4:8] == PNG_PAD_CHUNK_TYPE]
    assert [struct.unpack(">I", h[:4])[0] for h in headers] == [p.length for p in pads]


def test_status_is_a_pure_function_of_time_since_submit() -> None:
    now = [1000.0]
    state = EmulatorState(clock=lambda: now[0], wall_clock_ns=lambda: 1_700_000_000_123_456_789)
    record = state.create_prediction(
        model="m",
        inputs={},
        queue_seconds=1.0,
        run_seconds=2.0,
        outcome="timeout",
        output_kind="mp4",
        output_count=1,
        output_size=100,
    )
    timeline = {
        1000.0: "created",
        1000.99: "created",
        1001.0: "processing",
        1002.99: "processing",
        1003: "timeout",
    }
    for moment, status in timeline.items():
        now[0] = moment
        assert record.status(now[0]) == status
    data = record.to_api("http://h", now[0])
    assert (data["code"], data["executionTime"], data["outputs"]) == (5004, 2000, [])
    assert data["created_at"] == "2023-11-14T22:13:20.123456789Z"


def test_timestamps_round_trip_with_nanoseconds_and_offsets() -> None:
    ns = 1_758_791_568_239_112_031
    assert format_timestamp(ns) == "2025-09-25T09:12:48.239112031Z"
    assert parse_timestamp("2025-09-25T09:12:48.239112031Z") == ns
    assert parse_timestamp("2025-09-25T11:12:48.239112031+02:00") == ns
    assert parse_timestamp("2025-09-25") == 1_758_758_400 * 10**9
    with pytest.raises(ValueError):
        parse_timestamp("last tuesday")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("bytes=0-0", (0, 0)),
        ("bytes=5-", (5, 99)),
        ("bytes=-1", (99, 99)),
        ("bytes=90-500", (90, 99)),
    ],
)
def test_parse_range(header: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 100) == expected


def test_parse_range_ignores_multi_ranges_and_rejects_unsatisfiable() -> None:
    assert parse_range("bytes=0-1,5-6", 100) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=100-", 100)


def test_apply_config_updates_validates_all_before_applying() -> None:
    config = EmulatorConfig()
    assert apply_config_updates(config, {"run_seconds": 1, "model_output_size": {"m": 10}}) == [
        "model_output_size",
        "run_seconds",
    ]
    assert config.run_seconds == 1.0 and isinstance(config.run_seconds, float)
    with pytest.raises(ConfigError):
        apply_config_updates(config, {"queue_seconds": 3.0, "range_support": "no"})
    assert config.queue_seconds == 0.2


def test_multipart_parser_finds_parts_in_a_spooled_file(tmp_path: os.PathLike[str]) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a b.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\r\n--XyZ-not-a-boundary\r\n--XyZ--\r\n"
    )
    path = os.path.join(tmp_path, "body")
    with open(path, "wb") as fh:
        fh.write(body)
    note, upload = parse_multipart_file(path, "XyZ")
    assert (note.name, body[note.offset : note.offset + note.length]) == ("note", b"hello")
    assert (upload.name, upload.filename, upload.content_type) == ("file", "a b.png", "image/png")
    assert body[upload.offset : upload.offset + upload.length] == b"\r\n--XyZ-not-a-boundary"
