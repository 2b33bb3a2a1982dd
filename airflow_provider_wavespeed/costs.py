"""What a prediction costs before it is submitted: the one pricing path of the submit and run operators and of
``WaveSpeedBudgetOperator``. Inputs are priced as they will be submitted (media uploaded), since a quote with
a price-driving input missing (the audio of an avatar model) understates the cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook


def price_quote(hook: WaveSpeedHook, model: str, payload: Mapping[str, Any]) -> float | WaveSpeedError:
    """The price (USD) of one run of ``model`` with the ready ``payload``, or the error that kept the API from
    quoting it (pricing endpoints absent, an outage): what that means is the caller's decision."""
    try:
        return hook.quote(model, payload)
    except WaveSpeedError as exc:
        return exc


def priced_inputs(
    hook: WaveSpeedHook, model: str, inputs: Mapping[str, Any], media_conn_id: str | None
) -> tuple[dict[str, Any], float | WaveSpeedError]:
    """``inputs`` with their media uploaded, and the price of submitting them."""
    payload = hook.resolve_media_inputs(inputs, conn_id=media_conn_id)
    return payload, price_quote(hook, model, payload)


def most_expensive(quotes: Sequence[float], count: int = 3) -> list[int]:
    """Indexes of the ``count`` priciest items, priciest first."""
    return sorted(range(len(quotes)), key=lambda i: quotes[i], reverse=True)[:count]
