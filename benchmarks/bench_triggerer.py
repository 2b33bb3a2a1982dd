"""Triggerer scale: N concurrent WaveSpeedPredictionTriggers in one event loop.

Compares, at the same fixed poll interval and against the emulator in a separate process:

* ``bare-httpx``: one shared ``httpx.AsyncClient`` doing the same GET + ``json()`` per poll (baseline);
* ``wavespeed-trigger``: ``WaveSpeedPredictionTrigger.run()`` generators, re-created from
  ``serialize()`` and iterated the way the triggerer does;
* ``http-sensor-trigger``: the http provider's ``HttpSensorTrigger`` doing the same job (wait until
  the prediction's output URL stops answering 404), i.e. what users hand-roll today;
* ``httpx-client-per-poll`` (reference, first round only): a hand-rolled poller opening a new
  ``httpx.AsyncClient`` per poll;
* ``trigger+bounded-pool`` (a proposal, not shipped code): the same trigger, with the loop's shared
  client replaced (through ``api/loop_clients.py``) by one that caps requests in flight with a
  semaphore and keeps all pool connections alive.

``--burst`` adds a run where all N waits start at once (a triggerer restart); ``--stress RATE`` asks
for more polls per second than the machine can serve, to see whether throughput degrades or collapses.

Two transports (``--transport``): ``http`` straight to the emulator, and ``https`` through a TLS
front (a separate process, self-signed CA trusted via ``SSL_CERT_FILE``) so clients pay handshakes
and encryption as they do against the real API.

Each (transport, variant, N) runs in a fresh interpreter (``--worker``) so CPU and RSS are its own. Client CPU
is ``time.process_time()`` over a steady-state window; polls are counted by the emulator
(``requests_total``); loop lag comes from a 20 ms ticker task. Variants alternate, best of
``--repeats``.

    .venv/bin/python benchmarks/bench_triggerer.py --burst --stress 400   # N = 100 and 1,000, about 25 min
    .venv/bin/python benchmarks/bench_triggerer.py --quick    # N = 10, both transports, about 20 s
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

import _common as common

VARIANTS = ("bare-httpx", "wavespeed-trigger", "http-sensor-trigger", "trigger+bounded-pool")
# Reference only (first round): a hand-rolled httpx poller that opens a new AsyncClient per poll.
REFERENCE = "httpx-client-per-poll"
# Proposal (measured, not the shipped code): the trigger with its shared client capped at BOUND requests in
# flight (an asyncio.Semaphore) and an httpx pool of BOUND connections that are all kept alive.
PROPOSAL = VARIANTS[3]
BOUND = 32
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


async def _client_per_poll(url: str, headers: dict[str, str], interval: float) -> None:
    import httpx

    terminal = {"completed", "failed", "cancelled", "timeout", "deleted"}
    while True:
        async with httpx.AsyncClient(headers=headers, timeout=30) as client:
            data = (await client.get(url)).json()["data"]
        if data["status"] in terminal:
            return
        await asyncio.sleep(max(interval, interval + random.uniform(-0.1 * interval, 0.1 * interval)))


def _install_bounded_client(loop: asyncio.AbstractEventLoop, key: str, base: str) -> None:
    """Pre-seed the loop's shared client (api/loop_clients.py) with the proposed bounded one.

    The settings must equal what ``WaveSpeedHook`` builds from the connection, so every trigger finds it.
    """
    import httpx

    from airflow_provider_wavespeed.api import loop_clients
    from airflow_provider_wavespeed.api.client import AsyncWaveSpeedClient, ClientSettings

    class BoundedClient(AsyncWaveSpeedClient):
        def __init__(self, settings: ClientSettings) -> None:
            limits = httpx.Limits(max_connections=BOUND, max_keepalive_connections=BOUND)
            http = httpx.AsyncClient(timeout=settings.http_timeout(), follow_redirects=True, limits=limits)
            super().__init__(settings, http=http)
            self._gate = asyncio.Semaphore(BOUND)

        async def send(self, request: Any) -> Any:
            async with self._gate:
                return await super().send(request)

    settings = ClientSettings(api_key=key, base_url=base, timeout=30.0)
    loop_clients._clients.setdefault(loop, {})[settings] = BoundedClient(settings)


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
    stats_url = cfg["stats_url"]
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
    elif variant == PROPOSAL:
        _install_bounded_client(loop, key, base)
        coros = [
            _drive(
                _recreate(
                    WaveSpeedPredictionTrigger(
                        pid, poll_interval=interval, max_poll_interval=interval, model=common.AVATAR, coalesce=False
                    )
                )
            )
            for pid in ids
        ]
    elif variant == REFERENCE:
        auth = {"Authorization": f"Bearer {key}"}
        coros = [_client_per_poll(f"{base}/api/v3/predictions/{pid}/result", auth, interval) for pid in ids]
    elif variant == "wavespeed-trigger":
        coros = [
            _drive(
                _recreate(
                    WaveSpeedPredictionTrigger(
                        pid, poll_interval=interval, max_poll_interval=interval, model=common.AVATAR, coalesce=False
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
    if variant in ("wavespeed-trigger", PROPOSAL):
        from airflow_provider_wavespeed.api.loop_clients import clients_in_this_loop

        if clients_in_this_loop() != 1:
            raise RuntimeError(f"{variant}: expected one shared client in the loop, found {clients_in_this_loop()}")
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
        "failed": len(errors),
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


class Target:
    """Where the clients poll: the emulator itself (plain HTTP) or a TLS front in front of it (HTTPS)."""

    def __init__(self, emulator: common.EmulatorProcess, front: common.TlsFront | None) -> None:
        self.emulator = emulator
        self.front = front
        self.name = "https" if front else "http"
        self.base_url = front.base_url if front else emulator.base_url
        port = front.port if front else emulator.port
        self.env = {
            "AIRFLOW_CONN_WAVESPEED_DEFAULT": json.dumps(
                {"conn_type": "wavespeed", "password": emulator.api_key, "host": self.base_url}
            ),
            "AIRFLOW_CONN_HTTP_DEFAULT": json.dumps(
                {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": self.name}
            ),
        }
        if front:
            self.env["SSL_CERT_FILE"] = front.ca_file


def _measure(
    target: Target,
    variants: tuple[str, ...],
    ids_file: str,
    n: int,
    timing: dict[str, float],
    start: str,
    strict: bool = True,
) -> list[dict[str, Any]]:
    """Run ``variants`` one after another in one fresh interpreter (one variant per worker for clean RSS)."""
    payload = {
        "variants": list(variants),
        **timing,
        "start": start,
        "base_url": target.base_url,
        "stats_url": target.emulator.base_url + "/_emulator/stats",
        "api_key": target.emulator.api_key,
        "ids_file": ids_file,
    }
    budget = len(variants) * (timing["warmup"] + timing["window"] + 60) + 120
    results = common.run_worker(__file__, payload, timeout=budget, env=target.env)
    for result in results:
        variant = result["variant"]
        result["transport"] = target.name
        if result["errors"] and strict:
            raise RuntimeError(f"{variant} N={n}: tasks failed: {result['errors']}")
        if result["finished_early"] and strict:
            raise RuntimeError(f"{variant} N={n}: {result['finished_early']} waits ended early (should still poll)")
        print(
            f"  {target.name:<5} {variant:<20} N={n:<5} polls={result['polls']:<6} "
            f"cpu/poll={result['cpu_per_poll_ms']:.3f} ms lag p99={result['lag_p99_ms']:.1f} ms "
            f"rss={result['rss_growth_mb']:.1f} MB",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny size (N=10, short windows), for smoke tests")
    parser.add_argument("--sizes", type=int, nargs="+", help="trigger counts (default 100 1000)")
    parser.add_argument("--repeats", type=int, help="alternating rounds per size, best of (default 2)")
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="target polls per second per run: poll interval = N / rate (min 0.5 s)",
    )
    parser.add_argument(
        "--transport",
        choices=("http", "https", "both"),
        default="both",
        help="http: straight to the emulator; https: through a TLS front process (like production)",
    )
    parser.add_argument(
        "--start",
        choices=("staggered", "burst"),
        default="staggered",
        help="staggered: each wait starts at a random moment of the first interval",
    )
    parser.add_argument(
        "--burst", action="store_true", help="also measure loop lag when all N of the largest size start at once (http)"
    )
    parser.add_argument(
        "--stress",
        type=float,
        metavar="RATE",
        help="also run the largest N at RATE polls/s (more than the CPU can serve) over http: does throughput "
        "degrade gracefully or collapse?",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=(*VARIANTS, REFERENCE),
        help="run only these (the report needs bare-httpx, wavespeed-trigger, http-sensor-trigger, the reference "
        "and the proposal)",
    )
    parser.add_argument("--json-out", help="also write every raw measurement to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    sizes = args.sizes or ([10] if args.quick else [100, 1000])
    repeats = args.repeats or (1 if args.quick else 2)
    transports = ("http", "https") if args.transport == "both" else (args.transport,)
    common.print_machine()
    results: list[dict[str, Any]] = []
    burst: list[dict[str, Any]] = []
    stress: list[dict[str, Any]] = []
    with common.EmulatorProcess(queue_seconds=0.0, run_seconds=24 * 3600.0) as emulator:
        front = common.TlsFront(emulator.port).start() if "https" in transports else None
        try:
            targets = [Target(emulator, front if name == "https" else None) for name in transports]
            for n in sizes:
                interval = max(0.5, n / args.rate)
                timing = {
                    "interval": interval,
                    "warmup": (1.0 if args.quick else 1.5) * interval,
                    "window": (1.0 if args.quick else 2.0) * interval,
                }
                ids = emulator.submit_many(n)
                ids_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-triggerer-{os.getpid()}-{n}.json"
                ids_file.write_text(json.dumps(ids))
                try:
                    print(
                        f"N={n}: interval {interval:.1f} s, warm-up {timing['warmup']:.1f} s, "
                        f"window {timing['window']:.1f} s",
                        flush=True,
                    )
                    for rnd in range(repeats):
                        for target in targets:
                            order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
                            if rnd == 0:
                                order = (*order, REFERENCE)
                            if args.variants:
                                order = tuple(v for v in order if v in args.variants)
                            if args.quick:  # one interpreter for all variants: RSS is only indicative
                                results += _measure(target, order, str(ids_file), n, timing, args.start)
                                continue
                            for variant in order:
                                # The reference overloads the loop at large N by design: its waits may time out.
                                strict = variant != REFERENCE
                                results += _measure(
                                    target, (variant,), str(ids_file), n, timing, args.start, strict=strict
                                )
                    if args.burst and n == max(sizes):
                        for variant in (VARIANTS[0], VARIANTS[1], PROPOSAL):
                            burst += _measure(targets[0], (variant,), str(ids_file), n, timing, "burst", strict=False)
                    if args.stress and n == max(sizes):
                        hot = {
                            "interval": n / args.stress,
                            "warmup": 1.5 * n / args.stress,
                            "window": 2.0 * n / args.stress,
                        }
                        for variant in (VARIANTS[0], VARIANTS[1], PROPOSAL):
                            stress += _measure(targets[0], (variant,), str(ids_file), n, hot, args.start, strict=False)
                finally:
                    ids_file.unlink(missing_ok=True)
        finally:
            if front is not None:
                front.stop()

    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"results": results, "burst": burst, "stress": stress}, indent=1))
    if args.variants:
        return 0  # partial runs print their measurements only
    _report(sizes, transports, results, burst, args.start)
    if stress:
        common.print_table(
            f"Overload, http: N={max(sizes)} asked for {args.stress:.0f} polls/s (more than this VM serves)",
            ["variant", "asked polls/s", "served polls/s", "CPU/poll ms", "lag p99 ms", "lag max ms", "waits crashed"],
            [
                [
                    r["variant"],
                    r["n"] / r["interval"],
                    r["polls"] / r["window_s"],
                    r["cpu_per_poll_ms"],
                    r["lag_p99_ms"],
                    r["lag_max_ms"],
                    r["failed"],
                ]
                for r in stress
            ],
        )
    return 0


def _best(results: list[dict[str, Any]], transport: str, n: int, variant: str) -> dict[str, Any]:
    mine = [r for r in results if r["n"] == n and r["variant"] == variant and r["transport"] == transport]
    return min(mine, key=lambda r: r["cpu_per_poll_ms"])


def _report(
    sizes: list[int],
    transports: tuple[str, ...],
    results: list[dict[str, Any]],
    burst: list[dict[str, Any]],
    start: str,
) -> None:
    rows = []
    goals = []
    for transport in transports:
        for n in sizes:
            bare = _best(results, transport, n, "bare-httpx")
            ours = _best(results, transport, n, "wavespeed-trigger")
            peer = _best(results, transport, n, "http-sensor-trigger")
            reference = _best(results, transport, n, REFERENCE)
            proposal = _best(results, transport, n, PROPOSAL)
            for r in (bare, ours, peer, reference, proposal):
                rows.append(
                    [
                        transport,
                        n,
                        r["variant"],
                        r["interval"],
                        r["polls"],
                        r["cpu_per_poll_ms"],
                        r["cpu_per_poll_ms"] / bare["cpu_per_poll_ms"],
                        r["lag_p50_ms"],
                        r["lag_p99_ms"],
                        r["lag_max_ms"],
                        r["startup_lag_max_ms"],
                        r["rss_growth_mb"] * 1000 / n,
                    ]
                )
            ratio = ours["cpu_per_poll_ms"] / bare["cpu_per_poll_ms"]
            peer_factor = peer["cpu_per_poll_ms"] / ours["cpu_per_poll_ms"]
            rss_per_1000 = ours["rss_growth_mb"] * 1000 / n
            aim = " (aim met)" if ratio <= GOAL_RATIO_AIM else ""
            goals += [
                [
                    transport,
                    n,
                    "CPU/poll, trigger / bare httpx",
                    f"{ratio:.2f}x",
                    f"<= {GOAL_RATIO_MAX:.0f}x (aim {GOAL_RATIO_AIM}x)",
                    common.verdict(ratio <= GOAL_RATIO_MAX) + aim,
                ],
                [
                    transport,
                    n,
                    "CPU/poll, HttpSensorTrigger / trigger",
                    f"{peer_factor:.1f}x",
                    f">= {GOAL_PEER_FACTOR:.0f}x",
                    common.verdict(peer_factor >= GOAL_PEER_FACTOR),
                ],
                [
                    transport,
                    n,
                    f"(proposal) CPU/poll, {PROPOSAL} / bare httpx",
                    f"{proposal['cpu_per_poll_ms'] / bare['cpu_per_poll_ms']:.2f}x",
                    f"<= {GOAL_RATIO_MAX:.0f}x (aim {GOAL_RATIO_AIM}x)",
                    common.verdict(proposal["cpu_per_poll_ms"] / bare["cpu_per_poll_ms"] <= GOAL_RATIO_MAX),
                ],
                [
                    transport,
                    n,
                    f"(proposal) loop lag p99, {PROPOSAL}",
                    f"{proposal['lag_p99_ms']:.1f} ms",
                    f"< {GOAL_LAG_P99_MS:.0f} ms",
                    common.verdict(proposal["lag_p99_ms"] < GOAL_LAG_P99_MS),
                ],
                [
                    transport,
                    n,
                    f"(reference) CPU/poll, {REFERENCE} / trigger",
                    f"{reference['cpu_per_poll_ms'] / ours['cpu_per_poll_ms']:.1f}x",
                    f">= {GOAL_PEER_FACTOR:.0f}x",
                    common.verdict(reference["cpu_per_poll_ms"] / ours["cpu_per_poll_ms"] >= GOAL_PEER_FACTOR),
                ],
                [
                    transport,
                    n,
                    "loop lag p99 (trigger, steady)",
                    f"{ours['lag_p99_ms']:.1f} ms",
                    f"< {GOAL_LAG_P99_MS:.0f} ms",
                    common.verdict(ours["lag_p99_ms"] < GOAL_LAG_P99_MS),
                ],
                [
                    transport,
                    n,
                    "RSS growth per 1,000 triggers",
                    f"{rss_per_1000:.1f} MB",
                    f"< {GOAL_RSS_MB_PER_1000:.0f} MB",
                    common.verdict(rss_per_1000 < GOAL_RSS_MB_PER_1000),
                ],
            ]
    common.print_table(
        f"Triggerer scale ({start} start; best of rounds by CPU/poll; ratio = CPU/poll vs bare-httpx, same "
        "transport and N)",
        [
            "transport",
            "N",
            "variant",
            "interval s",
            "polls",
            "CPU/poll ms",
            "ratio",
            "lag p50 ms",
            "lag p99 ms",
            "lag max ms",
            "startup lag max ms",
            "RSS MB/1000",
        ],
        rows,
    )
    if burst:
        common.print_table(
            "All N starting at once (triggerer restart), http: loop lag during the first 1.5 intervals",
            [
                "N",
                "variant",
                "startup lag p99 ms",
                "startup lag max ms",
                "steady lag p99 ms",
                "CPU/poll ms",
                "polls in window",
                "waits crashed",
            ],
            [
                [
                    r["n"],
                    r["variant"],
                    r["startup_lag_p99_ms"],
                    r["startup_lag_max_ms"],
                    r["lag_p99_ms"],
                    r["cpu_per_poll_ms"],
                    r["polls"],
                    r["failed"],
                ]
                for r in burst
            ],
        )
    common.print_table("Goals (triggerer)", ["transport", "N", "measure", "measured", "goal", "verdict"], goals)


if __name__ == "__main__":
    sys.exit(main())
