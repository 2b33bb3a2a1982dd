"""Triggerer scale: N concurrent WaveSpeedPredictionTriggers in one event loop.

Compares, at the same fixed poll interval and against the emulator in a separate process:

* ``bare-httpx``: one shared ``httpx.AsyncClient`` doing the same GET + ``json()`` per poll (baseline);
* ``wavespeed-trigger``: ``WaveSpeedPredictionTrigger.run()`` generators, re-created from
  ``serialize()`` and iterated the way the triggerer does;
* ``http-sensor-trigger``: the http provider's ``HttpSensorTrigger`` doing the same job (wait until
  the prediction's output URL stops answering 404), i.e. what users hand-roll today.

Each (variant, N) runs in a fresh interpreter (``--worker``) so CPU and RSS are its own. Client CPU
is ``time.process_time()`` over a steady-state window; polls are counted by the emulator
(``requests_total``); loop lag comes from a 20 ms ticker task. Variants alternate, best of
``--repeats``.

    .venv/bin/python benchmarks/bench_triggerer.py            # N = 100 and 1,000
    .venv/bin/python benchmarks/bench_triggerer.py --quick    # N = 20, about 15 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

VARIANTS = ("bare-httpx", "wavespeed-trigger", "http-sensor-trigger")
TICK = 0.02
GOAL_RATIO_MAX = 2.0
GOAL_RATIO_AIM = 1.5
GOAL_PEER_FACTOR = 10.0
GOAL_LAG_P99_MS = 100.0
GOAL_RSS_MB_PER_1000 = 50.0


# -- worker: one variant, one N, in its own interpreter ------------------------------------------


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(65536, hard) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def _bare_poller(client: Any, url: str, interval: float) -> None:
    terminal = {"completed", "failed", "cancelled", "timeout", "deleted"}
    while True:
        reply = await client.get(url)
        data = reply.json()["data"]
        if data["status"] in terminal:
            return
        # The same sleep as the trigger's PollSchedule with poll_interval == max_poll_interval.
        await asyncio.sleep(max(interval, interval + random.uniform(-0.1 * interval, 0.1 * interval)))


async def _drive(trigger: Any) -> Any:
    """What the triggerer does with a trigger: iterate ``run()`` until the first event."""
    async for event in trigger.run():
        return event
    return None


def _recreate(trigger: Any) -> Any:
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


async def _delayed(delay: float, coro: Any) -> Any:
    await asyncio.sleep(delay)
    return await coro


async def _worker_main(cfg: dict[str, Any]) -> dict[str, Any]:
    import httpx
    from airflow.providers.http.triggers.http import HttpSensorTrigger

    from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

    variant, interval = cfg["variant"], float(cfg["interval"])
    base, key, ids = cfg["base_url"], cfg["api_key"], cfg["ids"]
    stats_url = base + "/_emulator/stats"
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(common.fetch_json, stats_url)  # the helper thread exists before RSS is read

    lags: list[tuple[float, float]] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append((before, (time.perf_counter() - before - TICK) * 1000))

    gc.collect()
    rss0 = common.rss_bytes()
    t_start = time.perf_counter()
    tick_task = asyncio.create_task(ticker())
    offsets = [0.0 if cfg["start"] == "burst" else random.uniform(0, interval) for _ in ids]
    client = None
    coros: list[Any] = []
    if variant == "bare-httpx":
        client = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        coros = [_bare_poller(client, f"{base}/api/v3/predictions/{pid}/result", interval) for pid in ids]
    elif variant == "wavespeed-trigger":
        coros = [
            _drive(
                _recreate(
                    WaveSpeedPredictionTrigger(
                        pid, poll_interval=interval, max_poll_interval=interval, model=common.AVATAR
                    )
                )
            )
            for pid in ids
        ]
    elif variant == "http-sensor-trigger":
        coros = [
            _drive(
                _recreate(
                    HttpSensorTrigger(
                        endpoint=f"media/outputs/{pid}/0.mp4",
                        http_conn_id="http_default",
                        method="GET",
                        headers={"Authorization": f"Bearer {key}"},
                        poke_interval=interval,
                    )
                )
            )
            for pid in ids
        ]
    else:
        raise SystemExit(f"unknown variant {variant}")
    tasks = [loop.create_task(_delayed(off, coro)) for off, coro in zip(offsets, coros, strict=True)]

    await asyncio.sleep(cfg["warmup"])
    stats_a = await asyncio.to_thread(common.fetch_json, stats_url)
    cpu_a, t_a = time.process_time(), time.perf_counter()
    await asyncio.sleep(cfg["window"])
    stats_b = await asyncio.to_thread(common.fetch_json, stats_url)
    cpu_b, t_b = time.process_time(), time.perf_counter()
    rss1 = common.rss_bytes()
    finished = sum(task.done() for task in tasks)
    errors = [repr(task.exception()) for task in tasks if task.done() and task.exception()]

    for task in [*tasks, tick_task]:
        task.cancel()
    await asyncio.gather(*tasks, tick_task, return_exceptions=True)
    if client is not None:
        await client.aclose()

    polls = stats_b["requests_total"] - stats_a["requests_total"] - 1  # minus the second stats GET
    startup = [lag for at, lag in lags if at < t_start + cfg["warmup"]]
    window = [lag for at, lag in lags if t_a <= at < t_b]
    return {
        "variant": variant,
        "n": len(ids),
        "interval": interval,
        "start": cfg["start"],
        "polls": polls,
        "window_s": t_b - t_a,
        "cpu_s": cpu_b - cpu_a,
        "cpu_per_poll_ms": (cpu_b - cpu_a) / max(polls, 1) * 1000,
        "lag_p50_ms": common.percentile(window, 50),
        "lag_p99_ms": common.percentile(window, 99),
        "lag_max_ms": max(window, default=float("nan")),
        "startup_lag_p99_ms": common.percentile(startup, 99),
        "startup_lag_max_ms": max(startup, default=float("nan")),
        "rss_growth_mb": (rss1 - rss0) / 2**20,
        "finished_early": finished,
        "errors": errors[:3],
    }


def worker(payload: str) -> None:
    cfg = json.loads(payload)
    _raise_nofile()
    with open(cfg["ids_file"]) as fh:
        cfg["ids"] = json.load(fh)
    # Import everything every variant might touch first, so RSS growth is the triggers' own.
    import aiohttp  # noqa: F401
    import httpx  # noqa: F401
    from airflow.providers.http.triggers.http import HttpSensorTrigger  # noqa: F401

    from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger  # noqa: F401

    results = [asyncio.run(_worker_main({**cfg, "variant": variant})) for variant in cfg["variants"]]
    print(json.dumps(results), flush=True)


# -- orchestrator ----------------------------------------------------------------------------------


def _measure(emulator: common.EmulatorProcess, variants: tuple[str, ...], ids_file: str, n: int,
             interval: float, warmup: float, window: float, start: str) -> list[dict[str, Any]]:
    """Run ``variants`` one after another in one fresh interpreter (one variant per worker for clean RSS)."""
    env = {
        "AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json(),
        "AIRFLOW_CONN_HTTP_DEFAULT": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": emulator.port, "schema": "http"}
        ),
    }
    payload = {
        "variants": list(variants),
        "interval": interval,
        "warmup": warmup,
        "window": window,
        "start": start,
        "base_url": emulator.base_url,
        "api_key": emulator.api_key,
        "ids_file": ids_file,
    }
    results = common.run_worker(__file__, payload, timeout=len(variants) * (warmup + window + 60) + 120, env=env)
    for result in results:
        variant = result["variant"]
        if result["errors"]:
            raise RuntimeError(f"{variant} N={n}: tasks failed: {result['errors']}")
        if result["finished_early"]:
            raise RuntimeError(f"{variant} N={n}: {result['finished_early']} waits ended early (should still poll)")
        print(
            f"  {variant:<20} N={n:<5} polls={result['polls']:<6} cpu/poll={result['cpu_per_poll_ms']:.3f} ms "
            f"lag p99={result['lag_p99_ms']:.1f} ms rss={result['rss_growth_mb']:.1f} MB",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny size (N=20, short windows), for smoke tests")
    parser.add_argument("--sizes", type=int, nargs="+", help="trigger counts (default 100 1000)")
    parser.add_argument("--repeats", type=int, help="alternating rounds per size, best of (default 2)")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="target polls per second per run: poll interval = N / rate (min 0.5 s)")
    parser.add_argument("--start", choices=("staggered", "burst"), default="staggered",
                        help="staggered: each wait starts at a random moment of the first interval")
    parser.add_argument("--burst", action="store_true",
                        help="also measure loop lag when all N of the largest size start at once")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    sizes = args.sizes or ([20] if args.quick else [100, 1000])
    repeats = args.repeats or (1 if args.quick else 2)
    common.print_machine()
    results: list[dict[str, Any]] = []
    burst: list[dict[str, Any]] = []
    with common.EmulatorProcess(queue_seconds=0.0, run_seconds=24 * 3600.0) as emulator:
        for n in sizes:
            interval = max(0.5, n / args.rate)
            warmup = 1.5 * interval
            window = (1.0 if args.quick else 2.0) * interval
            ids = emulator.submit_many(n)
            ids_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-triggerer-{os.getpid()}-{n}.json"
            ids_file.write_text(json.dumps(ids))
            try:
                print(f"N={n}: interval {interval:.1f} s, warm-up {warmup:.1f} s, window {window:.1f} s", flush=True)
                for rnd in range(repeats):
                    order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
                    if args.quick:  # one interpreter for all variants: RSS numbers are only indicative
                        results += _measure(emulator, order, str(ids_file), n, interval, warmup, window, args.start)
                        continue
                    for variant in order:
                        results += _measure(
                            emulator, (variant,), str(ids_file), n, interval, warmup, window, args.start
                        )
                if args.burst and n == max(sizes):
                    for variant in VARIANTS[:2]:
                        burst += _measure(emulator, (variant,), str(ids_file), n, interval, warmup, window, "burst")
            finally:
                ids_file.unlink(missing_ok=True)

    _report(sizes, results, burst, args.start)
    return 0


def _best(results: list[dict[str, Any]], n: int, variant: str) -> dict[str, Any]:
    mine = [r for r in results if r["n"] == n and r["variant"] == variant]
    return min(mine, key=lambda r: r["cpu_per_poll_ms"])


def _report(sizes: list[int], results: list[dict[str, Any]], burst: list[dict[str, Any]], start: str) -> None:
    rows = []
    goals = []
    for n in sizes:
        bare = _best(results, n, "bare-httpx")
        ours = _best(results, n, "wavespeed-trigger")
        peer = _best(results, n, "http-sensor-trigger")
        for r in (bare, ours, peer):
            rows.append([
                n, r["variant"], r["interval"], r["polls"], r["cpu_per_poll_ms"],
                r["cpu_per_poll_ms"] / bare["cpu_per_poll_ms"], r["lag_p50_ms"], r["lag_p99_ms"], r["lag_max_ms"],
                r["startup_lag_max_ms"], r["rss_growth_mb"] * 1000 / n,
            ])
        ratio = ours["cpu_per_poll_ms"] / bare["cpu_per_poll_ms"]
        peer_factor = peer["cpu_per_poll_ms"] / ours["cpu_per_poll_ms"]
        rss_per_1000 = ours["rss_growth_mb"] * 1000 / n
        goals += [
            [n, "CPU/poll, trigger / bare httpx", f"{ratio:.2f}x", f"<= {GOAL_RATIO_MAX:.0f}x (aim {GOAL_RATIO_AIM}x)",
             common.verdict(ratio <= GOAL_RATIO_MAX) + (" (aim met)" if ratio <= GOAL_RATIO_AIM else "")],
            [n, "CPU/poll, HttpSensorTrigger / trigger", f"{peer_factor:.1f}x", f">= {GOAL_PEER_FACTOR:.0f}x",
             common.verdict(peer_factor >= GOAL_PEER_FACTOR)],
            [n, "loop lag p99 (trigger, steady)", f"{ours['lag_p99_ms']:.1f} ms", f"< {GOAL_LAG_P99_MS:.0f} ms",
             common.verdict(ours["lag_p99_ms"] < GOAL_LAG_P99_MS)],
            [n, "RSS growth per 1,000 triggers", f"{rss_per_1000:.1f} MB", f"< {GOAL_RSS_MB_PER_1000:.0f} MB",
             common.verdict(rss_per_1000 < GOAL_RSS_MB_PER_1000)],
        ]
    common.print_table(
        f"Triggerer scale ({start} start; best of rounds by CPU/poll; ratio vs bare-httpx at the same N)",
        ["N", "variant", "interval s", "polls", "CPU/poll ms", "ratio", "lag p50 ms", "lag p99 ms",
         "lag max ms", "startup lag max ms", "RSS MB/1000"],
        rows,
    )
    if burst:
        common.print_table(
            "All N starting at once (triggerer restart): loop lag during the first 1.5 intervals",
            ["N", "variant", "startup lag p99 ms", "startup lag max ms", "steady lag p99 ms", "CPU/poll ms"],
            [[r["n"], r["variant"], r["startup_lag_p99_ms"], r["startup_lag_max_ms"], r["lag_p99_ms"],
              r["cpu_per_poll_ms"]] for r in burst],
        )
    common.print_table("Goals (triggerer)", ["N", "measure", "measured", "goal", "verdict"], goals)


if __name__ == "__main__":
    sys.exit(main())
