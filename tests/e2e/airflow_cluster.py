"""A real multi-process Airflow 3 on a throw-away ``AIRFLOW_HOME`` with SQLite, for end-to-end tests.

``AirflowCluster`` runs ``airflow api-server --apps execution``, ``airflow dag-processor``,
``airflow scheduler`` (LocalExecutor) and ``airflow triggerer`` as separate process groups,
all bound to 127.0.0.1, and reads the metadata database directly with :mod:`sqlite3` to
observe what happened. It exists to prove what ``dag.test()`` cannot: that a deferrable
task really defers to a real triggerer, and survives that triggerer being killed.

The same harness also runs a production-shaped cluster (``tests/cluster``): a PostgreSQL
metadata DB (``database_url=``, observed with psycopg2), ``executor="CeleryExecutor"`` with
``celery_workers=N`` (``airflow celery worker``, broker configured through ``env``), and several
schedulers and triggerers (``schedulers=``, ``triggerers=``). The first process of a kind keeps
its plain name (``scheduler``, ``triggerer``), the others are ``scheduler-2``, ``triggerer-2``,
...; workers are ``celery-worker-1``, ... With ``distinct_hostnames=True`` every process reports
its name as its hostname (``[core] hostname_callable``), so ``job.hostname`` and
``task_instance.hostname`` say which process did what.

This module has no pytest dependency; the fixtures live in ``conftest.py``.

Typical use::

    cluster = AirflowCluster(tmp_path, {"my_dag.py": DAG_SOURCE}, env={"AIRFLOW_CONN_X": "..."})
    cluster.start()
    try:
        cluster.unpause("my_dag")
        run_id = cluster.trigger("my_dag", conf={"n": 1})
        assert cluster.wait_for_run("my_dag", run_id, timeout=60) == "success"
    finally:
        cluster.stop()
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import json
import os
import queue
import secrets
import shutil
import signal as signal_module
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil

T = TypeVar("T")

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

# The process names double as log file stems: ``<home>/process-logs/<name>.log``.
API_SERVER = "api-server"
DAG_PROCESSOR = "dag-processor"
SCHEDULER = "scheduler"
TRIGGERER = "triggerer"
CELERY_WORKER = "celery-worker"

# Environment variable read by the ``hostname_callable`` below (``distinct_hostnames=True``).
HOSTNAME_ENV = "AIRFLOW_E2E_HOSTNAME"
_HOSTNAME_MODULE = "airflow_e2e_hostname"
_HOSTNAME_SOURCE = f"""import os
import socket


def hostname() -> str:
    return os.environ.get({HOSTNAME_ENV!r}) or socket.getfqdn()
"""
API_SERVER_GRACE = 2.0

# Migrated, empty metadata DBs made in this interpreter, keyed by (python, airflow version, extra
# env): ``airflow db migrate`` costs ~7 s on SQLite, copying the file costs milliseconds.
_MIGRATED_DB_CACHE: dict[str, Path] = {}
_CACHE_DIR: Path | None = None


# A long-lived ``airflow`` CLI: importing Airflow costs ~4-6 s per ``airflow ...`` call on a busy
# 2-CPU box, so commands the tests issue often (``dags trigger``) run in one warm interpreter.
# Requests are JSON argument lists on stdin; replies go to the original stdout (fd 1 is then
# pointed at the log, so nothing else can corrupt the reply channel).
_WARM_CLI_SCRIPT = r"""
import contextlib, io, json, os, sys, traceback
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = sys.stderr
from airflow import configuration
from airflow.cli import cli_parser
from airflow.configuration import write_default_airflow_configuration_if_needed
write_default_airflow_configuration_if_needed()
parser = cli_parser.get_parser()
for name in ("airflow.cli.commands.dag_command", "airflow.api.client.local_client",
             "airflow.api.common.trigger_dag", "airflow.serialization.serialized_objects"):
    try:  # what the first `dags trigger` would otherwise import (~2.5 s)
        __import__(name)
    except Exception:
        pass
