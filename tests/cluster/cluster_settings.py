"""Settings and the measurement log shared by the cluster suite's conftest and tests."""

from __future__ import annotations

# Lowered from Airflow's defaults so failures are noticed in seconds, not minutes (test only):
TRIGGERER_HEALTH_CHECK_THRESHOLD = 10.0  # [triggerer] triggerer_health_check_threshold, default 30 s
HEARTBEAT_SEC = 1.0  # [scheduler]/[triggerer] job_heartbeat_sec, default 5 s
CLUSTER_CONFIG = {
    # A dead scheduler's queued/running tasks are adopted by the other one after 10 s (default 30 s,
    # checked every 300 s).
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    # A task whose worker died stops heartbeating; it is failed (and retried) after 30 s (default 300 s).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    # A message a dead worker had reserved but not started: re-queued after 120 s (default 600 s).
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__NUM_STUCK_IN_QUEUED_RETRIES": "5",
    # Executor slots per scheduler; 2 workers x 3 slots run the tasks.
    "AIRFLOW__CORE__PARALLELISM": "6",
    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2000",
    # Triggers per triggerer (default 1,000). Airflow hands a new trigger to whichever triggerer asks
    # first, not to the least loaded one (one run split 51 waits 5 / 46): a capacity below the batch
    # is what makes both triggerers take a share (here >= 16 each), and the survivor of a kill still
    # adopts everything once its own released waits fire. The measurement starts triggerers with
    # MEASUREMENT_TRIGGERER_CAPACITY instead.
    "AIRFLOW__TRIGGERER__CAPACITY": "35",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY__WORKER_ENABLE_REMOTE_CONTROL": "False",
    "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "3",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "10",
}
CELERY_WORKER_CONCURRENCY = 3
MEASUREMENT_TRIGGERER_CAPACITY = 600  # two triggerers x 600 >= the 1,000 measured waits

#: Lines the tests measured; printed again in pytest's terminal summary (see conftest).
MEASUREMENTS: list[str] = []


def report(line: str) -> None:
    """Print now (visible with ``-s``) and again at the end of the run."""
    print(line, flush=True)
    MEASUREMENTS.append(line)
