"""A retried task whose media inputs are local files reuses its first try's prediction: billed once, uploaded once.

The first try uploads a local path / ``file://`` input and submits its URL, so a prediction history that
shows ``input`` carries URLs where the task's inputs carry paths. On Airflow < 3.3 (no
``task_state_store``) the retry finds its prediction in that history: the uploaded fields must be left out
of the comparison, every other field must still match. On >= 3.3 the task state store finds it; the same
invariant holds. Real DAGs through ``dag.test()`` against the emulator (history with ``input``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from tests.support import AIRFLOW_VERSION, AVATAR, dag_file, task_states, tis_of, xcom_value

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
MP3_BYTES = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(reversed(range(256))) * 12
PROMPT = "a calm narrator"


@pytest.fixture
def local_media_inputs(tmp_path: Path) -> dict[str, Any]:
    """Avatar inputs with the portrait as a local path, the voice as a ``file://`` URI and a plain prompt."""
    folder = tmp_path / "media"
    folder.mkdir()
    image = folder / "portrait.png"
    audio = folder / "voice.mp3"
    image.write_bytes(PNG_BYTES)
    audio.write_bytes(MP3_BYTES)
    return {"image": str(image), "audio": audio.as_uri(), "prompt": PROMPT}


@pytest.fixture
def history_with_input(emulator: WaveSpeedEmulator) -> WaveSpeedEmulator:
    emulator.config.history_includes_input = True
    return emulator


def assert_uploaded_urls_were_sent(emulator: WaveSpeedEmulator, prediction_id: str) -> None:
    sent = emulator.predictions[prediction_id].inputs
    uploads = emulator.base_url + "/media/uploads/"
    assert sent["image"].startswith(uploads) and sent["image"].endswith("/portrait.png")
    assert sent["audio"].startswith(uploads) and sent["audio"].endswith("/voice.mp3")
    assert sent["prompt"] == PROMPT


def reused_on_retry(output: str, prediction_id: str) -> bool:
    """The retry reused ``prediction_id`` through this Airflow's path: the task state store on >= 3.3, else
    the prediction history (the path that compares inputs)."""
    how = "submitted by an earlier try" if AIRFLOW_VERSION >= (3, 3) else "of an earlier try (history)"
    return f"Reusing prediction {prediction_id} {how}" in output


def test_a_retried_submit_with_local_media_reuses_its_prediction_so_it_is_billed_and_uploaded_once(
    history_with_input, run_dag, local_media_inputs, all_output
):
    emulator = history_with_input
    dag = dag_file(
        "wavespeed_it_media_submit_retry",
        f"""
        class SubmitThenCrash(WaveSpeedSubmitOperator):
            def execute(self, context):
                prediction_id = super().execute(context)
                if context["ti"].try_number == 1:
                    raise RuntimeError(f"worker lost right after submitting {{prediction_id}}")
                return prediction_id

        with DAG(dag_id="wavespeed_it_media_submit_retry", **DAG_ARGS):
            SubmitThenCrash(task_id="submit", model="{AVATAR}", inputs={local_media_inputs!r}, retries=1)
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success"}
    assert tis_of(dr, "submit")[0].try_number == 2
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.submit_attempts == 1
    assert emulator.stats.uploads == 2  # the portrait and the voice, by try 1 only
    [prediction_id] = emulator.predictions
    assert xcom_value(dr, "submit") == prediction_id
    assert_uploaded_urls_were_sent(emulator, prediction_id)
    output = all_output()
    assert f"worker lost right after submitting {prediction_id}" in output  # try 1 did submit it
    assert reused_on_retry(output, prediction_id)


def test_a_retried_run_with_local_media_reuses_its_prediction_and_stores_the_output_once_billed_once_uploaded(
    history_with_input, run_dag, local_media_inputs, tmp_path, all_output
):
    emulator = history_with_input
    out = tmp_path / "out"
    dag = dag_file(
        "wavespeed_it_media_run_retry",
        f"""
        class RunThenCrash(WaveSpeedRunOperator):
            def execute_complete(self, context, event=None):
                if context["ti"].try_number == 1:
                    raise RuntimeError(f"worker lost after the wait for {{event['prediction_id']}}")
                return super().execute_complete(context, event)

        with DAG(dag_id="wavespeed_it_media_run_retry", **DAG_ARGS):
            RunThenCrash(
                task_id="render", model="{AVATAR}", inputs={local_media_inputs!r},
                destination="{out}", poll_interval=0.1, retries=1,
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"render": "success"}
    assert tis_of(dr, "render")[0].try_number == 2
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.submit_attempts == 1
    assert emulator.stats.uploads == 2
    [prediction_id] = emulator.predictions
    assert_uploaded_urls_were_sent(emulator, prediction_id)
    stored = out / f"{prediction_id}.mp4"
    assert xcom_value(dr, "render")["outputs"] == [str(stored)]
    assert stored.read_bytes() == emulator.expected_output_bytes(prediction_id)
    output = all_output()
    assert f"worker lost after the wait for {prediction_id}" in output  # try 1 submitted and waited
    assert reused_on_retry(output, prediction_id)


def test_a_retry_does_not_adopt_another_prediction_of_the_model_whose_plain_inputs_differ(
    history_with_input, run_dag, local_media_inputs, all_output
):
    """Only the uploaded fields are left out: a stranger's prediction with another prompt is not ours."""
    emulator = history_with_input
    dag = dag_file(
        "wavespeed_it_media_submit_stranger",
        f"""
        import httpx

        class SubmitThenCrash(WaveSpeedSubmitOperator):
            def execute(self, context):
                prediction_id = super().execute(context)
                if context["ti"].try_number == 1:
                    httpx.post(  # someone else, outside Airflow, submits to the same model meanwhile
                        "{emulator.base_url}/api/v3/{AVATAR}",
                        json={{"image": "https://example.com/other.png", "audio": "https://example.com/other.mp3",
                               "prompt": "someone else's prompt"}},
                        headers={{"Authorization": "Bearer {emulator.api_key}"}},
                        timeout=10,
                    ).raise_for_status()
                    raise RuntimeError(f"worker lost right after submitting {{prediction_id}}")
                return prediction_id

        with DAG(dag_id="wavespeed_it_media_submit_stranger", **DAG_ARGS):
            SubmitThenCrash(task_id="submit", model="{AVATAR}", inputs={local_media_inputs!r}, retries=1)
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success"}
    assert tis_of(dr, "submit")[0].try_number == 2
    assert emulator.stats.submits_accepted == 2  # ours and the stranger's: nothing submitted by the retry
    assert emulator.stats.uploads == 2
    ours = xcom_value(dr, "submit")
    assert emulator.predictions[ours].inputs["prompt"] == PROMPT
    assert_uploaded_urls_were_sent(emulator, ours)
    output = all_output()
    assert f"worker lost right after submitting {ours}" in output
    assert reused_on_retry(output, ours)
