"""UI plugin at scale (issue 22): the spend page and the run tab's API over a large metadata DB.

One fresh interpreter per database (SQLite file, then the cluster suite's PostgreSQL 15) migrates
Airflow's schema in a throw-away ``AIRFLOW_HOME``, fills Airflow's own tables in bulk (SQLAlchemy
core: ``dag_bundle``, ``dag``, ``dag_run``, ``task_instance``, ``xcom``) with WaveSpeed task
instances over 30 days, each with its ``wavespeed_record`` XCom stored as the Task Execution API
stores it (the SDK-serialised value in the JSON column), plus noise: the operators' other XComs,
``return_value`` everywhere and as many non-WaveSpeed task instances again. Then it calls, through
Airflow's real FastAPI app (``create_app()``, plugins mounted from the entry point) with a
SimpleAuthManager admin JWT:

* ``GET /wavespeed/api/spend?days=30`` and ``days=90``, and ``spend_summary()`` directly;
* ``GET /wavespeed/api/runs`` for one run of 200 mapped task instances, and ``run_view()`` directly;
* baselines, alternating with the plugin calls: what the same answer costs through Airflow's own
  public REST API -- all ``wavespeed_record`` XComs of the window paged 100 at a time (spend), the
  run's XCom list filtered to the key, and one XCom GET per task instance (the naive run view).

SQL statements per call are counted with a ``before_cursor_execute`` listener on every engine (the
auth manager's DAG-id query included). Exit 0; a missed goal is a finding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, percentile, print_machine, print_table, run_worker, verdict

SPEND_P95_GOAL_MS = 1000.0
RUN_P95_GOAL_MS = 2000.0
QUERIES_GOAL = 3
PAGE = 100  # Airflow's default [api] maximum_page_limit
WORKER_TIMEOUT = 3600.0

#: (model, quote in USD, output extension)
MODELS = (
    ("wavespeed-ai/flux-dev", 0.025, "png"),
    ("bytedance/seedream-v3", 0.03, "png"),
    ("wavespeed-ai/wan-2.2/t2v-480p", 0.15, "mp4"),
    ("wavespeed-ai/hunyuan-avatar", 0.3, "mp4"),
    ("minimax/speech-02-hd", 0.01, "mp3"),
    ("kwaivgi/kling-v2.1-i2v-pro", 0.45, "mp4"),
)


@dataclass(frozen=True)
class Shape:
    ws_tis: int
    dags: int
    days: int
    calls: int
    baseline_calls: int
    naive_calls: int
    big_run_tis: int = 200
    failed_share: float = 0.03
    seed: int = 22


FULL = Shape(ws_tis=10_000, dags=20, days=30, calls=30, baseline_calls=5, naive_calls=3)
#: --quick checks the report, not the numbers: a 50-TI run keeps the per-TI REST baseline to ~3 s.
QUICK = Shape(ws_tis=1_000, dags=4, days=30, calls=5, baseline_calls=2, naive_calls=1, big_run_tis=50)


# -- the data ----------------------------------------------------------------------------------------


@dataclass
class Expected:
    """What the generator put in, to check the plugin read it back (not a timing)."""

    ws_tis: int = 0
    other_tis: int = 0
    runs: int = 0
    xcoms: int = 0
    records: int = 0
    predictions_30d: int = 0
    usd_30d: float = 0.0
    big_dag: str = ""
    big_run: str = ""
    big_task: str = ""
    big_failed: int = 0


def _record(role: str, **fields: Any) -> dict[str, Any]:
    from airflow.sdk.serde import serialize

    from airflow_provider_wavespeed.task_record import new_record

    return serialize(dict(new_record(role, **fields)))  # type: ignore[arg-type,no-any-return]


def build_rows(shape: Shape, now: datetime, big: int) -> tuple[dict[str, list[dict[str, Any]]], Expected]:
    """Every row to insert, keyed by table. DAG d kind: 3 of 4 DAGs map a WaveSpeedRunOperator, every fourth
    maps submit -> sensor -> download and runs a WaveSpeedBudgetOperator first."""
    from uuid6 import uuid7

    rng = random.Random(shape.seed)
    exp = Expected()
    dags = [f"content_batch_{d:02d}" for d in range(shape.dags)]
    chain = {dag: d % 4 == 3 for d, dag in enumerate(dags)}
    runs: list[tuple[str, int]] = [(dag, day) for dag in dags for day in range(shape.days)]
    big_run = (dags[0], 0)  # the newest run of DAG 0 holds the 200 mapped task instances
    predictions = {run: 0 for run in runs}
    predictions[big_run] = big
    total = big
    others = [run for run in runs if run != big_run]
    weights = [0.4 + rng.random() * 1.6 for _ in others]
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    while total < shape.ws_tis:
        run = rng.choices(others, cum_weights=cum)[0]
        is_chain = chain[run[0]]
        total += (3 + (1 if predictions[run] == 0 else 0)) if is_chain else 1
        predictions[run] += 1

    rows: dict[str, list[dict[str, Any]]] = {"dag_run": [], "task_instance": [], "xcom": []}
    rows["dag_bundle"] = [{"name": "dags-folder", "active": True}]
    rows["dag"] = [
        {
            "dag_id": dag,
            "bundle_name": "dags-folder",
            "is_paused": False,
            "is_stale": False,
            "fileloc": f"/opt/airflow/dags/{dag}.py",
            "relative_fileloc": f"{dag}.py",
            "owners": "content",
            "timetable_type": "CronTriggerTimetable",
            "timetable_summary": "@daily",
            "partition_mapper_info": [],
            "max_active_tasks": 16,
            "max_active_runs": 16,
            "max_consecutive_failed_dag_runs": 0,
            "has_task_concurrency_limits": False,
        }
        for dag in dags
    ]
    window_start = (now - timedelta(days=29)).date()
    run_ids: dict[tuple[str, int], int] = {}
    for n, run in enumerate(runs, start=1):
        dag, day = run
        when = now - timedelta(days=day, hours=1)
        run_id = f"scheduled__{when.replace(microsecond=0).isoformat()}"
        run_ids[run] = n
        rows["dag_run"].append(
            {
                "id": n,
                "dag_id": dag,
                "run_id": run_id,
                "run_type": "scheduled",
                "logical_date": when,
                "data_interval_start": when - timedelta(days=1),
                "data_interval_end": when,
                "run_after": when,
                "queued_at": when,
                "start_date": when,
                "end_date": when + timedelta(minutes=30),
                "state": "success",
                "clear_number": 0,
                "conf": {},
                "created_at": when,
            }
        )
        if run == big_run:
            exp.big_dag, exp.big_run, exp.big_task = dag, run_id, "generate"
        context = {"dag_id": dag, "run_id": run_id, "dag_run_id": n}

        def ti(
            task_id: str, map_index: int, operator: str, state: str, start: datetime, seconds: float, ctx: Any = context
        ) -> None:
            rows["task_instance"].append(
                {
                    "id": uuid7(),
                    "dag_id": ctx["dag_id"],
                    "run_id": ctx["run_id"],
                    "task_id": task_id,
                    "map_index": map_index,
                    "start_date": start,
                    "end_date": start + timedelta(seconds=seconds),
                    "duration": seconds,
                    "state": state,
                    "try_number": 1,
                    "max_tries": 1,
                    "hostname": "worker-1",
                    "unixname": "airflow",
                    "pool": "default_pool",
                    "pool_slots": 1,
                    "queue": "default",
                    "priority_weight": 1,
                    "operator": operator,
                    "queued_dttm": start,
                    "updated_at": start + timedelta(seconds=seconds),
                }
            )

        def xcom(task_id: str, map_index: int, key: str, value: Any, at: datetime, ctx: Any = context) -> None:
            rows["xcom"].append(
                {**ctx, "task_id": task_id, "map_index": map_index, "key": key, "value": value, "timestamp": at}
            )

        # noise: a prepare task, then a publish (and caption) task per prediction, all PythonOperators
        prompts = [f"scene {i}: a product shot, studio light, variant {rng.randint(0, 999)}" for i in range(20)]
        ti("prepare", -1, "PythonOperator", "success", when, 2.0)
        xcom("prepare", -1, "return_value", {"prompts": prompts, "batch": run_id}, when + timedelta(seconds=2))
        exp.other_tis += 1
        count = predictions[run]
        if chain[dag] and count:
            model, price, _ = MODELS[rng.randrange(len(MODELS))]
            started = when + timedelta(seconds=5)
            ti("budget", -1, "WaveSpeedBudgetOperator", "success", started, 1.5)
            budget = {"budget_total_usd": round(price * count, 6), "budget_max_usd": 50.0, "budget_items": count}
            xcom("budget", -1, "wavespeed_record", _record("budget", model=model, **budget), started)
            xcom("budget", -1, "wavespeed_total_cost_usd", price * count, started)
            exp.ws_tis += 1
        for i in range(count):
            model, price, ext = MODELS[rng.randrange(len(MODELS))]
            pid = f"{rng.getrandbits(64):016x}{rng.getrandbits(64):016x}"
            started = when + timedelta(seconds=10 + i * 3 + rng.random())
            failed = rng.random() < shape.failed_share
            inference = rng.randint(2_000, 90_000)
            outputs = [] if failed else [f"s3://content-bucket/{dag}/{run_id}/{i:04d}.{ext}"]
            base = {
                "prediction_id": pid,
                "model": model,
                "console_url": f"https://wavespeed.ai/models/{quote(model, safe='/')}?prediction_id={pid}",
                "submitted_at": started.isoformat(),
            }
            done = {
                "status": "failed" if failed else "completed",
                "inference_ms": None if failed else inference,
                "error": "Prediction failed: content policy violation (code 1400)" if failed else None,
            }
            stored = {"outputs": outputs, "destination_conn_id": "aws_content"}
            state = "failed" if failed else "success"
            seconds = 5 + inference / 1000
            if started.date() >= window_start:
                exp.predictions_30d += 1
                exp.usd_30d += price
            if chain[dag]:
                ti("submit", i, "WaveSpeedSubmitOperator", "success", started, 1.2)
                end = started + timedelta(seconds=1.2)
                xcom("submit", i, "wavespeed_record", _record("submit", **base, status="created", cost_usd=price), end)
                xcom("submit", i, "wavespeed_prediction_id", pid, end)
                xcom("submit", i, "wavespeed_prediction_url", base["console_url"], end)
                xcom("submit", i, "wavespeed_cost_usd", price, end)
                xcom("submit", i, "return_value", pid, end)
                ti("wait", i, "WaveSpeedPredictionSensor", state, end, seconds)
                end = end + timedelta(seconds=seconds)
                xcom("wait", i, "wavespeed_record", _record("wait", **base, **done), end)
                store_state = "upstream_failed" if failed else "success"
                ti("store", i, "WaveSpeedDownloadOperator", store_state, end, 3.0)
                if not failed:
                    end = end + timedelta(seconds=3)
                    xcom("store", i, "wavespeed_record", _record("store", **base, **done, **stored), end)
                    xcom("store", i, "return_value", outputs, end)
                exp.ws_tis += 3
            else:
                ti("generate", i, "WaveSpeedRunOperator", state, started, seconds)
                end = started + timedelta(seconds=seconds)
                fields = {**base, **done, **stored, "cost_usd": price}
                xcom("generate", i, "wavespeed_record", _record("run", **fields), end)
                xcom("generate", i, "wavespeed_prediction_id", pid, end)
                xcom("generate", i, "wavespeed_prediction_url", base["console_url"], end)
                xcom("generate", i, "wavespeed_cost_usd", price, end)
                if not failed:
                    xcom("generate", i, "return_value", outputs, end)
                exp.ws_tis += 1
                if run == big_run and failed:
                    exp.big_failed += 1
            end = started + timedelta(seconds=seconds + 10)
            ti("publish", i, "PythonOperator", "success", end, 0.8)
            xcom("publish", i, "return_value", {"published": not failed, "slot": i}, end)
            ti("caption", i, "_PythonDecoratedOperator", "success", end, 0.5)
            xcom("caption", i, "return_value", f"Caption {i} for {dag}", end)
            exp.other_tis += 2
    exp.runs = len(runs)
    exp.xcoms = len(rows["xcom"])
    exp.records = sum(1 for row in rows["xcom"] if row["key"] == "wavespeed_record")
    exp.usd_30d = round(exp.usd_30d, 6)
    return rows, exp


def populate(shape: Shape, now: datetime, big: int) -> tuple[Expected, float]:
    """Fill Airflow's tables; returns what went in and the seconds it took (generation included)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, text

    started = time.perf_counter()
    rows, exp = build_rows(shape, now, big)
    tables = (
        ("dag_bundle", DagBundleModel.__table__),
        ("dag", DagModel.__table__),
        ("dag_run", DagRun.__table__),
        ("task_instance", TaskInstance.__table__),
        ("xcom", XComModel.__table__),
    )
    with create_session() as session:
        for name, table in tables:
            batch = rows[name]
            for at in range(0, len(batch), 5000):
                session.execute(insert(table), batch[at : at + 5000])
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            session.execute(text("SELECT setval('dag_run_id_seq', (SELECT max(id) FROM dag_run))"))
    with create_session() as session:
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            session.execute(text("ANALYZE"))  # as autovacuum would have by now on a real DB
    return exp, time.perf_counter() - started


