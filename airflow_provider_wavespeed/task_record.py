"""What a WaveSpeed task instance did, in one XCom the Airflow UI plugin reads (``wavespeed_record``).

Every WaveSpeed operator writes it at the points where it learns something: the submit (prediction id,
model, quote), the end of the wait (status, run time, the API's error), the stored outputs (where, through
which connection), the batch budget, and any failure (the task's error message). Each write holds all the
record knows so far: a resumed task (after a deferral) reads the one before and adds to it.

The plugin reads nothing else, so a field the UI needs belongs here. Never the API key: every value is
either the API's own prediction fields or our own error messages, which never carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypedDict

RECORD_XCOM_KEY = "wavespeed_record"
RECORD_VERSION = 1

Role = Literal["submit", "wait", "store", "run", "budget"]


class TaskRecord(TypedDict, total=False):
    """One task instance's WaveSpeed record. Every field is optional except ``version`` and ``role``."""

    version: int
    #: What the task does: submit, wait (sensor), store (download), run (all three), budget.
    role: Role
    prediction_id: str
    model: str
    #: The prediction's last known status (created, processing, completed, failed, cancelled, timeout,
    #: deleted); "submitted" before any status was seen.
    status: str
    #: The price quote, in USD, recorded only by the task that submitted (or adopted) the prediction: spend
    #: counts it once per prediction.
    cost_usd: float | None
    console_url: str
    #: ISO 8601 (UTC): when the prediction was created (the API's created_at), else when it was submitted.
    submitted_at: str
    #: The prediction's own run time (``timings.inference``), milliseconds.
    inference_ms: int | None
    #: Stored outputs, as the task returned them: local paths or object-storage URIs, in output order.
    outputs: list[str]
    #: The connection the outputs were stored with (object storage), when one was given.
    destination_conn_id: str | None
    #: Why the task failed (its error message), or the API's error for a failed prediction.
    error: str
    #: WaveSpeedBudgetOperator: the batch's quoted total, its limit and its size.
    budget_total_usd: float
    budget_max_usd: float
    budget_items: int
    #: The prediction was deleted because a user stopped the task (cancel on kill).
    cancelled: bool


def new_record(role: Role, **fields: Any) -> TaskRecord:
    record: dict[str, Any] = {"version": RECORD_VERSION, "role": role}
    record.update({k: v for k, v in fields.items() if v is not None})
    return record  # type: ignore[return-value]


def as_record(value: Any) -> TaskRecord | None:
    """A record read back from XCom, or None when the value is not one (older or foreign data)."""
    if not isinstance(value, Mapping) or value.get("version") != RECORD_VERSION or "role" not in value:
        return None
    return dict(value)  # type: ignore[return-value]


def prediction_fields(prediction: Any) -> dict[str, Any]:
    """The record's fields a prediction (``api.models.Prediction``) tells: id, model, status, when, run time."""
    timings = prediction.raw.get("timings") if isinstance(prediction.raw, Mapping) else None
    inference = timings.get("inference") if isinstance(timings, Mapping) else None
    fields: dict[str, Any] = {
        "prediction_id": prediction.id or None,
        "model": prediction.model or None,
        "status": prediction.status or None,
        "submitted_at": prediction.created_at or None,
        "inference_ms": int(inference) if isinstance(inference, int | float) else None,
    }
    if prediction.error:
        fields["error"] = prediction.error
    return {k: v for k, v in fields.items() if v is not None}
