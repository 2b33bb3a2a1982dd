"""The history search that resolves an unanswered submit: windows on the API's clock, and who is left."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

import pytest

from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.reconcile import (
    DATE_HEADER_SLACK_SECONDS,
    UNKNOWN_SKEW_SECONDS,
    ServerClock,
    SubmitWindow,
    ambiguity_message,
    candidates,
)
from airflow_provider_wavespeed.api.timestamps import iso_utc, parse_iso

MODEL = "wavespeed-ai/hunyuan-avatar"
NOW = 1_790_000_000.0
INPUTS = {"image": "https://example.com/a.png", "audio": "https://example.com/a.mp3", "prompt": "one"}


def prediction(pid: str, created: float, *, model: str = MODEL, inputs: dict[str, Any] | None = None) -> Prediction:
    data: dict[str, Any] = {"id": pid, "model": model, "status": "processing", "created_at": iso_utc(created)}
    if inputs is not None:
        data["input"] = inputs
    return Prediction.from_api(data)


class History:
    """``list_predictions`` over a fixed list, recording the filters it was asked for."""

    def __init__(self, items: list[Prediction]) -> None:
        self.items = items
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **filters: Any) -> list[Prediction]:
        self.calls.append(filters)
        return self.items if filters.get("page", 1) == 1 else []


def test_without_any_date_header_the_window_allows_the_unknown_skew_either_side():
    window = ServerClock().window(MODEL, sent_at=NOW, answered_at=NOW + 3)
    assert (window.earliest, window.latest) == (NOW - UNKNOWN_SKEW_SECONDS, NOW + 3 + UNKNOWN_SKEW_SECONDS)


def test_a_date_header_moves_the_window_onto_the_api_clock_and_narrows_it():
    clock = ServerClock()
    server_ahead = 40.0
    clock.observe(formatdate(NOW + server_ahead, usegmt=True), sent_at=NOW - 0.1, received_at=NOW + 0.1)
    window = clock.window(MODEL, sent_at=NOW + 10, answered_at=NOW + 11)
    assert window.earliest <= NOW + 10 + server_ahead <= NOW + 11 + server_ahead <= window.latest
    assert window.latest - window.earliest <= 1 + 2 * DATE_HEADER_SLACK_SECONDS + 1


def test_an_unreadable_date_header_teaches_nothing():
    clock = ServerClock()
    clock.observe("not a date", NOW, NOW)
    clock.observe(None, NOW, NOW)
    assert clock.offset is None


def test_candidates_leave_out_claimed_ids_other_models_and_predictions_outside_the_window():
    window = SubmitWindow(MODEL, NOW, NOW + 5)
    history = History(
        [
            prediction("ours", NOW + 1),
            prediction("sibling", NOW + 2),
            prediction("other-model", NOW + 2, model="wavespeed-ai/flux-dev"),
            prediction("too-early", NOW - 30),
        ]
    )
    found = candidates(history, window, INPUTS, claimed={"sibling"})
    assert [p.id for p in found] == ["ours"]
    [call] = history.calls
    assert call["model"] == MODEL
    assert parse_iso(call["created_after"]) == pytest.approx(NOW, abs=1e-3)
    assert parse_iso(call["created_before"]) == pytest.approx(NOW + 5, abs=1e-3)


def test_a_prediction_whose_history_input_differs_is_never_a_candidate_and_unknown_input_stays_one():
    window = SubmitWindow(MODEL, NOW, NOW + 5)
    history = History(
        [
            prediction("same-input", NOW + 1, inputs=INPUTS),
            prediction("other-input", NOW + 1, inputs={**INPUTS, "prompt": "two"}),
            prediction("input-not-shown", NOW + 1),
        ]
    )
    assert [p.id for p in candidates(history, window, INPUTS)] == ["same-input", "input-not-shown"]


def test_the_window_survives_a_round_trip_through_plain_json():
    window = SubmitWindow(MODEL, NOW, NOW + 4.5)
    assert SubmitWindow.from_json(window.to_json()) == window
    assert window.covers(prediction("x", NOW + 2)) and not window.covers(prediction("y", NOW + 9))


def test_the_ambiguity_message_lists_the_candidates_and_both_ways_to_finish():
    message = ambiguity_message(SubmitWindow(MODEL, NOW, NOW + 4), ["p1", "p2"])
    assert "p1, p2" in message and MODEL in message
    assert "WaveSpeedPredictionSensor" in message and "reuse_existing=False" in message
    assert iso_utc(NOW) in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-09-25T09:12:48.239112031Z", 1758791568.239112),
        ("2025-09-25T09:12:48Z", 1758791568.0),
        ("2025-09-25T11:12:48.5+02:00", 1758791568.5),
        ("", None),
        ("yesterday", None),
    ],
)
def test_api_timestamps_parse_to_epoch_seconds(text, expected):
    assert parse_iso(text) == (pytest.approx(expected) if expected is not None else None)


def test_defaults_the_api_filled_into_the_shown_input_do_not_make_it_differ():
    window = SubmitWindow(MODEL, NOW, NOW + 5)
    shown = {**INPUTS, "resolution": "480p", "seed": -1}
    history = History([prediction("with-defaults", NOW + 1, inputs=shown)])
    assert [p.id for p in candidates(history, window, INPUTS)] == ["with-defaults"]
    assert candidates(history, window, {**INPUTS, "resolution": "720p"}) == []