reply.write("@@ready@@\n"); reply.flush()
for line in sys.stdin:
    argv = json.loads(line)
    out = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out):
            args = parser.parse_args(argv)
            args.func(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            out.write(str(exc.code))
    except BaseException:
        code = 1
        out.write(traceback.format_exc())
    reply.write("@@result@@" + json.dumps({"code": code, "output": out.getvalue()}) + "\n")
    reply.flush()
"""

WARM_CLI = "warm-cli"


class AirflowClusterError(RuntimeError):
    """The cluster could not be started, or a bounded wait ran out."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _WarmCli:
    """One ``airflow`` interpreter that runs CLI commands sent over a pipe (see ``_WARM_CLI_SCRIPT``)."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path, log_handle: Any) -> None:
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_handle,
            text=True,
            start_new_session=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ready = False
        threading.Thread(target=self._read, name="airflow-warm-cli-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, deadline: float) -> str:
        try:
            line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError("the warm airflow CLI did not answer in time") from None
        if line is None:
            raise EOFError(f"the warm airflow CLI exited with code {self.proc.wait()}")
        return line

    def call(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run ``airflow <argv>``; return ``(exit code, stdout)``. Raises if the helper is unusable."""
        with self._lock:
            deadline = time.monotonic() + timeout
            while not self._ready:
                self._ready = self._next_line(deadline).startswith("@@ready@@")
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(argv) + "\n")
            self.proc.stdin.flush()
            while True:
                line = self._next_line(deadline)
                if line.startswith("@@result@@"):
                    reply = json.loads(line[len("@@result@@") :])
                    return int(reply["code"]), str(reply["output"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal_module.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal_module.SIGKILL)
            self.proc.wait(timeout=5)


class AirflowCluster:
    """A real Airflow (api-server, dag-processor, scheduler, triggerer) on SQLite for one test.

    :param tmp_path: directory owned by the test; ``<tmp_path>/airflow`` becomes ``AIRFLOW_HOME``.
    :param dags: either ``{file name: source}`` written into ``<home>/dags``, or paths of DAG files
        (or of directories, copied recursively) to copy there.
    :param env: extra environment for every Airflow process (e.g. ``AIRFLOW_CONN_*``); it wins
        over the harness defaults, so any ``AIRFLOW__SECTION__KEY`` can be overridden.
    :param triggerer_health_check_threshold: seconds after which a silent triggerer counts as dead
        and its triggers move to another triggerer.
    :param heartbeat_sec: job heartbeat of scheduler and triggerer (must be well below the threshold).
    :param database_url: SQLAlchemy URL of the metadata DB (default: SQLite in the home). A
        ``postgresql`` URL is migrated on first start and observed with psycopg2.
    :param executor: ``[core] executor``; ``CeleryExecutor`` needs ``celery_workers`` and the broker
        settings (``AIRFLOW__CELERY__BROKER_URL``, ...) in ``env``.
    :param schedulers: how many schedulers to run (more than one needs PostgreSQL).
    :param triggerers: how many triggerers to run (more than one needs PostgreSQL).
    :param celery_workers: how many ``airflow celery worker`` processes to run.
    :param celery_worker_concurrency: task slots per Celery worker.
    :param distinct_hostnames: every process reports its own name as its hostname.
    :param rest_api: serve Airflow's REST API (``/api/v2``) too, for :meth:`rest` (the user actions of the UI:
        mark failed, clear, ...), with SimpleAuthManager's ``admin`` user.
    :param minimal_env: configure Airflow as a new user does: the ``airflow.cfg`` that ``airflow db migrate``
        writes on the empty home, and in the environment only what this shared machine needs (the home,
        the api-server on 127.0.0.1 and a free port) plus ``env``. No test-speed settings: scheduler,
        triggerer and dag-processor run on their generated defaults.

    Either way the home's ``airflow.cfg`` is the one Airflow itself writes on first use (a full file with
    every option set to its default, as in every user's home), never one the harness writes.
    """

    def __init__(
        self,
        tmp_path: Path | str,
        dags: Mapping[str, str] | Iterable[Path | str] = (),
        env: Mapping[str, str] | None = None,
        *,
        triggerer_health_check_threshold: float = 6.0,
        heartbeat_sec: float = 1.0,
        database_url: str | None = None,
        executor: str = "LocalExecutor",
        schedulers: int = 1,
        triggerers: int = 1,
        celery_workers: int = 0,
        celery_worker_concurrency: int = 2,
        distinct_hostnames: bool = False,
        minimal_env: bool = False,
        rest_api: bool = False,
    ) -> None:
        self.home = Path(tmp_path).resolve() / "airflow"
        self.dags_folder = self.home / "dags"
        self.logs_folder = self.home / "logs"
        self.process_logs_folder = self.home / "process-logs"
        self.db_path = self.home / "airflow.db"
        for folder in (self.dags_folder, self.logs_folder, self.process_logs_folder):
            folder.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.triggerer_health_check_threshold = triggerer_health_check_threshold
        self.heartbeat_sec = heartbeat_sec
        self.database_url = database_url
        self.is_sqlite = database_url is None or database_url.startswith("sqlite")
        self.executor = executor
        self.scheduler_count = schedulers
        self.triggerer_count = triggerers
        self.celery_worker_count = celery_workers
        self.celery_worker_concurrency = celery_worker_concurrency
        self.distinct_hostnames = distinct_hostnames
        self.minimal_env = minimal_env
        self.rest_api = rest_api
        self._rest_token: str | None = None
        if minimal_env:  # what the generated airflow.cfg says: [triggerer] and [scheduler] defaults
            self.triggerer_health_check_threshold, self.heartbeat_sec = 30.0, 5.0
        if minimal_env and (database_url or executor != "LocalExecutor" or distinct_hostnames):
            raise ValueError("minimal_env runs Airflow's generated defaults: SQLite and the LocalExecutor only")
        if not self.is_sqlite and not (database_url or "").startswith("postgresql"):
            raise ValueError(f"unsupported database_url {database_url!r}: SQLite or PostgreSQL only")
        if (schedulers > 1 or triggerers > 1) and self.is_sqlite:
            raise ValueError("several schedulers/triggerers need row locks: pass a PostgreSQL database_url")
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._log_handles: dict[str, Any] = {}
        self._retired: list[subprocess.Popen[bytes]] = []  # killed processes, kept for stop()
        self._warm_cli: _WarmCli | None = None
        self._atexit_registered = False
        self._write_dags(dags)
        self._extra_env = dict(env or {})
        self.env = self._build_env(self._extra_env)

    # ------------------------------------------------------------------ setup

    def _write_dags(self, dags: Mapping[str, str] | Iterable[Path | str]) -> None:
        if isinstance(dags, Mapping):
            for name, source in dags.items():
                target = self.dags_folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(source)
            return
        for item in dags:
            src = Path(item)
            if src.is_dir():
                shutil.copytree(src, self.dags_folder / src.name, dirs_exist_ok=True)
            else:
                shutil.copy2(src, self.dags_folder / src.name)

    def _build_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        # Start from the caller's environment minus anything that configures Airflow, so a
        # developer's own AIRFLOW_HOME / AIRFLOW__* / AIRFLOW_CONN_* never leaks into the test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        if self.minimal_env:
            env.update(
                {
                    "AIRFLOW_HOME": str(self.home),
                    "PYTHONUNBUFFERED": "1",
                    "AIRFLOW__API__HOST": "127.0.0.1",
                    "AIRFLOW__API__PORT": str(self.api_port),
                    "AIRFLOW__API__BASE_URL": self.api_url,
                    **extra,
                }
            )
            return env
        threshold = self.triggerer_health_check_threshold
        beat = self.heartbeat_sec
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor forks this many workers
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url or f"sqlite:///{self.db_path}",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_folder),
                # Parse new files within seconds, not the 5-minute default.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                # Fast loops, and no health-check HTTP server (it would bind 0.0.0.0).
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": str(beat),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": str(beat),
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                # A killed triggerer is declared dead after `threshold` seconds without a heartbeat;
                # its triggers are then picked up by any live triggerer.
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": str(beat),
                # Airflow 3.1's REST API reads it with getint: "6", not "6.0".
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": f"{threshold:g}",
                # Ports of log servers we never start (-s); pinned to free ports just in case.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            }
        )
        if self.distinct_hostnames:
            pylib = self.home / "pylib"
            pylib.mkdir(exist_ok=True)
            (pylib / f"{_HOSTNAME_MODULE}.py").write_text(_HOSTNAME_SOURCE)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pylib), env.get("PYTHONPATH", "")) if p)
            env["AIRFLOW__CORE__HOSTNAME_CALLABLE"] = f"{_HOSTNAME_MODULE}.hostname"
        if self.rest_api:
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
        env.update(extra)
        return env

    # ------------------------------------------------------------- processes

    def _airflow_cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "airflow", *args]

    def run_cli(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` in a fresh process against this cluster's home (~4-6 s each)."""
        proc = subprocess.run(
            self._airflow_cmd(*args),
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AirflowClusterError(
                f"`airflow {' '.join(args)}` exited {proc.returncode}\n"
                f"--- stdout ---\n{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"
            )
        return proc

    def _warm_run(self, *args: str, timeout: float = 120.0) -> str:
        """Run a CLI command in the warm interpreter (falls back to a fresh ``airflow`` process)."""
        if self._warm_cli is not None:
            try:
                code, output = self._warm_cli.call(list(args), timeout)
            except (TimeoutError, EOFError, OSError) as err:
                self._log_line(WARM_CLI, f"warm CLI unusable ({err}); falling back to a fresh process")
                self._warm_cli.close()
                self._warm_cli = None
            else:
                if code != 0:
                    raise AirflowClusterError(
                        f"`airflow {' '.join(args)}` exited {code}\n{output[-5000:]}\n{self._tail(WARM_CLI, 5000)}"
                    )
                return output
        return self.run_cli(*args, timeout=timeout).stdout

    def _open_log(self, name: str, banner: str) -> Any:
        handle = open(self.process_logs_folder / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        handle.write(f"\n===== {time.strftime('%H:%M:%S')} {banner}\n".encode())
        handle.flush()
        old = self._log_handles.pop(name, None)
        if old is not None:
            old.close()
        self._log_handles[name] = handle
        return handle

    def _log_line(self, name: str, text: str) -> None:
        handle = self._log_handles.get(name)
        if handle is not None and not handle.closed:
            handle.write(f"\n===== {time.strftime('%H:%M:%S')} harness: {text}\n".encode())
            handle.flush()

    def _spawn(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        handle = self._open_log(name, f"starting: airflow {' '.join(args)}")
        env = {**self.env, **(env or {})}
        if self.distinct_hostnames:
            env[HOSTNAME_ENV] = name
        proc = subprocess.Popen(
            self._airflow_cmd(*args),
            env=env,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session and process group: killpg reaches its children
        )
        self._processes[name] = proc
        return proc

    def _migrate(self) -> None:
        # The migrated DB depends on the Airflow version and on config (e.g. the log filename
        # template row), so the caller's extra environment is part of the cache key.
        if not self.is_sqlite:
            # PostgreSQL: migrate unless this database was migrated before (keep its history).
            if not self._query("SELECT 1 FROM information_schema.tables WHERE table_name = 'alembic_version'"):
                self.run_cli("db", "migrate", timeout=300)
            return
        if self.db_path.exists():  # started before (or a minimal home, migrated first): keep its history
            return
        key = json.dumps([sys.executable, _airflow_version(), sorted(self._extra_env.items())])
        cached = _MIGRATED_DB_CACHE.get(key)
        if cached is not None and cached.exists():
            shutil.copy2(cached, self.db_path)
            return
        self.run_cli("db", "migrate", timeout=180)
        _checkpoint(self.db_path)
        global _CACHE_DIR
        if _CACHE_DIR is None:
            _CACHE_DIR = Path(tempfile.mkdtemp(prefix="airflow-e2e-db-"))
            atexit.register(shutil.rmtree, _CACHE_DIR, True)
        copy = _CACHE_DIR / f"migrated-{len(_MIGRATED_DB_CACHE)}.db"
        shutil.copy2(self.db_path, copy)
        _MIGRATED_DB_CACHE[key] = copy

    def start(self, timeout: float = 120.0) -> AirflowCluster:
        """Migrate the DB, start all four processes and wait until they are up and the DAGs parsed.

        On failure everything started so far is stopped and the error carries the relevant log tail;
        the process logs stay on disk for :meth:`dump_logs`.
        """
        if self._processes or self._warm_cli is not None:
            raise AirflowClusterError("the cluster is already started")
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        deadline = time.monotonic() + timeout
        try:
            self._write_generated_config()
            # The warm CLI only imports Airflow until its first command: let it do that on the
            # second CPU while `db migrate` runs.
            self._warm_cli = _WarmCli(
                [sys.executable, "-c", _WARM_CLI_SCRIPT],
                self.env,
                self.home,
                self._open_log(WARM_CLI, "starting the warm airflow CLI"),
            )
            self._migrate()
            apps = "all" if self.rest_api else "execution"
            self._spawn(API_SERVER, "api-server", "--apps", apps, "-H", "127.0.0.1", "-p", str(self.api_port))
            self._spawn(DAG_PROCESSOR, "dag-processor")
            for index in range(1, self.scheduler_count + 1):
                self._spawn(_numbered(SCHEDULER, index), "scheduler", "--skip-serve-logs")
            for index in range(1, self.triggerer_count + 1):
                self._start_triggerer_process(_numbered(TRIGGERER, index))
            for index in range(1, self.celery_worker_count + 1):
                self._start_celery_worker_process(f"{CELERY_WORKER}-{index}")
            self._wait_api_server(deadline)
            self._wait_jobs_alive(
                {"SchedulerJob": self.scheduler_count, "TriggererJob": self.triggerer_count, "DagProcessorJob": 1},
                deadline,
            )
            for index in range(1, self.celery_worker_count + 1):
                self._wait_celery_worker_ready(f"{CELERY_WORKER}-{index}", deadline)
            self.wait_for_dags_parsed(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        return self

    def _write_generated_config(self) -> None:
        """Let Airflow write the home's ``airflow.cfg``, as any user's first ``airflow`` command does.

        Once, before the processes start: started together, each would write its own file (with its
        own random keys). In a minimal home that first command is the user's: ``airflow db migrate``.
        """
        if (self.home / "airflow.cfg").exists():
            return
        if self.minimal_env:
            self.run_cli("db", "migrate", timeout=180)
        else:
            self.run_cli("config", "get-value", "core", "executor", timeout=120)
        if not (self.home / "airflow.cfg").exists():
            raise AirflowClusterError(f"the first airflow command wrote no {self.home / 'airflow.cfg'}")

    def _start_triggerer_process(
        self, name: str = TRIGGERER, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        return self._spawn(name, "triggerer", "--skip-serve-logs", env=env)

    def start_triggerer(
        self, timeout: float = 45.0, name: str = TRIGGERER, env: Mapping[str, str] | None = None
    ) -> int:
        """Start a (new) triggerer called ``name`` and wait until its job heartbeats; return its job id.

        ``env`` adds to (or overrides) the cluster's environment for this process only, e.g.
        ``{"AIRFLOW__TRIGGERER__CAPACITY": "600"}``.
        """
        if name in self._processes:
            raise AirflowClusterError(f"{name} is already running; kill_triggerer() first")
        before = self._max_job_id("TriggererJob")
        self._start_triggerer_process(name, env)
        return self._wait_new_job("TriggererJob", after_id=before, deadline=time.monotonic() + timeout)

    def _start_celery_worker_process(self, name: str) -> subprocess.Popen[bytes]:
        # -s: no log server (it would bind 0.0.0.0); an own pid file, or the second worker refuses to start.
        return self._spawn(
            name,
            "celery",
            "worker",
            "--celery-hostname",
            f"{name}@127.0.0.1",
            "--concurrency",
            str(self.celery_worker_concurrency),
            "--pid",
            str(self.home / f"{name}.pid"),
            "--skip-serve-logs",
            "--without-mingle",
            "--without-gossip",
        )

    def _wait_celery_worker_ready(self, name: str, deadline: float) -> None:
        self._poll(
            f"celery worker {name} to be ready",
            lambda: True if f"{name}@127.0.0.1 ready" in self.process_log(name) else None,
            deadline,
            0.5,
        )

    def start_celery_worker(self, name: str, timeout: float = 90.0) -> None:
        """Start another ``airflow celery worker`` called ``name`` and wait until it is ready."""
        if name in self._processes:
            raise AirflowClusterError(f"{name} is already running")
        self._start_celery_worker_process(name)
        self._wait_celery_worker_ready(name, time.monotonic() + timeout)

    def kill_triggerer(self, signal: int = signal_module.SIGKILL, timeout: float = 15.0, name: str = TRIGGERER) -> None:
        """Send ``signal`` (default SIGKILL) to the triggerer and every process below it; reap them.

        The triggerer's trigger runner lives in its own process group (the task SDK supervisor
        calls ``setpgid``), so the whole process tree is signalled, as a lost machine would be.
        """
        if name not in self._processes:
            raise AirflowClusterError(f"no {name} is running")
        self.kill_process(name, signal, timeout)

    def kill_process(self, name: str, signal: int = signal_module.SIGKILL, timeout: float = 15.0) -> None:
        """Signal process ``name``, every process below it and every process of its session; reap it.

        Task runners (of Celery workers and of the LocalExecutor) and the triggerer's trigger
        runner live in process groups of their own inside the launching process's session:
        signalling the whole session is what a crashed host does to them. Nothing is restarted.
        """
        proc = self._processes.pop(name, None)
        if proc is None:
            raise AirflowClusterError(f"no process {name!r} is running")
        self._retired.append(proc)
        _signal_tree(proc, signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        if proc.poll() is None:
            _signal_tree(proc, signal_module.SIGKILL)
            proc.wait(timeout=timeout)
        self._log_line(name, f"sent signal {signal} to the process tree of {name} (pid {proc.pid})")

    def process(self, name: str) -> subprocess.Popen[bytes] | None:
        """The ``Popen`` of a running process (api-server, dag-processor, scheduler, triggerer, ...)."""
        return self._processes.get(name)

    def process_names(self) -> list[str]:
        """Names of the processes running now, in start order."""
        return list(self._processes)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process group, wait up to ``timeout`` s, then SIGKILL whatever is left.

        Also kills descendants that moved to process groups of their own (task runners), and is
        safe to call twice. Scheduler, triggerer and dag-processor exit 1-5 s after SIGTERM and
        reap their workers on the way (a SIGKILLed parent would leave them as zombies for init);
        the api-server has no children but lingers ~8 s after uvicorn's shutdown, so it only gets
        ``API_SERVER_GRACE`` seconds.
        """
        if self._warm_cli is not None:
            self._warm_cli.close()
            self._warm_cli = None
        procs = [self._processes[name] for name in reversed(list(self._processes))]
        procs += self._retired
        # Snapshot descendants first: once a parent dies its children are reparented and lost.
        trees = {p.pid: _descendants(p.pid) for p in procs}
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal_module.SIGTERM)
        started = time.monotonic()
        api_server = self._processes.get(API_SERVER)
        for proc in procs:
            grace = min(timeout, API_SERVER_GRACE) if proc is api_server else timeout
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, started + grace - time.monotonic()))
        for proc in procs:
            leftovers = [c for c in trees[proc.pid] if _alive(c)]
            leftovers += [c for c in _descendants(proc.pid) if c not in leftovers]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal_module.SIGKILL)
            for child in leftovers:
                with contextlib.suppress(psutil.Error):
                    child.kill()
                with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                    os.killpg(child.pid, signal_module.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            # Not psutil.wait_procs: reparented zombies may never be reaped here; they count as dead.
            reap_deadline = time.monotonic() + 5
            while any(_alive(c) for c in leftovers) and time.monotonic() < reap_deadline:
                time.sleep(0.05)
        for handle in self._log_handles.values():
            with contextlib.suppress(OSError):
                handle.close()
        self._log_handles.clear()
        self._processes.clear()
        self._retired.clear()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def __enter__(self) -> AirflowCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- waiting

    def _check_processes(self) -> None:
        for name, proc in self._processes.items():
            if proc.poll() is not None:
                raise AirflowClusterError(
                    f"airflow {name} exited with code {proc.returncode}\n{self._tail(name, 6000)}"
                )

    def _poll(self, what: str, probe: Callable[[], T | None], deadline: float, interval: float = 0.3) -> T:
        while True:
            self._check_processes()
            result = probe()
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                raise AirflowClusterError(f"timed out waiting for {what}")
            time.sleep(interval)

    def _wait_api_server(self, deadline: float) -> None:
        url = f"{self.api_url}/execution/health"

        def probe() -> bool | None:
            # The first request is slow (8-15 s on a busy 2-CPU box): cadwyn builds the versioned
            # routes of the execution API lazily. Waiting here keeps that cost out of the first task.
            try:
                with urllib.request.urlopen(url, timeout=max(1.0, deadline - time.monotonic())) as resp:
                    return True if resp.status == 200 else None
            except (urllib.error.URLError, OSError):
                return None

        self._poll(f"the api-server at {url}", probe, deadline)

    def _running_job_ids(self, job_type: str, max_heartbeat_age: float | None = None) -> list[int]:
        """Ids of ``job`` rows of ``job_type`` still marked running (a SIGKILLed job stays so)."""
        rows = self._query(
            "SELECT id, latest_heartbeat FROM job WHERE job_type = ? AND state = 'running' "
            "AND end_date IS NULL ORDER BY id",
            (job_type,),
        )
        if max_heartbeat_age is not None:
            now = datetime.now(UTC)
            rows = [
                r
                for r in rows
                if r["latest_heartbeat"] and (now - _utc(r["latest_heartbeat"])).total_seconds() < max_heartbeat_age
            ]
        return [row["id"] for row in rows]

    def _max_job_id(self, job_type: str) -> int:
        rows = self._query("SELECT max(id) AS id FROM job WHERE job_type = ?", (job_type,))
        return int(rows[0]["id"] or 0)

    def _wait_jobs_alive(self, job_types: Iterable[str] | Mapping[str, int], deadline: float) -> None:
        counts = dict(job_types) if isinstance(job_types, Mapping) else dict.fromkeys(job_types, 1)
        for job_type, count in counts.items():
            probe = functools.partial(self._running_job_ids, job_type)
            self._poll(
                f"{count} running {job_type}(s)", lambda p=probe, n=count: True if len(p()) >= n else None, deadline
            )

    def job_ids_by_hostname(self, job_type: str) -> dict[str, int]:
        """``{hostname: id}`` of live ``job_type`` jobs (with ``distinct_hostnames``: process name -> job id)."""
        alive = set(self._running_job_ids(job_type, self.triggerer_health_check_threshold))
        rows = self._query("SELECT id, hostname FROM job WHERE job_type = ? ORDER BY id", (job_type,))
        return {r["hostname"]: r["id"] for r in rows if r["id"] in alive}

    def _wait_new_job(self, job_type: str, after_id: int, deadline: float) -> int:
        def probe() -> int | None:
            ids = [i for i in self._running_job_ids(job_type) if i > after_id]
            return ids[-1] if ids else None

        return self._poll(f"a new running {job_type} (id > {after_id})", probe, deadline)

    def triggerer_job_id(self) -> int | None:
        """Job id of the newest live triggerer (what ``trigger.triggerer_id`` points to), or None.

        Live means a heartbeat within ``triggerer_health_check_threshold``, Airflow's own rule.
        """
        ids = self._running_job_ids("TriggererJob", self.triggerer_health_check_threshold)
        return ids[-1] if ids else None

    def _expected_dag_files(self) -> list[str]:
        files = []
        for path in sorted(self.dags_folder.rglob("*.py")):
            text = path.read_text(errors="replace").lower()
            # Airflow's own safe-mode heuristic: files without both words are never parsed.
            if "airflow" in text and "dag" in text:
                files.append(path.relative_to(self.dags_folder).as_posix())
        return files

    def wait_for_dags_parsed(self, timeout: float = 60.0) -> list[str]:
        """Wait until every DAG file is parsed; raise with the traceback of any import error.

        Returns the dag ids found. A file counts as parsed once a ``dag`` row points to it.
        """
        expected = self._expected_dag_files()

        def probe() -> list[str] | None:
            errors = self._query("SELECT filename, stacktrace FROM import_error")
            if errors:
                text = "\n".join(f"{e['filename']}:\n{e['stacktrace']}" for e in errors)
                raise AirflowClusterError(f"DAG import errors:\n{text}")
            rows = self._query("SELECT dag_id, relative_fileloc FROM dag WHERE NOT is_stale")
            parsed = {r["relative_fileloc"] for r in rows}
            if all(f in parsed for f in expected):
                serialized = {r["dag_id"] for r in self._query("SELECT dag_id FROM serialized_dag")}
                ids = sorted(r["dag_id"] for r in rows)
                if all(d in serialized for d in ids):
                    return ids
            return None

        try:
            return self._poll("DAG files to be parsed", probe, time.monotonic() + timeout, interval=0.5)
        except AirflowClusterError as err:
            if "timed out" not in str(err):
                raise
            rows = self._query("SELECT dag_id, relative_fileloc, is_stale FROM dag")
            raise AirflowClusterError(
                f"{err}: expected files {expected}, dag rows {rows}\n{self._tail(DAG_PROCESSOR, 6000)}"
            ) from None

    # --------------------------------------------------------------- actions

    def admin_credentials(self, timeout: float = 60.0) -> tuple[str, str]:
        """``(username, password)`` of SimpleAuthManager's ``admin`` user (``rest_api=True``), e.g. for a
        browser test that signs in through the real login page. The api-server generates the password at
        its first start; this waits for that file."""
        if not self.rest_api:
            raise AirflowClusterError("start the cluster with rest_api=True to have an admin user")
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        self._poll("the generated admin password", lambda: passwords.exists() or None, time.monotonic() + timeout)
        return "admin", str(json.loads(passwords.read_text())["admin"])

    def rest(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
        """Call Airflow's REST API (``/api/v2`` + ``path``) as the ``admin`` user, as the UI does for its actions.
        Needs ``rest_api=True``. Returns ``(status, decoded JSON or text)``."""
        if not self.rest_api:
            raise AirflowClusterError("start the cluster with rest_api=True to use its REST API")
        if self._rest_token is None:
            username, password = self.admin_credentials(timeout)
            login = json.dumps({"username": username, "password": password})
            request = urllib.request.Request(
                f"{self.api_url}/auth/token", data=login.encode(), headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                self._rest_token = json.load(reply)["access_token"]
        request = urllib.request.Request(
            f"{self.api_url}/api/v2{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._rest_token}"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                status, text = reply.status, reply.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def unpause(self, dag_id: str) -> None:
        """Unpause a parsed DAG (a direct DB update; the scheduler reads it on its next loop)."""
        if self._execute("UPDATE dag SET is_paused = ? WHERE dag_id = ?", (False, dag_id)) != 1:
            raise AirflowClusterError(f"DAG {dag_id!r} is not in the database (parsed: {self.dag_ids()})")

    def dag_ids(self) -> list[str]:
        return [r["dag_id"] for r in self._query("SELECT dag_id FROM dag ORDER BY dag_id")]

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Create a manual run with ``airflow dags trigger`` and return its run id.

        Such runs have no logical date in Airflow 3 (``{{ ds }}`` is undefined); ``run_after`` is now.
        """
        run_id = run_id or f"e2e__{time.strftime('%Y%m%dT%H%M%S')}__{uuid.uuid4().hex[:8]}"
        args = ["dags", "trigger", dag_id, "--run-id", run_id, "--output", "json"]
        if conf is not None:
            args += ["--conf", json.dumps(dict(conf))]
        self._warm_run(*args)
        if not self._query("SELECT 1 FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)):
            raise AirflowClusterError(f"`airflow dags trigger {dag_id}` did not create run {run_id}")
        return run_id

    # ----------------------------------------------------------- observation

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self._query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
        return rows[0]["state"] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 60.0) -> str:
        """Wait until the run is ``success`` or ``failed`` and return that state."""

        def probe() -> str | None:
            state = self.run_state(dag_id, run_id)
            return state if state in TERMINAL_RUN_STATES else None

        try:
            return self._poll(f"run {dag_id}/{run_id} to finish", probe, time.monotonic() + timeout, 0.5)
        except AirflowClusterError as err:
            raise AirflowClusterError(f"{err}: {self._run_summary(dag_id, run_id)}") from None

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}``; mapped task instances appear as ``task_id[map_index]``."""
        rows = self._query(
            "SELECT task_id, map_index, state FROM task_instance WHERE dag_id = ? AND run_id = ? "
            "ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
        return {_ti_key(r["task_id"], r["map_index"]): r["state"] for r in rows}

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """The raw ``task_instance`` row (``state``, ``try_number``, ``trigger_id``, ``next_method`` ...)."""
        rows = self._query(
            "SELECT * FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?",
            (dag_id, run_id, task_id, map_index),
        )
        if not rows:
            raise AirflowClusterError(f"no task instance {dag_id}/{run_id}/{task_id}[{map_index}]")
        return rows[0]

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        state: str | Iterable[str],
        timeout: float = 60.0,
        map_index: int = -1,
    ) -> str:
        """Wait until the task instance is in ``state`` (or one of them); return the state reached.

        Fails fast if the task reaches a different terminal state instead.
        """
        wanted = {state} if isinstance(state, str) else set(state)

        def probe() -> str | None:
            rows = self._query(
                "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ? AND map_index = ?",
                (dag_id, run_id, task_id, map_index),
            )
            current = rows[0]["state"] if rows else None
            if current in wanted:
                return current
            if current in TERMINAL_TI_STATES:
                raise AirflowClusterError(
                    f"task {task_id} ended {current!r} while waiting for {sorted(wanted)}: "
                    f"{self._run_summary(dag_id, run_id)}"
                )
            return None

        what = f"task {dag_id}/{run_id}/{task_id} to be {sorted(wanted)}"
        try:
            return self._poll(what, probe, time.monotonic() + timeout, 0.3)
        except AirflowClusterError as err:
            if "timed out" not in str(err):
                raise
            raise AirflowClusterError(f"{err}: {self._run_summary(dag_id, run_id)}") from None

    def deferral_events(self, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Audit-log rows written by the execution API each time the task instance deferred.

        ``PATCH /execution/task-instances/{id}/state`` with a deferred payload creates the
        ``trigger`` row, sets ``task_instance.state = 'deferred'`` and adds a ``log`` row with
        ``event = 'deferred'``. Trigger rows are deleted once consumed and the TI's
        ``trigger_id``/``next_method`` are cleared on completion, so the log rows are the only
        evidence that survives the run.
        """
        return self._query(
            "SELECT id, dttm, try_number, map_index, extra FROM log WHERE dag_id = ? AND run_id = ? "
            "AND task_id = ? AND event = 'deferred' ORDER BY id",
            (dag_id, run_id, task_id),
        )

    def task_went_through_deferred(self, dag_id: str, run_id: str, task_id: str) -> bool:
        """True if the task instance deferred at least once (see :meth:`deferral_events`)."""
        return bool(self.deferral_events(dag_id, run_id, task_id))

    def trigger_for_task(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict | None:
        """The live ``trigger`` row (``id``, ``classpath``, ``kwargs``, ``triggerer_id``) of a deferred TI."""
        rows = self._query(
            "SELECT t.* FROM trigger t JOIN task_instance ti ON ti.trigger_id = t.id "
            "WHERE ti.dag_id = ? AND ti.run_id = ? AND ti.task_id = ? AND ti.map_index = ?",
            (dag_id, run_id, task_id, map_index),
        )
        return rows[0] if rows else None

    def wait_for_trigger_assigned(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        timeout: float = 30.0,
        triggerer_id: int | None = None,
        map_index: int = -1,
    ) -> dict:
        """Wait until the task's trigger is assigned to a triggerer (``triggerer_id`` if given)."""

        def probe() -> dict | None:
            row = self.trigger_for_task(dag_id, run_id, task_id, map_index)
            if row is None or row["triggerer_id"] is None:
                return None
            if triggerer_id is not None and row["triggerer_id"] != triggerer_id:
                return None
            return row

        what = f"the trigger of {task_id} to be assigned to triggerer {triggerer_id or '(any)'}"
        try:
            return self._poll(what, probe, time.monotonic() + timeout, 0.2)
        except AirflowClusterError as err:
            raise AirflowClusterError(
                f"{err}: trigger={self.trigger_for_task(dag_id, run_id, task_id, map_index)}, "
                f"{self._run_summary(dag_id, run_id)}"
            ) from None

    def xcom_values(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """``{task_id: {key: value}}`` (values JSON-decoded; mapped tasks as ``task_id[map_index]``)."""
        rows = self._query(
            "SELECT task_id, map_index, key, value FROM xcom WHERE dag_id = ? AND run_id = ? "
            "ORDER BY task_id, map_index, key",
            (dag_id, run_id),
        )
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            value = r["value"]
            if isinstance(value, bytes):
                value = value.decode()
            if self.is_sqlite:  # PostgreSQL's JSON column arrives decoded already
                with contextlib.suppress(TypeError, ValueError):
                    value = json.loads(value)
            out.setdefault(_ti_key(r["task_id"], r["map_index"]), {})[r["key"]] = value
        return out

    def task_log_files(self, dag_id: str | None = None) -> list[Path]:
        """Task and trigger log files under ``<home>/logs`` (optionally of one DAG)."""
        root = self.logs_folder / f"dag_id={dag_id}" if dag_id else self.logs_folder
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    def trigger_logs(self, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
        """``{triggerer job id: text}`` of the trigger log files the triggerer(s) wrote for a task.

        The triggerer writes ``.../task_id=<t>/attempt=<n>.log.trigger.<triggerer job id>.log``: a
        file named after a triggerer's job id is proof that trigger code ran in that process.
        """
        task_dir = self.logs_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        out: dict[int, str] = {}
        for path in sorted(task_dir.rglob("*.log.trigger.*.log")) if task_dir.exists() else []:
            job_id = path.name.rsplit(".log.trigger.", 1)[1].removesuffix(".log")
            if job_id.isdigit():
                out[int(job_id)] = out.get(int(job_id), "") + path.read_text(errors="replace")
        return out

    def wait_for_trigger_log(
        self, dag_id: str, run_id: str, task_id: str, triggerer_id: int, text: str, timeout: float = 30.0
    ) -> str:
        """Wait until triggerer ``triggerer_id`` logged ``text`` for the task's trigger; return the log."""

        def probe() -> str | None:
            log = self.trigger_logs(dag_id, run_id, task_id).get(triggerer_id, "")
            return log if text in log else None

        return self._poll(
            f"{text!r} in the trigger log of triggerer {triggerer_id}", probe, time.monotonic() + timeout, 0.2
        )

    def process_log(self, name: str) -> str:
        path = self.process_logs_folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def dump_logs(self, max_chars_per_file: int | None = None) -> str:
        """All process logs and task/trigger logs under the home, for failure output and leak searches."""
        files = sorted(self.process_logs_folder.glob("*.log")) + self.task_log_files()
        parts = []
        for path in files:
            text = path.read_text(errors="replace")
            if max_chars_per_file is not None and len(text) > max_chars_per_file:
                text = f"[... {len(text) - max_chars_per_file} chars cut ...]\n" + text[-max_chars_per_file:]
            parts.append(f"===== {path.relative_to(self.home)} =====\n{text}")
        return "\n".join(parts)

    # ------------------------------------------------------------- internals

    def _tail(self, name: str, chars: int) -> str:
        return f"--- {name}.log (tail) ---\n{self.process_log(name)[-chars:]}"

    def _run_summary(self, dag_id: str, run_id: str) -> str:
        paused = self._query("SELECT is_paused FROM dag WHERE dag_id = ?", (dag_id,))
        return (
            f"run state={self.run_state(dag_id, run_id)!r}, "
            f"dag paused={bool(paused[0]['is_paused']) if paused else 'unknown dag'}, "
            f"tasks={self.task_states(dag_id, run_id)}"
        )

    @contextlib.contextmanager
    def _connect(self) -> Any:
        # Autocommit and a fresh connection per call: never hold a read transaction that would
        # block Airflow's writers. The DB is in WAL mode (Airflow sets it), so reads do not block.
        conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def _execute(self, sql: str, params: tuple = ()) -> int:
        """Run one write statement (autocommit); return the number of rows it changed."""
        if not self.is_sqlite:
            return _pg_run(self.database_url or "", sql, params, fetch=False)
        with self._connect() as conn:
            return int(conn.execute(sql, params).rowcount)

    def query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        """Read the metadata DB: ``?`` placeholders, rows as dicts (SQLite or PostgreSQL alike)."""
        return self._query(sql, params)

    def _query(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        if not self.is_sqlite:
            return _pg_run(self.database_url or "", sql, params, fetch=True)
        if not self.db_path.exists():
            return []
        for attempt in range(20):
            try:
                with self._connect() as conn:
                    return [dict(r) for r in conn.execute(sql, params).fetchall()]
            except sqlite3.OperationalError as err:
                retryable = "locked" in str(err) or "no such table" in str(err)
                if not retryable or attempt == 19:
                    raise
                time.sleep(0.1)
        return []


def _numbered(kind: str, index: int) -> str:
    """``scheduler``, ``scheduler-2``, ...: the first process of a kind keeps the plain name."""
    return kind if index == 1 else f"{kind}-{index}"


_PG_CONNECTIONS: dict[str, Any] = {}
_PG_LOCK = threading.Lock()


def _pg_run(database_url: str, sql: str, params: tuple, *, fetch: bool) -> Any:
    """One autocommit statement on a cached psycopg2 connection (reconnects once if it broke)."""
    import psycopg2
    import psycopg2.extras

    dsn = "postgresql://" + database_url.split("://", 1)[1]  # postgresql+psycopg2://... -> libpq form
    sql = sql.replace("%", "%%").replace("?", "%s")  # qmark style, like sqlite3; literal % (LIKE) escaped
    with _PG_LOCK:
        for attempt in range(2):
            conn = _PG_CONNECTIONS.get(database_url)
            if conn is None or conn.closed:
                conn = psycopg2.connect(dsn, connect_timeout=30)
                conn.autocommit = True
                _PG_CONNECTIONS[database_url] = conn
            try:
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    cur.execute(sql, params)
                    return [dict(r) for r in cur.fetchall()] if fetch else cur.rowcount
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                _PG_CONNECTIONS.pop(database_url, None)
                with contextlib.suppress(Exception):
                    conn.close()
                if attempt == 1:
                    raise
    raise AssertionError("unreachable")


def close_pg_connections() -> None:
    """Close the harness's observation connections (call before the PostgreSQL server stops)."""
    with _PG_LOCK:
        for conn in _PG_CONNECTIONS.values():
            with contextlib.suppress(Exception):
                conn.close()
        _PG_CONNECTIONS.clear()


def _ti_key(task_id: str, map_index: int) -> str:
    return task_id if map_index in (-1, None) else f"{task_id}[{map_index}]"


def _utc(value: str | datetime) -> datetime:
    """Parse a DB timestamp (naive UTC strings in SQLite; psycopg2 returns datetimes)."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")


def _checkpoint(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid``, plus any process still in the session ``pid`` leads.

    Every process the harness starts leads its own session (``start_new_session``), so session
    members that were re-parented (their parent died first) are found too.
    """
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        found = []
    pids = {p.pid for p in found}
    for candidate in psutil.process_iter():
        if candidate.pid in pids or candidate.pid == pid:
            continue
        with contextlib.suppress(OSError):
            if os.getsid(candidate.pid) == pid:
                found.append(candidate)
    return found


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_tree(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal ``proc``'s process group, every descendant and its session (some sit in process groups of their own)."""
    children = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(sig)
