"""The provider on a production-shaped Airflow: PostgreSQL, CeleryExecutor, two of each HA process.

All on 127.0.0.1, started by the fixtures (``conftest.py``): PostgreSQL 15 (metadata DB), Redis
(Celery broker), api-server, dag-processor, schedulers ``scheduler`` + ``scheduler-2``,
triggerers ``triggerer`` + ``triggerer-2``, Celery workers ``celery-worker-1`` + ``-2`` (3 slots
each). Every process reports its name as its hostname, so ``job.hostname`` and
``task_instance.hostname`` say which process did what. The emulator runs in this process.

The provider keeps no state outside the API and Airflow, so a trigger or a task can move to
another machine at any time. The tests prove it, in the order they run (they share the cluster):

1. a batch of 50 mapped ``WaveSpeedRunOperator``s plus the avatar example DAG (submit -> sensor ->
   fetch) defers at once and spreads over both triggerers;
2. while they wait, one triggerer, one scheduler and one Celery worker are SIGKILLed and not
   restarted: the survivors adopt the triggers and retry the tasks lost with the worker;
3. a task whose worker dies right after its submit is retried on the other worker and reuses its
   prediction (``task_state_store``), no second submit;
4. measurement: triggerer CPU and RSS for 1,000 deferred waits shared by two triggerers.

Proof in each: every DAG run succeeds, predictions created == items (no duplicates), every file
bit-identical to what the emulator served, no ``.part`` files. Every wait is on a condition with
a generous bound; nothing asserts elapsed time. Measurements are printed at the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from tests.cluster.cluster_settings import (
    CLUSTER_CONFIG,
    MEASUREMENT_TRIGGERER_CAPACITY,
    TRIGGERER_HEALTH_CHECK_THRESHOLD,
    report,
)
from tests.e2e.airflow_cluster import SCHEDULER, TRIGGERER, AirflowCluster, AirflowClusterError

pytestmark = pytest.mark.cluster

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "wsk-cluster-" + "Hq4dTm9P" * 4
BATCH_MODEL = "wavespeed-ai/hunyuan-avatar"
WORKER_LOSS_MODEL = "wavespeed-ai/infinitetalk"
WAIT_MODEL = "wavespeed-ai/flux-dev"
BATCH_SIZE = 50
BATCH_RETRIES = 3
#: Triggers one triggerer takes during the scenarios (the measurement starts its own with more room).
TRIGGERER_CAPACITY = int(CLUSTER_CONFIG["AIRFLOW__TRIGGERER__CAPACITY"])
RUN_SECONDS = 20.0
QUEUE_SECONDS = 0.5
WAITS = 1000  # deferred waits for the triggerer measurement
WAITS_PER_DAG = 50  # Airflow deserializes a task's whole DAG per trigger it loads: keep DAGs small
WAIT_POLL_SECONDS = 10.0  # 1,000 waits -> ~100 polls/s in total
MEASURE_WINDOW_SECONDS = 20.0

BATCH_DAG = f'''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

with DAG("cluster_batch", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         max_active_tasks=500, is_paused_upon_creation=False):
    WaveSpeedRunOperator.partial(
        task_id="render",
        model="{BATCH_MODEL}",
        destination="{{{{ var.value.out }}}}/batch/{{{{ run_id }}}}",
        poll_interval=2.0,
        max_poll_interval=5.0,
        retries={BATCH_RETRIES},
        retry_delay=timedelta(seconds=2),
    ).expand(
        inputs=[
            {{"image": f"https://example.com/portrait-{{i}}.png", "audio": "https://example.com/voice.mp3",
              "prompt": f"batch item {{i}}"}}
            for i in range({BATCH_SIZE})
        ]
    )
'''

WORKER_LOSS_DAG = f'''
from datetime import datetime, timedelta
from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

with DAG("cluster_worker_loss", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         is_paused_upon_creation=False):
    # Waits in the worker (deferrable=False): the worker holds the task while the prediction runs.
    WaveSpeedRunOperator(
        task_id="render",
        model="{WORKER_LOSS_MODEL}",
        inputs={{"image": "https://example.com/worker-loss.png", "audio": "https://example.com/voice.mp3"}},
        destination="{{{{ var.value.out }}}}/worker-loss/{{{{ run_id }}}}",
        deferrable=False,
        poll_interval=1.0,
        max_poll_interval=2.0,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
'''

# Cheap deferred waits for the measurement: 1,000 sensors, deferred without a worker run each (see
# DEFER_IN_DB), so the measurement costs seconds of worker time instead of 1,000 task starts.
WAITS_DAG = f"""
import json
from datetime import datetime
from pathlib import Path
from airflow.sdk import DAG
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

