"""Validate the e2e harness itself with a DAG that uses only Airflow's standard provider.

``DateTimeSensorAsync`` always defers to ``DateTimeTrigger`` and resumes on a worker
(``execute_complete``), the same shape as the WaveSpeed sensor. Its ``target_time`` is rendered
when the task starts, so the trigger waits ``params.wait_seconds`` after the deferral however
long the scheduler took to start the task (``TimeDeltaSensor`` counts from ``run_after``).
"""

from __future__ import annotations

import time

import pytest

try:
    from .airflow_cluster import AirflowCluster
except ImportError:
    from airflow_cluster import AirflowCluster

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_harness_deferrable_wait"

DAG_SOURCE = f'''
import pendulum

from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DAG, task

with DAG(
    "{DAG_ID}",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    params={{"wait_seconds": 8}},
):
    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time=(
            "{{{{ (macros.datetime.utcnow()"
            " + macros.timedelta(seconds=params.wait_seconds | float)).isoformat() }}}}"
        ),
        timeout=120,
    )

    @task
    def after_wait():
        return {{"waited": True}}

    wait >> after_wait()
'''


@pytest.fixture(scope="module")
def cluster(airflow_cluster_module_factory) -> AirflowCluster:
    started = time.monotonic()
    cluster = airflow_cluster_module_factory({"harness_dag.py": DAG_SOURCE})
    print(f"cluster up in {time.monotonic() - started:.1f}s")
    cluster.unpause(DAG_ID)
    return cluster


def test_deferrable_sensor_defers_to_the_real_triggerer_and_resumes(cluster: AirflowCluster) -> None:
    run_id = cluster.trigger(DAG_ID, conf={"wait_seconds": 8})

    cluster.wait_for_task_state(DAG_ID, run_id, "wait", "deferred", timeout=45)
    triggerer_id = cluster.triggerer_job_id()
    assert triggerer_id is not None
    trigger = cluster.wait_for_trigger_assigned(DAG_ID, run_id, "wait", timeout=20)
    assert trigger["classpath"] == "airflow.providers.standard.triggers.temporal.DateTimeTrigger"
    assert trigger["triggerer_id"] == triggerer_id

    assert cluster.wait_for_run(DAG_ID, run_id, timeout=45) == "success"
    assert cluster.task_states(DAG_ID, run_id) == {"wait": "success", "after_wait": "success"}
    assert cluster.task_went_through_deferred(DAG_ID, run_id, "wait")
    assert not cluster.task_went_through_deferred(DAG_ID, run_id, "after_wait")
    # The trigger ran in the triggerer process: it wrote the trigger log named after its job id.
    trigger_logs = cluster.trigger_logs(DAG_ID, run_id, "wait")
    assert list(trigger_logs) == [triggerer_id]
    assert "Trigger fired event" in trigger_logs[triggerer_id]
    # ... and the task resumed on a worker after the event (execute_complete), then ran downstream.
    assert cluster.task_instance(DAG_ID, run_id, "wait")["try_number"] == 1
    assert cluster.xcom_values(DAG_ID, run_id) == {"after_wait": {"return_value": {"waited": True}}}


def test_deferred_task_survives_sigkill_of_the_triggerer(cluster: AirflowCluster) -> None:
    run_id = cluster.trigger(DAG_ID, conf={"wait_seconds": 12})
    cluster.wait_for_task_state(DAG_ID, run_id, "wait", "deferred", timeout=45)
    old = cluster.wait_for_trigger_assigned(DAG_ID, run_id, "wait", timeout=20)["triggerer_id"]
    cluster.wait_for_trigger_log(DAG_ID, run_id, "wait", old, "trigger starting", timeout=20)

    cluster.kill_triggerer()  # SIGKILL to the whole triggerer process tree

    assert cluster.triggerer_job_id() in (None, old)  # nobody else is running triggers
    assert cluster.task_instance(DAG_ID, run_id, "wait")["state"] == "deferred"
    assert "Trigger fired event" not in cluster.trigger_logs(DAG_ID, run_id, "wait").get(old, "")

    new = cluster.start_triggerer()
    assert new != old
    # The dead triggerer's trigger moves once its heartbeat is older than the health-check threshold.
    cluster.wait_for_trigger_assigned(DAG_ID, run_id, "wait", timeout=30, triggerer_id=new)

    assert cluster.wait_for_run(DAG_ID, run_id, timeout=45) == "success"
    assert cluster.task_states(DAG_ID, run_id) == {"wait": "success", "after_wait": "success"}
    # Re-created from its kwargs on the new triggerer, not re-run on a worker.
    assert len(cluster.deferral_events(DAG_ID, run_id, "wait")) == 1
    assert cluster.task_instance(DAG_ID, run_id, "wait")["try_number"] == 1
    trigger_logs = cluster.trigger_logs(DAG_ID, run_id, "wait")
    assert set(trigger_logs) == {old, new}
    assert "Trigger fired event" in trigger_logs[new]
