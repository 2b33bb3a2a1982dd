"""`make demo`: run the talking-avatar DAG on a real Airflow and show the sensor waiting in the triggerer.

Starts the processes a user's Airflow runs (api-server, dag-processor, scheduler, triggerer) in a
fresh ``.demo/airflow``, a home whose airflow.cfg Airflow writes itself, everything on 127.0.0.1.
It triggers ``example_wavespeed_avatar`` through Airflow's REST API, reads the run back the same
way and prints what happens: the prediction submitted (id, quote), the sensor deferred to the
triggerer (polls so far), the video stored. Airflow's own output goes to ``.demo/airflow.log``
(``VERBOSE=1`` streams it here too). On failure it names the failed task, its log and the log's
last lines, and exits 1.

On the offline WaveSpeed emulator by default; on the real API when WAVESPEED_API_KEY is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

from demo_airflow import AirflowApi, AirflowProcesses, DemoError, ProcessLog

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
HOME = DEMO / "airflow"
OUTPUT = DEMO / "output"
LOG = DEMO / "airflow.log"
DAG_ID = "example_wavespeed_avatar"
FAILED_STATES = {"failed", "up_for_retry", "upstream_failed"}


def emulator_config() -> EmulatorConfig:
    """A render long enough that the sensor, which starts a few seconds after the submit, finds it running."""
    return EmulatorConfig(queue_seconds=2.0, run_seconds=12.0, output_size=2 * 1024 * 1024)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def airflow_env(api_port: int, conn_json: str) -> dict[str, str]:
    """The caller's environment minus anything that configures Airflow (the demo must never touch a user's own
    AIRFLOW_HOME or database, and shows the defaults), plus what it needs; the rest is the airflow.cfg Airflow
    writes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "WAVESPEED_API_KEY"}
    env.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The api-server (REST API, UI, and the execution API the workers call) only on 127.0.0.1.
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW_CONN_WAVESPEED_DEFAULT": conn_json,  # the API key travels only in here
            "WAVESPEED_OUTPUT_DIR": str(OUTPUT),
            # One task runs at a time here; the LocalExecutor forks this many workers when it starts (default 32).
            "AIRFLOW__CORE__PARALLELISM": "4",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class Clock:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():5.1f}s] {text}", flush=True)