IDS = json.loads(Path(__file__).with_suffix(".json").read_text())

for start in range(0, len(IDS), {WAITS_PER_DAG}):
    with DAG(f"cluster_waits_{{start // {WAITS_PER_DAG}:02d}}", schedule=None, start_date=datetime(2026, 1, 1),
             catchup=False, max_active_tasks={WAITS_PER_DAG}):
        for index in range(start, min(start + {WAITS_PER_DAG}, len(IDS))):
            WaveSpeedPredictionSensor(task_id=f"wait_{{index:04d}}", prediction_id=IDS[index],
                                      poll_interval={WAIT_POLL_SECONDS}, max_poll_interval={WAIT_POLL_SECONDS})
"""

# Defers every task instance of a (paused, queued) run exactly as the execution API does when a
# task raises TaskDeferred: a ``trigger`` row from ``Trigger.from_object(<the sensor's trigger>)``
# and the TI in state ``deferred`` pointing at it. The triggerers then run ordinary deferred
# triggers (the same workload a worker's deferral produces); only the worker start is skipped.
DEFER_IN_DB = """
import json, sys, time
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.trigger import Trigger
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger


def defer_run(session, dag_id, run_id):
    run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
    tis = session.scalars(
        select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
    ).all()
    for ti in tis:
        trigger = WaveSpeedPredictionTrigger(
            prediction_id=ids[int(ti.task_id.rsplit("_", 1)[1])],
            deadline=time.time() + 86400,
            poll_interval=float(poll),
            max_poll_interval=float(poll),
            model=model,
            coalesce=False,  # this measures the cost of polling by id (coalesced: benchmarks/bench_coalesced.py)
        )
        row = Trigger.from_object(trigger)
        session.add(row)
        session.flush()
        ti.state = "deferred"
        ti.trigger_id = row.id
        ti.next_method = "execute_complete"
        ti.try_number = 1
        ti.start_date = timezone.utcnow()
    run.state = "running"
    return len(tis)


runs, ids_file, poll, model = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ids = json.loads(open(ids_file).read())
deferred = 0
for dag_id, run_id in runs:
    with create_session() as session:
        deferred += defer_run(session, dag_id, run_id)
