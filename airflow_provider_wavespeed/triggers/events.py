"""The contract between ``WaveSpeedPredictionTrigger`` and the tasks it resumes: three event kinds.

``terminal``: the prediction reached a terminal status (``prediction`` is the API's object);
``deadline``: the wait's absolute deadline passed (``status`` last seen, ``waited`` seconds);
``error``: polling cannot go on (bad key, unknown prediction, unknown connection).
Every payload is plain JSON: the triggerer stores it in the metadata DB.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from airflow_provider_wavespeed.api.models import Prediction

TERMINAL: Literal["terminal"] = "terminal"
DEADLINE: Literal["deadline"] = "deadline"
ERROR: Literal["error"] = "error"


class TerminalEvent(TypedDict):
    event: Literal["terminal"]
    prediction_id: str
    status: str
    prediction: dict[str, Any]


class DeadlineEvent(TypedDict):
    event: Literal["deadline"]
    prediction_id: str
    status: str
    waited: float


class ErrorEvent(TypedDict):
    event: Literal["error"]
    prediction_id: str
    message: str
    error_type: str


PredictionEvent = TerminalEvent | DeadlineEvent | ErrorEvent


def terminal_event(prediction: Prediction) -> TerminalEvent:
    """The terminal prediction, base64 outputs left out (marked): the event is stored in the metadata DB."""
    small = prediction.without_inline_outputs()
    return {"event": TERMINAL, "prediction_id": small.id, "status": small.status, "prediction": small.to_dict()}


def deadline_event(prediction_id: str, status: str, waited: float) -> DeadlineEvent:
    return {"event": DEADLINE, "prediction_id": prediction_id, "status": status, "waited": waited}


def error_event(prediction_id: str, exc: Exception) -> ErrorEvent:
    return {"event": ERROR, "prediction_id": prediction_id, "message": str(exc), "error_type": type(exc).__name__}


class MalformedEvent(ValueError):
    """A payload that is not one of the three events (None, not a dict, unknown kind, missing fields)."""


def parse_event(payload: Any) -> PredictionEvent:
    """``payload`` checked against the contract; raises :class:`MalformedEvent` naming what is wrong."""
    if not isinstance(payload, dict):
        raise MalformedEvent(f"expected a trigger event dict, got {payload!r}")
    kind = payload.get("event")
    required: dict[str, tuple[type, ...]] = {"prediction_id": (str,)}
    if kind == TERMINAL:
        required.update(status=(str,), prediction=(dict,))
    elif kind == DEADLINE:
        required.update(status=(str,), waited=(int, float))
    elif kind == ERROR:
        required.update(message=(str,))
    else:
        raise MalformedEvent(f"unknown trigger event kind {kind!r}")
    for field, types in required.items():
        if not isinstance(payload.get(field), types):
            raise MalformedEvent(f"trigger event {kind!r} lacks a valid {field!r}: {payload!r}")
    return payload  # type: ignore[return-value]
