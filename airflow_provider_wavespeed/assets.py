"""Data-aware scheduling: one asset event per stored output, through an ``AssetAlias``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_wavespeed.api.models import Prediction


def asset_uri(stored: str) -> str:
    """A stored path or URI as an asset URI: local paths become ``file://`` URIs, and an object-storage
    URI loses its ``conn_id@`` part, so one object is one asset whichever connection wrote it."""
    if "://" not in stored:
        return Path(stored).resolve().as_uri()
    parts = urlsplit(stored)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def emit_output_events(context: Any, alias_name: str, stored: list[str], prediction: Prediction) -> None:
    """Attach an asset event per stored file to ``alias_name``, with the prediction id and model in extra."""
    from airflow.sdk import Asset, AssetAlias

    events = context["outlet_events"][AssetAlias(alias_name)]
    for index, location in enumerate(stored):
        events.add(
            Asset(uri=asset_uri(location)),
            extra={"prediction_id": prediction.id, "model": prediction.model, "output_index": index},
        )
