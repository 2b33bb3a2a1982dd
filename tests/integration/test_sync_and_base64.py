"""The sync fast path and base64 outputs, through dag.test() against the emulator.

``enable_sync_mode``: the submit's reply carries the finished prediction, so the run operator stores
the outputs at once (no deferral, no polls); a sync timeout (5004, still ``processing``) continues with
the same prediction, deferred as usual, never a second submit. ``enable_base64_output``: outputs are
naked base64; they are decoded and stored atomically without any CDN request, and they never ride
through the metadata DB (trigger events and XCom carry a marker instead).
"""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_wavespeed.api.models import INLINE_OUTPUT_MARKER
from tests.support import (
    AVATAR,
    AVATAR_INPUTS,
    FLUX,
    dag_file,
    held_until,
    polled,
    raw_submit,
    task_states,
    tis_of,
    went_through_deferral,
    xcom_value,
)

SYNC = {"prompt": "a lighthouse at dawn", "enable_sync_mode": True}
BASE64 = {"prompt": "a lighthouse at dawn", "enable_base64_output": True}


def run_operator_dag(dag_id: str, inputs: dict, out: str, **extra: object):
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    return dag_file(
        dag_id,
        f"""
        with DAG(dag_id="{dag_id}", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{FLUX}", inputs={inputs!r}, destination="{out}", poll_interval=0.1{options}
            )
        """,
    )


def test_a_sync_mode_run_stores_the_outputs_from_the_submit_reply_without_deferring_or_polling(
    emulator, run_dag, tmp_path, all_output
):
    dr = run_dag(run_operator_dag("wavespeed_it_sync", SYNC, str(tmp_path)))

    assert task_states(dr) == {"render": "success"}
    assert not went_through_deferral(dr, "render", all_output)
    [prediction_id] = emulator.predictions
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.result_polls == 0  # the submit's reply was the result
    stored = xcom_value(dr, "render")["outputs"]
    assert stored == [str(tmp_path / f"{prediction_id}.png")]
    assert (tmp_path / f"{prediction_id}.png").read_bytes() == emulator.expected_output_bytes(prediction_id)
    requests = emulator.stats.requests_total
    print(f"\nsync path, one prediction: {requests} requests in all (catalogue, quote, submit, output)")


def test_a_sync_timeout_goes_on_with_the_same_prediction_deferred_and_never_submits_twice(
    emulator, run_dag, tmp_path, all_output
):
    emulator.configure(sync_window_seconds=0.2)  # the API gives up waiting long before the prediction ends
    dag = run_operator_dag("wavespeed_it_sync_timeout", SYNC, str(tmp_path))

    with held_until(emulator, polled(emulator, 1)):  # still running after the sync window: 5004
        dr = run_dag(dag)

    assert task_states(dr) == {"render": "success"}
    assert emulator.stats.sync_timeouts == 1
    assert went_through_deferral(dr, "render", all_output)
    [prediction_id] = emulator.predictions
    assert emulator.stats.submits_accepted == 1
    assert xcom_value(dr, "render")["prediction_id"] == prediction_id
    assert (tmp_path / f"{prediction_id}.png").read_bytes() == emulator.expected_output_bytes(prediction_id)


def test_a_lost_sync_reply_is_resolved_from_the_history_not_submitted_again(emulator, run_dag, tmp_path):
    emulator.configure(lose_submit_reply_every_nth=1)  # the gateway gives up on the long request (5xx)

    dr = run_dag(run_operator_dag("wavespeed_it_sync_lost", SYNC, str(tmp_path)))

    assert task_states(dr) == {"render": "success"}
    [prediction_id] = emulator.predictions
    assert emulator.stats.submits_accepted == 1 and emulator.stats.lost_submit_replies == 1
    assert xcom_value(dr, "render")["prediction_id"] == prediction_id


