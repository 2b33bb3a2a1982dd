"""Talking-avatar pipeline: one portrait + one voice track -> an mp4 in the output folder.

submit (billed once, even across retries) -> wait in the triggerer -> stream the video to storage.
Runs against the real API with a ``wavespeed_default`` connection holding your key, or against
the offline emulator (``make demo``).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedDownloadOperator, WaveSpeedSubmitOperator
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

OUTPUT_ROOT = os.environ.get("WAVESPEED_OUTPUT_DIR", "/tmp/wavespeed/avatars")

with DAG(
    dag_id="example_wavespeed_avatar",
    description="Turn a portrait and a voice track into a talking-avatar video with WaveSpeed",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wavespeed"],
    params={
        "image": Param(
            "https://interactive-examples.mdn.mozilla.net/media/cc0-images/painted-hand-298-332.jpg",
            type="string",
            description="Public URL of the portrait",
        ),
        "audio": Param(
            "https://interactive-examples.mdn.mozilla.net/media/cc0-audio/t-rex-roar.mp3",
            type="string",
            description="Public URL of the voice track",
        ),
        "prompt": Param("A friendly presenter speaking to the camera", type="string"),
        "resolution": Param("480p", enum=["480p", "720p"]),
    },
) as dag:
    submit = WaveSpeedSubmitOperator(
        task_id="submit",
        model="wavespeed-ai/hunyuan-avatar",
        inputs={
            "image": "{{ params.image }}",
            "audio": "{{ params.audio }}",
            "prompt": "{{ params.prompt }}",
            "resolution": "{{ params.resolution }}",
            "seed": -1,
        },
        retries=2,
    )
    wait = WaveSpeedPredictionSensor(task_id="wait", prediction_id=submit.output, timeout=60 * 60)
    fetch = WaveSpeedDownloadOperator(
        task_id="fetch",
        prediction_id=submit.output,
        # run_after exists on every run (a triggered run has no logical date, so no `ds`).
        destination=OUTPUT_ROOT + "/{{ dag_run.run_after | ds }}",
        retries=2,
    )
    submit >> wait >> fetch