# -- measuring ---------------------------------------------------------------------------------------


class QueryCounter:
    """Counts SQL statements on every engine (``before_cursor_execute``); keeps the last call's statements."""

    def __init__(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self.count = 0
        self.statements: list[tuple[str, Any]] = []
        event.listen(Engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        self.count += 1
        self.statements.append((statement, parameters))

    def reset(self) -> None:
        self.count = 0
        self.statements = []


@dataclass
class Series:
    name: str
    times_ms: list[float]
    queries: list[int]
    kbytes: float = 0.0
    requests: int = 1

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "calls": len(self.times_ms),
            "p50_ms": statistics.median(self.times_ms) if self.times_ms else float("nan"),
            "p95_ms": percentile(self.times_ms, 95),
            "max_ms": max(self.times_ms) if self.times_ms else float("nan"),
            "queries": max(self.queries) if self.queries else 0,
            "queries_min": min(self.queries) if self.queries else 0,
            "kbytes": self.kbytes,
            "requests": self.requests,
        }


def measure(counter: QueryCounter, series: Series, call: Callable[[], Any]) -> Any:
    counter.reset()
    started = time.perf_counter()
    result = call()
    series.times_ms.append((time.perf_counter() - started) * 1000)
    series.queries.append(counter.count)
    return result


def interleave(plugin_calls: int, baseline_calls: int) -> Iterator[tuple[bool, bool]]:
    """(plugin call?, baseline call?) per round: baselines spread evenly among the plugin calls."""
    step = max(1, plugin_calls // max(1, baseline_calls))
    done = 0
    for i in range(plugin_calls):
        base = done < baseline_calls and i % step == 0
        done += base
        yield True, base


def plan_lines(session: Any, statement: str, parameters: Any) -> list[str]:
    """The database's plan for one of the plugin's statements (EXPLAIN ANALYZE on PostgreSQL)."""
    dialect = session.bind.dialect.name
    raw = session.connection().connection.dbapi_connection
    cursor = raw.cursor()
    try:
        if dialect == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + statement, parameters)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        return [" ".join(str(c) for c in row) for row in cursor.fetchall()]
    finally:
        cursor.close()


def worker(payload: dict[str, Any]) -> dict[str, Any]:
    """In a fresh interpreter whose environment points Airflow at the database to measure."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.utils import db
    from airflow.utils.session import create_session
    from fastapi.testclient import TestClient

    from airflow_provider_wavespeed.ui.run_view import run_view
    from airflow_provider_wavespeed.ui.spend import spend_summary

    shape = Shape(**payload["shape"])
    started = time.perf_counter()
    db.initdb()
    migrate_s = time.perf_counter() - started
    now = datetime.now(UTC)
    exp, populate_s = populate(shape, now, shape.big_run_tis)

    app = create_app("core")  # the api-server's public API + UI + plugins (no execution API)
    client = TestClient(app)
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    client.headers["Authorization"] = f"Bearer {token}"
    counter = QueryCounter()

    def get(url: str, params: dict[str, Any] | None = None) -> Any:
        reply = client.get(url, params=params)
        if reply.status_code != 200:
            raise RuntimeError(f"GET {url} {params}: {reply.status_code} {reply.text[:300]}")
        return reply

    run_q = {"dag_id": exp.big_dag, "run_id": exp.big_run}
    run_path = f"/api/v2/dags/{exp.big_dag}/dagRuns/{quote(exp.big_run, safe='')}/taskInstances"
    since_30 = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)

    def rest_spend() -> int:
        """The window's records through Airflow's public XCom list, 100 a page. The list carries no values
        (a value needs one more GET per entry), so this is a lower bound of doing the page without the plugin."""
        offset, pages, total = 0, 0, 1
        while offset < total:
            page = get(
                "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries",
                {
                    "xcom_key": "wavespeed_record",
                    "limit": PAGE,
                    "offset": offset,
                    "run_after_gte": since_30.isoformat(),
                },
            ).json()
            pages += 1
            total = page["total_entries"]
            offset += PAGE
        return pages

    def raw_rows() -> int:
        """The floor: the window's record values in one SELECT, not decoded, no HTTP."""
        from airflow.models.xcom import XComModel
        from sqlalchemy import select

        with create_session() as session:
            stmt = select(XComModel.dag_id, XComModel.timestamp, XComModel.value).where(
                XComModel.key == "wavespeed_record", XComModel.timestamp >= since_30 - timedelta(days=1)
            )
            return len(session.execute(stmt).all())

    def rest_run_list() -> int:
        offset, pages, total = 0, 0, 1
        while offset < total:
            page = get(f"{run_path}/~/xcomEntries", {"xcom_key": "wavespeed_record", "limit": PAGE, "offset": offset})
            total = page.json()["total_entries"]
            offset += PAGE
            pages += 1
        return pages

    def rest_per_ti() -> int:
        for i in range(shape.big_run_tis):
            get(f"{run_path}/{exp.big_task}/xcomEntries/wavespeed_record", {"map_index": i})
        return shape.big_run_tis

    # warm-up: the first call of each pays imports and plan caches
    spend30 = get("/wavespeed/api/spend", {"days": 30}).json()
    view = get("/wavespeed/api/runs", run_q).json()
    rest_pages = rest_spend()
    run_pages = rest_run_list()

    checks = {
        "spend 30 d total_usd": [spend30["total_usd"], exp.usd_30d],
        "spend 30 d predictions": [spend30["predictions"], exp.predictions_30d],
        "records in the window (one SELECT)": [raw_rows(), exp.records],
        "run view task instances": [view["totals"]["task_instances"], shape.big_run_tis],
        "run view failed": [view["totals"]["failed"], exp.big_failed],
    }

    s = {
        "spend30": Series("GET /wavespeed/api/spend?days=30", [], []),
        "spend90": Series("GET /wavespeed/api/spend?days=90", [], []),
        "spend_fn": Series("spend_summary(days=30), direct", [], []),
        "spend_rest": Series(f"REST: list the records (no values), {PAGE}/page", [], [], requests=rest_pages),
        "spend_floor": Series("floor: one SELECT of the records, no decoding", [], []),
        "run": Series(f"GET /wavespeed/api/runs ({shape.big_run_tis} mapped TIs)", [], []),
        "run_fn": Series("run_view(), direct", [], []),
        "run_rest": Series("REST: list the run's records (no values)", [], [], requests=run_pages),
        "run_naive": Series("REST: one XCom GET per task instance (values)", [], [], requests=shape.big_run_tis),
    }
    s["spend30"].kbytes = len(get("/wavespeed/api/spend", {"days": 30}).content) / 1024
    s["spend90"].kbytes = len(get("/wavespeed/api/spend", {"days": 90}).content) / 1024
    s["run"].kbytes = len(get("/wavespeed/api/runs", run_q).content) / 1024

    for _, base in interleave(shape.calls, shape.baseline_calls):
        measure(counter, s["spend30"], lambda: get("/wavespeed/api/spend", {"days": 30}))
        if base:
            measure(counter, s["spend_rest"], rest_spend)
        measure(counter, s["spend_floor"], raw_rows)
        measure(counter, s["spend90"], lambda: get("/wavespeed/api/spend", {"days": 90}))
        with create_session() as session:
            measure(counter, s["spend_fn"], lambda: spend_summary(session, None, 30, datetime.now(UTC)))
    spend_sql = list(counter.statements)
    for i, (_, base) in enumerate(interleave(shape.calls, shape.baseline_calls)):
        measure(counter, s["run"], lambda: get("/wavespeed/api/runs", run_q))
        if base:
            measure(counter, s["run_rest"], rest_run_list)
        if base and i // max(1, shape.calls // max(1, shape.baseline_calls)) < shape.naive_calls:
            measure(counter, s["run_naive"], rest_per_ti)
        with create_session() as session:
            measure(counter, s["run_fn"], lambda: run_view(session, exp.big_dag, exp.big_run))
    run_sql = list(counter.statements)
    one_call: dict[str, list[str]] = {}
    for label, url, params in (
        ("spend", "/wavespeed/api/spend", {"days": 30}),
        ("runs", "/wavespeed/api/runs", run_q),
    ):
        counter.reset()
        get(url, params)
        one_call[label] = [" ".join(statement.split())[:160] for statement, _ in counter.statements]

    plans: dict[str, list[str]] = {}
    with create_session() as session:
        for label, statements in (("spend_summary", spend_sql), ("run_view", run_sql)):
            if statements:
                statement, parameters = max(statements, key=lambda sp: len(sp[0]))
                plans[label] = [" ".join(statement.split()), *plan_lines(session, statement, parameters)]

    return {
        "database": payload["database"],
        "migrate_s": migrate_s,
        "populate_s": populate_s,
        "expected": asdict(exp),
        "checks": checks,
        "series": {key: series.summary() for key, series in s.items()},
        "plans": plans,
        "one_call": one_call,
    }


# -- the driver ----------------------------------------------------------------------------------------


def worker_env(home: Path, sql_conn: str) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__API_AUTH__JWT_SECRET": "bench-ui-" + os.urandom(8).hex(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API__BASE_URL": "http://127.0.0.1:8080",
        "PYTHONPATH": str(REPO),
    }


