"""pytest plugin: the ``wavespeed_emulator`` fixture (a started emulator with fast defaults)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator

FAST_QUEUE_SECONDS = 0.05
FAST_RUN_SECONDS = 0.3


@pytest.fixture
def wavespeed_emulator() -> Iterator[WaveSpeedEmulator]:
    """A running ``WaveSpeedEmulator`` on a random loopback port (queue 0.05 s, run 0.3 s); stopped after."""
    config = EmulatorConfig(queue_seconds=FAST_QUEUE_SECONDS, run_seconds=FAST_RUN_SECONDS)
    with WaveSpeedEmulator(config) as emulator:
        yield emulator