print(deferred)
"""


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll ``probe`` until it returns something other than None/False; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AirflowClusterError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emulator() -> Iterator[WaveSpeedEmulator]:
    config = EmulatorConfig(
        api_key=API_KEY, queue_seconds=QUEUE_SECONDS, run_seconds=RUN_SECONDS, output_size=256 * 1024
    )
    with WaveSpeedEmulator(config) as running:
        yield running


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wavespeed-cluster-out")


@pytest.fixture(scope="module")
def cluster(production_cluster_factory, emulator: WaveSpeedEmulator, output_dir: Path) -> AirflowCluster:
    env = {
        "AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json(),
        "AIRFLOW_VAR_OUT": str(output_dir),
        "WAVESPEED_OUTPUT_DIR": str(output_dir / "avatar"),
    }
    dags = {
        "cluster_batch.py": BATCH_DAG,
        "cluster_worker_loss.py": WORKER_LOSS_DAG,
        "example_wavespeed_avatar.py": (ROOT / "example_dags" / "example_wavespeed_avatar.py").read_text(),
    }
    cluster = production_cluster_factory(dags, env=env)
    cluster.unpause("example_wavespeed_avatar")
    return cluster


# --------------------------------------------------------------------------------------- helpers


def hostnames_by_job(cluster: AirflowCluster) -> dict[int, str]:
    return {r["id"]: r["hostname"] for r in cluster.query("SELECT id, hostname FROM job")}


def trigger_rows(cluster: AirflowCluster, runs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """Live trigger rows of the deferred task instances of these (dag_id, run_id) runs."""
    rows: list[dict[str, Any]] = []
    for dag_id, run_id in runs:
        rows += cluster.query(
            "SELECT t.id AS trigger_id, t.triggerer_id, ti.task_id, ti.map_index FROM trigger t "
            "JOIN task_instance ti ON ti.trigger_id = t.id WHERE ti.dag_id = ? AND ti.run_id = ? "
            "AND ti.state = 'deferred'",
            (dag_id, run_id),
        )
    return rows


def spread(cluster: AirflowCluster, rows: list[dict[str, Any]]) -> dict[str, int]:
    """``{triggerer hostname: triggers}`` (trigger.triggerer_id counts, named)."""
    names = hostnames_by_job(cluster)
    counts: dict[str, int] = {}
    for row in rows:
        name = names.get(row["triggerer_id"], f"unassigned/{row['triggerer_id']}")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assert_files_exact(emulator: WaveSpeedEmulator, stored: dict[str, list[str]], root: Path) -> None:
    """Each stored file has the bytes the emulator served for its prediction; no part files anywhere."""
    for prediction_id, paths in stored.items():
        assert len(paths) == 1, (prediction_id, paths)
        path = Path(paths[0])
        assert path.name.startswith(prediction_id), path
        assert sha256(path) == emulator.output_sha256(prediction_id), f"{path} differs from what was served"
    leftovers = [p for p in root.rglob("*") if ".part" in p.name]
    assert leftovers == [], f"part files left behind: {leftovers}"


def new_predictions(emulator: WaveSpeedEmulator, before: set[str], model: str) -> dict[str, Any]:
    return {pid: rec for pid, rec in emulator.predictions.items() if pid not in before and rec.model == model}


def refusals(emulator: WaveSpeedEmulator) -> int:
    """Responses with a 4xx or 5xx status the emulator has sent so far."""
    return sum(n for status, n in list(emulator.stats.requests_by_status.items()) if status >= 400)


def process_tree(proc: Any) -> list[psutil.Process]:
    root = psutil.Process(proc.pid)
    return [root, *root.children(recursive=True)]


def tree_usage(proc: Any) -> tuple[float, int]:
    """(CPU seconds user+system, RSS bytes) of a process and everything below it."""
    cpu, rss = 0.0, 0
    for member in process_tree(proc):
        try:
            times = member.cpu_times()
            cpu += times.user + times.system
            rss += member.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss


# ------------------------------------------------------------------------------------ scenario 1+2


@pytest.fixture(scope="module")
def deferred_batch(cluster: AirflowCluster, emulator: WaveSpeedEmulator) -> dict[str, Any]:
    """The batch and the avatar pipeline, triggered together, every wait deferred and assigned.

    The emulator holds every prediction in ``processing`` (``hold_predictions``) until the tests
    release it, so "all deferred at once" is a state the test reaches, not a race it hopes to win.
    """
    emulator.configure(hold_predictions=True)
    before = set(emulator.predictions)
    submits_before = emulator.stats.submits_by_model.get(BATCH_MODEL, 0)
    started = time.monotonic()
    batch_run = cluster.trigger("cluster_batch")
    avatar_run = cluster.trigger("example_wavespeed_avatar")
    runs = [("cluster_batch", batch_run), ("example_wavespeed_avatar", avatar_run)]
    expected = BATCH_SIZE + 1

    def all_deferred_and_assigned() -> list[dict[str, Any]] | None:
        for dag_id, run_id in runs:
            if cluster.run_state(dag_id, run_id) == "failed":
                raise AirflowClusterError(f"{dag_id} failed: {cluster.task_states(dag_id, run_id)}")
        rows = trigger_rows(cluster, runs)
        if len(rows) == expected and all(r["triggerer_id"] is not None for r in rows):
            return rows
        return None

    rows = wait_until(f"{expected} waits deferred and assigned to a triggerer", all_deferred_and_assigned, 420, 1.0)
    return {
        "runs": runs,
        "before": before,
        "started": started,
        "deferred_at": time.monotonic(),
        "rows": rows,
        "submits_before": submits_before,
    }


def batch_submits(emulator: WaveSpeedEmulator, deferred_batch: dict[str, Any]) -> int:
    """Accepted submits of the batch model since the batch and the avatar pipeline were triggered."""
    return emulator.stats.submits_by_model.get(BATCH_MODEL, 0) - deferred_batch["submits_before"]


def test_batch_and_avatar_pipeline_defer_at_once_spread_over_both_triggerers(cluster, emulator, deferred_batch):
    rows = deferred_batch["rows"]
    counts = spread(cluster, rows)
    live = cluster.job_ids_by_hostname("TriggererJob")
    report(
        f"scenario 1: {len(rows)} waits deferred at once ({BATCH_SIZE} mapped WaveSpeedRunOperator + the avatar "
        f"pipeline's sensor) in {deferred_batch['deferred_at'] - deferred_batch['started']:.0f} s; "
        f"spread over triggerers (trigger.triggerer_id counts): {counts}"
    )
    assert set(counts) == {TRIGGERER, f"{TRIGGERER}-2"} == set(live), counts
    # Every wait on one of the two, neither over its capacity: so each holds at least the rest.
    assert sum(counts.values()) == BATCH_SIZE + 1, counts
    assert all(BATCH_SIZE + 1 - TRIGGERER_CAPACITY <= n <= TRIGGERER_CAPACITY for n in counts.values()), counts
    # One submit and one prediction per item so far (each held in the emulator until released).
    assert batch_submits(emulator, deferred_batch) == BATCH_SIZE + 1
    created = new_predictions(emulator, deferred_batch["before"], BATCH_MODEL)
    assert len(created) == BATCH_SIZE + 1
    prompts = [str(rec.inputs.get("prompt", "")) for rec in created.values()]
    assert len({p for p in prompts if p.startswith("batch item ")}) == BATCH_SIZE, prompts


def test_survivors_finish_everything_after_a_triggerer_scheduler_and_worker_are_killed(
    cluster, emulator, deferred_batch, output_dir
):
    runs = deferred_batch["runs"]
    batch_dag, batch_run = runs[0]
    created = new_predictions(emulator, deferred_batch["before"], BATCH_MODEL)
    batch_ids = sorted(pid for pid, rec in created.items() if str(rec.inputs.get("prompt", "")).startswith("batch"))
    assert len(batch_ids) == BATCH_SIZE

    # Let half of the batch finish, so the workers are busy storing outputs when one of them dies.
    first_half = batch_ids[: BATCH_SIZE // 2]
    released_at = {pid: time.monotonic() for pid in first_half}
    emulator.release(*first_half)

    def busy_worker() -> tuple[str, list[dict[str, Any]]] | None:
        running = cluster.query(
            "SELECT task_id, map_index, try_number, hostname FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND state = 'running' AND hostname LIKE 'celery-worker-%'",
            (batch_dag, batch_run),
        )
        by_worker: dict[str, list[dict[str, Any]]] = {}
        for row in running:
            by_worker.setdefault(row["hostname"], []).append(row)
        if not by_worker:
            return None
        return max(by_worker.items(), key=lambda item: len(item[1]))

    worker, lost = wait_until("a worker running tasks of the batch", busy_worker, 240, 0.2)

    # The victims: the triggerer holding the most waits, the first scheduler, the busiest worker.
    names = hostnames_by_job(cluster)
    live_triggerers = cluster.job_ids_by_hostname("TriggererJob")
    on_triggerer = {
        name: [r for r in trigger_rows(cluster, runs) if r["triggerer_id"] == job_id]
        for name, job_id in live_triggerers.items()
    }
    victim_triggerer = max(on_triggerer, key=lambda name: len(on_triggerer[name]))
    survivor_triggerer = next(name for name in live_triggerers if name != victim_triggerer)
    victim_job = live_triggerers[victim_triggerer]
    orphaned = {r["trigger_id"] for r in on_triggerer[victim_triggerer]}

    lost_names = sorted("render[{}] try {}".format(r["map_index"], r["try_number"]) for r in lost)
    killed_at = time.monotonic()
    cluster.kill_process(victim_triggerer)
    cluster.kill_process(SCHEDULER)
    cluster.kill_process(worker)  # the worker's whole session: pool processes and task runners
    report(
        f"scenario 2: SIGKILLed {victim_triggerer} (job {victim_job}, {len(orphaned)} waits), {SCHEDULER}, "
        f"{worker} ({len(lost)} tasks running on it: {lost_names}); not restarted"
    )

    # Everything else may finish now.
    for pid in batch_ids[BATCH_SIZE // 2 :]:
        released_at[pid] = time.monotonic()
    emulator.configure(hold_predictions=False)

    survivor_job = live_triggerers[survivor_triggerer]

    def adopted() -> float | None:
        rows = {
            r["trigger_id"]: r["triggerer_id"]
            for r in cluster.query("SELECT id AS trigger_id, triggerer_id FROM trigger")
        }
        # A trigger is adopted once the survivor holds it, or it fired (only the survivor can fire it now).
        if all(rows.get(tid, survivor_job) == survivor_job for tid in orphaned):
            return time.monotonic() - killed_at
        return None

    adoption = wait_until(f"{victim_triggerer}'s triggers to move to {survivor_triggerer}", adopted, 180, 0.2)
    report(
        f"scenario 2: {len(orphaned)} triggers of the killed {victim_triggerer} adopted by {survivor_triggerer} "
        f"{adoption:.1f} s after the kill ([triggerer] triggerer_health_check_threshold lowered to "
        f"{TRIGGERER_HEALTH_CHECK_THRESHOLD:.0f} s for the test, heartbeat 1 s)"
    )
    assert names[victim_job] == victim_triggerer  # the job row of the killed triggerer is the one named

    for dag_id, run_id in runs:
        assert cluster.wait_for_run(dag_id, run_id, timeout=600) == "success", cluster.task_states(dag_id, run_id)
    finished = time.monotonic()
    # Every task of both runs succeeded: one per mapped item, and the pipeline's three.
    assert cluster.task_states(batch_dag, batch_run) == {f"render[{i}]": "success" for i in range(BATCH_SIZE)}
    assert cluster.task_states(*runs[1]) == {"submit": "success", "wait": "success", "fetch": "success"}

    # Predictions created == items: one per mapped item and one for the pipeline, none twice.
    created = new_predictions(emulator, deferred_batch["before"], BATCH_MODEL)
    assert len(created) == BATCH_SIZE + 1
    prompts = sorted(str(rec.inputs.get("prompt")) for rec in created.values())
    assert len(set(prompts)) == len(prompts), prompts
    assert batch_submits(emulator, deferred_batch) == BATCH_SIZE + 1

    # Every item's XCom names its own prediction and the file holds exactly the served bytes.
    xcoms = cluster.xcom_values(batch_dag, batch_run)
    results = [xcoms[f"render[{i}]"]["return_value"] for i in range(BATCH_SIZE)]
    stored = {r["prediction_id"]: r["outputs"] for r in results}
    assert sorted(stored) == batch_ids
    avatar_dag, avatar_run = runs[1]
    avatar_x = cluster.xcom_values(avatar_dag, avatar_run)
    avatar_id = avatar_x["submit"]["return_value"]
    stored[avatar_id] = avatar_x["fetch"]["return_value"]
    assert avatar_id in created and avatar_id not in batch_ids
    assert_files_exact(emulator, stored, output_dir)

    # The tasks lost with the worker were retried on another worker, within their retries, with their own
    # prediction (checked above: one per item, each item's file from its own).
    for row in lost:
        ti = cluster.task_instance(batch_dag, batch_run, "render", map_index=row["map_index"])
        assert ti["state"] == "success"
        assert row["try_number"] < ti["try_number"] <= 1 + BATCH_RETRIES, (row, ti["try_number"])
        assert ti["hostname"] != worker, ti["hostname"]
    retried_rows = cluster.query(
        "SELECT map_index FROM task_instance WHERE dag_id = ? AND run_id = ? AND try_number > 1",
        (batch_dag, batch_run),
    )
    retried = len(retried_rows)
    assert {r["map_index"] for r in lost} <= {r["map_index"] for r in retried_rows}, (lost, retried_rows)

    # Batch wall time against the emulator's run times (held predictions ran until released).
    records = [created[pid] for pid in batch_ids]
    configured = [rec.queue_seconds + rec.run_seconds for rec in records]
    effective = [
        max(rec.created_monotonic + rec.queue_seconds + rec.run_seconds, released_at[rec.id]) - rec.created_monotonic
        for rec in records
    ]
    wall = finished - deferred_batch["started"]
    tail = finished - max(released_at.values())
    report(
        f"batch: {BATCH_SIZE} predictions + pipeline, wall {wall:.0f} s from trigger to the last run's success; "
        f"emulator run time per prediction {configured[0]:.1f} s configured (sum {sum(configured):.0f} s, "
        f"max {max(configured):.1f} s), held by the test until released: effective sum {sum(effective):.0f} s, "
        f"max {max(effective):.0f} s -> parallelism sum/wall {sum(effective) / wall:.1f}x; "
        f"{tail:.0f} s from the last release to done (incl. failure recovery); {retried} task(s) retried"
    )


# -------------------------------------------------------------------------------------- scenario 3


def test_a_task_whose_worker_dies_after_its_submit_reuses_its_prediction_on_the_other_worker(
    cluster, emulator, output_dir
):
    # Scenario 2 left one worker alive: start another, so the task has somewhere else to go.
    live_workers = [n for n in cluster.process_names() if n.startswith("celery-worker-")]
    cluster.start_celery_worker("celery-worker-3")
    live_workers.append("celery-worker-3")
    assert len(live_workers) == 2, live_workers

    dag_id = "cluster_worker_loss"
    emulator.configure(hold_predictions=True)  # the prediction stays `processing` until released
    before = set(emulator.predictions)
    submits_before = emulator.stats.submits_accepted
    run_id = cluster.trigger(dag_id)

    def submitted_and_recorded() -> dict[str, Any] | None:
        if cluster.run_state(dag_id, run_id) == "failed":
            raise AirflowClusterError(f"{dag_id} failed: {cluster.task_states(dag_id, run_id)}")
        stored = cluster.query(
            "SELECT value FROM task_state_store WHERE dag_id = ? AND run_id = ? AND task_id = 'render' "
            "AND key = 'wavespeed_prediction'",
            (dag_id, run_id),
        )
        ti = cluster.task_instance(dag_id, run_id, "render")
        if stored and ti["state"] == "running" and ti["hostname"] in live_workers:
            return {"state": stored[0]["value"], "worker": ti["hostname"], "try_number": ti["try_number"]}
        return None

    first = wait_until("the submit to be recorded in task_state_store", submitted_and_recorded, 240, 0.2)
    created = new_predictions(emulator, before, WORKER_LOSS_MODEL)
    assert len(created) == 1
    (prediction_id,) = created
    assert prediction_id in str(first["state"])

    cluster.kill_process(first["worker"])  # its session: pool processes and the task runner
    other = next(w for w in live_workers if w != first["worker"])

    def retried_elsewhere() -> dict[str, Any] | None:
        ti = cluster.task_instance(dag_id, run_id, "render")
        if ti["try_number"] > first["try_number"] and ti["state"] == "running" and ti["hostname"] == other:
            return ti
        if ti["state"] in ("failed", "upstream_failed"):
            raise AirflowClusterError(f"the task failed instead of being retried: {ti}")
        return None

    retry = wait_until(f"the task to be retried on {other}", retried_elsewhere, 300, 0.5)
    # The killed try's polls ended with its worker (30 s of heartbeat timeout ago): a poll of the held
    # prediction from now on is the retry waiting on it, reattached without a submit of its own.
    polls_at_retry = emulator.stats.polls_by_prediction.get(prediction_id, 0)
    wait_until(
        "the retry to poll the first try's prediction",
        lambda: emulator.stats.polls_by_prediction.get(prediction_id, 0) > polls_at_retry,
        120,
        0.5,
    )
    assert emulator.stats.submits_accepted - submits_before == 1
    assert set(new_predictions(emulator, before, WORKER_LOSS_MODEL)) == {prediction_id}
    emulator.release(prediction_id)
    emulator.configure(hold_predictions=False)
    assert cluster.wait_for_run(dag_id, run_id, timeout=240) == "success"

    assert cluster.task_states(dag_id, run_id) == {"render": "success"}
    assert emulator.stats.submits_accepted - submits_before == 1
    assert set(new_predictions(emulator, before, WORKER_LOSS_MODEL)) == {prediction_id}
    ti = cluster.task_instance(dag_id, run_id, "render")
    assert (ti["try_number"], ti["hostname"]) == (retry["try_number"], other)
    result = cluster.xcom_values(dag_id, run_id)["render"]["return_value"]
    assert result["prediction_id"] == prediction_id
    assert_files_exact(emulator, {prediction_id: result["outputs"]}, output_dir)
    report(
        f"scenario 3: worker {first['worker']} SIGKILLed after the submit of {prediction_id} (try "
        f"{first['try_number']}); try {ti['try_number']} ran on {other} and reused it: 1 prediction, 1 submit"
    )


# -------------------------------------------------------------------------------------- measurement


def test_triggerer_cpu_and_rss_for_1000_waits_shared_by_two_triggerers(cluster, emulator):
    # Two fresh triggerers with room for 600 triggers each (the scenarios ran with a capacity of 35),
    # then the older ones stop (SIGTERM, a clean shutdown): two triggerers share the 1,000 waits.
    old = [name for name in cluster.process_names() if name.startswith(TRIGGERER)]
    capacity = {"AIRFLOW__TRIGGERER__CAPACITY": str(MEASUREMENT_TRIGGERER_CAPACITY)}
    fresh = [f"{TRIGGERER}-{n}" for n in range(3, 10) if f"{TRIGGERER}-{n}" not in old][:2]
    for name in fresh:
        cluster.start_triggerer(name=name, env=capacity)
    for name in old:
        cluster.kill_process(name, signal.SIGTERM, timeout=30)
    wait_until(
        "only the two new triggerers alive", lambda: set(cluster.job_ids_by_hostname("TriggererJob")) == set(fresh), 60
    )
    triggerers = {name: cluster.process(name) for name in fresh}

    began = time.monotonic()

    def phase(what: str) -> None:
        print(f"measurement: {time.monotonic() - began:5.0f} s {what}", flush=True)

    emulator.configure(hold_predictions=True)  # every wait keeps polling until the cluster stops
    with httpx.Client(base_url=emulator.base_url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        ids = []
        for index in range(WAITS):
            reply = client.post(f"/api/v3/{WAIT_MODEL}", json={"prompt": f"wait {index}"})
            reply.raise_for_status()
            ids.append(reply.json()["data"]["id"])
    ids_file = cluster.dags_folder / "cluster_waits.json"
    ids_file.write_text(json.dumps(ids))
    (cluster.dags_folder / "cluster_waits.py").write_text(WAITS_DAG)
    phase("predictions submitted, DAG written")
    cluster.wait_for_dags_parsed(timeout=240)
    dag_ids = [f"cluster_waits_{i:02d}" for i in range(WAITS // WAITS_PER_DAG)]
    phase("DAG parsed")

    # The DAGs are paused: their runs stay queued until every task instance is deferred.
    runs = [(dag_id, cluster.trigger(dag_id)) for dag_id in dag_ids]
    wait_until(
        f"{WAITS} task instances",
        lambda: (
            cluster.query(
                "SELECT count(*) AS n FROM task_instance WHERE dag_id LIKE 'cluster_waits_%' AND run_id IN ({})".format(
                    ",".join("?" * len(runs))
                ),
                tuple(run_id for _, run_id in runs),
            )[0]["n"]
            == WAITS
        ),
        120,
    )
    phase("run created")
    before = {name: tree_usage(proc) for name, proc in triggerers.items()}
    deferred = subprocess.run(
        [sys.executable, "-c", DEFER_IN_DB, json.dumps(runs), str(ids_file), str(WAIT_POLL_SECONDS), WAIT_MODEL],
        env=cluster.env,
        cwd=cluster.home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert deferred.returncode == 0 and deferred.stdout.split()[-1:] == [str(WAITS)], deferred.stderr[-4000:]
    phase("task instances deferred")
    for dag_id in dag_ids:
        cluster.unpause(dag_id)
    job_ids = {name: cluster.job_ids_by_hostname("TriggererJob")[name] for name in triggerers}

    def all_assigned() -> dict[int, int] | None:
        rows = cluster.query(
            "SELECT t.triggerer_id, count(*) AS n FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
            "WHERE ti.dag_id LIKE 'cluster_waits_%' AND ti.state = 'deferred' AND t.triggerer_id IS NOT NULL "
            "GROUP BY t.triggerer_id"
        )
        counts = {r["triggerer_id"]: r["n"] for r in rows}
        return counts if sum(counts.values()) == WAITS else None

    counts = wait_until(f"{WAITS} waits assigned to the triggerers", all_assigned, 300, 1.0)
    phase("triggers assigned")
    id_set = set(ids)
    wait_until(f"all {WAITS} waits polling", lambda: id_set <= set(emulator.stats.polls_by_prediction), 300, 1.0)
    phase("every wait polled")
    start = {name: tree_usage(proc) for name, proc in triggerers.items()}
    polls_start = emulator.stats.result_polls
    polls_by_id_start = {pid: emulator.stats.polls_by_prediction[pid] for pid in ids}
    refusals_start = refusals(emulator)
    t0 = time.monotonic()
    time.sleep(MEASURE_WINDOW_SECONDS)
    window = time.monotonic() - t0
    end = {name: tree_usage(proc) for name, proc in triggerers.items()}
    polls = emulator.stats.result_polls - polls_start
    # Every wait keeps polling on the two triggerers (a condition with a generous bound, not a rate), and
    # the emulator answered every request of the measurement: no 4xx/5xx (no 429, no auth failure).
    wait_until(
        f"every one of the {WAITS} waits to poll again",
        lambda: all(emulator.stats.polls_by_prediction[pid] > polls_by_id_start[pid] for pid in ids),
        300,
        1.0,
    )
    assert refusals(emulator) == refusals_start

    per = {}
    for name in triggerers:
        waits = counts.get(job_ids[name], 0)
        cpu = (end[name][0] - start[name][0]) / window
        rss_delta = end[name][1] - before[name][1]
        per[name] = (waits, cpu, rss_delta)
        report(
            f"measurement: {name}: {waits} waits, CPU {cpu * 100:.1f}% of a core, RSS {end[name][1] / 2**20:.0f} MiB "
            f"(+{rss_delta / 2**20:.1f} MiB over {before[name][1] / 2**20:.0f} MiB before the waits)"
        )
    total_cpu = sum(p[1] for p in per.values())
    total_rss = sum(p[2] for p in per.values())
    report(
        f"measurement: {WAITS} deferred waits over 2 triggerers, {polls / window:.0f} polls/s "
        f"(poll interval {WAIT_POLL_SECONDS:.0f} s): {total_cpu * 100:.1f}% of a core in total, "
        f"{total_cpu * 1000 / (polls / window):.2f} ms CPU per poll; RSS +{total_rss / 2**20:.1f} MiB in total; "
        f"per 1,000 waits: {total_cpu * 100 * 1000 / WAITS:.1f}% of a core, +{total_rss / 2**20 * 1000 / WAITS:.0f} MiB"
    )
    # The two fresh triggerers hold every wait between them, neither over its capacity.
    assert set(counts) == set(job_ids.values()), (counts, job_ids)
    assert sum(p[0] for p in per.values()) == WAITS, per
    assert all(WAITS - MEASUREMENT_TRIGGERER_CAPACITY <= p[0] <= MEASUREMENT_TRIGGERER_CAPACITY for p in per.values())
    assert all(0 < p[1] <= psutil.cpu_count() for p in per.values()), per  # CPU share of a core, per triggerer
    # Every wait is still deferred (none failed or timed out on its way), every run still running.
    still_deferred = cluster.query(
        "SELECT count(*) AS n FROM task_instance WHERE dag_id LIKE 'cluster_waits_%' AND state = 'deferred'"
    )[0]["n"]
    assert still_deferred == WAITS
    assert all(cluster.run_state(dag_id, run_id) == "running" for dag_id, run_id in runs)
