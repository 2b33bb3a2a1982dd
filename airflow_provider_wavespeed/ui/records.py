"""Reading ``wavespeed_record`` XComs back in the api-server: decoding a cell, one task instance's stored output."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from airflow.models.xcom import XComModel
from sqlalchemy import select

from airflow_provider_wavespeed.task_record import RECORD_XCOM_KEY, TaskRecord, as_record

_RECORD_FIELDS = frozenset(TaskRecord.__annotations__)


def record_from_xcom(value: Any) -> TaskRecord | None:
    """The record in a raw ``xcom.value`` cell, decoded the way Airflow's XCom API decodes it.

    The column is JSON; values written through ``serialize_value`` are a JSON string inside it, values
    written by the Task Execution API are the object itself. ``XComModel.deserialize_value`` handles both.
    Only the record's known fields are kept.
    """
    if value is None:
        return None
    record = as_record(XComModel.deserialize_value(SimpleNamespace(value=value)))
    if record is None:
        return None
    return {k: v for k, v in record.items() if k in _RECORD_FIELDS}  # type: ignore[return-value]


def quoted_cost(record: Mapping[str, Any]) -> float | None:
    """The record's quote in USD, or None when it carries none (only the submitting task's does)."""
    cost = record.get("cost_usd")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    return float(cost)


def cost_key(record: Mapping[str, Any], ti_key: str) -> str:
    """What a quote is counted once per: its prediction, else (no id recorded) its task instance."""
    prediction_id = record.get("prediction_id")
    return f"p:{prediction_id}" if prediction_id else f"ti:{ti_key}"


def run_id_candidates(run_id: str) -> set[str]:
    """``run_id`` and, for Airflow 3.1's iframe views (which put the run id in the URL unencoded, so its
    ``+`` arrives as a space), the same id with ``+``. Run ids cannot hold spaces, so this never mixes
    two runs."""
    return {run_id, run_id.replace(" ", "+")}


def recorded_output(
    session: Any, dag_id: str, run_id: str, task_id: str, map_index: int, n: int
) -> tuple[str, str | None] | None:
    """``(outputs[n], destination_conn_id)`` of that task instance's record, or None when it lists no such
    output. The only way a media request reaches a file: the path is never built from the request."""
    if n < 0 or map_index < -1:
        return None
    values = session.scalars(
        select(XComModel.value).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id.in_(run_id_candidates(run_id)),
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key == RECORD_XCOM_KEY,
        )
    ).all()
    if len(values) != 1:
        return None
    record = record_from_xcom(values[0])
    outputs = (record or {}).get("outputs")
    if not isinstance(outputs, list) or n >= len(outputs) or not isinstance(outputs[n], str):
        return None
    conn_id = (record or {}).get("destination_conn_id")
    return outputs[n], conn_id if isinstance(conn_id, str) and conn_id else None
