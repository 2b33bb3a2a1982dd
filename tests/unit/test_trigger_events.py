"""The trigger-event contract: what the trigger may hand a resumed task, and what the task makes of it."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSensorTimeout

from airflow_provider_wavespeed.api.errors import WaveSpeedAuthError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.task_results import prediction_from_event
from airflow_provider_wavespeed.triggers.events import (
    MalformedEvent,
    deadline_event,
    error_event,
    parse_event,
    terminal_event,
)

COMPLETED = {
    "id": "p1",
    "model": "wavespeed-ai/flux-dev",
    "status": "completed",
    "outputs": ["https://cdn.example.com/p1/0.png"],
}
TERMINAL = {"event": "terminal", "prediction_id": "p1", "status": "completed", "prediction": COMPLETED}
DEADLINE = {"event": "deadline", "prediction_id": "p1", "status": "processing", "waited": 600.0}
ERROR = {"event": "error", "prediction_id": "p1", "message": "bad key", "error_type": "WaveSpeedAuthError"}

NOT_A_DICT = [None, "terminal", 42, ["terminal", "p1"], ("event", "terminal")]
UNKNOWN_KIND = [{}, {"prediction_id": "p1"}, {"event": "finished", "prediction_id": "p1"}, {"event": None}]
VALID = {"terminal": TERMINAL, "deadline": DEADLINE, "error": ERROR}
REQUIRED = {
    "terminal": ("prediction_id", "status", "prediction"),
    "deadline": ("prediction_id", "status", "waited"),
    "error": ("prediction_id", "message"),
}
#: (payload, the field it lacks or has mistyped), for every required field of every kind.
MISSING_OR_BAD_FIELD: list[tuple[dict[str, Any], str]] = [
    *(
        ({k: v for k, v in VALID[kind].items() if k != field}, field)
        for kind, fields in REQUIRED.items()
        for field in fields
    ),
    ({**TERMINAL, "prediction_id": 1}, "prediction_id"),
    ({**TERMINAL, "status": None}, "status"),
    ({**TERMINAL, "prediction": "p1"}, "prediction"),
    ({**DEADLINE, "waited": "600"}, "waited"),
    ({**ERROR, "message": None}, "message"),
]
MALFORMED = [*NOT_A_DICT, *UNKNOWN_KIND, *(payload for payload, _ in MISSING_OR_BAD_FIELD)]


def short_id(value: Any) -> str:
    if isinstance(value, dict):
        return "-".join(f"{k}={v!r}"[:24] for k, v in value.items() if k != "prediction" or not isinstance(v, dict))
    return repr(value)


@pytest.mark.parametrize("event", [TERMINAL, DEADLINE, ERROR, {**DEADLINE, "waited": 600}], ids=short_id)
def test_each_valid_event_kind_is_accepted_unchanged(event):
    assert parse_event(event) == event


@pytest.mark.parametrize("payload", NOT_A_DICT, ids=repr)
def test_a_payload_that_is_not_a_dict_is_malformed(payload):
    with pytest.raises(MalformedEvent, match="expected a trigger event dict"):
        parse_event(payload)


@pytest.mark.parametrize("payload", UNKNOWN_KIND, ids=short_id)
def test_an_unknown_or_missing_event_kind_is_malformed(payload):
    with pytest.raises(MalformedEvent, match="unknown trigger event kind"):
        parse_event(payload)


@pytest.mark.parametrize(("payload", "field"), MISSING_OR_BAD_FIELD, ids=short_id)
def test_a_missing_or_mistyped_field_is_malformed_and_named(payload, field):
    with pytest.raises(MalformedEvent, match=f"lacks a valid '{field}'"):
        parse_event(payload)


def test_the_events_the_trigger_builds_pass_the_contract():
    prediction = Prediction.from_api(COMPLETED)
    built: list[Any] = [
        terminal_event(prediction),
        deadline_event("p1", "processing", 12.5),
        error_event("p1", WaveSpeedAuthError(401, "bad key")),
    ]
    assert [parse_event(event)["event"] for event in built] == ["terminal", "deadline", "error"]


def test_a_terminal_event_resumes_the_task_with_the_prediction_it_carries():
    prediction = prediction_from_event(TERMINAL, "wait")
    assert isinstance(prediction, Prediction)
    assert (prediction.id, prediction.status, prediction.outputs) == ("p1", "completed", COMPLETED["outputs"])


def test_a_deadline_event_fails_the_task_as_a_sensor_timeout_naming_the_prediction_and_last_status():
    with pytest.raises(AirflowSensorTimeout) as caught:
        prediction_from_event(DEADLINE, "wait")
    message = str(caught.value)
    assert "p1" in message and "after 600 s" in message and "last status processing" in message


def test_an_error_event_fails_the_task_with_the_trigger_message():
    with pytest.raises(AirflowFailException) as caught:
        prediction_from_event(ERROR, "wait")
    assert not isinstance(caught.value, AirflowSensorTimeout)
    assert "p1" in str(caught.value) and "bad key" in str(caught.value)


@pytest.mark.parametrize("payload", MALFORMED, ids=short_id)
def test_a_malformed_event_fails_the_task_at_once_naming_the_task(payload):
    with pytest.raises(AirflowFailException) as caught:
        prediction_from_event(payload, "wait_for_it")
    assert not isinstance(caught.value, AirflowSensorTimeout)
    assert str(caught.value).startswith("wait_for_it: ")
