"""Batch talking avatars: one video per row of a scripts file, mapped with ``.expand_kwargs()``.

A budget gate quotes every script first and stops the run, before anything is billed, when the
batch would cost more than the ``budget_usd`` param (a wrong CSV or a runaway row count). Each mapped
task then submits, waits in the triggerer and stores ``<slug>.mp4`` in a dated folder, and emits an
asset event through the ``wavespeed_avatar_videos`` alias (see ``example_wavespeed_on_new_videos``).
``max_active_tis_per_dagrun`` keeps the number of predictions in flight within the account's
concurrency limit; submits over its per-minute limit wait in the triggerer instead of failing.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedBudgetOperator, WaveSpeedRunOperator

OUTPUT_ROOT = os.environ.get("WAVESPEED_OUTPUT_DIR", "/tmp/wavespeed/avatars")
SCRIPTS_FILE = Path(__file__).parent / "data" / "scripts.csv"
VIDEOS_ALIAS = "wavespeed_avatar_videos"
MODEL = "wavespeed-ai/hunyuan-avatar"

with DAG(
    dag_id="example_wavespeed_batch",
    description="One talking-avatar video per script in a CSV file",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wavespeed"],
    params={
        "limit": Param(200, type="integer", minimum=1, description="How many scripts to render"),
        "budget_usd": Param(100.0, type="number", exclusiveMinimum=0, description="Most the run may spend (USD)"),
    },
) as dag:

    @task
    def load_scripts(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        limit = int((params or {}).get("limit", 200))
        with SCRIPTS_FILE.open(newline="") as handle:
            rows = list(csv.DictReader(handle))[:limit]
        return [
            {
                "inputs": {
                    "image": row["image"],
                    "audio": row["audio"],
                    "prompt": row["prompt"],
                    "resolution": row["resolution"],
                    "seed": -1,
                },
                "filename": row["slug"],
            }
            for row in rows
        ]

    @task
    def inputs_of(scripts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [script["inputs"] for script in scripts]

    scripts = load_scripts()
    budget = WaveSpeedBudgetOperator(
        task_id="check_budget",
        model=MODEL,
        batch=inputs_of(scripts),
        max_total_cost="{{ params.budget_usd }}",
    )
    render = WaveSpeedRunOperator.partial(
        task_id="render_avatar",
        model=MODEL,
        destination=OUTPUT_ROOT + "/batch/{{ dag_run.run_after | ds }}",
        asset_alias=VIDEOS_ALIAS,
        max_active_tis_per_dagrun=16,
        retries=2,
    ).expand_kwargs(scripts)
    budget >> render
