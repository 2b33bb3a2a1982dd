"""Offline emulator of the WaveSpeedAI v3 REST API (standard library + h11 only, no Airflow imports).

>>> from airflow_provider_wavespeed.emulator import WaveSpeedEmulator, EmulatorConfig
>>> with WaveSpeedEmulator(EmulatorConfig(run_seconds=0.5)) as emulator:
...     print(emulator.base_url, emulator.api_key)

Names are imported lazily, so ``import airflow_provider_wavespeed.emulator.media`` (for example)
does not load the asyncio server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_wavespeed.emulator.config import OUTCOMES, ConfigError, EmulatorConfig
    from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
    from airflow_provider_wavespeed.emulator.media import expected_output_bytes, output_sha256
    from airflow_provider_wavespeed.emulator.models import CATALOGUE, ModelSpec
    from airflow_provider_wavespeed.emulator.state import PredictionRecord
    from airflow_provider_wavespeed.emulator.stats import EmulatorStats

_EXPORTS = {
    "CATALOGUE": "models",
    "OUTCOMES": "config",
    "ConfigError": "config",
    "EmulatorConfig": "config",
    "EmulatorStats": "stats",
    "ModelSpec": "models",
    "PredictionRecord": "state",
    "WaveSpeedEmulator": "emulator",
    "expected_output_bytes": "media",
    "output_sha256": "media",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
