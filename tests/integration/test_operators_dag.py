"""Operators and sensor through real Airflow (``dag.test()``) against the emulator.

Each test writes a small DAG file (unique dag_id) into the DAGs folder, loads it and runs it; the
sensor's trigger runs inline under ``dag.test()``. Poll intervals are set to 0.2 s so runs are fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    AVATAR,
    AVATAR_INPUTS,
    FLUX,
    LONG_KEY,
    dags_folder,
    db_cells_containing,
    held_until,
    load_dag,
    log_events,
    part_files,
    polled,
    raw_submit,
    task_states,
    wait_terminal,
    went_through_deferral,
    write_dag,
    xcom_value,
)

ROOT = Path(__file__).resolve().parents[2]

HEADER = """
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedDownloadOperator, WaveSpeedSubmitOperator
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

DAG_ARGS = dict(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retry_delay": timedelta(seconds=0)},
)
"""


def dag_file(dag_id: str, body: str) -> Any:
    """Write HEADER + body as a DAG file and load the DAG from it."""
    import textwrap

    return load_dag(write_dag(dag_id, textwrap.dedent(HEADER) + textwrap.dedent(body)), dag_id)


def example_dag_source() -> Path:
    for candidate in (
        ROOT / "example_dags" / "example_wavespeed_avatar.py",
        ROOT / "airflow_provider_wavespeed" / "example_dags" / "example_wavespeed_avatar.py",
    ):
        if candidate.is_file():
            return candidate
    raise AssertionError("example_wavespeed_avatar.py not found")


def load_example_dag(output_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shipped example DAG, copied into the DAGs folder, writing under ``output_dir``."""
    monkeypatch.setenv("WAVESPEED_OUTPUT_DIR", str(output_dir))
    target = dags_folder() / "example_wavespeed_avatar.py"
    shutil.copy(example_dag_source(), target)
    dag = load_dag(target, "example_wavespeed_avatar")
    dag.get_task("wait").poll_interval = 0.2  # the in-memory DAG is what dag.test() runs
    return dag


def ti_of(dag_run: Any, task_id: str) -> Any:
    return next(ti for ti in dag_run.get_task_instances() if ti.task_id == task_id)


def only_prediction(emulator: Any) -> str:
    assert len(emulator.predictions) == 1, list(emulator.predictions)
    return next(iter(emulator.predictions))


# -- the example DAG -----------------------------------------------------------------------------------


def test_example_dag_defers_then_stores_the_exact_output_and_returns_id_prediction_and_paths(
    emulator, run_dag, tmp_path, monkeypatch, all_output
):
    dag = load_example_dag(tmp_path / "out", monkeypatch)

    with held_until(emulator, polled(emulator, 2)):  # running when the sensor looks (poll 1), so it defers
        dr = run_dag(dag)

    assert str(dr.state) == "success", task_states(dr)
    assert task_states(dr) == {"submit": "success", "wait": "success", "fetch": "success"}
    prediction_id = only_prediction(emulator)
    assert emulator.stats.submits_accepted == 1

    # submit returns the id and pushes the console link
    assert xcom_value(dr, "submit") == prediction_id
    link = xcom_value(dr, "submit", key="wavespeed_prediction_url")
    assert prediction_id in link and AVATAR in link

    # the sensor went through a deferral and returned the completed prediction
    assert went_through_deferral(dr, "wait", all_output)
    waited = xcom_value(dr, "wait")
    assert waited["id"] == prediction_id and waited["status"] == "completed"
    assert waited["outputs"] == [emulator.output_url(prediction_id)]

    # the download returned the stored path, and the file holds exactly the served bytes
    stored = xcom_value(dr, "fetch")
    assert len(stored) == 1
    path = Path(stored[0])
    assert path.parent.parent == tmp_path / "out"
    assert path.name == f"{prediction_id}.mp4"
    assert path.read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert part_files(tmp_path) == []


# -- failures ------------------------------------------------------------------------------------------


