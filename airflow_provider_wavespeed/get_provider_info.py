"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from airflow_provider_wavespeed import __version__
from airflow_provider_wavespeed.connection_form import provider_info_form

_INTEGRATION = "WaveSpeedAI"
_PKG = "airflow_provider_wavespeed"


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-wavespeed",
        "name": "WaveSpeedAI",
        "description": "`WaveSpeedAI <https://wavespeed.ai/>`__ image, video, audio and avatar models.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://wavespeed.ai/docs",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [f"{_PKG}.operators.wavespeed", f"{_PKG}.operators.budget"],
            }
        ],
        "config": {
            "wavespeed": {
                "description": "Settings of the WaveSpeed provider.",
                "options": {
                    "default_deferrable": {
                        "description": (
                            "Whether WaveSpeed sensors and run operators (and submits waiting out a rate limit) "
                            "wait in the triggerer when a task does not pass deferrable= itself. False makes "
                            "them wait in the worker, holding its slot. Airflow's own [operators] "
                            "default_deferrable is not read: every generated airflow.cfg sets it to false."
                        ),
                        "version_added": "0.3.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "coalesced_polling": {
                        "description": (
                            "Whether the deferred waits of one WaveSpeed account in a triggerer share a few "
                            "prediction-history requests per cycle instead of each polling its prediction by id. "
                            "Any wait the history cannot answer in time falls back to polling by id; with fewer "
                            "than 8 waits every wait polls by id. False: always poll by id."
                        ),
                        "version_added": "0.4.0",
                        "type": "boolean",
                        "example": "False",
                        "default": "True",
                    },
                    "min_deferral_seconds": {
                        "description": (
                            "The shortest time a WaveSpeed task stays deferred: a trigger holds an earlier event "
                            "until then. Resuming a task sooner than the deferring worker takes to exit races "
                            "Airflow's scheduler, which then marks the resumed try failed."
                        ),
                        "version_added": "0.2.0",
                        "type": "float",
                        "example": "10",
                        "default": "10",
                    },
                },
            }
        },
        "sensors": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.sensors.wavespeed"]}],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.hooks.wavespeed"]}],
        "triggers": [{"integration-name": _INTEGRATION, "python-modules": [f"{_PKG}.triggers.wavespeed"]}],
        "connection-types": [
            {
                "connection-type": "wavespeed",
                "hook-class-name": f"{_PKG}.hooks.wavespeed.WaveSpeedHook",
                "hook-name": "WaveSpeed",
                "ui-field-behaviour": provider_info_form(),
            }
        ],
        "extra-links": [f"{_PKG}.operators.wavespeed.WaveSpeedPredictionLink"],
    }
