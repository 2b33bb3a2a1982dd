"""The Airflow side of `make demo`: real Airflow processes, their output in one log file, and a REST client.

Every process leads its own session, so stopping reaches everything it started (task runners sit in
process groups of their own inside that session) and a Ctrl-C in the terminal reaches only the demo,
which then stops them in order.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
import psutil


class DemoError(Exception):
    """What went wrong, in words for the person running the demo (printed, then the demo exits 1)."""


class ProcessLog:
    """Airflow's own output: every line to one file, prefixed with its process; also to the terminal when verbose."""

    def __init__(self, path: Path, verbose: bool) -> None:
        self.path = path
        self._verbose = verbose
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._tails: dict[str, collections.deque[str]] = {}
        self._pumps: list[threading.Thread] = []

    def write(self, name: str, line: str) -> None:
        text = f"{name:<13} | {line.rstrip()}\n"
        with self._lock:
            self._tails.setdefault(name, collections.deque(maxlen=40)).append(line.rstrip())
            if self._file.closed:
                return
            self._file.write(text)
            self._file.flush()
            if self._verbose:
                sys.stdout.write(text)
                sys.stdout.flush()

    def pump(self, name: str, stream: IO[bytes]) -> threading.Thread:
        """Copy ``stream`` line by line, in a background thread, until every writer has closed it."""

        def copy() -> None:
            for raw in stream:
                self.write(name, raw.decode("utf-8", errors="replace"))

        pump = threading.Thread(target=copy, name=f"log-{name}", daemon=True)
        pump.start()
        self._pumps.append(pump)
        return pump

    def tail(self, name: str, lines: int = 15) -> str:
        with self._lock:
            return "\n".join(list(self._tails.get(name, ()))[-lines:])

    def close(self) -> None:
        """Copy what the (stopped) processes left in their pipes, then close the file."""
        for pump in self._pumps:
            pump.join(timeout=2.0)
        with self._lock:
            self._file.close()


class AirflowProcesses:
    """``airflow <command>`` processes sharing one environment; ``with`` stops them all on the way out."""

    def __init__(self, env: dict[str, str], log: ProcessLog) -> None:
        self.env = env
        self.log = log
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> threading.Thread:
        """Start ``airflow <args>`` in a session of its own; return the thread copying its output to the log."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.stdout is not None
        self._running[name] = proc
        return self.log.pump(name, proc.stdout)

    def run(self, name: str, *args: str, timeout: float) -> None:
        """Run a command to completion (e.g. ``db migrate``); fail with its last lines if it fails."""
        output = self.start(name, *args)
        try:
            code = self._running[name].wait(timeout)
        except subprocess.TimeoutExpired:
            raise DemoError(f"`airflow {' '.join(args)}` did not finish in {timeout:.0f} s") from None
        del self._running[name]
        output.join(timeout=5.0)
        if code != 0:
            raise DemoError(f"`airflow {' '.join(args)}` exited {code}:\n{self.log.tail(name)}")

    def check_running(self) -> None:
        for name, proc in self._running.items():
            if proc.poll() is not None:
                time.sleep(0.2)
                raise DemoError(
                    f"the Airflow {name} exited (code {proc.returncode}); its last lines:\n{self.log.tail(name)}"
                )

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process group, wait up to ``grace`` s, then SIGKILL whatever is left in their sessions."""
        procs = dict(self._running)
        self._running.clear()
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        started = time.monotonic()
        for name, proc in procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, started + grace - time.monotonic()))
            took = f"exited {proc.returncode}" if proc.returncode is not None else "still running: SIGKILL"
            self.log.write("demo", f"stopping {name}: {took} after {time.monotonic() - started:.1f} s")
        sessions = {proc.pid for proc in procs.values()}
        for leftover in psutil.process_iter():
            with contextlib.suppress(psutil.Error, OSError):
                if leftover.pid != os.getpid() and os.getsid(leftover.pid) in sessions:
                    leftover.kill()
        for proc in procs.values():
            proc.wait()

    def __enter__(self) -> AirflowProcesses:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A second Ctrl-C (or SIGTERM) must not cut the clean-up short and leave processes behind.
        stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in stoppers}
        try:
            self.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class AirflowApi:
    """Airflow's public REST API (``/api/v2``) with a SimpleAuthManager token, as a user's script would call it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=30.0)

    def health(self) -> dict[str, Any] | None:
        """``/api/v2/monitor/health`` (no login needed), or None while the api-server is not answering."""
        try:
            response = self._http.get("/api/v2/monitor/health")
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def warm_up_execution_api(self) -> None:
        self._http.get("/execution/health", timeout=120.0)

    def login(self, username: str, password: str) -> None:
        response = self._http.post("/auth/token", json={"username": username, "password": password})
        response.raise_for_status()
        self._http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v2<path>``; the decoded JSON, or None on 404."""
        try:
            response = self._http.request(method, f"/api/v2{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise DemoError(f"Airflow's REST API did not answer {method} {path}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.is_error:
            raise DemoError(f"Airflow's REST API answered {response.status_code} to {method} {path}: {response.text}")
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def close(self) -> None:
        self._http.close()