def test_a_failed_prediction_fails_the_sensor_with_id_error_text_and_code_and_the_download_never_runs(
    emulator, run_dag, tmp_path, all_output
):
    dag = dag_file(
        "wavespeed_it_failed_prediction",
        f"""
        with DAG(dag_id="wavespeed_it_failed_prediction", **DAG_ARGS):
            submit = WaveSpeedSubmitOperator(
                task_id="submit",
                model="{AVATAR}",
                inputs={{**{AVATAR_INPUTS!r}, "prompt": "a presenter [emulator:failed]"}},
            )
            wait = WaveSpeedPredictionSensor(
                task_id="wait", prediction_id=submit.output, poll_interval=0.2, retries=2
            )
            fetch = WaveSpeedDownloadOperator(
                task_id="fetch", prediction_id=submit.output, destination="{tmp_path / "out"}"
            )
            submit >> wait >> fetch
        """,
    )

    with held_until(emulator, polled(emulator, 2)):  # the failure arrives through the trigger
        dr = run_dag(dag)

    assert str(dr.state) == "failed"
    assert task_states(dr) == {"submit": "success", "wait": "failed", "fetch": "upstream_failed"}
    assert ti_of(dr, "wait").try_number == 1  # final: a retry cannot change a failed prediction
    prediction_id = only_prediction(emulator)
    output = all_output()
    failure_lines = [line for line in output.splitlines() if prediction_id in line and "ended with status" in line]
    assert failure_lines, "the sensor's failure message names the prediction"
    message = failure_lines[0]
    assert "'failed'" in message
    assert "code 1403" in message
    assert "Task Execution Failed" in message
    assert emulator.stats.downloads_started == 0
    assert not (tmp_path / "out").exists()


def test_the_sensor_timeout_is_enforced_while_deferred_and_names_the_prediction(emulator, run_dag, raw_api, all_output):
    emulator.config.run_seconds = 60.0
    prediction_id = raw_submit(raw_api)
    dag = dag_file(
        "wavespeed_it_sensor_timeout",
        """
        with DAG(dag_id="wavespeed_it_sensor_timeout", **DAG_ARGS):
            WaveSpeedPredictionSensor(
                task_id="wait",
                prediction_id="{{ dag_run.conf['prediction_id'] }}",
                poll_interval=0.2,
                timeout=1,
                retries=2,
            )
        """,
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"wait": "failed"}
    assert went_through_deferral(dr, "wait", all_output)
    assert ti_of(dr, "wait").try_number == 1  # a timeout is final, like Airflow's own sensor timeout
    assert any("Gave up waiting" in line and prediction_id in line for line in all_output().splitlines()), (
        "the timeout message names the prediction"
    )
    assert emulator.stats.submits_accepted == 1  # waiting never submits


