"""The emulator's video outputs are real, playable H.264 MP4s at every size, and its WAVs are playable PCM.

Structure is checked by parsing the boxes; decoding by ffprobe and playback by headless Chromium when
they are installed (skipped otherwise).
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator, expected_output_bytes
from airflow_provider_wavespeed.emulator.media import _Pad, output_file_size, output_layout
from airflow_provider_wavespeed.emulator.sample_video import SAMPLE_MP4

MINIMUM_MP4 = len(SAMPLE_MP4) + 8  # the sample and an empty ``free`` box
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of the boxes in ``data[start:end]``, following 64-bit sizes."""
    end = len(data) if end is None else end
    found = []
    pos = start
    while pos < end:  # bounded: every box is at least 8 bytes
        (size,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        if size == 1:
            (size,) = struct.unpack(">Q", data[pos + 8 : pos + 16])
        assert size >= 8, (kind, pos)
        found.append((kind, pos, size))
        pos += size
    assert pos == end
    return found


def _child(data: bytes, parent: tuple[bytes, int, int], kind: bytes) -> tuple[bytes, int, int]:
    _, offset, size = parent
    (box,) = [b for b in _boxes(data, offset + 8, offset + size) if b[0] == kind]
    return box


def test_sample_is_a_small_faststart_avc1_mp4() -> None:
    boxes = _boxes(SAMPLE_MP4)
    assert [kind for kind, _, _ in boxes] == [b"ftyp", b"moov", b"free", b"mdat"]
    assert SAMPLE_MP4[8:12] == b"isom"
    assert MINIMUM_MP4 <= 1000  # a 1000-byte video output (the CLI test's size) still holds the clip
    moov = boxes[1]
    stbl = _child(
        SAMPLE_MP4, _child(SAMPLE_MP4, _child(SAMPLE_MP4, _child(SAMPLE_MP4, moov, b"trak"), b"mdia"), b"minf"), b"stbl"
    )
    _, stsd_at, _ = _child(SAMPLE_MP4, stbl, b"stsd")
    entry = SAMPLE_MP4[stsd_at + 16 :]  # after the full-box header and the entry count
    assert entry[4:8] == b"avc1"
    assert struct.unpack(">HH", entry[32:36]) == (64, 64)
    _, stco_at, _ = _child(SAMPLE_MP4, stbl, b"stco")
    (first_chunk,) = struct.unpack(">I", SAMPLE_MP4[stco_at + 16 : stco_at + 20])
    _, mdat_at, mdat_size = boxes[3]
    assert mdat_at + 8 <= first_chunk < mdat_at + mdat_size


@pytest.mark.parametrize("size", [0, 1, MINIMUM_MP4 - 1, MINIMUM_MP4, 1000, 65_536, 1_000_003])
def test_mp4_output_is_the_sample_then_one_free_box_up_to_the_exact_size(size: int) -> None:
    data = expected_output_bytes("p" * 32, 0, size, "mp4")
    assert len(data) == max(size, MINIMUM_MP4) == output_file_size(size, "mp4")
    assert data.startswith(SAMPLE_MP4)
    assert _boxes(data)[-1] == (b"free", len(SAMPLE_MP4), len(data) - len(SAMPLE_MP4))


def test_mp4_over_4_gib_pads_with_a_64_bit_free_box_without_materialising() -> None:
    size = 5 * 1024**3
    layout = output_layout("huge", 0, size, "mp4")
    head, pad = layout.segments
    assert isinstance(head, bytes) and isinstance(pad, _Pad)
    assert head[: len(SAMPLE_MP4)] == SAMPLE_MP4
    free = head[len(SAMPLE_MP4) :]
    assert free[:8] == struct.pack(">I", 1) + b"free"
    assert struct.unpack(">Q", free[8:16]) == (size - len(SAMPLE_MP4),)
    assert len(head) + pad.length == size == layout.size


def test_served_video_output_is_the_sample_under_range_requests(
    wavespeed_emulator: WaveSpeedEmulator, submit: Callable[..., dict[str, Any]], wait_terminal: Callable[[str], Any]
) -> None:
    wavespeed_emulator.config.output_size = 300_000
    (url,) = wait_terminal(submit()["id"])["outputs"]
    with httpx.Client(timeout=30) as http:
        head = http.get(url, headers={"Range": f"bytes=0-{len(SAMPLE_MP4) - 1}"})
        tail = http.get(url, headers={"Range": "bytes=-100"})
    assert head.status_code == 206 and head.headers["content-type"] == "video/mp4"
    assert head.content == SAMPLE_MP4
    assert head.headers["content-range"] == f"bytes 0-{len(SAMPLE_MP4) - 1}/300000"
    assert tail.status_code == 206 and len(tail.content) == 100


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")
def test_ffprobe_decodes_a_padded_output(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    path.write_bytes(expected_output_bytes("p" * 32, 0, 200_000, "mp4"))
    command = ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert result.stderr == ""
    (stream,) = json.loads(result.stdout)["streams"]
    assert (stream["codec_name"], stream["codec_tag_string"], stream["width"], stream["height"]) == (
        "h264",
        "avc1",
        64,
        64,
    )
    assert stream["nb_read_frames"] == "4" and float(stream["duration"]) == 2.0


_PLAY_AND_SEEK = """
const [url, tag, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const media = document.createElement(tag);
media.muted = true;
media.preload = 'auto';
const result = {};
media.onerror = () => done({error: media.error && media.error.message});
media.addEventListener('loadeddata', () => {
  result.ready = media.readyState;
  result.duration = media.duration;
  media.addEventListener('seeked', () => {
    result.readyAfterSeek = media.readyState;
    if (tag === 'video') {
      const canvas = document.createElement('canvas');
      canvas.width = canvas.height = 64;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(media, 0, 0);
      result.red = Array.from(ctx.getImageData(8, 8, 1, 1).data);  // the red square, top left
      result.yellow = Array.from(ctx.getImageData(56, 40, 1, 1).data);  // the moving square's last place
    }
    done(result);
  }, {once: true});
  media.currentTime = 1.6;
}, {once: true});
media.src = url;
document.body.appendChild(media);
"""


@pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="no chromium/chromedriver")
def test_chromium_plays_seeks_and_paints_video_and_audio_outputs(
    wavespeed_emulator: WaveSpeedEmulator, submit: Callable[..., dict[str, Any]], wait_terminal: Callable[[str], Any]
) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    wavespeed_emulator.config.model_output_size = {
        "wavespeed-ai/hunyuan-avatar": 5 * 1024**3,  # largesize free box; the browser reads it by Range
        "minimax/speech-02-hd": 44 + 32_000 * 3,
    }
    (video,) = wait_terminal(submit()["id"])["outputs"]
    (audio,) = wait_terminal(submit("minimax/speech-02-hd", text="hi")["id"])["outputs"]
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_script_timeout(30)
        driver.get(wavespeed_emulator.base_url + "/_emulator/stats")  # same origin: the canvas stays readable
        shown = driver.execute_async_script(_PLAY_AND_SEEK, video, "video")
        heard = driver.execute_async_script(_PLAY_AND_SEEK, audio, "audio")
    finally:
        driver.quit()
    assert shown["ready"] >= 2 and shown["readyAfterSeek"] >= 2 and shown["duration"] == 2, shown
    assert shown["red"][0] > 180 and shown["red"][2] < 80, shown
    assert shown["yellow"][0] > 180 and shown["yellow"][1] > 150 and shown["yellow"][2] < 80, shown
    assert heard["ready"] >= 2 and heard["readyAfterSeek"] >= 2 and heard["duration"] == 3, heard
