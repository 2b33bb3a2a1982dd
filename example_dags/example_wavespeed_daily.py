"""A scheduled content pipeline: every morning, a fresh thumbnail per topic, stored by date.

Runs ``@daily``; each run renders into its own dated folder (``run_after`` exists on every run,
scheduled or triggered). ``min_balance`` stops the run before spending when the account is low, and
``max_cost`` refuses any thumbnail whose price quote is above 5 cents, before it is billed.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

OUTPUT_ROOT = os.environ.get("WAVESPEED_OUTPUT_DIR", "/tmp/wavespeed/avatars")
TOPICS = ["morning news", "weather", "markets", "sports"]

with DAG(
    dag_id="example_wavespeed_daily",
    description="Daily thumbnails with a text-to-image model",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wavespeed"],
) as dag:
    WaveSpeedRunOperator.partial(
        task_id="thumbnail",
        model="wavespeed-ai/flux-dev",
        destination=OUTPUT_ROOT + "/daily/{{ dag_run.run_after | ds }}",
        min_balance=1.0,
        max_cost=0.05,
        retries=2,
    ).expand_kwargs(
        [
            {"inputs": {"prompt": f"Flat illustration, {topic} thumbnail", "size": "1280*720"}, "filename": topic}
            for topic in TOPICS
        ]
    )
