"""Download: the provider's ``store_outputs`` (what WaveSpeedDownloadOperator runs) vs ``curl -o``.

Both fetch the same emulator output URLs over loopback (emulator in its own process) into the same
directory, alternating, best of ``--repeats``. Two cases:

* one output of ``--size`` bytes (default 1 GiB);
* ``--count`` outputs of ``--each`` bytes (default 10 x 100 MB) at once: ``store_outputs(...,
  max_concurrency=count)`` vs ``curl --parallel``.

``store_outputs`` runs in a fresh interpreter per try; its time excludes interpreter start-up. Its
peak RSS growth is the kernel's high-water mark (``VmHWM`` reset just before the transfer) minus
the RSS before it, cross-checked by a 10 ms sampler. The destination defaults to a tmpfs directory
(``/dev/shm``) so the disk does not hide the transfer path; ``--dest-dir /tmp`` measures a real
disk, where ``store_outputs`` also pays an ``fsync`` that ``curl -o`` does not.

    .venv/bin/python benchmarks/bench_download.py            # 1 GiB and 10 x 100 MB, best of 3
    .venv/bin/python benchmarks/bench_download.py --quick    # 8 MiB and 3 x 2 MiB, once
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

GIB = 1 << 30
MB = 1000 * 1000
GOAL_SHARE_OF_CURL = 0.80
GOAL_PEAK_RSS_MB = 64.0


# -- worker: store_outputs in a fresh interpreter ---------------------------------------------------


def worker(payload: str) -> None:
    cfg = json.loads(payload)
    from airflow_provider_wavespeed.api.client import ClientSettings, WaveSpeedClient
    from airflow_provider_wavespeed.api.models import Prediction
    from airflow_provider_wavespeed.destinations import Destination
    from airflow_provider_wavespeed.output_downloads import store_outputs

    client = WaveSpeedClient(ClientSettings(api_key=cfg["api_key"], base_url=cfg["base_url"]))
    prediction = Prediction.from_api(cfg["prediction"])
    destination = Destination(cfg["dest"])
    destination.prepare()
    gc.collect()
    rss0 = common.rss_bytes()
    exact = common.reset_peak_rss()
    cpu0 = time.process_time()
    with common.RssSampler() as sampler:
        started = time.perf_counter()
        paths = store_outputs(client, prediction, destination, max_concurrency=cfg["max_concurrency"])
        elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    peak = common.peak_rss_bytes() if exact else sampler.peak
    client.close()
    sizes = [os.path.getsize(p) for p in paths]
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "cpu_s": cpu,
                "bytes": sum(sizes),
                "sizes": sizes,
                "peak_growth_mb": (peak - rss0) / 2**20,
                "sampled_growth_mb": (sampler.peak - rss0) / 2**20,
                "peak_source": "VmHWM" if exact else "sampler",
            }
        ),
        flush=True,
    )


# -- orchestrator --------------------------------------------------------------------------------------


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_curl(urls: list[str], dest: Path) -> dict[str, Any]:
    cmd = ["curl", "-sS", "--no-progress-meter", "--fail"]
    if len(urls) > 1:
        cmd += ["--parallel", "--parallel-max", str(len(urls))]
    for i, url in enumerate(urls):
        cmd += ["-o", str(dest / f"curl_{i}.bin"), url]
    cpu0 = _children_cpu()
    started = time.perf_counter()
    subprocess.run(cmd, check=True, timeout=600)
    elapsed = time.perf_counter() - started
    size = sum(os.path.getsize(dest / f"curl_{i}.bin") for i in range(len(urls)))
    return {"seconds": elapsed, "bytes": size, "cpu_s": _children_cpu() - cpu0}


def _run_ours(emulator: common.EmulatorProcess, prediction: dict[str, Any], dest: Path) -> dict[str, Any]:
    payload = {
        "api_key": emulator.api_key,
        "base_url": emulator.base_url,
        "prediction": prediction,
        "dest": str(dest),
        "max_concurrency": max(1, len(prediction["outputs"])),
    }
    return common.run_worker(__file__, payload, timeout=900)


def _case(
    emulator: common.EmulatorProcess, name: str, size: int, count: int, repeats: int, dest_root: Path
) -> dict[str, Any]:
    emulator.configure(output_size=size)
    ids = [emulator.submit()["id"] for _ in range(count)]
    deadline = time.monotonic() + 30
    results = [emulator.result(pid) for pid in ids]
    while any(r["status"] != "completed" for r in results) and time.monotonic() < deadline:
        time.sleep(0.05)
        results = [emulator.result(pid) for pid in ids]
    urls = [r["outputs"][0] for r in results]
    # One "prediction" holding every output, as the download operator sees a multi-output prediction.
    prediction = {**results[0], "id": f"bench{count}x", "outputs": urls, "has_nsfw_contents": [False] * count}
    expected = size * count
    runs: dict[str, list[dict[str, Any]]] = {"curl": [], "ours": []}
    for rnd in range(repeats):
        order = ("curl", "ours") if rnd % 2 == 0 else ("ours", "curl")
        for who in order:
            dest = Path(tempfile.mkdtemp(prefix=f"bench-dl-{who}-", dir=dest_root))
            try:
                result = _run_curl(urls, dest) if who == "curl" else _run_ours(emulator, prediction, dest)
            finally:
                shutil.rmtree(dest, ignore_errors=True)
            if result["bytes"] != expected:
                raise RuntimeError(f"{name}/{who}: got {result['bytes']} bytes, expected {expected}")
            result["mb_s"] = expected / result["seconds"] / MB
            runs[who].append(result)
            extra = f", peak RSS +{result['peak_growth_mb']:.1f} MB" if who == "ours" else ""
            print(
                f"  {name:<14} {who:<5} {result['seconds']:.2f} s  {result['mb_s']:.0f} MB/s"
                f"  cpu {result['cpu_s']:.2f} s{extra}",
                flush=True,
            )
    best_curl = min(runs["curl"], key=lambda r: r["seconds"])
    best_ours = min(runs["ours"], key=lambda r: r["seconds"])
    return {
        "name": name,
        "bytes": expected,
        "curl": best_curl,
        "ours": best_ours,
        "peak_growth_mb": max(r["peak_growth_mb"] for r in runs["ours"]),
        "sampled_growth_mb": max(r["sampled_growth_mb"] for r in runs["ours"]),
        "peak_source": best_ours["peak_source"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 MiB and 3 x 2 MiB, one try each")
    parser.add_argument("--size", type=int, help="bytes of the single output (default 1 GiB)")
    parser.add_argument("--count", type=int, help="outputs downloaded at once (default 10)")
    parser.add_argument("--each", type=int, help="bytes of each concurrent output (default 100 MB)")
    parser.add_argument("--repeats", type=int, help="tries per tool, alternating; best is kept (default 3)")
    parser.add_argument("--dest-dir", help="where files land (default /dev/shm if present, else the temp dir)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    if shutil.which("curl") is None:
        print("curl is not installed: nothing to compare against", file=sys.stderr)
        return 1

    size = args.size or (8 << 20 if args.quick else GIB)
    count = args.count or (3 if args.quick else 10)
    each = args.each or (2 << 20 if args.quick else 100 * MB)
    repeats = args.repeats or (1 if args.quick else 3)
    dest_root = Path(args.dest_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()))
    common.print_machine()
    print(
        f"destination: {dest_root} ({'tmpfs' if str(dest_root).startswith('/dev/shm') else 'as given'}); "
        f"best of {repeats}, alternating",
        flush=True,
    )

    with common.EmulatorProcess(queue_seconds=0.0, run_seconds=0.0) as emulator:
        cases = [
            _case(emulator, f"1 x {size / MB:.0f} MB", size, 1, repeats, dest_root),
            _case(emulator, f"{count} x {each / MB:.0f} MB", each, count, repeats, dest_root),
        ]

    rows, goals = [], []
    for case in cases:
        curl, ours = case["curl"], case["ours"]
        share = ours["mb_s"] / curl["mb_s"]
        rows.append(
            [
                case["name"],
                curl["mb_s"],
                ours["mb_s"],
                f"{share:.2f}x",
                curl["cpu_s"],
                ours["cpu_s"],
                f"{ours['cpu_s'] / curl['cpu_s']:.2f}x",
                case["peak_growth_mb"],
                case["sampled_growth_mb"],
            ]
        )
        goals += [
            [
                case["name"],
                "throughput, store_outputs / curl",
                f"{share:.2f}x",
                f">= {GOAL_SHARE_OF_CURL:.2f}x",
                common.verdict(share >= GOAL_SHARE_OF_CURL),
            ],
            [
                case["name"],
                f"peak RSS growth ({case['peak_source']})",
                f"{case['peak_growth_mb']:.1f} MB",
                f"< {GOAL_PEAK_RSS_MB:.0f} MB",
                common.verdict(case["peak_growth_mb"] < GOAL_PEAK_RSS_MB),
            ],
        ]
    common.print_table(
        f"Download over loopback into {dest_root} (best of {repeats}; ratio = store_outputs MB/s / curl MB/s)",
        [
            "case",
            "curl MB/s",
            "store_outputs MB/s",
            "ratio",
            "curl CPU s",
            "ours CPU s",
            "CPU ours/curl",
            "ours peak RSS +MB",
            "sampled RSS +MB",
        ],
        rows,
    )
    common.print_table("Goals (download)", ["case", "measure", "measured", "goal", "verdict"], goals)
    print(
        "note: the emulator serves from one Python process; when other work competes for the CPU it becomes the "
        "bottleneck for both tools and the throughput ratio drifts towards 1. CPU ours/curl is the steadier figure."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
