"""Which prediction did an unanswered submit create? The one history search, for submits and task retries.

A submit POST is billed and not idempotent. When its reply is lost (no reply, a 5xx), the prediction
may or may not exist. The history (``POST /api/v3/predictions``) is searched in the attempt's window on
the API's own clock, and every candidate that is known not to be ours is dropped: ids already claimed
(by this client, by sibling tasks), predictions of another model, predictions whose ``input`` the
history shows and which differs. What remains decides, and nothing is ever guessed:

* no candidate: the API shows that nothing was created, so submitting again is safe;
* exactly one: it is ours, adopt it;
* several: ambiguous, never submit again; the caller records the window and fails or asks a person.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.timestamps import iso_utc

#: Without any reading of the API's clock, how far either side of our own clock a creation may lie.
UNKNOWN_SKEW_SECONDS = 120.0
#: Slack either side of a window read from ``Date`` headers (whole seconds, truncated; request transit).
DATE_HEADER_SLACK_SECONDS = 2.0
#: History pages read at most for one window (100 predictions a page).
MAX_HISTORY_PAGES = 10

ListPredictions = Callable[..., list[Prediction]]


class ServerClock:
    """The API's clock as seen through the ``Date`` headers of its replies: an offset from ours."""

    def __init__(self) -> None:
        self.offset: float | None = None

    def observe(self, date_header: str | None, sent_at: float, received_at: float) -> None:
        """Learn the offset from one reply's ``Date`` header (sent/received on our clock)."""
        if not date_header:
            return
        try:
            server_time = email.utils.parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        # The header is truncated to the second: the server's time was in [server_time, server_time + 1).
        self.offset = server_time + 0.5 - (sent_at + received_at) / 2

    def window(self, model: str, sent_at: float, answered_at: float) -> SubmitWindow:
        """When, on the API's clock, a submit sent at ``sent_at`` and given up at ``answered_at`` may have landed."""
        if self.offset is None:
            return SubmitWindow(model, sent_at - UNKNOWN_SKEW_SECONDS, answered_at + UNKNOWN_SKEW_SECONDS)
        slack = DATE_HEADER_SLACK_SECONDS
        return SubmitWindow(model, sent_at + self.offset - slack, answered_at + self.offset + slack)


@dataclass(frozen=True)
class SubmitWindow:
    """The span (epoch seconds, the API's clock) in which an unanswered submit of ``model`` may have created
    its prediction. Plain JSON, so a later task try can search it again."""

    model: str
    earliest: float
    latest: float

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "earliest": self.earliest, "latest": self.latest}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SubmitWindow:
        return cls(str(data["model"]), float(data["earliest"]), float(data["latest"]))

    def covers(self, prediction: Prediction) -> bool:
        created = prediction.created_epoch
        return created is None or self.earliest <= created <= self.latest

    def describe(self) -> str:
        return f"between {iso_utc(self.earliest)} and {iso_utc(self.latest)}"


def candidates(
    list_predictions: ListPredictions,
    window: SubmitWindow,
    inputs: Mapping[str, Any],
    claimed: Iterable[str] = (),
) -> list[Prediction]:
    """The predictions in ``window`` that may be the one our submit of ``inputs`` created, newest first."""
    taken = set(claimed)
    found: list[Prediction] = []
    for page in range(1, MAX_HISTORY_PAGES + 1):
        items = list_predictions(
            model=window.model,
            created_after=iso_utc(window.earliest),
            created_before=iso_utc(window.latest),
            page=page,
        )
        found.extend(items)
        if len(items) < 100:
            break
    return [
        p
        for p in found
        if p.id not in taken and p.model in ("", window.model) and window.covers(p) and not inputs_differ(p, inputs)
    ]


def inputs_differ(prediction: Prediction, inputs: Mapping[str, Any]) -> bool:
    """True when the history shows this prediction's ``input`` and a value we sent is not in it.

    The API may show defaults it filled in (e.g. ``resolution``) beside what was sent: those do not count.
    """
    shown = prediction.raw.get("input")
    if not isinstance(shown, Mapping):
        return False
    return any(key not in shown or shown[key] != value for key, value in inputs.items())


def ambiguity_message(window: SubmitWindow, ids: Iterable[str]) -> str:
    listed = ", ".join(ids)
    return (
        f"A submit to {window.model} got no reply, and the prediction history {window.describe()} shows "
        f"several predictions that may be the one it created: {listed}. Nothing was submitted again, to avoid "
        "paying twice. To finish: find yours among them in the WaveSpeed console and wait on its id with "
        "WaveSpeedPredictionSensor(prediction_id=...), or set reuse_existing=False to submit anew, knowingly "
        "accepting a possible second charge."
    )