def test_invalid_inputs_fail_the_submit_task_without_retry_and_without_submitting(emulator, run_dag, all_output):
    dag = dag_file(
        "wavespeed_it_invalid_inputs",
        f"""
        with DAG(dag_id="wavespeed_it_invalid_inputs", **DAG_ARGS):
            WaveSpeedSubmitOperator(
                task_id="submit",
                model="{AVATAR}",
                inputs={{"image": "https://example.com/p.png", "resolution": "1080p"}},
                retries=3,
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "failed"}
    assert ti_of(dr, "submit").try_number == 1
    assert emulator.stats.submit_attempts == 0
    output = all_output()
    assert "resolution" in output and "'1080p'" in output and "audio: required but missing" in output


# -- retries -------------------------------------------------------------------------------------------


def test_a_retried_submit_reuses_the_prediction_of_its_first_try_so_exactly_one_is_billed(
    emulator, run_dag, all_output
):
    dag = dag_file(
        "wavespeed_it_submit_retry",
        f"""
        class SubmitThenCrash(WaveSpeedSubmitOperator):
            def execute(self, context):
                prediction_id = super().execute(context)
                if context["ti"].try_number == 1:
                    raise RuntimeError(f"worker lost right after submitting {{prediction_id}}")
                return prediction_id

        with DAG(dag_id="wavespeed_it_submit_retry", **DAG_ARGS):
            submit = SubmitThenCrash(task_id="submit", model="{AVATAR}", inputs={AVATAR_INPUTS!r}, retries=1)
            wait = WaveSpeedPredictionSensor(task_id="wait", prediction_id=submit.output, poll_interval=0.2)
            submit >> wait
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success", "wait": "success"}
    assert ti_of(dr, "submit").try_number == 2
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.submit_attempts == 1
    prediction_id = only_prediction(emulator)
    assert xcom_value(dr, "submit") == prediction_id
    assert xcom_value(dr, "wait")["id"] == prediction_id
    output = all_output()
    assert f"worker lost right after submitting {prediction_id}" in output  # try 1 did submit it
    assert f"Reusing prediction {prediction_id}" in output


def test_a_non_deferrable_sensor_pokes_from_the_worker_until_the_prediction_completes(emulator, run_dag, all_output):
    dag = dag_file(
        "wavespeed_it_poke",
        f"""
        with DAG(dag_id="wavespeed_it_poke", **DAG_ARGS):
            submit = WaveSpeedSubmitOperator(task_id="submit", model="{AVATAR}", inputs={AVATAR_INPUTS!r})
            wait = WaveSpeedPredictionSensor(
                task_id="wait", prediction_id=submit.output, deferrable=False, poll_interval=0.2, timeout=30
            )
            submit >> wait
        """,
    )

    with held_until(emulator, polled(emulator, 2)):  # running at the first poke
        dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success", "wait": "success"}
    assert "deferred" not in log_events(dr, "wait")
    assert ti_of(dr, "wait").try_number == 1
    prediction_id = only_prediction(emulator)
    result = xcom_value(dr, "wait")
    assert result["id"] == prediction_id and result["status"] == "completed"
    assert emulator.stats.polls_by_prediction[prediction_id] >= 2
    assert f"Prediction {prediction_id} is processing" in all_output()


def test_a_retried_download_skips_outputs_already_stored_completely_and_replaces_stale_ones(
    emulator, run_dag, raw_api, tmp_path
):
    prediction_id = raw_submit(raw_api, FLUX, prompt="a lighthouse", num_images=3)
    wait_terminal(emulator, prediction_id)
    out = tmp_path / "out"
    out.mkdir()
    (out / "lighthouse_1.png").write_bytes(b"a stale half file from another run")
    dag = dag_file(
        "wavespeed_it_download_retry",
        """
        class DownloadThenCrash(WaveSpeedDownloadOperator):
            def execute(self, context):
                stored = super().execute(context)
                if context["ti"].try_number == 1:
                    raise RuntimeError("worker lost right after downloading")
                return stored

        with DAG(dag_id="wavespeed_it_download_retry", **DAG_ARGS):
            DownloadThenCrash(
                task_id="fetch",
                prediction_id="{{ dag_run.conf['prediction_id'] }}",
                destination="{{ dag_run.conf['destination'] }}",
                filename="lighthouse",
                retries=1,
            )
        """,
    )

    dr = run_dag(dag, prediction_id=prediction_id, destination=str(out))

    assert task_states(dr) == {"fetch": "success"}
    assert ti_of(dr, "fetch").try_number == 2
    assert emulator.stats.downloads_started == 3  # try 1 fetched all three (the stale one too); try 2 none
    stored = xcom_value(dr, "fetch")
    assert stored == [str(out / f"lighthouse_{i}.png") for i in range(3)]
    for i in range(3):
        assert (out / f"lighthouse_{i}.png").read_bytes() == emulator.expected_output_bytes(prediction_id, i)
    assert part_files(tmp_path) == []


def test_the_run_operator_submits_waits_deferred_and_stores_in_one_task(emulator, run_dag, tmp_path, all_output):
    dag = dag_file(
        "wavespeed_it_run_operator",
        f"""
        from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

        with DAG(dag_id="wavespeed_it_run_operator", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="run",
                model="{AVATAR}",
                inputs={AVATAR_INPUTS!r},
                destination="{tmp_path / "out"}",
                poll_interval=0.2,
            )
        """,
    )

    with held_until(emulator, polled(emulator, 1)):  # still running when the trigger first looks
        dr = run_dag(dag)

    assert task_states(dr) == {"run": "success"}
    assert went_through_deferral(dr, "run", all_output)
    prediction_id = only_prediction(emulator)
    result = xcom_value(dr, "run")
    assert result["prediction_id"] == prediction_id and result["model"] == AVATAR
    assert result["outputs"] == [str(tmp_path / "out" / f"{prediction_id}.mp4")]
    assert Path(result["outputs"][0]).read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert emulator.stats.submits_accepted == 1


# -- downloads -----------------------------------------------------------------------------------------

DOWNLOAD_DAG = """
with DAG(dag_id="wavespeed_it_download", **DAG_ARGS):
    WaveSpeedDownloadOperator(
        task_id="fetch",
        prediction_id="{{ dag_run.conf['prediction_id'] }}",
        destination="{{ dag_run.conf['destination'] }}",
        retries=2,
    )
"""


@pytest.mark.parametrize("range_support", [True, False], ids=["resume-with-range", "server-ignores-range"])
def test_cut_downloads_end_with_a_bit_identical_file_and_no_part_files(
    emulator, run_dag, raw_api, tmp_path, range_support
):
    emulator.config.output_size = 300_000
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)
    emulator.config.cut_downloads = 2
    emulator.config.cut_after_bytes = 10_000
    emulator.config.range_support = range_support
    dag = dag_file("wavespeed_it_download", DOWNLOAD_DAG)

    dr = run_dag(dag, prediction_id=prediction_id, destination=str(tmp_path / "out"))

    assert task_states(dr) == {"fetch": "success"}
    assert ti_of(dr, "fetch").try_number == 1  # the cuts were survived inside one try
    assert emulator.stats.cut_downloads == 2
    assert emulator.stats.downloads_started == 3
    target = tmp_path / "out" / f"{prediction_id}.mp4"
    assert xcom_value(dr, "fetch") == [str(target)]
    expected = emulator.expected_output_bytes(prediction_id)
    assert len(expected) == 300_000
    assert target.read_bytes() == expected
    assert part_files(tmp_path) == []