def run_database(name: str, sql_conn: str | None, shape: Shape) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix=f"bench-ui-{name}-"))
    try:
        conn = sql_conn or f"sqlite:///{home / 'airflow.db'}"
        payload = {"database": name, "shape": asdict(shape)}
        return run_worker(__file__, payload, WORKER_TIMEOUT, env=worker_env(home, conn))  # type: ignore[no-any-return]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def postgres_server() -> Any:
    sys.path.insert(0, str(REPO))
    from tests.cluster.services import PG_BIN, PostgresServer

    if not (PG_BIN / "postgres").exists():
        return None
    return PostgresServer(max_connections=50).start()


def ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def report(shape: Shape, results: list[dict[str, Any]], skipped: list[str]) -> None:
    print_table(
        "Data",
        ["database", "WaveSpeed TIs", "other TIs", "DAG runs", "XCom rows", "wavespeed_record", "migrate s", "fill s"],
        [
            [
                r["database"],
                r["expected"]["ws_tis"],
                r["expected"]["other_tis"],
                r["expected"]["runs"],
                r["expected"]["xcoms"],
                r["expected"]["records"],
                r["migrate_s"],
                r["populate_s"],
            ]
            for r in results
        ],
    )
    print_table(
        "Read back (the plugin reads the generated records exactly)",
        ["database", "check", "plugin", "generated", "verdict"],
        [
            [r["database"], check, got, want, verdict(abs(float(got) - float(want)) < 1e-6)]
            for r in results
            for check, (got, want) in r["checks"].items()
        ],
    )
    order = ("spend30", "spend90", "spend_fn", "spend_floor", "spend_rest", "run", "run_fn", "run_rest", "run_naive")
    baseline_of = {key: "spend_rest" for key in order[:5]} | {key: "run_naive" for key in order[5:]}
    rows = []
    for r in results:
        series = r["series"]
        for key in order:
            x = series[key]
            base = series[baseline_of[key]]["p50_ms"]
            queries = str(x["queries"]) if x["queries"] == x["queries_min"] else f"{x['queries_min']}-{x['queries']}"
            rows.append(
                [
                    r["database"],
                    x["name"],
                    x["calls"],
                    x["requests"],
                    x["p50_ms"],
                    x["p95_ms"],
                    x["max_ms"],
                    queries,
                    ratio_text(x["p50_ms"] / base),
                    x["kbytes"] if x["kbytes"] else "-",
                ]
            )
    print_table(
        f"UI plugin API at scale ({shape.ws_tis:,} WaveSpeed TIs over {shape.days} days)",
        [
            "database",
            "call",
            "calls",
            "HTTP requests/call",
            "p50 ms",
            "p95 ms",
            "max ms",
            "SQL queries/call",
            "p50 vs baseline (REST)",
            "response KB",
        ],
        rows,
    )
    goals = []
    for r in results:
        x = r["series"]
        db_name = r["database"]
        for key, label, goal in (
            ("spend30", "spend API p95, 30 days", SPEND_P95_GOAL_MS),
            ("spend90", "spend API p95, 90 days", SPEND_P95_GOAL_MS),
            ("run", f"run tab API p95, {shape.big_run_tis} mapped TIs", RUN_P95_GOAL_MS),
        ):
            p95 = x[key]["p95_ms"]
            goals.append([db_name, label, f"{p95:.0f} ms", f"< {goal:.0f} ms", verdict(p95 < goal)])
        for key, label in (("spend30", "spend API SQL queries per call"), ("run", "run tab API SQL queries per call")):
            q = x[key]["queries"]
            goals.append([db_name, label, str(q), f"<= {QUERIES_GOAL}", verdict(q <= QUERIES_GOAL)])
        for key, base, label in (
            ("spend30", "spend_rest", "spend API / REST listing the records (p50)"),
            ("run", "run_naive", "run tab API / REST one GET per TI (p50)"),
        ):
            ratio = x[key]["p50_ms"] / x[base]["p50_ms"]
            goals.append([db_name, label, ratio_text(ratio), "<= 1x", verdict(ratio <= 1)])
    print_table("Goals (UI plugin at scale)", ["database", "measure", "measured", "goal", "verdict"], goals)
    for r in results:
        for label, statements in r["one_call"].items():
            print(f"SQL of one /wavespeed/api/{label} call, {r['database']}:")
            for statement in statements:
                print(f"    {statement}")
        for label, lines in r["plans"].items():
            print(f"plan, {r['database']}, {label}: {lines[0][:400]}")
            for line in lines[1:]:
                print(f"    {line}")
    for reason in skipped:
        print(f"skipped: {reason}")
    print("first paint of /wavespeed/ui/run in Chromium: not measured here (API part only; see README)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 TIs, SQLite only, 5 calls (< 30 s)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--databases", nargs="+", choices=("sqlite", "postgresql"), default=None)
    parser.add_argument("--tis", type=int, default=None, help="WaveSpeed task instances (default 10,000)")
    parser.add_argument("--calls", type=int, default=None, help="plugin calls per measure (default 30)")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker)), default=str))
        return 0

    shape = QUICK if args.quick else FULL
    if args.tis or args.calls:
        shape = Shape(**{**asdict(shape), "ws_tis": args.tis or shape.ws_tis, "calls": args.calls or shape.calls})
    databases = args.databases or (["sqlite"] if args.quick else ["sqlite", "postgresql"])
    print_machine()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    results, skipped = [], []
    for name in databases:
        if name == "sqlite":
            results.append(run_database("sqlite", None, shape))
            continue
        server = postgres_server()
        if server is None:
            skipped.append("postgresql: server binaries missing (scripts/install-test-services.sh)")
            continue
        try:
            results.append(run_database("postgresql", server.url, shape))
        finally:
            server.stop()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    report(shape, results, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