@pytest.mark.parametrize("sync", [True, False], ids=["sync", "deferred"])
def test_base64_outputs_are_decoded_and_stored_without_a_cdn_request_and_never_ride_in_the_db(
    emulator, run_dag, tmp_path, all_output, sync
):
    inputs = {**BASE64, "enable_sync_mode": sync}
    dag = run_operator_dag(f"wavespeed_it_base64_{sync}".lower(), inputs, str(tmp_path))

    with held_until(emulator, polled(emulator, 1) if not sync else (lambda: True)):
        dr = run_dag(dag)

    assert task_states(dr) == {"render": "success"}
    [prediction_id] = emulator.predictions
    path = tmp_path / f"{prediction_id}.png"  # the name's extension comes from the bytes themselves
    assert path.read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert emulator.stats.downloads_started == 0  # decoded, not fetched from the CDN
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert went_through_deferral(dr, "render", all_output) != sync
    assert len(json.dumps(xcom_value(dr, "render"))) < 2000


def test_the_triggers_terminal_event_carries_a_marker_for_each_base64_output_not_the_bytes(emulator, raw_api):
    from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

    prediction_id = raw_submit(raw_api, FLUX, **BASE64)
    trigger = WaveSpeedPredictionTrigger(prediction_id=prediction_id, poll_interval=0.05, deadline=None)

    async def first_event() -> dict:
        events = trigger.run()
        try:
            return dict((await asyncio.wait_for(events.__anext__(), 60)).payload)
        finally:
            await events.aclose()

    event = asyncio.run(first_event())
    assert event["event"] == "terminal" and event["status"] == "completed"
    assert event["prediction"]["outputs"] == [INLINE_OUTPUT_MARKER]
    assert len(json.dumps(event)) < 2000  # the triggerer stores it in the metadata DB


def test_the_sensor_returns_a_small_prediction_with_markers_and_the_download_operator_stores_the_bytes(
    emulator, run_dag, tmp_path
):
    dag = dag_file(
        "wavespeed_it_base64_sensor",
        f"""
        from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

        with DAG(dag_id="wavespeed_it_base64_sensor", **DAG_ARGS):
            submit = WaveSpeedSubmitOperator(task_id="submit", model="{FLUX}", inputs={BASE64!r})
            wait = WaveSpeedPredictionSensor(task_id="wait", prediction_id=submit.output, poll_interval=0.1)
            fetch = WaveSpeedDownloadOperator(task_id="fetch", prediction_id=submit.output, destination="{tmp_path}")
            submit >> wait >> fetch
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success", "wait": "success", "fetch": "success"}
    [prediction_id] = emulator.predictions
    waited = xcom_value(dr, "wait")
    assert waited["outputs"] == [INLINE_OUTPUT_MARKER]
    assert len(json.dumps(waited)) < 2000
    assert (tmp_path / f"{prediction_id}.png").read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert emulator.stats.downloads_started == 0


@pytest.mark.parametrize(
    ("model", "inputs", "extra", "message"),
    [
        (
            FLUX,
            BASE64,
            {"webhook": "https://example.com/hook"},
            "enable_base64_output cannot be combined with a webhook",
        ),
        (
            AVATAR,
            {**AVATAR_INPUTS, "enable_sync_mode": True},
            {},
            "enable_sync_mode: model wavespeed-ai/hunyuan-avatar",
        ),
        (AVATAR, {**AVATAR_INPUTS, "enable_base64_output": True}, {}, "enable_base64_output: model"),
    ],
    ids=["base64-with-webhook", "sync-on-a-model-without-it", "base64-on-a-model-without-it"],
)
def test_options_the_api_would_reject_fail_before_anything_is_submitted(
    emulator, run_dag, tmp_path, all_output, request, model, inputs, extra, message
):
    options = "".join(f", {key}={value!r}" for key, value in extra.items())
    dag_id = "wavespeed_it_refused_" + request.node.callspec.id.replace("-", "_")
    dag = dag_file(
        dag_id,
        f"""
        with DAG(dag_id="{dag_id}", **DAG_ARGS):
            WaveSpeedSubmitOperator(task_id="submit", model="{model}", inputs={inputs!r}, retries=2{options})
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"submit": "failed"}
    assert tis_of(dr, "submit")[0].try_number == 1  # final: a retry would be refused the same way
    assert emulator.predictions == {} and emulator.stats.submit_attempts == 0
    assert message in all_output()
