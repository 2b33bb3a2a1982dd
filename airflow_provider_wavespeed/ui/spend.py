"""Quoted spend over the last N days, per day, DAG and model: one query over the ``wavespeed_record`` XComs.

Only records with a ``cost_usd`` count (the task that submitted the prediction), once per prediction id.
A record's day is its ``submitted_at`` date (UTC), else its XCom's timestamp.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from airflow.models.xcom import XComModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from airflow_provider_wavespeed.task_record import RECORD_XCOM_KEY
from airflow_provider_wavespeed.ui.records import cost_key, quoted_cost, record_from_xcom

TOP_N = 10
#: Above this many DAG ids the filter runs in Python instead of a SQL ``IN`` list (bind parameter limits).
_MAX_SQL_IN = 1000
_UNKNOWN_MODEL = "(unknown)"


def _record_day(submitted_at: Any, timestamp: datetime | None) -> date | None:
    if isinstance(submitted_at, str):
        try:
            moment = datetime.fromisoformat(submitted_at)
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC).date()
    if timestamp is None:
        return None
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(UTC).date()


def _top(usd: dict[str, float], counts: dict[str, int], key: str) -> list[dict[str, Any]]:
    ranked = sorted(usd.items(), key=lambda item: (-item[1], item[0]))[:TOP_N]
    return [{key: name, "usd": round(total, 6), "predictions": counts[name]} for name, total in ranked]


def spend_summary(session: Session, dag_ids: set[str] | None, days: int, now: datetime) -> dict[str, Any]:
    """The spend page's JSON (see the UI contract). ``dag_ids``: the DAGs the user may read (None: all)."""

    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    until = now.astimezone(UTC).date()
    since = until - timedelta(days=days - 1)
    day_keys = [since + timedelta(days=i) for i in range(days)]

    per_day_usd: dict[date, float] = defaultdict(float)
    per_day_dag: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    per_day_model: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    dag_usd: dict[str, float] = defaultdict(float)
    dag_count: dict[str, int] = defaultdict(int)
    model_usd: dict[str, float] = defaultdict(float)
    model_count: dict[str, int] = defaultdict(int)
    seen: set[str] = set()

    if dag_ids is None or dag_ids:
        # A record is written at or after its prediction's submission, so its XCom timestamp is at most a
        # little earlier than its day only across midnight/time zone edges: one day of slack.
        window_start = datetime.combine(since, time.min, tzinfo=UTC) - timedelta(days=1)
        stmt = (
            select(
                XComModel.dag_id,
                XComModel.run_id,
                XComModel.task_id,
                XComModel.map_index,
                XComModel.timestamp,
                XComModel.value,
            )
            # No ORDER BY: the sums do not depend on the order, and sorting 10,000 JSON rows was most of the
            # database's own time on PostgreSQL (benchmarks/bench_ui.py).
            .where(XComModel.key == RECORD_XCOM_KEY, XComModel.timestamp >= window_start)
        )
        in_python = dag_ids is not None and len(dag_ids) > _MAX_SQL_IN
        if dag_ids is not None and not in_python:
            stmt = stmt.where(XComModel.dag_id.in_(sorted(dag_ids)))
        for dag_id, run_id, task_id, map_index, timestamp, value in session.execute(stmt):
            if in_python and dag_id not in dag_ids:  # type: ignore[operator]
                continue
            record = record_from_xcom(value)
            if record is None:
                continue
            usd = quoted_cost(record)
            if usd is None:
                continue
            identity = cost_key(record, f"{dag_id}/{run_id}/{task_id}/{map_index}")
            if identity in seen:
                continue
            day = _record_day(record.get("submitted_at"), timestamp)
            if day is None or day < since or day > until:
                continue
            seen.add(identity)
            model = record.get("model") or _UNKNOWN_MODEL
            per_day_usd[day] += usd
            per_day_dag[day][dag_id] += usd
            per_day_model[day][model] += usd
            dag_usd[dag_id] += usd
            dag_count[dag_id] += 1
            model_usd[model] += usd
            model_count[model] += 1

    return {
        "days": days,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "total_usd": round(sum(dag_usd.values()), 6),
        "predictions": len(seen),
        "per_day": [
            {
                "day": day.isoformat(),
                "total_usd": round(per_day_usd.get(day, 0.0), 6),
                "by_dag": {k: round(v, 6) for k, v in sorted(per_day_dag.get(day, {}).items())},
                "by_model": {k: round(v, 6) for k, v in sorted(per_day_model.get(day, {}).items())},
            }
            for day in day_keys
        ],
        "top_dags": _top(dag_usd, dag_count, "dag_id"),
        "top_models": _top(model_usd, model_count, "model"),
    }