def wait_until(airflow: AirflowProcesses, what: str, done: Callable[[], bool], timeout: float = 180) -> None:
    """Poll ``done`` until it is true; fail when an Airflow process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not done():
        airflow.check_running()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def start_airflow(airflow: AirflowProcesses, api: AirflowApi, clock: Clock) -> None:
    """Migrate the DB (Airflow writes airflow.cfg then), start the four processes, log in, unpause the DAG."""
    clock.say(f"starting Airflow {version('apache-airflow-core')} in {os.path.relpath(HOME)} ...")
    airflow.run("db-migrate", "db", "migrate", timeout=300)
    airflow.start("api-server", "api-server")
    airflow.start("dag-processor", "dag-processor")
    airflow.start("scheduler", "scheduler", "--skip-serve-logs")  # no log server: it would bind 0.0.0.0
    airflow.start("triggerer", "triggerer", "--skip-serve-logs")
    wait_until(airflow, "the api-server", lambda: api.health() is not None)
    # The api-server builds its execution API (Cadwyn's versioned routers) on the first request to it, ~7 s
    # here: do that now, not while the first task waits for it (the task's client times out and retries).
    api.warm_up_execution_api()
    components = ("scheduler", "dag_processor", "triggerer")
    wait_until(
        airflow,
        "scheduler, dag-processor and triggerer to heartbeat",
        lambda: all((api.health() or {}).get(name, {}).get("status") == "healthy" for name in components),
    )
    password_file = HOME / "simple_auth_manager_passwords.json.generated"
    api.login("admin", json.loads(password_file.read_text())["admin"])
    clock.say(f"Airflow is up: api-server on {api.base_url}, scheduler, dag-processor, triggerer")

    def dag_loaded() -> bool:
        errors = [e for e in api.get("/importErrors")["import_errors"] if e["filename"].endswith(f"{DAG_ID}.py")]
        if errors:
            raise DemoError(f"{DAG_ID} failed to load:\n{errors[0]['stack_trace']}")
        return api.get(f"/dags/{DAG_ID}") is not None

    wait_until(airflow, f"the dag-processor to load {DAG_ID}", dag_loaded)
    api.request("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})


@dataclass
class Watch:
    """What the demo has seen of the run so far, so that each milestone is printed once."""

    run_id: str
    prediction_id: str | None = None
    deferred_at: float | None = None
    deferred_seconds: float = 0.0
    polls: int = 0
    said_at: float = 0.0
    stored: list[Path] = field(default_factory=list)


def xcom(api: AirflowApi, run_id: str, task_id: str, key: str) -> Any:
    entry = api.get(f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
    return None if entry is None else entry["value"]


def watch_run(api: AirflowApi, airflow: AirflowProcesses, emulator: WaveSpeedEmulator | None, clock: Clock) -> Watch:
    """Trigger the DAG, then read the run through the REST API every half second and print each step once."""
    seen = Watch(api.request("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None})["dag_run_id"])
    clock.say(f"triggered {DAG_ID}, run {seen.run_id}")
    runs = f"/dags/{DAG_ID}/dagRuns/{seen.run_id}"
    deadline = time.monotonic() + (240 if emulator else 75 * 60)
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        airflow.check_running()
        tis = {ti["task_id"]: ti for ti in api.get(f"{runs}/taskInstances")["task_instances"]}
        for ti in tis.values():
            if ti["state"] in FAILED_STATES:
                raise task_failed(api, ti)
        state = {task_id: ti["state"] for task_id, ti in tis.items()}
        if seen.prediction_id is None and state.get("submit") == "success":
            seen.prediction_id = xcom(api, seen.run_id, "submit", "wavespeed_prediction_id")
            cost = xcom(api, seen.run_id, "submit", "wavespeed_cost_usd")
            quote = f"${float(cost):.2f}" if cost is not None else "no quote"
            clock.say(f"submit  prediction {seen.prediction_id} submitted, quoted {quote}")
        trigger = tis.get("wait", {}).get("trigger") or {}
        if state.get("wait") == "deferred" and trigger.get("triggerer_id") is not None:
            polls = emulator.stats.polls_by_prediction.get(seen.prediction_id or "", 0) if emulator else 0
            counted = f"polls so far: {polls}" if emulator else "still waiting"
            if seen.deferred_at is None:
                seen.deferred_at, seen.said_at, seen.polls = time.monotonic(), time.monotonic(), polls
                job = trigger["triggerer_id"]
                clock.say(f"wait    deferred: yes, to triggerer job {job} (no worker slot held); {counted}")
            elif polls != seen.polls or (not emulator and time.monotonic() - seen.said_at > 60):
                seen.polls, seen.said_at = polls, time.monotonic()
                clock.say(f"wait    {counted} ({time.monotonic() - seen.deferred_at:.0f} s in the triggerer)")
        elif seen.deferred_at is not None and not seen.deferred_seconds:
            seen.deferred_seconds = time.monotonic() - seen.deferred_at
            clock.say(f"wait    the trigger fired; the sensor resumed after {seen.deferred_seconds:.0f} s deferred")
        if state.get("wait") == "success" and seen.deferred_at is None:
            raise DemoError(
                "the sensor succeeded without deferring: it waited in a worker slot, not in the triggerer "
                f"(see [wavespeed] default_deferrable in {os.path.relpath(HOME / 'airflow.cfg')})"
            )
        if state.get("fetch") == "success" and not seen.stored:
            seen.stored = [Path(path) for path in xcom(api, seen.run_id, "fetch", "return_value") or []]
            for path in seen.stored:
                size = path.stat().st_size / 1024 / 1024
                took = tis["fetch"]["duration"] or 0.0
                clock.say(f"fetch   stored {os.path.relpath(path)} ({size:.1f} MiB) in {took:.1f} s")
        run_state = api.get(runs)["state"]
        if run_state == "success" and seen.stored:
            return seen
        if run_state == "failed":
            raise DemoError(f"run {seen.run_id} failed; task states: {state}")
        time.sleep(0.5)
    raise DemoError(f"the run did not finish in time; task states: {state}")


def task_failed(api: AirflowApi, ti: dict[str, Any], lines: int = 20) -> DemoError:
    """The failure of one task try: where its log is, and the log's last lines, read through the REST API."""
    run_id, task_id, attempt = ti["dag_run_id"], ti["task_id"], ti["try_number"]
    log_file = HOME / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}" / f"attempt={attempt}.log"
    path = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{attempt}"
    tail = []
    try:
        content = (api.get(path, full_content=True) or {}).get("content", [])
    except DemoError as exc:  # say so, without hiding the task's own failure
        content = [{"event": f"(could not read the task log: {exc})"}]
    for entry in content:
        if isinstance(entry, dict):
            tail.append(
                f"{str(entry.get('timestamp', ''))[11:19]} {entry.get('level', ''):<7} {entry.get('event', '')}"
            )
            tail += [f"  {e.get('exc_type')}: {e.get('exc_value')}" for e in entry.get("error_detail") or []]
    retry = " (the DAG would retry it; the demo stops here)" if ti["state"] == "up_for_retry" else ""
    return DemoError(
        f"task {task_id!r} failed, try {attempt}{retry}, in run {run_id}\n"
        f"  Task log:    {os.path.relpath(log_file)}\n"
        f"  Last lines:\n    " + "\n    ".join(tail[-lines:])
    )


