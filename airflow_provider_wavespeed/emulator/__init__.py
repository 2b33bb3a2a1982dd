"""Offline emulator of the WaveSpeedAI v3 REST API (standard library + h11 only, no Airflow imports).

>>> from airflow_provider_wavespeed.emulator import WaveSpeedEmulator, EmulatorConfig
>>> with WaveSpeedEmulator(EmulatorConfig(run_seconds=0.5)) as emulator:
...     print(emulator.base_url, emulator.api_key)
"""

from airflow_provider_wavespeed.emulator.config import OUTCOMES, ConfigError, EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.media import expected_output_bytes, output_sha256
from airflow_provider_wavespeed.emulator.models import CATALOGUE, ModelSpec
from airflow_provider_wavespeed.emulator.state import PredictionRecord
from airflow_provider_wavespeed.emulator.stats import EmulatorStats

__all__ = [
    "CATALOGUE",
    "OUTCOMES",
    "ConfigError",
    "EmulatorConfig",
    "EmulatorStats",
    "ModelSpec",
    "PredictionRecord",
    "WaveSpeedEmulator",
    "expected_output_bytes",
    "output_sha256",
]