def test_a_cut_download_resumes_with_a_range_request_and_stitches_the_bytes_exactly(
    emulator, run_dag, raw_api, tmp_path
):
    size, cut = 2_500_000, 1_500_000  # larger than one 1 MiB read, so part of it survives the cut
    emulator.config.output_size = size
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)
    emulator.config.cut_downloads = 1
    emulator.config.cut_after_bytes = cut
    dag = dag_file("wavespeed_it_download", DOWNLOAD_DAG)

    dr = run_dag(dag, prediction_id=prediction_id, destination=str(tmp_path / "out"))

    assert task_states(dr) == {"fetch": "success"}
    assert emulator.stats.cut_downloads == 1
    assert emulator.stats.downloads_started == 2
    assert emulator.stats.bytes_served < cut + size, "the second request started over instead of resuming"
    assert (tmp_path / "out" / f"{prediction_id}.mp4").read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert part_files(tmp_path) == []


def test_a_cut_download_keeps_every_byte_received_before_the_cut(emulator, run_dag, raw_api, tmp_path):
    emulator.config.output_size = 300_000
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)
    emulator.config.cut_downloads = 2
    emulator.config.cut_after_bytes = 10_000
    dag = dag_file("wavespeed_it_download", DOWNLOAD_DAG)

    dr = run_dag(dag, prediction_id=prediction_id, destination=str(tmp_path / "out"))

    assert task_states(dr) == {"fetch": "success"}
    assert emulator.stats.cut_downloads == 2
    # resumed at byte 10,000 and then 20,000: every byte served once (a restart would serve 320,000)
    assert emulator.stats.bytes_served == 300_000


def test_a_non_writable_destination_fails_naming_it_before_any_download(
    emulator, run_dag, raw_api, tmp_path, all_output
):
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    destination = blocker / "outputs"
    dag = dag_file("wavespeed_it_download", DOWNLOAD_DAG)

    dr = run_dag(dag, prediction_id=prediction_id, destination=str(destination))

    assert task_states(dr) == {"fetch": "failed"}
    assert ti_of(dr, "fetch").try_number == 1  # retrying cannot make it writable
    assert emulator.stats.downloads_started == 0
    output = all_output()
    assert any(str(destination) in line and "not writable" in line for line in output.splitlines())


def test_object_storage_destinations_with_file_uris_store_the_exact_bytes(
    emulator, run_dag, raw_api, tmp_path, monkeypatch
):
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_FS", json.dumps({"conn_type": "fs"}))
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)
    dag = dag_file(
        "wavespeed_it_object_storage",
        """
        with DAG(dag_id="wavespeed_it_object_storage", **DAG_ARGS):
            WaveSpeedDownloadOperator(
                task_id="to_file_uri",
                prediction_id="{{ dag_run.conf['prediction_id'] }}",
                destination="file://{{ dag_run.conf['root'] }}/plain",
            )
            WaveSpeedDownloadOperator(
                task_id="to_object_store",
                prediction_id="{{ dag_run.conf['prediction_id'] }}",
                destination="file://{{ dag_run.conf['root'] }}/objects",
                destination_conn_id="local_fs",
            )
        """,
    )

    dr = run_dag(dag, prediction_id=prediction_id, root=str(tmp_path))

    assert task_states(dr) == {"to_file_uri": "success", "to_object_store": "success"}
    expected = emulator.expected_output_bytes(prediction_id)
    for sub in ("plain", "objects"):
        assert (tmp_path / sub / f"{prediction_id}.mp4").read_bytes() == expected
    assert xcom_value(dr, "to_file_uri") == [str(tmp_path / "plain" / f"{prediction_id}.mp4")]
    [uri] = xcom_value(dr, "to_object_store")
    assert uri.startswith("file://") and uri.endswith(f"{tmp_path}/objects/{prediction_id}.mp4")
    assert part_files(tmp_path) == []


