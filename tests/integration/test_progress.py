"""Progress in the task log: status transitions while waiting, bytes/percent/MB/s while moving files.

One run operator uploads a local 8 MB portrait, waits (deferred) for a prediction held ``processing``
until the trigger has seen it, and downloads an 8 MB output that the emulator cuts three times, so the
download is resumed. The transfers' clock is a fake one that moves a fixed step per chunk, so what is
logged does not depend on how fast this machine moves bytes; downloads read 64 KiB at a time here (not
the default 1 MiB) so an 8 MB output is many chunks.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re

import pytest
from structlog.testing import capture_logs

import airflow_provider_wavespeed.api.download as download_module
import airflow_provider_wavespeed.api.progress as progress_module
import airflow_provider_wavespeed.api.upload as upload_module
import airflow_provider_wavespeed.hooks.wavespeed as hook_module
from airflow_provider_wavespeed.api.retry import RetryPolicy
from tests.support import AVATAR, dag_file, held_until, polled, task_states, write_sized_file, xcom_value

#: The fake transfer clock moves STEP seconds per chunk; a progress line is due every EVERY seconds.
STEP = 0.01
EVERY = 0.05
CHUNKS_PER_LINE = round(EVERY / STEP)
SIZE = 8 * 1024 * 1024
READ_BYTES = 64 * 1024

DOWNLOAD_LINE = re.compile(r"^Downloading (\S+): ([\d.]+) of ([\d.]+) MB \((\d+)%\) at ([\d.]+) MB/s$")
UPLOAD_LINE = re.compile(r"^Uploading (\S+): ([\d.]+) of ([\d.]+) MB \((\d+)%\) at ([\d.]+) MB/s$")


class StepClock:
    """A monotonic clock that advances ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(scope="module")
def progress_run(airflow_db, tmp_path_factory):
    from airflow_provider_wavespeed.emulator.config import EmulatorConfig
    from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator

    folder = tmp_path_factory.mktemp("progress")
    portrait = write_sized_file(folder / "portrait.png", SIZE, seed=b"portrait")
    config = EmulatorConfig(
        queue_seconds=0.0,  # the submit reply already says "processing": the trigger logs the transition
        run_seconds=0.0,
        output_size=SIZE,
        cut_downloads=3,
        cut_after_bytes=2 * 1024 * 1024,
    )
    records: list[logging.LogRecord] = []
    clock = StepClock(STEP)

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record.fake_now = clock.now  # when it was logged, on the transfers' clock
            records.append(record)

    handler = Keep(level=logging.INFO)
    watched = [logging.getLogger(progress_module.__name__)]
    with WaveSpeedEmulator(config) as emulator, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", emulator.connection_json())
        mp.setattr(progress_module, "PROGRESS_EVERY_SECONDS", EVERY)
        mp.setattr(progress_module, "monotonic", clock)
        mp.setattr(download_module, "READ_BYTES", READ_BYTES)
        mp.setattr(hook_module, "RetryPolicy", functools.partial(RetryPolicy, initial_wait=0.01, max_wait=0.02))
        for logger in watched:
            logger.addHandler(handler)
            mp.setattr(logger, "level", logging.INFO)
        dag = dag_file(
            "wavespeed_ft_progress",
            f"""
            with DAG(dag_id="wavespeed_ft_progress", **DAG_ARGS):
                WaveSpeedRunOperator(
                    task_id="render", model="{AVATAR}",
                    inputs={{"image": "{portrait}", "audio": "https://example.com/voice.mp3"}},
                    destination="{folder / "out"}", poll_interval=0.1,
                )
            """,
        )
        try:
            # held until the trigger has polled once, so it logs "processing" before "completed"
            with capture_logs() as events, held_until(emulator, polled(emulator, 1)):
                dr = dag.test()
        finally:
            for logger in watched:
                logger.removeHandler(handler)
        yield {"dr": dr, "emulator": emulator, "records": records, "events": events}


