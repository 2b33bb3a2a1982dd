"""One DAG run's WaveSpeed task instances with their records, read in one query (the run tab's data).

A task instance belongs here when its operator is one of ours or when it wrote a ``wavespeed_record``
XCom (a ``@task`` that pushed one, a subclass with another name).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlparse

from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance as TI
from airflow.models.xcom import XComModel
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from airflow_provider_wavespeed.task_record import RECORD_XCOM_KEY, TaskRecord
from airflow_provider_wavespeed.ui.media import media_kind
from airflow_provider_wavespeed.ui.records import cost_key, quoted_cost, record_from_xcom, run_id_candidates

WAVESPEED_OPERATORS = (
    "WaveSpeedSubmitOperator",
    "WaveSpeedPredictionSensor",
    "WaveSpeedDownloadOperator",
    "WaveSpeedRunOperator",
    "WaveSpeedBudgetOperator",
)
MEDIA_PREFIX = "/wavespeed/media"


def media_url(dag_id: str, run_id: str, task_id: str, map_index: int, n: int) -> str:
    parts = (quote(dag_id, safe=""), quote(run_id, safe=""), quote(task_id, safe=""), str(map_index), str(n))
    return MEDIA_PREFIX + "/" + "/".join(parts)


def output_name(output: str) -> str:
    path = urlparse(output).path if "://" in output else output
    return os.path.basename(path.rstrip("/")) or output


def _media(dag_id: str, run_id: str, task_id: str, map_index: int, record: TaskRecord | None) -> list[dict]:
    outputs = (record or {}).get("outputs") or []
    if not isinstance(outputs, list):
        return []
    media = []
    for n, output in enumerate(outputs):
        if not isinstance(output, str):
            continue
        name = output_name(output)
        media.append(
            {
                "n": n,
                "url": media_url(dag_id, run_id, task_id, map_index, n),
                "name": name,
                "kind": media_kind(name),
            }
        )
    return media


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def quoted_totals(records: Iterable[tuple[str, TaskRecord]]) -> tuple[int, float]:
    """(distinct predictions, quoted cost counted once per prediction) over ``(ti_key, record)`` pairs."""
    predictions: set[str] = set()
    costed: dict[str, float] = {}
    for ti_key, record in records:
        prediction_id = record.get("prediction_id")
        if isinstance(prediction_id, str) and prediction_id:
            predictions.add(prediction_id)
        cost = quoted_cost(record)
        if cost is not None:
            costed.setdefault(cost_key(record, ti_key), cost)
    return len(predictions), round(sum(costed.values()), 6)


def run_view(
    session: Session,
    dag_id: str,
    run_id: str,
    task_id: str | None = None,
    map_index: int | None = None,
) -> dict[str, Any] | None:
    """The run tab's JSON (see the UI contract), or None when the run does not exist."""
    candidates = run_id_candidates(run_id)
    stmt = (
        select(
            TI.run_id,
            TI.task_id,
            TI.map_index,
            TI.state,
            TI.operator,
            TI.try_number,
            TI.start_date,
            TI.end_date,
            TI.duration,
            XComModel.value,
        )
        .outerjoin(
            XComModel,
            and_(
                XComModel.dag_id == TI.dag_id,
                XComModel.task_id == TI.task_id,
                XComModel.run_id == TI.run_id,
                XComModel.map_index == TI.map_index,
                XComModel.key == RECORD_XCOM_KEY,
            ),
        )
        .where(TI.dag_id == dag_id, TI.run_id.in_(candidates))
        .where(or_(TI.operator.in_(WAVESPEED_OPERATORS), XComModel.key.is_not(None)))
        .order_by(TI.task_id, TI.map_index)
    )
    if task_id is not None:
        stmt = stmt.where(TI.task_id == task_id)
        if map_index is not None:
            stmt = stmt.where(TI.map_index == map_index)
    rows = session.execute(stmt).all()

    if rows:
        actual_run_id = rows[0].run_id
    else:
        found = session.scalar(
            select(DagRun.run_id).where(DagRun.dag_id == dag_id, DagRun.run_id.in_(candidates)).limit(1)
        )
        if found is None:
            return None
        actual_run_id = found

    tasks: list[dict[str, Any]] = []
    keyed_records: list[tuple[str, TaskRecord]] = []
    budget: dict[str, Any] | None = None
    failed = 0
    for row in rows:
        record = record_from_xcom(row.value)
        state = str(row.state.value if hasattr(row.state, "value") else row.state) if row.state else None
        if state == "failed":
            failed += 1
        if record is not None:
            keyed_records.append((f"{row.task_id}/{row.map_index}", record))
            if record.get("role") == "budget":
                budget = {
                    "total_usd": record.get("budget_total_usd"),
                    "max_usd": record.get("budget_max_usd"),
                    "items": record.get("budget_items"),
                    "task_id": row.task_id,
                }
        tasks.append(
            {
                "task_id": row.task_id,
                "map_index": row.map_index,
                "state": state,
                "operator": row.operator,
                "try_number": row.try_number,
                "start_date": _iso(row.start_date),
                "end_date": _iso(row.end_date),
                "duration": row.duration,
                "record": record,
                "media": _media(dag_id, actual_run_id, row.task_id, row.map_index, record),
            }
        )
    predictions, quoted = quoted_totals(keyed_records)
    return {
        "dag_id": dag_id,
        "run_id": actual_run_id,
        "tasks": tasks,
        "totals": {
            "task_instances": len(tasks),
            "predictions": predictions,
            "quoted_cost_usd": quoted,
            "failed": failed,
        },
        "budget": budget,
    }
