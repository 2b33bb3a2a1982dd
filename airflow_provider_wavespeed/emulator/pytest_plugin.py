"""pytest plugin: the ``wavespeed_emulator`` fixture (a started emulator with fast defaults). Opt-in.

The plugin is not registered automatically (a provider installed in an Airflow image should not add
fixtures to every pytest session there). Enable it in your root ``conftest.py``::

    pytest_plugins = ["airflow_provider_wavespeed.emulator.pytest_plugin"]

or per run with ``pytest -p airflow_provider_wavespeed.emulator.pytest_plugin``.

Shape the emulator by overriding the two fixtures it is built from, in any ``conftest.py``::

    @pytest.fixture
    def wavespeed_emulator_config():
        return EmulatorConfig(run_seconds=5, max_concurrency=2)

    @pytest.fixture
    def wavespeed_emulator_models():
        return "tests/wavespeed_models.json"  # or a list of model objects / ModelSpec
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.models import ModelsSource

FAST_QUEUE_SECONDS = 0.05
FAST_RUN_SECONDS = 0.3


@pytest.fixture
def wavespeed_emulator_config() -> EmulatorConfig:
    """The switches the ``wavespeed_emulator`` starts with (queue 0.05 s, run 0.3 s); override to change."""
    return EmulatorConfig(queue_seconds=FAST_QUEUE_SECONDS, run_seconds=FAST_RUN_SECONDS)


@pytest.fixture
def wavespeed_emulator_models() -> ModelsSource:
    """Models served besides the built-in ones (none); override with a JSON file path or model objects."""
    return ()


@pytest.fixture
def wavespeed_emulator(
    wavespeed_emulator_config: EmulatorConfig, wavespeed_emulator_models: ModelsSource
) -> Iterator[WaveSpeedEmulator]:
    """A running ``WaveSpeedEmulator`` on a random loopback port; stopped after the test."""
    with WaveSpeedEmulator(wavespeed_emulator_config, models=wavespeed_emulator_models) as emulator:
        yield emulator
