"""Cancel on kill, through the user actions of Airflow's UI (its REST API) on a real scheduler and triggerer.

Marking a waiting task failed deletes its prediction (deferred: the trigger's ``on_kill`` on Airflow >= 3.3, its
``cleanup`` on 3.1; in the worker: the operator's ``on_kill``). Clearing it or marking it success never does:
the hooks fire for those too, and only the task instance's state tells the actions apart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from tests.e2e.airflow_cluster import AirflowCluster
from tests.support import wait_until

pytestmark = pytest.mark.e2e

MODEL = "wavespeed-ai/flux-dev"
DAGS = f'''
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator, WaveSpeedSubmitOperator
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

ARGS = dict(schedule=None, start_date=datetime(2026, 1, 1), catchup=False)

with DAG("kill_deferred", **ARGS):
    submit = WaveSpeedSubmitOperator(task_id="submit", model="{MODEL}", inputs={{"prompt": "a lighthouse"}})
    WaveSpeedPredictionSensor(task_id="wait", prediction_id=submit.output, poll_interval=1.0, timeout=600)

with DAG("kill_poking", **ARGS):
    submit = WaveSpeedSubmitOperator(task_id="submit", model="{MODEL}", inputs={{"prompt": "a lighthouse"}})
    WaveSpeedPredictionSensor(
        task_id="wait", prediction_id=submit.output, deferrable=False, poll_interval=1.0, timeout=600
    )

with DAG("kill_sync_submit", **ARGS):
    WaveSpeedSubmitOperator(
        task_id="wait", model="{MODEL}", inputs={{"prompt": "a sync lighthouse", "enable_sync_mode": True}}
    )

with DAG("kill_run_in_worker", **ARGS):
    WaveSpeedRunOperator(
        task_id="wait", model="{MODEL}", inputs={{"prompt": "a lighthouse"}}, destination="/tmp/wavespeed-kill-e2e",
        deferrable=False, poll_interval=1.0,
    )
'''


@pytest.fixture(scope="module")
def emulator() -> Iterator[WaveSpeedEmulator]:
    with WaveSpeedEmulator(EmulatorConfig(queue_seconds=0.2, run_seconds=2.0, hold_predictions=True)) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(airflow_cluster_module_factory, emulator: WaveSpeedEmulator) -> AirflowCluster:
    cluster = airflow_cluster_module_factory(
        {"kill_dags.py": DAGS}, env={"AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json()}, rest_api=True
    )
    for dag_id in ("kill_deferred", "kill_poking", "kill_run_in_worker", "kill_sync_submit"):
        cluster.unpause(dag_id)
    return cluster


def waiting(cluster: AirflowCluster, emulator: WaveSpeedEmulator, dag_id: str, state: str) -> tuple[str, str]:
    """Trigger ``dag_id``; return ``(run_id, prediction id)`` once its ``wait`` task is in ``state`` and the
    wait has polled (the trigger runs in the triggerer, or the worker's loop is under way)."""
    run_id = cluster.trigger(dag_id)
    cluster.wait_for_task_state(dag_id, run_id, "wait", state, timeout=180)

    def claim() -> str | None:  # pushed by the task that submitted, before any wait
        xcoms = cluster.xcom_values(dag_id, run_id)
        return xcoms.get("submit", xcoms.get("wait", {})).get("wavespeed_prediction_id")

    assert wait_until(lambda: claim() is not None, seconds=60, step=0.2), "no prediction was claimed"
    claimed = claim()
    assert claimed is not None
    if state == "deferred":
        cluster.wait_for_trigger_assigned(dag_id, run_id, "wait", timeout=60)
    polled = emulator.stats.polls_by_prediction
    assert wait_until(lambda: polled.get(claimed, 0) >= 2, seconds=60, step=0.1), "the wait never polled"
    return run_id, claimed


def set_state(cluster: AirflowCluster, dag_id: str, run_id: str, new_state: str) -> None:
    status, reply = cluster.rest(
        "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/wait", {"new_state": new_state}
    )
    assert status == 200, reply


def deleted(emulator: WaveSpeedEmulator, prediction_id: str) -> bool:
    return bool(emulator.predictions[prediction_id].deleted)


@pytest.mark.parametrize("dag_id", ["kill_deferred", "kill_poking", "kill_run_in_worker"])
def test_marking_a_waiting_task_failed_deletes_its_prediction(cluster, emulator, dag_id):
    run_id, prediction_id = waiting(cluster, emulator, dag_id, "deferred" if dag_id == "kill_deferred" else "running")
    before = emulator.stats.predictions_deleted

    set_state(cluster, dag_id, run_id, "failed")

    assert wait_until(lambda: deleted(emulator, prediction_id), seconds=60), f"{prediction_id} was not deleted"
    assert emulator.stats.predictions_deleted == before + 1
    assert cluster.task_states(dag_id, run_id)["wait"] == "failed"


def test_marking_the_dag_run_failed_deletes_the_prediction_its_deferred_wait_was_on(cluster, emulator):
    run_id, prediction_id = waiting(cluster, emulator, "kill_deferred", "deferred")

    status, reply = cluster.rest("PATCH", f"/dags/kill_deferred/dagRuns/{run_id}", {"state": "failed"})
    assert status == 200, reply

    assert wait_until(lambda: deleted(emulator, prediction_id), seconds=60), f"{prediction_id} was not deleted"
    assert cluster.run_state("kill_deferred", run_id) == "failed"


def test_marking_a_deferred_wait_success_keeps_its_prediction(cluster, emulator):
    run_id, prediction_id = waiting(cluster, emulator, "kill_deferred", "deferred")
    before = emulator.stats.predictions_deleted

    triggerer = cluster.triggerer_job_id()
    assert triggerer is not None

    set_state(cluster, "kill_deferred", run_id, "success")

    # The trigger's kill hook ran, read the task's state and kept the prediction.
    cluster.wait_for_trigger_log("kill_deferred", run_id, "wait", triggerer, "stopped with the task success", 60)
    assert cluster.wait_for_run("kill_deferred", run_id, timeout=60) == "success"
    assert not deleted(emulator, prediction_id)
    assert emulator.stats.predictions_deleted == before


def test_clearing_a_deferred_wait_keeps_its_prediction_and_the_new_try_waits_on_it(cluster, emulator):
    run_id, prediction_id = waiting(cluster, emulator, "kill_deferred", "deferred")
    submits, before = emulator.stats.submits_accepted, emulator.stats.predictions_deleted
    triggerer = cluster.triggerer_job_id()
    assert triggerer is not None

    status, reply = cluster.rest(
        "POST",
        "/dags/kill_deferred/clearTaskInstances",
        {"dry_run": False, "dag_run_id": run_id, "task_ids": ["wait"], "only_failed": False},
    )
    assert status == 200, reply
    assert wait_until(
        lambda: (
            cluster.task_instance("kill_deferred", run_id, "wait")["try_number"] == 2
            and cluster.task_states("kill_deferred", run_id)["wait"] == "deferred"
        ),
        seconds=120,
        step=0.3,
    ), "the cleared wait did not defer again"
    # The first try's trigger was stopped by the clear: its kill hook read the state and kept the prediction.
    cluster.wait_for_trigger_log("kill_deferred", run_id, "wait", triggerer, "the prediction is kept", 60)
    emulator.configure(hold_predictions=False)
    try:
        assert cluster.wait_for_run("kill_deferred", run_id, timeout=120) == "success"
    finally:
        emulator.configure(hold_predictions=True)
    assert not deleted(emulator, prediction_id)
    assert emulator.stats.predictions_deleted == before
    assert emulator.stats.submits_accepted == submits  # the new try waited on the same prediction
    assert cluster.xcom_values("kill_deferred", run_id)["wait"]["return_value"]["id"] == prediction_id


def test_marking_a_task_failed_while_its_sync_submit_awaits_the_reply_deletes_the_prediction(cluster, emulator):
    """The reply (and with it the id) is not there yet: the kill finds the prediction in the history."""
    run_id = cluster.trigger("kill_sync_submit")
    cluster.wait_for_task_state("kill_sync_submit", run_id, "wait", "running", timeout=180)

    def in_flight() -> str | None:
        return next((p for p, r in emulator.predictions.items() if r.inputs.get("prompt") == "a sync lighthouse"), None)

    assert wait_until(lambda: in_flight() is not None, seconds=60, step=0.1), "the sync submit never arrived"
    prediction_id = in_flight()
    assert prediction_id is not None
    assert cluster.xcom_values("kill_sync_submit", run_id) == {}  # no reply yet: nothing claimed

    set_state(cluster, "kill_sync_submit", run_id, "failed")

    assert wait_until(lambda: deleted(emulator, prediction_id), seconds=60), f"{prediction_id} was not deleted"
