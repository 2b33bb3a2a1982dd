"""The provider on a real Airflow: api-server, dag-processor, scheduler and triggerer on SQLite.

Proves what ``dag.test()`` cannot: the sensor really defers to a separate triggerer process,
the trigger survives a SIGKILL of that triggerer (re-created from its kwargs, nothing submitted
twice, the absolute deadline still holds), and the API key never lands in any log or table.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from tests.e2e.airflow_cluster import AirflowCluster, _utc

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Long and distinctive, so a leak anywhere is found by a plain substring search.
API_KEY = "wsk-e2e-" + "Zq7vLx3R" * 6 + "-do-not-leak"
SLOW_MODEL = "wavespeed-ai/infinitetalk"
NEVER_DONE_MODEL = "wavespeed-ai/flux-dev"

RESTART_DAG = f'''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedDownloadOperator, WaveSpeedSubmitOperator
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

with DAG("e2e_wavespeed_restart", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = WaveSpeedSubmitOperator.partial(task_id="submit", model="{SLOW_MODEL}").expand(
        inputs=[{{"image": f"https://example.com/{{i}}.png", "audio": "https://example.com/a.mp3"}} for i in range(4)]
    )
    wait = WaveSpeedPredictionSensor.partial(
        task_id="wait", poll_interval=1.0, max_poll_interval=2.0, timeout=300
    ).expand(prediction_id=submit.output)
    fetch = WaveSpeedDownloadOperator.partial(
        task_id="fetch", destination="{{{{ var.value.get('out', '/tmp') }}}}/restart"
    ).expand(prediction_id=submit.output)
    wait >> fetch
'''

DEADLINE_DAG = f'''
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedSubmitOperator
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

with DAG("e2e_wavespeed_deadline", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    submit = WaveSpeedSubmitOperator(task_id="submit", model="{NEVER_DONE_MODEL}", inputs={{"prompt": "slow"}})
    WaveSpeedPredictionSensor(
        task_id="wait", prediction_id=submit.output, poll_interval=1.0, max_poll_interval=1.0, timeout=20
    )
'''


@pytest.fixture(scope="module")
def emulator() -> Iterator[WaveSpeedEmulator]:
    config = EmulatorConfig(
        api_key=API_KEY,
        queue_seconds=0.5,
        run_seconds=4.0,
        model_run_seconds={SLOW_MODEL: 2.0, NEVER_DONE_MODEL: 3600.0},
        output_size=256 * 1024,
    )
    with WaveSpeedEmulator(config) as running:
        yield running


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wavespeed-out")


@pytest.fixture(scope="module")
def cluster(airflow_cluster_module_factory, emulator: WaveSpeedEmulator, output_dir: Path) -> AirflowCluster:
    example = (ROOT / "example_dags" / "example_wavespeed_avatar.py").read_text()
    env = {
        "AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json(),
        "WAVESPEED_OUTPUT_DIR": str(output_dir),
        "AIRFLOW_VAR_OUT": str(output_dir),
    }
    cluster = airflow_cluster_module_factory(
        {
            "example_wavespeed_avatar.py": example,
            "e2e_wavespeed_restart.py": RESTART_DAG,
            "e2e_wavespeed_deadline.py": DEADLINE_DAG,
        },
        env=env,
    )
    for dag_id in ("example_wavespeed_avatar", "e2e_wavespeed_restart", "e2e_wavespeed_deadline"):
        cluster.unpause(dag_id)
    return cluster


@contextmanager
def held(emulator: WaveSpeedEmulator) -> Iterator[None]:
    """Predictions stay ``processing`` inside the block (however slowly the tasks start), move on after it."""
    emulator.configure(hold_predictions=True)
    try:
        yield
    finally:
        emulator.configure(hold_predictions=False)


def test_example_dag_defers_to_the_real_triggerer_and_stores_the_video(cluster, emulator, output_dir):
    with held(emulator):  # still running when the sensor looks, so it defers
        run_id = cluster.trigger("example_wavespeed_avatar")
        cluster.wait_for_task_state("example_wavespeed_avatar", run_id, "wait", "deferred", timeout=180)
        trigger = cluster.wait_for_trigger_assigned("example_wavespeed_avatar", run_id, "wait", timeout=60)
        assert trigger["triggerer_id"] == cluster.triggerer_job_id()

    assert cluster.wait_for_run("example_wavespeed_avatar", run_id, timeout=120) == "success"
    assert cluster.task_went_through_deferred("example_wavespeed_avatar", run_id, "wait")
    logs = cluster.trigger_logs("example_wavespeed_avatar", run_id, "wait")
    assert any("is completed" in text for text in logs.values()), logs

    xcoms = cluster.xcom_values("example_wavespeed_avatar", run_id)
    prediction_id = xcoms["submit"]["return_value"]
    stored = xcoms["fetch"]["return_value"]
    assert len(stored) == 1 and stored[0].endswith(f"{prediction_id}.mp4")
    assert Path(stored[0]).read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert xcoms["wait"]["return_value"]["status"] == "completed"


def test_predictions_survive_a_sigkilled_triggerer_without_a_second_submit(cluster, emulator, output_dir):
    submits_before = emulator.stats.submits_accepted
    dag_id = "e2e_wavespeed_restart"
    with held(emulator):  # every prediction still running until the new triggerer has taken the waits over
        run_id = cluster.trigger(dag_id)
        for index in range(4):
            cluster.wait_for_task_state(dag_id, run_id, "wait", "deferred", timeout=180, map_index=index)
        old_triggerer = cluster.triggerer_job_id()
        for index in range(4):
            cluster.wait_for_trigger_assigned(
                dag_id, run_id, "wait", timeout=60, triggerer_id=old_triggerer, map_index=index
            )

        cluster.kill_triggerer(signal.SIGKILL)
        states = cluster.task_states(dag_id, run_id)
        assert all(states[f"wait[{i}]"] == "deferred" for i in range(4)), states
        new_triggerer = cluster.start_triggerer()
        assert new_triggerer != old_triggerer
        for index in range(4):
            cluster.wait_for_trigger_assigned(
                dag_id, run_id, "wait", timeout=60, triggerer_id=new_triggerer, map_index=index
            )

    assert cluster.wait_for_run(dag_id, run_id, timeout=180) == "success"
    assert emulator.stats.submits_accepted - submits_before == 4  # one per prediction, none repeated
    for index in range(4):
        row = cluster.task_instance(dag_id, run_id, "wait", map_index=index)
        assert row["try_number"] == 1  # the trigger was re-created, the task was not re-run
    stored = sorted((output_dir / "restart").iterdir())
    assert len(stored) == 4
    for path in stored:
        assert path.read_bytes() == emulator.expected_output_bytes(path.stem)
    assert not [p for p in stored if p.name.endswith(".part")]


def test_the_wait_deadline_holds_across_a_triggerer_restart(cluster, emulator):
    """A trigger re-created after its deadline passed gives up at its first look, not a full timeout later.

    Counted in polls, not seconds: a deadline reset by the restart would poll every second for
    another 20 s; the absolute deadline carried in the kwargs allows exactly one poll.
    """
    dag_id = "e2e_wavespeed_deadline"
    run_id = cluster.trigger(dag_id)
    cluster.wait_for_task_state(dag_id, run_id, "wait", "deferred", timeout=180)
    cluster.wait_for_trigger_assigned(dag_id, run_id, "wait", timeout=60)
    prediction_id = cluster.xcom_values(dag_id, run_id)["submit"]["return_value"]
    started = _utc(cluster.task_instance(dag_id, run_id, "wait")["start_date"]).timestamp()
    cluster.kill_triggerer(signal.SIGKILL)
    # The sensor's timeout=20 counts from its start: wait (bounded) until that deadline has surely passed.
    while time.time() < started + 20 + 2:
        time.sleep(0.5)
    polls_before_restart = emulator.stats.polls_by_prediction[prediction_id]

    cluster.start_triggerer()
    assert cluster.wait_for_run(dag_id, run_id, timeout=120) == "failed"
    assert cluster.task_states(dag_id, run_id)["wait"] == "failed"
    assert "Gave up waiting for WaveSpeed prediction" in cluster.dump_logs()
    assert emulator.stats.polls_by_prediction[prediction_id] - polls_before_restart <= 1
    # A deadline (and a triggerer restart) is not a user's stop: the prediction runs on, to be waited on again.
    assert not emulator.predictions[prediction_id].deleted


def test_the_api_key_never_appears_in_any_log_xcom_or_table(cluster, emulator, tmp_path):
    # Runs last in this module: every run above has written its logs and XComs by now.
    logs = cluster.dump_logs()
    assert "Submitted prediction" in logs  # the search really covers the task logs
    assert API_KEY not in logs
    db_copy = tmp_path / "airflow.db"
    shutil.copy2(cluster.db_path, db_copy)
    for suffix in ("-wal", "-shm"):
        if Path(f"{cluster.db_path}{suffix}").exists():
            shutil.copy2(f"{cluster.db_path}{suffix}", f"{db_copy}{suffix}")
    import sqlite3

    conn = sqlite3.connect(db_copy)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        leaks = []
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                if any(API_KEY in str(value) for value in row):
                    leaks.append(table)
                    break
        xcom_rows = conn.execute("SELECT count(*) FROM xcom").fetchone()[0]
    finally:
        conn.close()
    assert xcom_rows > 0
    assert leaks == []
    assert API_KEY not in "".join(p.read_text(errors="replace") for p in Path(os.fspath(cluster.home)).rglob("*.log"))
