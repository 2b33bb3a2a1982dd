"""Private PostgreSQL and Redis servers on 127.0.0.1 for the production-shaped cluster tests.

Both run from the Debian packages (``scripts/install-test-services.sh`` installs them), in a
throw-away directory, on a free port, without persistence, and are stopped by ``stop()`` (also
registered with :mod:`atexit`). No pytest dependency; fixtures live in ``conftest.py``.

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user, with its
data directory and unix socket in a temporary folder that user owns.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def _newest_pg_bin() -> Path:
    """``/usr/lib/postgresql/<newest version>/bin`` (Debian/Ubuntu layout); 15 on Debian bookworm."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = Path(os.environ.get("WAVESPEED_TEST_PG_BIN") or _newest_pg_bin())
REDIS_SERVER = os.environ.get("WAVESPEED_TEST_REDIS_SERVER", "redis-server")
INSTALL_HINT = "run scripts/install-test-services.sh (apt: postgresql, redis-server)"


class ServiceError(RuntimeError):
    """A test service could not be started."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def missing_services() -> list[str]:
    """What ``install-test-services.sh`` would install; empty when both servers are available."""
    missing = []
    if not (PG_BIN / "postgres").exists() or not (PG_BIN / "initdb").exists():
        missing.append(f"PostgreSQL server ({PG_BIN}/postgres)")
    elif os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            missing.append("the 'postgres' user (PostgreSQL refuses to run as root)")
    if shutil.which(REDIS_SERVER) is None:
        missing.append("redis-server")
    return missing


class _Service:
    name = "service"

    def __init__(self) -> None:
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log: Any = None
        self._atexit = False

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / f"{self.name}.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def _popen(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killpg reaches its children
            **kwargs,
        )

    def _register(self) -> None:
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True

    def _wait(self, what: str, probe: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            if probe():
                return
            if time.monotonic() >= deadline:
                raise ServiceError(f"timed out waiting for {what}:\n{self.log_text()[-4000:]}")
            time.sleep(0.2)

    def _terminate(self, sig: int, grace: float) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace)
        # Whatever is left of the group (the server's own children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop(self) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        self.proc = None
        if self._atexit:
            atexit.unregister(self.stop)
            self._atexit = False


class PostgresServer(_Service):
    """``postgres`` on 127.0.0.1:<free port>, trust auth, fsync off, with one database ``airflow``.

    >>> server = PostgresServer().start()
    >>> server.url  # postgresql+psycopg2://postgres@127.0.0.1:<port>/airflow
    """

    name = "postgres"

    def __init__(self, database: str = "airflow", max_connections: int = 300) -> None:
        super().__init__()
        self.database = database
        self.max_connections = max_connections

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg2 driver); Airflow derives its asyncpg engine from it."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run_as(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam("postgres")
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 90.0) -> PostgresServer:
        if self.proc is not None:
            raise ServiceError("postgres is already running")
        self._register()
        # Not under pytest's tmp_path: that is private to root (0700), the postgres user could not enter it.
        self.root = Path(tempfile.mkdtemp(prefix="wavespeed-test-pg-"))
        data, sockets = self.root / "data", self.root / "sockets"
        sockets.mkdir()
        as_user = self._run_as()
        if as_user:
            for path in (self.root, sockets):
                os.chown(path, as_user["user"], as_user["group"])
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        try:
            init = subprocess.run(
                [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                **as_user,
            )
            if init.returncode != 0:
                raise ServiceError(f"initdb failed ({init.returncode}):\n{init.stdout}\n{init.stderr}")
            self.port = free_port()
            settings = {
                "listen_addresses": "127.0.0.1",
                "port": str(self.port),
                "unix_socket_directories": str(sockets),
                "max_connections": str(self.max_connections),
                "shared_buffers": "64MB",
                # A throw-away test DB: durability off, nothing to recover after a crash.
                "fsync": "off",
                "synchronous_commit": "off",
                "full_page_writes": "off",
                "logging_collector": "off",
            }
            cmd = [str(PG_BIN / "postgres"), "-D", str(data)]
            for key, value in settings.items():
                cmd += ["-c", f"{key}={value}"]
            self.proc = self._popen(cmd, cwd=self.root, env=env, **as_user)
            self._wait(f"postgres on port {self.port}", self._accepts_connections, timeout)
            self._sql(f'CREATE DATABASE "{self.database}"', database="postgres")
        except BaseException:
            self.stop()
            raise
        return self

    def _sql(self, statement: str, database: str | None = None) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database or self.database, connect_timeout=10
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def _accepts_connections(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(
                host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=2
            ).close()
        except psycopg2.OperationalError:
            return False
        return True

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT: no checkpoint, nothing to keep), then remove the data."""
        self._terminate(signal.SIGQUIT, grace=10)
        self._cleanup()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


class RedisServer(_Service):
    """``redis-server`` on 127.0.0.1:<free port>, no persistence, no unix socket."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> RedisServer:
        if self.proc is not None:
            raise ServiceError("redis is already running")
        self._register()
        self.root = Path(tempfile.mkdtemp(prefix="wavespeed-test-redis-"))
        self.port = free_port()
        cmd = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--protected-mode",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]
        try:
            self.proc = self._popen(cmd, cwd=self.root)
            self._wait(f"redis on port {self.port}", self.ping, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        self._terminate(signal.SIGTERM, grace=5)
        self._cleanup()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
