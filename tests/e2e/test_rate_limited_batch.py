"""A mapped batch against an account limit of 3 submits a minute completes: rate limits wait, they do not fail.

Real scheduler + triggerer; the emulator refuses a 4th submit within its window with a 429 and no
``Retry-After`` (none is documented). The window is shortened to 10 s ("a minute") to keep the test
quick; the provider does not know the window and must work without being told.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from tests.e2e.airflow_cluster import AirflowCluster

pytestmark = pytest.mark.e2e

MODEL = "wavespeed-ai/flux-dev"
ITEMS = 8
PER_WINDOW = 3
WINDOW_SECONDS = 10.0

DAG_SOURCE = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

with DAG("e2e_rate_limited_batch", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    WaveSpeedRunOperator.partial(
        task_id="render", model="MODEL", destination="{{ dag_run.conf['out'] }}", poll_interval=0.5,
        max_poll_interval=1.0, max_cost=1.0,
    ).expand(inputs=[{"prompt": f"thumbnail {i}"} for i in range(ITEMS)])
""".replace("MODEL", MODEL).replace("ITEMS", str(ITEMS))


@pytest.fixture(scope="module")
def emulator() -> Iterator[WaveSpeedEmulator]:
    config = EmulatorConfig(
        queue_seconds=0.0,
        run_seconds=0.5,
        output_size=16 * 1024,
        submits_per_minute=PER_WINDOW,
        submit_window_seconds=WINDOW_SECONDS,
    )
    with WaveSpeedEmulator(config) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(airflow_cluster_module_factory, emulator: WaveSpeedEmulator) -> AirflowCluster:
    env = {
        "AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json(),
        "AIRFLOW__CORE__PARALLELISM": str(ITEMS),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(ITEMS),
    }
    cluster = airflow_cluster_module_factory({"e2e_rate_limited_batch.py": DAG_SOURCE}, env=env)
    cluster.unpause("e2e_rate_limited_batch")
    return cluster


def test_a_batch_over_the_per_minute_limit_waits_in_the_triggerer_and_completes_once_per_item(
    cluster: AirflowCluster, emulator: WaveSpeedEmulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    run_id = cluster.trigger("e2e_rate_limited_batch", conf={"out": str(out)})
    state = cluster.wait_for_run("e2e_rate_limited_batch", run_id, timeout=600)
    wall = time.monotonic() - started

    assert state == "success"
    assert len(emulator.predictions) == ITEMS  # one per item: a 429 created nothing and nothing twice
    assert emulator.stats.submits_accepted == ITEMS
    assert emulator.stats.submits_rate_limited >= ITEMS - PER_WINDOW  # the limit really bit
    xcoms = cluster.xcom_values("e2e_rate_limited_batch", run_id)
    prompts = set()
    for index in range(ITEMS):
        row = cluster.task_instance("e2e_rate_limited_batch", run_id, "render", map_index=index)
        assert row["state"] == "success" and row["try_number"] == 1  # waited, never failed
        result = xcoms[f"render[{index}]"]["return_value"]
        record = emulator.predictions[result["prediction_id"]]
        prompts.add(record.inputs["prompt"])
        assert record.inputs["prompt"] == f"thumbnail {index}"
        assert result["cost_usd"] == pytest.approx(emulator.catalogue[MODEL].base_price)
    assert prompts == {f"thumbnail {i}" for i in range(ITEMS)}

    # How long a worker slot was held per rate-limited wait: from the 429 to the deferral.
    held = worker_seconds_per_rate_limit(cluster, run_id)
    assert held, "no rate-limited wait was logged"
    minimum = (math.ceil(ITEMS / PER_WINDOW) - 1) * WINDOW_SECONDS
    print(
        f"\nrate-limited batch: {ITEMS} items at {PER_WINDOW} per {WINDOW_SECONDS:.0f} s window: wall {wall:.1f} s "
        f"(the limit allows no less than {minimum:.0f} s of waiting: {wall / minimum:.2f}x), "
        f"{emulator.stats.submits_rate_limited} submits refused, {len(held)} waits deferred, "
        f"worker slot held per wait: max {max(held):.2f} s, median {sorted(held)[len(held) // 2]:.2f} s"
    )


def worker_seconds_per_rate_limit(cluster: AirflowCluster, run_id: str) -> list[float]:
    """For every 'was rate limited' log line, the seconds until that task's next deferral log line."""
    seconds: list[float] = []
    for path in cluster.task_log_files("e2e_rate_limited_batch"):
        if run_id not in str(path):
            continue
        limited_at: datetime | None = None
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            event = str(record.get("event", ""))
            stamp = record.get("timestamp")
            if not stamp:
                continue
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
            if "was rate limited (429" in event:
                limited_at = when
            elif limited_at is not None and re.search(r"defer", event, re.IGNORECASE):
                seconds.append((when - limited_at).total_seconds())
                limited_at = None
    return seconds
