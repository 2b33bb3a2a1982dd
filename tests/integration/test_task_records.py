"""Every WaveSpeed task instance leaves one ``wavespeed_record`` XCom (what the UI plugin shows), through real
``dag.test()`` runs against the emulator: success, a failed prediction, a failure before any submit, the
three-task pipeline and the budget gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wavespeed.task_record import RECORD_VERSION, RECORD_XCOM_KEY
from tests.support import AVATAR, AVATAR_INPUTS, FLUX, LONG_KEY, dag_file, db_cells_containing, task_states

pytestmark = pytest.mark.usefixtures("emulator", "fast_retries")


def records(dag_run: Any) -> dict[tuple[str, int], dict[str, Any]]:
    """(task_id, map_index) -> record, read back from the metadata DB as the api-server would."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, key=RECORD_XCOM_KEY).all()
        )
        return {(row.task_id, row.map_index): row.value for row in rows}


def test_mapped_run_records_quote_outputs_and_the_failure(run_dag: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dag = dag_file(
        "records_mapped_run",
        f"""
        with DAG("records_mapped_run", **DAG_ARGS):
            WaveSpeedRunOperator.partial(
                task_id="render", model="{FLUX}", destination="{out}", poll_interval=0.1,
            ).expand(inputs=[{{"prompt": "a cat"}}, {{"prompt": "a dog [emulator:failed]"}}])
        """,
    )

    dr = run_dag(dag)

    found = records(dr)
    assert set(found) == {("render", 0), ("render", 1)}
    good, bad = found[("render", 0)], found[("render", 1)]
    assert good["version"] == RECORD_VERSION and good["role"] == "run"
    assert good["status"] == "completed" and good["model"] == FLUX
    assert good["cost_usd"] > 0
    assert good["console_url"].endswith(f"prediction_id={good['prediction_id']}")
    assert good["outputs"] and all(Path(p).is_file() and Path(p).parent == out for p in good["outputs"])
    assert isinstance(good["inference_ms"], int) and good["submitted_at"]
    assert "error" not in good
    assert bad["status"] == "failed" and bad["prediction_id"] and bad["cost_usd"] > 0
    assert bad["prediction_id"] in bad["error"] and "outputs" not in bad


def test_failure_before_any_submit_is_recorded(run_dag: Any, tmp_path: Path) -> None:
    dag = dag_file(
        "records_bad_input",
        f"""
        with DAG("records_bad_input", **DAG_ARGS):
            WaveSpeedSubmitOperator(task_id="submit", model="{AVATAR}", inputs={{"prompt": "no portrait"}})
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "failed"}
    record = records(dr)[("submit", -1)]
    assert record["role"] == "submit" and "prediction_id" not in record
    assert "image" in record["error"]  # names the missing input


def test_pipeline_records_each_step_and_the_budget(run_dag: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dag = dag_file(
        "records_pipeline",
        f"""
        from airflow_provider_wavespeed.operators.budget import WaveSpeedBudgetOperator
        from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

        with DAG("records_pipeline", **DAG_ARGS):
            budget = WaveSpeedBudgetOperator(
                task_id="budget", model="{AVATAR}", batch=[{AVATAR_INPUTS!r}], max_total_cost=5,
            )
            submit = WaveSpeedSubmitOperator(task_id="submit", model="{AVATAR}", inputs={AVATAR_INPUTS!r})
            wait = WaveSpeedPredictionSensor(
                task_id="wait", prediction_id=submit.output, poll_interval=0.1,
            )
            store = WaveSpeedDownloadOperator(
                task_id="store", prediction_id=submit.output, destination="{out}",
            )
            budget >> submit >> wait >> store
        """,
    )

    dr = run_dag(dag)

    assert set(task_states(dr).values()) == {"success"}
    found = records(dr)
    budget, submit, wait, store = (found[(t, -1)] for t in ("budget", "submit", "wait", "store"))
    assert budget["role"] == "budget" and budget["budget_items"] == 1 and budget["budget_max_usd"] == 5
    assert budget["budget_total_usd"] == pytest.approx(submit["cost_usd"])
    assert submit["role"] == "submit" and submit["model"] == AVATAR and submit["cost_usd"] > 0
    pid = submit["prediction_id"]
    assert wait["role"] == "wait" and wait["prediction_id"] == pid and wait["status"] == "completed"
    assert "cost_usd" not in wait and "cost_usd" not in store  # spend counts the submit once
    assert store["role"] == "store" and store["prediction_id"] == pid
    assert [Path(p).name for p in store["outputs"]] == [f"{pid}.mp4"]
    assert "destination_conn_id" not in store  # a local destination needs no connection


def test_sensor_records_a_failed_prediction(run_dag: Any, tmp_path: Path) -> None:
    dag = dag_file(
        "records_failed_wait",
        f"""
        from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

        with DAG("records_failed_wait", **DAG_ARGS):
            submit = WaveSpeedSubmitOperator(
                task_id="submit", model="{FLUX}", inputs={{"prompt": "x [emulator:failed]"}},
            )
            WaveSpeedPredictionSensor(task_id="wait", prediction_id=submit.output, poll_interval=0.1)
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success", "wait": "failed"}
    wait = records(dr)[("wait", -1)]
    assert wait["status"] == "failed" and wait["prediction_id"] in wait["error"]


@pytest.mark.usefixtures("long_key_emulator")
def test_records_never_hold_the_key(run_dag: Any, tmp_path: Path) -> None:
    dag = dag_file(
        "records_no_key",
        f"""
        with DAG("records_no_key", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{FLUX}", inputs={{"prompt": "x [emulator:failed]"}},
                destination="{tmp_path}", poll_interval=0.1,
            )
        """,
    )

    dr = run_dag(dag)

    assert "error" in records(dr)[("render", -1)]
    assert not db_cells_containing(LONG_KEY)