def on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    verbose = os.environ.get("VERBOSE", "") not in ("", "0")
    api_key = os.environ.get("WAVESPEED_API_KEY", "").strip()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    shutil.rmtree(HOME, ignore_errors=True)
    shutil.rmtree(OUTPUT, ignore_errors=True)
    HOME.mkdir(parents=True)
    clock = Clock()
    emulator = None
    print(f"WaveSpeed demo: {DAG_ID} on a real Airflow, run the way yours runs it")
    if api_key:
        print("  WaveSpeed API: the real one (WAVESPEED_API_KEY is set; predictions are billed)")
        conn_json = json.dumps({"conn_type": "wavespeed", "password": api_key})
    else:
        emulator = WaveSpeedEmulator(emulator_config()).start()
        print(f"  WaveSpeed API: offline emulator on {emulator.base_url} (WAVESPEED_API_KEY=... for the real one)")
        conn_json = emulator.connection_json()
    print(f"  Airflow log:   {os.path.relpath(LOG)} (VERBOSE=1 streams it here too)")
    log = ProcessLog(LOG, verbose)
    api_port = free_port()
    api = AirflowApi(f"http://127.0.0.1:{api_port}")
    try:
        with AirflowProcesses(airflow_env(api_port, conn_json), log) as airflow:
            try:
                start_airflow(airflow, api, clock)
                seen = watch_run(api, airflow, emulator, clock)
            finally:
                print("Stopping Airflow ...", flush=True)
    except DemoError as err:
        print(f"\nDemo FAILED: {err}\n  Airflow log: {os.path.relpath(LOG)}")
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted; Airflow is stopped.")
        return 130
    finally:
        api.close()
        if emulator is not None:
            emulator.stop()
        log.close()
    polls = f" ({seen.polls} polls)" if emulator else ""
    print(
        f"Done in {clock.elapsed():.0f} s: the sensor waited {seen.deferred_seconds:.0f} s in the triggerer{polls}, "
        "holding no worker slot."
    )
    for path in seen.stored:
        print(f"Your video: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
