"""Writing a task instance's ``wavespeed_record`` (see :mod:`airflow_provider_wavespeed.task_record`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSkipException, Context, TaskDeferred

from airflow_provider_wavespeed.task_record import RECORD_XCOM_KEY, Role, TaskRecord, as_record, new_record

log = logging.getLogger(__name__)

#: Errors longer than this are cut in the record (the task log keeps the whole message).
MAX_ERROR_CHARS = 4000

#: Not failures: the task goes on in the triggerer, or was skipped on purpose.
_NOT_FAILURES = (TaskDeferred, AirflowSkipException)


def push_record(context: Context, record: TaskRecord) -> None:
    context["ti"].xcom_push(key=RECORD_XCOM_KEY, value=dict(record))


def earlier_record(context: Context) -> TaskRecord | None:
    """The record this task instance wrote earlier in this try (before a deferral), if any."""
    ti = context["ti"]
    return as_record(ti.xcom_pull(task_ids=ti.task_id, key=RECORD_XCOM_KEY, map_indexes=ti.map_index))


def update_record(context: Context, role: Role, **fields: Any) -> TaskRecord:
    """Add ``fields`` to this try's record (read back, since a deferral ends the operator instance) and write
    it. Fields the earlier record already has are kept, except ``error``."""
    earlier = earlier_record(context)
    record = new_record(role, **fields)
    if earlier is not None:
        error = record.get("error")
        record = {**record, **earlier}
        if error:
            record["error"] = error
    push_record(context, record)
    return record


@contextmanager
def recording_failures(context: Context, role: Role, **known: Any) -> Iterator[None]:
    """A task that fails says why in its record, on top of what it recorded before failing (or ``known``,
    when it recorded nothing yet).

    Writing the record must never hide the task's own error: a failure to write is logged and dropped.
    """
    try:
        yield
    except _NOT_FAILURES:
        raise
    except Exception as exc:
        try:
            update_record(context, role, **{**known, "error": _error_text(exc)})
        except Exception:
            log.warning("Could not record the failure of this WaveSpeed task for the UI", exc_info=True)
        raise


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
