"""Cancel on kill: when a user stops a wait, delete its prediction; never otherwise.

Airflow calls the same hooks for very different actions (measured on 3.1.8 and 3.3.2 with real processes):
a deferred trigger's ``on_kill`` (3.3; ``cleanup`` on 3.1) and a worker's ``on_kill`` run when a user marks the
task failed, marks it success, clears it, or marks its DAG run failed or success; the trigger's also when another
triggerer takes it over. So the hook firing says nothing; the task instance's state at that moment does. Only
``failed`` (the task, or its DAG run, marked failed) means "nobody wants this any more". Success keeps what was
made, a cleared task's next try reuses the prediction, and anything unknown (a read that fails or times out)
keeps it: a wrongly kept prediction costs one run, a wrongly deleted one costs the outputs and the retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.task_record import RECORD_XCOM_KEY, as_record, new_record

log = logging.getLogger(__name__)

#: The task instance states in which a killed wait cancels its prediction.
CANCEL_STATES = frozenset({"failed"})
#: The longest a trigger waits to learn its task instance's state (the first Task SDK call of a fresh
#: triggerer took 4-5 s when measured).
STATE_READ_LIMIT_SECONDS = 8.0
#: The XCom key of a cancellation recorded by a worker-side wait.
CANCELLED_XCOM_KEY = "wavespeed_cancelled"

T = TypeVar("T")


def should_cancel(state: str | None) -> bool:
    return state in CANCEL_STATES


def _states_of(dag_id: str, run_id: str, task_id: str, map_index: int) -> str | None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    found: dict[str, Any] = RuntimeTaskInstance.get_task_states(
        dag_id=dag_id, task_ids=[task_id], run_ids=[run_id], map_index=map_index
    )
    state = (found.get(run_id) or {}).get(task_id)
    return str(state) if state is not None else None


def task_state_in_worker(ti: Any) -> str | None:
    """The current state of the worker's own task instance, or None when it cannot be read."""
    try:
        return _states_of(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))
    except Exception:  # the safe side: an unknown state keeps the prediction
        log.warning("Could not read the state of %s; keeping its prediction", getattr(ti, "task_id", "?"))
        return None


async def shielded(make: Callable[[], Awaitable[T]], limit: float) -> T | None:
    """Run ``make()`` to completion within ``limit`` seconds, through the triggerer's repeated cancels.

    The triggerer cancels a stopping trigger again about once a second; a Task SDK call cancelled between its
    request and its reply desynchronises the triggerer's channel on Airflow 3.1 (the triggerer dies). So the
    call runs as its own task that is never cancelled; this coroutine only stops waiting for it.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(make())
    end = loop.time() + limit
    while True:
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=max(0.01, end - loop.time()))
        except asyncio.CancelledError:
            if loop.time() >= end:
                return None
        except Exception:
            return None


async def task_state_in_triggerer(ti: Any) -> str | None:
    """The current state of a trigger's task instance (None: unknown, or not read within the limit)."""
    from asgiref.sync import sync_to_async

    read = sync_to_async(_states_of)
    return await shielded(
        lambda: read(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1)), STATE_READ_LIMIT_SECONDS
    )


#: A worker's ``on_kill`` runs in its SIGTERM handler; Airflow sends SIGKILL 5 s later.
WORKER_CANCEL_TIMEOUT_SECONDS = 3.0


class CancelsOnKill:
    """(A base placed after ``BaseOperator``, whose ``on_kill`` the operator points here: placed before it, Airflow
    would read ``BaseOperator``'s defaults, ``inlets=None`` included, as the operator's own when it is mapped.)

    Worker-side waits (the sensor with ``deferrable=False``, the run operator's wait in the worker): on a kill,
    delete the prediction being waited for when the task was marked failed, and stop waiting."""

    task_id: str
    wavespeed_conn_id: str
    cancel_on_kill: bool
    log: Any
    #: While the task could leave a prediction behind (a wait, or a submit whose reply with the id is not here
    #: yet): its task instance, what it is doing (for the log), and how to name the prediction.
    _stoppable: tuple[Any, str, Callable[[WaveSpeedHook], str | None]] | None = None
    _killed: bool = False

    def _wait_starts(self, ti: Any, prediction_id: str) -> None:
        self._stoppable = (ti, f"Wait for prediction {prediction_id}", lambda hook: prediction_id)

    def _nothing_left_to_stop(self) -> None:
        self._stoppable = None

    def _stop_if_killed(self) -> None:
        """Between polls: a killed task does not poll on until Airflow's SIGKILL."""
        if self._killed:
            raise RuntimeError(f"{self.task_id}: the wait was killed")

    def on_kill(self) -> None:
        self._killed = True
        stoppable, self._stoppable = self._stoppable, None
        if stoppable is None or not self.cancel_on_kill:
            return
        ti, what, find = stoppable
        state = task_state_in_worker(ti)
        if not should_cancel(state):
            self.log.info("%s stopped with the task %s: kept", what, state or "unknown")
            return
        self._cancel(ti, find)

    def _cancel(self, ti: Any, find: Callable[[WaveSpeedHook], str | None]) -> None:
        """Delete the prediction ``find`` names (within the SIGKILL's 5 s) and record it."""
        quick = RetryPolicy(max_attempts=2, max_elapsed=WORKER_CANCEL_TIMEOUT_SECONDS, initial_wait=0.2)
        hook = WaveSpeedHook(self.wavespeed_conn_id, timeout=WORKER_CANCEL_TIMEOUT_SECONDS, retry=quick)
        prediction_id = None
        try:
            prediction_id = find(hook)
            if prediction_id is None:
                return
            how = hook.delete_prediction(prediction_id)
        except WaveSpeedError as exc:
            self.log.warning(
                "The task was marked failed, but deleting its prediction %s failed: %s", prediction_id, exc
            )
            return
        finally:
            hook.close()
        self.log.warning(
            "Cancelled prediction %s (%s): the task was marked failed. Whether WaveSpeed stops a running "
            "prediction at once, or refunds it, is not documented.",
            prediction_id,
            how,
        )
        try:
            ti.xcom_push(key=CANCELLED_XCOM_KEY, value={"prediction_id": prediction_id, "how": how})
            earlier = ti.xcom_pull(task_ids=ti.task_id, key=RECORD_XCOM_KEY, map_indexes=ti.map_index)
            record = as_record(earlier) or new_record(getattr(self, "record_role", "wait"), prediction_id=prediction_id)
            ti.xcom_push(key=RECORD_XCOM_KEY, value={**record, "status": "deleted", "cancelled": True})
        except Exception:  # the record is a courtesy; the delete happened
            self.log.warning("Could not record the cancellation of %s in XCom", prediction_id)
