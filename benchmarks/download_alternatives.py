"""Ways to close the gap between ``api/download.py`` and curl, measured in the same run.

Not part of the benchmark suite's goals; it backs the design choice in README.md (section 3). Each
variant downloads the same emulator output (emulator in its own process) into tmpfs in a fresh
interpreter, alternating with ``curl -o``, best of ``--repeats``. Variants:

* ``current``: ``api.download.download()`` as the operator uses it (httpx sends the request; the
  body is read with ``recv_into`` from the connection's socket into one reusable 1 MiB buffer);
* ``httpx 64KiB (before)``: the previous ``download()`` loop: ``iter_raw()`` over httpcore's 64 KiB reads;
* ``iter_raw(1MiB)``: the same with ``iter_raw(chunk_size=1 MiB)`` (re-chunks; the socket reads stay 64 KiB);
* ``read=256KiB`` / ``read=1MiB``: the same with httpcore's ``HTTP11Connection.READ_NUM_BYTES`` raised
  (a class attribute: process-wide, shown only to locate the cost);
* ``ranges=K``: K parallel ``Range`` requests (threads, shared ``httpx.Client``), ``os.pwrite`` per part;
* ``http.client readinto``: stdlib, ``readinto`` a 1 MiB buffer (a floor for Python's own cost);
* ``urllib3 readinto``: the same through ``urllib3.PoolManager`` (already installed with Airflow via
  ``requests``; keeps TLS verification, proxies from the environment and redirects).

    .venv/bin/python benchmarks/download_alternatives.py [--size BYTES] [--parallel K] [--repeats N] [--variants ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common as common

VARIANTS = (
    "current",
    "httpx 64KiB (before)",
    "iter_raw(1MiB)",
    "read=256KiB",
    "read=1MiB",
    "ranges=2",
    "ranges=4",
    "http.client readinto",
    "urllib3 readinto",
)
MB = 1000 * 1000


class _FileSink:
    def __init__(self, path: str) -> None:
        self.fh = open(path, "wb")  # noqa: SIM115 - closed by the caller

    def write(self, data: bytes) -> None:
        self.fh.write(data)

    def restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()


def _ranged(url: str, path: str, parts: int) -> int:
    import httpx

    with httpx.Client(timeout=60, limits=httpx.Limits(max_connections=parts)) as http:
        size = int(http.head(url, headers={"Accept-Encoding": "identity"}).headers["content-length"])
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(fd, size)
        step = -(-size // parts)
        errors: list[BaseException] = []

        def fetch(start: int, end: int) -> None:
            try:
                headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
                with http.stream("GET", url, headers=headers) as reply:
                    if reply.status_code != 206:
                        raise RuntimeError(f"expected 206, got {reply.status_code}")
                    offset = start
                    for chunk in reply.iter_raw():
                        os.pwrite(fd, chunk, offset)
                        offset += len(chunk)
                    if offset != end:
                        raise RuntimeError(f"part {start}-{end} stopped at {offset}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(s, min(s + step, size))) for s in range(0, size, step)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        os.close(fd)
        if errors:
            raise errors[0]
        return size


def _http_client(url: str, path: str) -> int:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", parts.path, headers={"Accept-Encoding": "identity"})
    reply = conn.getresponse()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    with open(path, "wb") as fh:
        while True:
            n = reply.readinto(buf)
            if not n:
                break
            fh.write(view[:n])
            total += n
    conn.close()
    return total


_POOL: Any = None
_HTTPX: Any = None


def _httpx_client() -> Any:
    """One httpx client shared by every thread, as ``store_outputs`` shares its ``WaveSpeedClient``'s (a
    client each would also load an SSL context each: ~30 ms of CPU apiece, counted against the variant)."""
    import httpx

    global _HTTPX
    if _HTTPX is None:
        _HTTPX = httpx.Client(timeout=60)
    return _HTTPX


def _urllib3(url: str, path: str) -> int:
    import urllib3

    global _POOL
    if _POOL is None:
        _POOL = urllib3.PoolManager(maxsize=16)
    reply = _POOL.request("GET", url, headers={"Accept-Encoding": "identity"}, preload_content=False, timeout=60)
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    with open(path, "wb") as fh:
        while True:
            n = reply.readinto(buf)
            if not n:
                break
            fh.write(view[:n])
            total += n
    reply.release_conn()
    return total


def _one(variant: str, url: str, path: str) -> int:
    from airflow_provider_wavespeed.api.download import download
    from airflow_provider_wavespeed.api.retry import RetryPolicy

    if variant.startswith("ranges="):
        return _ranged(url, path, int(variant.split("=")[1]))
    if variant == "http.client readinto":
        return _http_client(url, path)
    if variant == "urllib3 readinto":
        return _urllib3(url, path)
    if variant in ("httpx 64KiB (before)", "iter_raw(1MiB)"):
        with open(path, "wb") as fh:
            size = 0
            with _httpx_client().stream("GET", url, headers={"Accept-Encoding": "identity"}) as reply:
                for chunk in reply.iter_raw(None if variant.startswith("httpx") else 1 << 20):
                    fh.write(chunk)
                    size += len(chunk)
            return size
    sink = _FileSink(path)
    try:
        return download(_httpx_client(), url, sink, retry=RetryPolicy()).size
    finally:
        sink.fh.close()


def worker(payload: str) -> None:
    cfg = json.loads(payload)
    variant, urls, dest = cfg["variant"], cfg["urls"], cfg["dest"]
    import httpcore

    if variant.startswith("read="):
        kib = int(variant.split("=")[1].removesuffix("KiB").replace("1MiB", "1024"))
        httpcore._sync.http11.HTTP11Connection.READ_NUM_BYTES = kib * 1024
    paths = [os.path.join(dest, f"out_{i}.bin") for i in range(len(urls))]
    gc.collect()
    rss0 = common.rss_bytes()
    common.reset_peak_rss()
    cpu0 = time.process_time()
    started = time.perf_counter()
    errors: list[BaseException] = []

    def run(url: str, path: str) -> None:
        try:
            _one(variant, url, path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(urls, paths, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(900)
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "cpu_s": time.process_time() - cpu0,
                "bytes": sum(os.path.getsize(p) for p in paths),
                "peak_growth_mb": (common.peak_rss_bytes() - rss0) / 2**20,
            }
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1 << 30, help="bytes per output")
    parser.add_argument("--parallel", type=int, default=1, help="outputs fetched at once (threads; curl --parallel)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    common.print_machine()
    total = args.size * args.parallel
    best: dict[str, dict[str, Any]] = {}
    curl_best: list[float] = []
    with common.EmulatorProcess(queue_seconds=0.0, run_seconds=0.0, output_size=args.size) as emulator:
        ids = [emulator.submit()["id"] for _ in range(args.parallel)]
        time.sleep(0.1)
        urls = [emulator.result(pid)["outputs"][0] for pid in ids]
        for rnd in range(args.repeats):
            for variant in args.variants:
                for who in ("curl", variant) if rnd % 2 == 0 else (variant, "curl"):
                    dest = Path(tempfile.mkdtemp(prefix="bench-alt-", dir="/dev/shm"))
                    try:
                        if who == "curl":
                            cmd = ["curl", "-sS", "--no-progress-meter", "--fail"]
                            if args.parallel > 1:
                                cmd += ["--parallel", "--parallel-max", str(args.parallel)]
                            for i, url in enumerate(urls):
                                cmd += ["-o", str(dest / f"curl_{i}.bin"), url]
                            started = time.perf_counter()
                            subprocess.run(cmd, check=True, timeout=600)
                            curl_best.append(time.perf_counter() - started)
                            continue
                        payload = {"variant": variant, "urls": urls, "dest": str(dest)}
                        result = common.run_worker(__file__, payload, 900)
                    finally:
                        shutil.rmtree(dest, ignore_errors=True)
                    if result["bytes"] != total:
                        raise RuntimeError(f"{variant}: {result['bytes']} bytes, expected {total}")
                    print(
                        f"  {variant:<22} {total / result['seconds'] / MB:6.0f} MB/s  cpu {result['cpu_s']:.2f} s"
                        f"  peak RSS +{result['peak_growth_mb']:.1f} MB  (curl best so far "
                        f"{total / min(curl_best) / MB:.0f} MB/s)",
                        flush=True,
                    )
                    if variant not in best or result["seconds"] < best[variant]["seconds"]:
                        best[variant] = result
    curl_mb_s = total / min(curl_best) / MB
    rows = [["curl -o" + (" --parallel" if args.parallel > 1 else ""), curl_mb_s, "1.00x", "-", "-"]]
    for variant in args.variants:
        r = best[variant]
        mb_s = total / r["seconds"] / MB
        rows.append([variant, mb_s, f"{mb_s / curl_mb_s:.2f}x", r["cpu_s"], r["peak_growth_mb"]])
    common.print_table(
        f"Download alternatives, {args.parallel} x {args.size / MB:.0f} MB into tmpfs (best of {args.repeats}; "
        "ratio vs best curl of the run)",
        ["variant", "MB/s", "vs curl", "CPU s", "peak RSS +MB"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