def lines_of(records: list[logging.LogRecord], pattern: re.Pattern[str]) -> list[tuple[float, re.Match[str]]]:
    found = []
    for record in records:
        match = pattern.match(record.getMessage())
        if match:
            found.append((record.fake_now, match))
    return found


def test_the_trigger_logs_each_status_transition_with_the_time_elapsed(progress_run):
    dr = progress_run["dr"]
    assert task_states(dr) == {"render": "success"}
    prediction_id = xcom_value(dr, "render")["prediction_id"]
    messages = [str(event.get("event")) for event in progress_run["events"]]
    transitions = [m for m in messages if m.startswith(f"Prediction {prediction_id} is ") and "since it started" in m]
    assert len(transitions) == 2, transitions
    assert re.fullmatch(rf"Prediction {prediction_id} is processing \(\d+ s since it started\)", transitions[0])
    assert re.fullmatch(rf"Prediction {prediction_id} is completed \(\d+ s since it started\)", transitions[1])


def test_a_download_logs_bytes_percent_and_rate_at_most_once_per_interval(progress_run):
    emulator, dr = progress_run["emulator"], progress_run["dr"]
    prediction_id = xcom_value(dr, "render")["prediction_id"]
    assert emulator.stats.cut_downloads == 3  # the download was resumed three times
    lines = lines_of(progress_run["records"], DOWNLOAD_LINE)
    assert len(lines) >= 3, "progress is reported along the way"
    # Throttled: one line per interval at most, on the transfers' own clock (however the socket chunks the bytes).
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(lines[:-1])]
    assert all(gap >= EVERY - 1e-9 for gap in gaps), gaps
    for _, match in lines:
        assert match.group(1) == f"{prediction_id}.mp4"
        done_mb, total_mb, percent, rate = (float(match.group(i)) for i in (2, 3, 4, 5))
        assert 0 < done_mb <= total_mb == pytest.approx(SIZE / 1e6, abs=0.05)
        assert abs(percent - 100 * done_mb * 1e6 / SIZE) <= 1.5  # MB is rounded to 0.1 in the line
        assert rate > 0
    percents = [int(match.group(4)) for _, match in lines]
    assert percents == sorted(percents) and percents[-1] == 100  # the end is always reported


def test_an_upload_logs_bytes_percent_and_rate_ending_at_100_percent(progress_run):
    lines = lines_of(progress_run["records"], UPLOAD_LINE)
    chunks = SIZE // upload_module.UPLOAD_CHUNK_SIZE
    assert 1 <= len(lines) <= chunks // CHUNKS_PER_LINE + 2  # throttled, never more than one per chunk
    for _, match in lines:
        assert match.group(1) == "portrait.png"
        assert float(match.group(3)) == pytest.approx(SIZE / 1e6, abs=0.05)
        assert float(match.group(5)) > 0
    final = lines[-1][1]
    assert final.group(4) == "100" and final.group(2) == final.group(3)
    assert progress_run["emulator"].stats.uploads == 1


@pytest.mark.parametrize("every", [0.0, 3600.0], ids=["every-chunk", "throttled"])
def test_upload_progress_is_throttled_by_its_interval_and_always_reports_the_end(
    emulator, tmp_path, caplog, monkeypatch, every
):
    from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook

    caplog.set_level(logging.INFO, logger=progress_module.__name__)
    size = 5 * upload_module.UPLOAD_CHUNK_SIZE + 12345
    source = write_sized_file(tmp_path / "voice.mp3", size)
    monkeypatch.setattr(progress_module, "PROGRESS_EVERY_SECONDS", every)
    hook = WaveSpeedHook()
    try:
        hook.upload(source)
    finally:
        hook.close()

    lines = [UPLOAD_LINE.match(r.getMessage()) for r in caplog.records if r.name == progress_module.__name__]
    lines = [m for m in lines if m]
    percents = [int(m.group(4)) for m in lines]
    if every == 0.0:
        assert len(lines) == 6  # one per 1 MiB chunk, the last one partial
        assert percents == sorted(percents) and percents[0] < 25
    else:
        assert len(lines) == 1  # nothing in between within the interval, but the end is always reported
    assert percents[-1] == 100
