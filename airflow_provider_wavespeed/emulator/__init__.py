"""Offline emulator of the WaveSpeedAI v3 REST API (standard library + h11 only, no Airflow imports).

>>> from airflow_provider_wavespeed.emulator import WaveSpeedEmulator, EmulatorConfig
>>> with WaveSpeedEmulator(EmulatorConfig(run_seconds=0.5)) as emulator:
...     print(emulator.base_url, emulator.api_key)

Names are imported lazily, so ``import airflow_provider_wavespeed.emulator.media`` (for example)
does not load the asyncio server.

Why it lives here, in the provider's distribution, and not in a package of its own: it is the
provider's proof of the wire format and changes with it in the same commit; users who test DAGs
get it with the provider, at no cost (no dependency beyond h11, which httpx already brings; nothing
runs at import). What a separate distribution would have bought, we keep by rule instead: it imports
nothing from Airflow or from the provider's Airflow modules (a test runs it with Airflow made
unimportable, so any client, e.g. the official SDK, can use it), and its pytest plugin is opt-in
(``pytest_plugins = ["airflow_provider_wavespeed.emulator.pytest_plugin"]`` or ``-p ...``) instead of
an entry point that would add fixtures to every pytest session of every Airflow image with the
provider installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_wavespeed.emulator.clock import ManualClock
    from airflow_provider_wavespeed.emulator.config import OUTCOMES, ConfigError, EmulatorConfig
    from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
    from airflow_provider_wavespeed.emulator.media import expected_output_bytes, output_sha256
    from airflow_provider_wavespeed.emulator.models import CATALOGUE, ModelCatalogueError, ModelSpec, load_models
    from airflow_provider_wavespeed.emulator.state import PredictionRecord
    from airflow_provider_wavespeed.emulator.stats import EmulatorStats

_EXPORTS = {
    "CATALOGUE": "models",
    "OUTCOMES": "config",
    "ConfigError": "config",
    "EmulatorConfig": "config",
    "EmulatorStats": "stats",
    "ManualClock": "clock",
    "ModelCatalogueError": "models",
    "ModelSpec": "models",
    "load_models": "models",
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
    "ManualClock",
    "ModelCatalogueError",
    "ModelSpec",
    "PredictionRecord",
    "WaveSpeedEmulator",
    "expected_output_bytes",
    "load_models",
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