def test_a_file_uri_with_localhost_authority_stores_at_the_absolute_path(
    emulator, run_dag, raw_api, tmp_path, monkeypatch
):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # wherever a wrong relative path lands, it lands in tmp
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)
    dag = dag_file("wavespeed_it_download", DOWNLOAD_DAG)

    dr = run_dag(dag, prediction_id=prediction_id, destination=f"file://localhost{tmp_path}/by-uri")

    assert task_states(dr) == {"fetch": "success"}
    target = tmp_path / "by-uri" / f"{prediction_id}.mp4"
    assert target.is_file(), f"stored elsewhere: {xcom_value(dr, 'fetch')}"
    assert target.read_bytes() == emulator.expected_output_bytes(prediction_id)


# -- nsfw policy ---------------------------------------------------------------------------------------


def test_nsfw_policy_keep_stores_skip_stores_nothing_and_fail_fails(emulator, run_dag, tmp_path, all_output):
    dag = dag_file(
        "wavespeed_it_nsfw",
        f"""
        with DAG(dag_id="wavespeed_it_nsfw", **DAG_ARGS):
            submit = WaveSpeedSubmitOperator(
                task_id="submit", model="{FLUX}", inputs={{"prompt": "[emulator:nsfw]", "num_images": 2}}
            )
            sensors = {{
                policy: WaveSpeedPredictionSensor(
                    task_id=f"wait_{{policy}}", prediction_id=submit.output, poll_interval=0.2, nsfw_policy=policy
                )
                for policy in ("keep", "skip", "fail")
            }}
            downloads = {{
                policy: WaveSpeedDownloadOperator(
                    task_id=f"fetch_{{policy}}",
                    prediction_id=submit.output,
                    destination="{tmp_path}/" + policy,
                    nsfw_policy=policy,
                )
                for policy in ("keep", "skip", "fail")
            }}
            submit >> list(sensors.values())
            sensors["keep"] >> [downloads["keep"], downloads["fail"]]
            sensors["skip"] >> downloads["skip"]
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {
        "submit": "success",
        "wait_keep": "success",
        "wait_skip": "success",
        "wait_fail": "failed",
        "fetch_keep": "success",
        "fetch_skip": "success",
        "fetch_fail": "failed",
    }
    prediction_id = only_prediction(emulator)
    assert emulator.predictions[prediction_id].outcome == "nsfw"
    assert xcom_value(dr, "wait_keep")["has_nsfw_contents"] == [True, True]
    kept = xcom_value(dr, "fetch_keep")
    assert kept == [str(tmp_path / "keep" / f"{prediction_id}_{i}.png") for i in range(2)]
    for i, path in enumerate(kept):
        assert Path(path).read_bytes() == emulator.expected_output_bytes(prediction_id, i)
    assert xcom_value(dr, "fetch_skip") == []
    assert list((tmp_path / "skip").iterdir()) == []
    assert not (tmp_path / "fail").exists() or list((tmp_path / "fail").iterdir()) == []
    assert emulator.stats.downloads_started == 2  # only fetch_keep downloaded
    failures = [
        line
        for line in all_output().splitlines()
        if "AirflowFailException" in line and prediction_id in line and "flagged" in line
    ]
    assert len(failures) >= 2, "wait_fail and fetch_fail both fail naming the prediction and the flag"


# -- the key stays secret ------------------------------------------------------------------------------


def test_the_api_key_never_reaches_xcom_rendered_fields_the_db_or_the_logs(
    long_key_emulator, run_dag, tmp_path, monkeypatch, all_output
):
    emulator = long_key_emulator
    dag = load_example_dag(tmp_path / "out", monkeypatch)

    with held_until(emulator, polled(emulator, 2)):  # defer, so trigger kwargs are stored too
        dr = run_dag(dag)
    assert str(dr.state) == "success", task_states(dr)
    assert went_through_deferral(dr, "wait", all_output)

    # and a run the API rejects: the key must not be echoed in the failure either
    emulator.config.api_key = "the-server-now-wants-another-key"
    failed = run_dag(dag)
    assert task_states(failed)["submit"] == "failed"

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter(XComModel.dag_id == dag.dag_id).all()
        rendered = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag.dag_id).all()
        assert xcoms and rendered
        for row in xcoms:
            assert LONG_KEY not in json.dumps(row.value, default=str), row.key
        for row in rendered:
            assert LONG_KEY not in json.dumps(row.rendered_fields, default=str), row.task_id
    assert db_cells_containing(LONG_KEY) == []
    assert db_cells_containing(LONG_KEY[10:40]) == []
    output = all_output()
    assert "WaveSpeed API error 401" in output  # the failure was logged ...
    assert LONG_KEY not in output  # ... without the key
    assert LONG_KEY[10:40] not in output
