"""WaveSpeed outcomes as Airflow task outcomes: results, final failures, retryable errors (all operators)."""

from __future__ import annotations

import logging
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout

from airflow_provider_wavespeed.api.errors import WaveSpeedDownloadError, WaveSpeedError, WaveSpeedIncompleteDownload
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.waiting import is_final
from airflow_provider_wavespeed.triggers.events import DEADLINE, TERMINAL, MalformedEvent, parse_event


def flagged_outputs(prediction: Prediction) -> list[int]:
    return [i for i, flagged in enumerate(prediction.has_nsfw_contents) if flagged]


def completed_result(prediction: Prediction, nsfw_policy: str, log: logging.Logger | Any) -> dict[str, Any]:
    """The completed prediction as a plain dict, or raise when it did not complete.

    A failure names the prediction id, model, status, the API's error text and business code,
    and what to do next. It is final (no task retry): the prediction will not change.
    """
    if not prediction.succeeded:
        raise AirflowFailException(str(prediction.failure()))
    flagged = flagged_outputs(prediction)
    if flagged:
        message = (
            f"Prediction {prediction.id} (model {prediction.model}): outputs {flagged} were flagged "
            "by has_nsfw_contents"
        )
        if nsfw_policy == "fail":
            raise AirflowFailException(message + "; failing because nsfw_policy='fail'")
        log.warning("%s; %s", message, "they will be skipped" if nsfw_policy == "skip" else "keeping them")
    return prediction.without_inline_outputs().to_dict()


def deadline_failure(prediction_id: str, status: str, waited: float) -> AirflowSensorTimeout:
    queued = (
        " It never left the queue: the account's concurrency limit stayed full; lower the pool or "
        "max_active_tis_per_dagrun to the account's concurrency, or raise queue_timeout."
        if status == "created"
        else ""
    )
    return AirflowSensorTimeout(
        f"Gave up waiting for WaveSpeed prediction {prediction_id} after {waited:.0f} s "
        f"(last status {status or 'unknown'}). The prediction may still finish: raise `timeout` "
        f"or rerun the sensor with the same prediction id; submitting again would be billed again.{queued}"
    )


def prediction_from_event(event: Any, task_id: str) -> Prediction:
    """The terminal prediction carried by a trigger event; a deadline or error event fails the task."""
    try:
        parsed = parse_event(event)
    except MalformedEvent as exc:
        raise AirflowFailException(f"{task_id}: {exc}") from None
    if parsed["event"] == TERMINAL:
        return Prediction.from_api(parsed["prediction"])
    if parsed["event"] == DEADLINE:
        raise deadline_failure(parsed["prediction_id"], parsed["status"], float(parsed["waited"]))
    raise AirflowFailException(
        f"Waiting for WaveSpeed prediction {parsed['prediction_id']} failed: {parsed['message']}"
    )


def final_error(exc: WaveSpeedError, task_id: str) -> Exception:
    """The one final-vs-retryable policy for tasks: what asking again cannot fix (``api.waiting.is_final``)
    and a download that cannot complete fail at once; the rest (network, 5xx, 429, a cut download that
    can resume) stay retryable."""
    if isinstance(exc, WaveSpeedIncompleteDownload):
        return exc
    if is_final(exc) or isinstance(exc, WaveSpeedDownloadError):
        return AirflowFailException(f"{task_id}: {exc}")
    return exc
