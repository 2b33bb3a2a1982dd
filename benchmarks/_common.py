"""Shared helpers for the benchmarks: the emulator in its own process, machine facts, RSS, tables.

Every benchmark runs the WaveSpeed emulator as a separate process (``python -m
airflow_provider_wavespeed.emulator``) so that its CPU never counts against the client being
measured, talks to it only on 127.0.0.1, and measures candidate and baseline in the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "ws-bench-key"
AVATAR = "wavespeed-ai/hunyuan-avatar"  # video model: 5 s default minimum poll interval
FLUX = "wavespeed-ai/flux-dev"  # image model: 2 s default minimum poll interval
AVATAR_INPUTS = {"image": "https://example.com/face.png", "audio": "https://example.com/voice.mp3"}
FLUX_INPUTS = {"prompt": "a lighthouse at dusk"}
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_BANNER = re.compile(r"listening on (http://\S+)")


# -- the emulator in a separate process ----------------------------------------------------------


class EmulatorProcess:
    """``python -m airflow_provider_wavespeed.emulator`` on a free loopback port (port 0, read from its banner)."""

    def __init__(self, **switches: Any) -> None:
        self.switches = {"balance": 1e9, **switches}
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.port = 0
        self.api_key = API_KEY
        self._stderr = None

    def start(self) -> EmulatorProcess:
        cmd = [
            PYTHON,
            "-m",
            "airflow_provider_wavespeed.emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--api-key",
            self.api_key,
            "--balance",
            "1000000000",
        ]
        self._stderr = open(os.devnull, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, cwd=REPO)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = _BANNER.search(line)
            if match:
                self.base_url = match.group(1)
                self.port = int(self.base_url.rsplit(":", 1)[1])
                break
            if not line and self.proc.poll() is not None:
                break
        if not self.base_url:
            self.stop()
            raise RuntimeError(f"emulator did not start (last line {line!r})")
        self.configure(**self.switches)
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- HTTP helpers (blocking, stdlib only: cheap to import in workers) -----------------------------

    def _call(self, method: str, path: str, body: Any = None, auth: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())["data"]

    def configure(self, **switches: Any) -> None:
        self._call("POST", "/_emulator/config", switches)

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_emulator/stats")

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset", {})
        self.configure(**self.switches)

    def submit(self, model: str = AVATAR, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        body = inputs if inputs is not None else (AVATAR_INPUTS if model == AVATAR else FLUX_INPUTS)
        return self._call("POST", f"/api/v3/{model}", body, auth=True)

    def submit_many(self, count: int, model: str = AVATAR) -> list[str]:
        """Submit ``count`` predictions over one keep-alive connection; returns their ids."""
        import httpx

        body = AVATAR_INPUTS if model == AVATAR else FLUX_INPUTS
        headers = {"Authorization": f"Bearer {self.api_key}"}
        ids = []
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=30) as client:
            for _ in range(count):
                reply = client.post(f"/api/v3/{model}", json=body)
                reply.raise_for_status()
                ids.append(reply.json()["data"]["id"])
        return ids

    def result(self, prediction_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v3/predictions/{prediction_id}/result", auth=True)

    def connection_json(self) -> str:
        return json.dumps(
            {"conn_type": "wavespeed", "password": self.api_key, "host": self.base_url}, separators=(",", ":")
        )


def make_test_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a leaf certificate for 127.0.0.1 (EC P-256). Returns (ca.pem, leaf.pem, leaf.key)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wavespeed-bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, leaf_path, key_path = directory / "ca.pem", directory / "leaf.pem", directory / "leaf.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, leaf_path, key_path


class TlsFront:
    """``benchmarks/_tls_front.py`` in its own process: HTTPS on a free loopback port in front of ``target_port``.

    Clients trust it through ``SSL_CERT_FILE=<ca_file>`` (httpx and OpenSSL's default paths honour it).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.port = 0
        self._dir: str | None = None
        self.ca_file = ""

    def start(self) -> TlsFront:
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="bench-tls-")
        ca, leaf, key = make_test_ca(Path(self._dir))
        self.ca_file = str(ca)
        script = Path(__file__).resolve().parent / "_tls_front.py"
        cmd = [PYTHON, str(script), "--target-port", str(self.target_port), "--cert", str(leaf), "--key", str(key)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (https://\S+)", line)
        if not match:
            self.stop()
            raise RuntimeError(f"TLS front did not start (got {line!r})")
        self.base_url = match.group(1)
        self.port = int(self.base_url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        import shutil

        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> TlsFront:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.loads(reply.read())["data"]


# -- memory --------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process right now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so :func:`peak_rss_bytes` measures from now (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since start or since the last :func:`reset_peak_rss`."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RssSampler:
    """Samples RSS every ``period`` seconds in a thread; a cross-check for the kernel's VmHWM."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.period)

    def __enter__(self) -> RssSampler:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, rss_bytes())


# -- the machine ---------------------------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def machine_info() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "airflow": _version("apache-airflow"),
        "httpx": _version("httpx"),
        "httpcore": _version("httpcore"),
        "providers-http": _version("apache-airflow-providers-http"),
        "aiohttp": _version("aiohttp"),
    }


def provider_revision() -> str:
    """The provider source measured: git commit plus how many of its files differ from it (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "airflow_provider_wavespeed"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head or 'unknown'}" + (f" + {len(dirty)} uncommitted file(s)" if dirty else "")


def print_machine() -> None:
    info = machine_info()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    print(f"provider source: {provider_revision()}", flush=True)


# -- output --------------------------------------------------------------------------------------


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A fixed-width text table (also valid Markdown), preceded by ``## <title>``."""
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(f"\n## {title}\n")
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    print(flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def percentile(values: Sequence[float], q: float) -> float:
    """``q`` in [0, 100]; nearest-rank on the sorted values (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def run_worker(script: str, payload: dict[str, Any], timeout: float, env: dict[str, str] | None = None) -> Any:
    """Run ``python <script> --worker <json>`` in a fresh interpreter; its last stdout line is JSON."""
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [PYTHON, script, "--worker", json.dumps(payload)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(("{", "["))]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.splitlines()[-30:])
        raise RuntimeError(f"worker {script} failed (rc={done.returncode}):\n{tail}")
    return json.loads(lines[-1])


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed wall time in seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)
