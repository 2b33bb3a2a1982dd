"""Polling efficiency: polls per prediction and detection delay, adaptive schedule vs fixed 5 s polling.

Jobs of 5 s, 60 s and 600 s run on the emulator (separate process) with every time scaled down by
``--scale`` (default 20: a 600 s job runs 30 s, the trigger's poll_interval/max_poll_interval are
divided by the same factor). Results are reported in unscaled seconds. Variants, all in one loop:

* ``trigger (image, min 2 s)``: ``WaveSpeedPredictionTrigger`` on an image model (default 2 s minimum);
* ``trigger (video, min 5 s)``: the same on a video model (default 5 s minimum);
* ``fixed 5 s``: a bare httpx loop polling every 5 s (the baseline).

Polls per prediction are the emulator's ``polls_by_prediction``; the detection delay is the moment
the trigger yields its terminal event minus the moment the job completed (submit + run time).

A second table simulates the schedule math alone (``PollSchedule.next_interval``, no I/O) for the
same jobs and for candidate schedules, to show which schedule meets the goal.

    .venv/bin/python benchmarks/bench_polling.py            # about 45 s
    .venv/bin/python benchmarks/bench_polling.py --quick    # scale 1/200, about 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

JOBS = (5.0, 60.0, 600.0)
FIXED_INTERVAL = 5.0
MAX_POLL_INTERVAL = 60.0
GOAL_DELAY_SHARE = 0.20
GOAL_POLLS = 10.0
TERMINAL = {"completed", "failed", "cancelled", "timeout", "deleted"}
VARIANTS = ("trigger (image, min 2 s)", "trigger (video, min 5 s)", "fixed 5 s")


# -- live measurement against the emulator --------------------------------------------------------


async def _fixed_poller(client: Any, url: str, interval: float) -> None:
    while True:
        data = (await client.get(url)).json()["data"]
        if data["status"] in TERMINAL:
            return
        await asyncio.sleep(interval)


async def _run_live(emulator: common.EmulatorProcess, scale: float, samples: int) -> list[dict[str, Any]]:
    import httpx

    from airflow_provider_wavespeed.api.polling import IMAGE_MIN_INTERVAL, VIDEO_MIN_INTERVAL
    from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    client = httpx.AsyncClient(base_url=emulator.base_url, headers=headers, timeout=30)
    records: list[dict[str, Any]] = []
    submit_lock = asyncio.Lock()

    async def submit(model: str, run_seconds: float) -> tuple[str, float, float]:
        """Submit one prediction running ``run_seconds`` (scaled); returns (id, wall clock, completion time)."""
        body = common.FLUX_INPUTS if model == common.FLUX else common.AVATAR_INPUTS
        async with submit_lock:  # run_seconds is a global switch, captured at submit
            await asyncio.to_thread(emulator.configure, run_seconds=run_seconds)
            sent = time.perf_counter()
            reply = await client.post(f"/api/v3/{model}", json=body)
            got = time.perf_counter()
        return reply.json()["data"]["id"], time.time(), (sent + got) / 2 + run_seconds

    async def wait_with_trigger(pid: str, wall: float, model: str, scaled_job: float) -> None:
        minimum = IMAGE_MIN_INTERVAL if model == common.FLUX else VIDEO_MIN_INTERVAL
        trigger = WaveSpeedPredictionTrigger(
            pid,
            started_at=wall,
            poll_interval=minimum / scale,
            max_poll_interval=MAX_POLL_INTERVAL / scale,
            model=model,
            deadline=wall + 10 * scaled_job + 60,
        )
        async for event in trigger.run():
            if event.payload.get("event") != "terminal":
                raise RuntimeError(f"trigger for {pid} ended with {event.payload}")
            return

    async def watch(job: float, variant: str) -> None:
        model = common.FLUX if "image" in variant else common.AVATAR
        actual = job * random.uniform(0.95, 1.05)  # real jobs do not end on a multiple of the poll interval
        pid, wall, done_at = await submit(model, actual / scale)
        if variant == "fixed 5 s":
            await _fixed_poller(client, f"/api/v3/predictions/{pid}/result", FIXED_INTERVAL / scale)
        else:
            await wait_with_trigger(pid, wall, model, actual / scale)
        detected = time.perf_counter()
        records.append(
            {"job": job, "actual": actual, "variant": variant, "id": pid, "delay": (detected - done_at) * scale}
        )

    # Warm the process first (connection lookup, secrets masker, logging, the loop's shared client): at 1/20
    # scale a one-off 50 ms start-up cost would read as a full second of detection delay.
    pid, wall, _ = await submit(common.FLUX, 0.0)
    await wait_with_trigger(pid, wall, common.FLUX, 0.0)

    batch = [(job, variant) for job in JOBS for _ in range(samples) for variant in VARIANTS]
    random.shuffle(batch)
    tasks = [asyncio.create_task(watch(job, variant)) for job, variant in batch]
    timeout = 3 * max(JOBS) / scale + 60
    await asyncio.wait_for(asyncio.gather(*tasks), timeout)
    await client.aclose()
    polls = (await asyncio.to_thread(emulator.stats))["polls_by_prediction"]
    for record in records:
        record["polls"] = polls.get(record["id"], 0)
    return records


# -- the schedule math alone ------------------------------------------------------------------------


def _simulate(next_interval: Callable[[float], float], job: float, max_polls: int = 10_000) -> tuple[int, float]:
    """Poll at t=0 and then after each ``next_interval(waited)``; return (polls, delay) once ``t >= job``."""
    t, polls = 0.0, 1
    while t < job and polls < max_polls:
        t += next_interval(t)
        polls += 1
    return polls, t - job


def _schedules(job: float) -> dict[str, Callable[[float], float]]:
    from airflow_provider_wavespeed.api.polling import PollSchedule

    image = PollSchedule(min_interval=2.0, max_interval=60.0)
    video = PollSchedule(min_interval=5.0, max_interval=60.0)
    fast_growth = PollSchedule(min_interval=2.0, max_interval=600.0, growth=0.35)

    return {
        "current PollSchedule, image (2-60 s, 20%)": image.next_interval,
        "current PollSchedule, video (5-60 s, 20%)": video.next_interval,
        "fixed 5 s": lambda waited: FIXED_INTERVAL,
        "growth 35% of waited (2-600 s), E unknown": fast_growth.next_interval,
        "proposal: anchored at E/2, E = run time": anchored(job),
        "proposal: anchored at E/2, E = 2x run time": anchored(2 * job),
        "proposal: anchored at E/2, E = 0.5x run time": anchored(0.5 * job),
    }


def anchored(estimate: float, minimum: float = 2.0, maximum: float = 120.0) -> Callable[[float], float]:
    """Proposed schedule: one sleep straight to half the expected run time E, then the current rule
    (20% of the time waited, jittered) between ``minimum`` and ``maximum``."""
    from airflow_provider_wavespeed.api.polling import PollSchedule

    schedule = PollSchedule(min_interval=minimum, max_interval=maximum)

    def next_interval(waited: float) -> float:
        if waited < estimate / 2:
            return max(minimum, estimate / 2 - waited)
        return schedule.next_interval(waited)

    return next_interval


def simulate_table(trials: int) -> list[list[Any]]:
    rows = []
    for job in JOBS:
        for name, next_interval in _schedules(job).items():
            runs = [_simulate(next_interval, job * random.uniform(0.95, 1.05)) for _ in range(trials)]
            polls = [p for p, _ in runs]
            delays = [d for _, d in runs]
            mean_share = statistics.fmean(delays) / job
            ok = mean_share <= GOAL_DELAY_SHARE and statistics.fmean(polls) <= GOAL_POLLS + 0.5
            rows.append(
                [
                    f"{job:.0f} s",
                    name,
                    statistics.fmean(polls),
                    max(polls),
                    statistics.fmean(delays),
                    max(delays),
                    f"{100 * mean_share:.0f}%",
                    f"{100 * max(delays) / job:.0f}%",
                    common.verdict(ok),
                ]
            )
    return rows


def sweep_table(points: int = 400) -> list[list[Any]]:
    """Run times spread log-uniformly over 5..600 s: how a schedule does when the run time is unknown."""
    from airflow_provider_wavespeed.api.polling import PollSchedule

    schedules = {
        "current PollSchedule, image (2-60 s, 20%)": PollSchedule(2.0, 60.0).next_interval,
        "current PollSchedule, video (5-60 s, 20%)": PollSchedule(5.0, 60.0).next_interval,
        "fixed 5 s": lambda waited: FIXED_INTERVAL,
        "growth 20% of waited (2-600 s), no 60 s cap": PollSchedule(2.0, 600.0, growth=0.2).next_interval,
        "growth 35% of waited (2-600 s)": PollSchedule(2.0, 600.0, growth=0.35).next_interval,
        "growth 50% of waited (2-600 s)": PollSchedule(2.0, 600.0, growth=0.5).next_interval,
    }
    rows = []
    for name, next_interval in schedules.items():
        jobs = [5 * math.exp(math.log(120) * (i + 0.5) / points) for i in range(points)]
        runs = [_simulate(next_interval, job) for job in jobs]
        shares = [d / job for (_, d), job in zip(runs, jobs, strict=True)]
        polls_600 = max(p for (p, _), job in zip(runs, jobs, strict=True) if job > 500)
        rows.append(
            [
                name,
                statistics.fmean(p for p, _ in runs),
                polls_600,
                f"{100 * statistics.fmean(shares):.0f}%",
                f"{100 * common.percentile(shares, 95):.0f}%",
                f"{100 * max(shares):.0f}%",
            ]
        )
    return rows


# -- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="scale 1/200 and 2 samples per job, for smoke tests")
    parser.add_argument("--scale", type=float, help="divide every time by this (default 20; --quick 200)")
    parser.add_argument("--samples", type=int, help="predictions per job and variant (default 8)")
    parser.add_argument("--trials", type=int, default=2000, help="Monte-Carlo trials per simulated schedule")
    args = parser.parse_args(argv)
    scale = args.scale or (200.0 if args.quick else 20.0)
    samples = args.samples or (2 if args.quick else 8)
    trials = 200 if args.quick else args.trials

    # No per-status info lines from the triggers (set before Airflow is imported).
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    common.print_machine()
    print(f"live run: scale 1/{scale:.0f}, {samples} predictions per job and variant", flush=True)
    with common.EmulatorProcess(queue_seconds=0.0, run_seconds=1.0) as emulator:
        os.environ["AIRFLOW_CONN_WAVESPEED_DEFAULT"] = emulator.connection_json()
        records = asyncio.run(_run_live(emulator, scale, samples))

    rows = []
    goals = []
    for job in JOBS:
        fixed = [r for r in records if r["job"] == job and r["variant"] == "fixed 5 s"]
        fixed_polls = statistics.fmean(r["polls"] for r in fixed)
        for variant in VARIANTS:
            mine = [r for r in records if r["job"] == job and r["variant"] == variant]
            polls = [r["polls"] for r in mine]
            delays = [r["delay"] for r in mine]
            share = statistics.fmean(r["delay"] / r["actual"] for r in mine)
            rows.append(
                [
                    f"{job:.0f} s",
                    variant,
                    statistics.fmean(polls),
                    max(polls),
                    statistics.fmean(polls) / fixed_polls,
                    statistics.fmean(delays),
                    max(delays),
                    f"{100 * share:.0f}%",
                    f"{100 * max(r['delay'] / r['actual'] for r in mine):.0f}%",
                ]
            )
            if variant != "fixed 5 s":
                goals.append(
                    [
                        f"{job:.0f} s",
                        variant,
                        f"{100 * share:.0f}% / {statistics.fmean(polls):.1f}",
                        f"<= {100 * GOAL_DELAY_SHARE:.0f}% / <= ~{GOAL_POLLS:.0f}",
                        f"delay {common.verdict(share <= GOAL_DELAY_SHARE)}, "
                        f"polls {common.verdict(statistics.fmean(polls) <= GOAL_POLLS + 0.5)}",
                    ]
                )
    common.print_table(
        f"Polling, live against the emulator (times scaled 1/{scale:.0f}, reported unscaled; "
        f"{samples} predictions per cell)",
        [
            "job",
            "variant",
            "polls mean",
            "polls max",
            "polls vs fixed 5 s",
            "delay mean s",
            "delay max s",
            "delay mean % of job",
            "delay max % of job",
        ],
        rows,
    )
    common.print_table("Goals (polling, live)", ["job", "variant", "delay mean / polls mean", "goal", "verdict"], goals)
    common.print_table(
        f"Schedule math alone (Monte-Carlo, {trials} trials, job length +-5%; E = expected run time estimate)",
        [
            "job",
            "schedule",
            "polls mean",
            "polls max",
            "delay mean s",
            "delay max s",
            "delay mean %",
            "delay max %",
            "goal",
        ],
        simulate_table(trials),
    )
    common.print_table(
        "Unknown run time: jobs spread log-uniformly over 5..600 s (schedule math alone)",
        ["schedule", "polls mean", "polls at 600 s", "delay mean %", "delay p95 %", "delay max %"],
        sweep_table(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
