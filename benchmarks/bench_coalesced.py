"""Coalesced polling against the emulator (issue 23): N concurrent waits in a triggerer, per-id vs coalesced.

One run, one emulator (its own process, reset before every scenario so each starts from the same account):

* **per-id** (``coalesce=False``, today's blind schedule, no ``expected_runtime``): every wait polls its own
  ``GET .../result``;
* **coalesced** (``coalesce=True``, the shipped ``HistorySweepPlan()`` defaults): the loop's coordinator
  answers the waits from history sweeps, falling back to a poll by id.

Each triggerer is a fresh interpreter (``--worker``) holding its waits in one asyncio loop, the way the
triggerer does (``WaveSpeedPredictionTrigger`` re-created from ``serialize()``, ``async for event in
run()``). The parent process submits the predictions (a video model: 5 s minimum per-id interval; ~3 %
fail through the prompt magic ``[emulator:failed]``) and streams each one to its triggerer as soon as its
submit is answered, with ``started_at`` = the reply's ``created_at``, as the operators defer. Run times are
drawn per prediction from ``run_seconds_range``; other pipelines on the account create as many
predictions per minute as the scenario does (``background_traffic_per_minute``), which fill the same
history pages.

Measured per scenario: every wait answered (one event each, its own id, failed ones ``failed``); API
requests = emulator ``requests_total`` delta minus the submits and the one stats GET (split into result
polls, history pages and others) per completed prediction; detection delay = the event's wall time in
the triggerer minus the prediction's completion, ``created_at + queue_seconds + executionTime`` (the
emulator's record, as its reply reports it: no concurrency limit, so the run starts right after the
queue); triggerer CPU (``time.process_time()`` of the triggerer processes only, from before the first wait
to the last event); peak RSS (VmHWM, reset when the triggerer is ready); loop lag p99 (100 ms ticker).

    .venv/bin/python benchmarks/bench_coalesced.py            # 1,000 per-id vs coalesced, then 5,000 on two triggerers
    .venv/bin/python benchmarks/bench_coalesced.py --quick    # 60 waits of 3-6 s, and 2 x 20, about 40 s
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import _common as common

MODEL = "wavespeed-ai/wan-2.2/t2v-480p"  # a video model: the per-id schedule's floor is 5 s
PROMPT = "a lighthouse at dusk"
FAILED_MAGIC = " [emulator:failed]"
FAILED_SHARE = 0.03
QUEUE_SECONDS = 0.5
SUBMIT_CONCURRENCY = 16
TICK = 0.1
READY_TIMEOUT = 120.0
PER_ID, COALESCED = "per-id", "coalesced"
GOAL_REQUEST_RATIO = 0.2
GOAL_P95_S = 10.0


# -- worker: one triggerer ---------------------------------------------------------------------------


async def _drive(trigger: Any) -> tuple[float, Any]:
    """What the triggerer does with a trigger: iterate ``run()`` until the first event (and when it came)."""
    async for event in trigger.run():
        return time.time(), event.payload
    return time.time(), None


@dataclass
class RequestLog:
    """Timings of the triggerer's own requests (the client's methods wrapped; nothing else changes)."""

    polls: list[float] = field(default_factory=list)
    #: (started, ended, page, status) of every history page.
    pages: list[tuple[float, float, int, str | None]] = field(default_factory=list)

    def install(self) -> None:
        from airflow_provider_wavespeed.api.client import AsyncWaveSpeedClient

        get_prediction, history_page = AsyncWaveSpeedClient.get_prediction, AsyncWaveSpeedClient.history_page

        async def timed_poll(client: Any, prediction_id: str) -> Any:
            began = time.perf_counter()
            try:
                return await get_prediction(client, prediction_id)
            finally:
                self.polls.append(time.perf_counter() - began)

        async def timed_page(client: Any, **filters: Any) -> Any:
            began = time.perf_counter()
            try:
                return await history_page(client, **filters)
            finally:
                self.pages.append((began, time.perf_counter(), filters.get("page", 1), filters.get("status")))

        AsyncWaveSpeedClient.get_prediction = timed_poll  # type: ignore[method-assign]
        AsyncWaveSpeedClient.history_page = timed_page  # type: ignore[method-assign]

    def sweeps(self) -> list[tuple[float, int]]:
        """(seconds, pages) of each sweep: a sweep starts with page 1 of its first filter (completed, or none
        for an audit) and ends with the page before the next sweep starts."""
        found: list[tuple[float, int]] = []
        start = end = 0.0
        pages = 0
        for began, ended, page, status in self.pages:
            if page == 1 and status in ("completed", None):
                if pages:
                    found.append((end - start, pages))
                start, pages = began, 0
            end, pages = ended, pages + 1
        if pages:
            found.append((end - start, pages))
        return found


def _recreate(trigger: Any) -> Any:
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


async def _worker_main(cfg: dict[str, Any], protocol: Any) -> dict[str, Any]:
    from airflow_provider_wavespeed.api import coordinator as coordinators
    from airflow_provider_wavespeed.api.timestamps import parse_iso
    from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

    requests = RequestLog()
    requests.install()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(TICK)
            lags.append((time.perf_counter() - before - TICK) * 1000)

    common.reset_peak_rss()
    rss0 = common.rss_bytes()
    print("ready", file=protocol, flush=True)
    cpu0 = time.process_time()
    tick_task = loop.create_task(ticker())
    hard_stop = time.monotonic() + float(cfg["time_limit"])
    waits: dict[str, dict[str, Any]] = {}
    tasks: dict[str, asyncio.Task[tuple[float, Any]]] = {}
    while time.monotonic() < hard_stop:  # bounded: EOF (every wait handed over) or the time limit
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.1, hard_stop - time.monotonic()))
        except TimeoutError:
            break
        if not line:
            break
        wait = json.loads(line)
        started_at = parse_iso(wait["created_at"])
        trigger = WaveSpeedPredictionTrigger(
            wait["id"],
            started_at=started_at,
            deadline=time.time() + float(cfg["wait_seconds"]),
            model=MODEL,
            coalesce=cfg["mode"] == COALESCED,
        )
        waits[wait["id"]] = wait
        tasks[wait["id"]] = loop.create_task(_drive(_recreate(trigger)))
    if tasks:
        await asyncio.wait(tasks.values(), timeout=max(0.0, hard_stop - time.monotonic()))
    cpu = time.process_time() - cpu0
    peak = common.peak_rss_bytes()
    tick_task.cancel()
    counters = coordinators.SweepCounters()
    for coordinator in coordinators._coordinators.get(loop, {}).values():
        for name in ("pages", "failed_pages", "observations", "stale"):
            setattr(counters, name, getattr(counters, name) + getattr(coordinator.counters, name))
    unanswered = [pid for pid, task in tasks.items() if not task.done() or task.exception() is not None]
    for pid in unanswered:
        tasks[pid].cancel()
    await asyncio.gather(*tasks.values(), tick_task, return_exceptions=True)

    delays: list[float] = []
    wrong_id = not_terminal = failed_expected = failed_reported = failed_right = 0
    for pid, task in tasks.items():
        expect_failed = waits[pid]["expect"] == "failed"
        failed_expected += expect_failed
        if pid in unanswered:
            continue
        at, event = task.result()
        if not isinstance(event, dict) or event.get("prediction_id") != pid:
            wrong_id += 1
            continue
        if event.get("event") != "terminal":
            not_terminal += 1
            continue
        prediction = event["prediction"]
        if prediction.get("id") != pid:
            wrong_id += 1
            continue
        failed_reported += event["status"] == "failed"
        failed_right += expect_failed and event["status"] == "failed"
        done_at = parse_iso(prediction["created_at"]) + QUEUE_SECONDS + prediction["executionTime"] / 1000
        delays.append(at - done_at)
    return {
        "mode": cfg["mode"],
        "waits": len(tasks),
        "answered": len(delays),
        "unanswered": len(unanswered),
        "wrong_id": wrong_id,
        "not_terminal": not_terminal,
        "failed_expected": failed_expected,
        "failed_reported": failed_reported,
        "failed_right": failed_right,
        "delays": delays,
        "cpu_s": cpu,
        "peak_rss_mb": peak / 2**20,
        "rss_growth_mb": (peak - rss0) / 2**20,
        "lag_p99_ms": common.percentile(lags, 99),
        "sweep_pages": counters.pages,
        "failed_pages": counters.failed_pages,
        "stale": counters.stale,
        "poll_ms": [t * 1000 for t in requests.polls],
        "page_ms": [(ended - began) * 1000 for began, ended, _, _ in requests.pages],
        "sweeps": requests.sweeps(),
    }


def worker(payload: str) -> None:
    cfg = json.loads(payload)
    # Our stdout is the protocol ("ready", then the result); everything else written to it (the triggers'
    # log lines: structlog prints to stdout) goes to stderr, a file: a full pipe would stall the loop.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Everything the waits need is imported before "ready": the import is not part of what is measured.
    import httpx  # noqa: F401

    from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger  # noqa: F401

    result = asyncio.run(_worker_main(cfg, protocol))
    print(json.dumps(result), file=protocol, flush=True)


# -- orchestrator --------------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    mode: str
    waits: int
    triggerers: int
    run_range: tuple[float, float]
    spread: float = 0.0


@dataclass
class Outcome:
    scenario: Scenario
    workers: list[dict[str, Any]]
    stats: dict[str, int]
    submit_span: float
    wall: float
    load: tuple[float, float, float]
    delays: list[float] = field(default_factory=list)

    def total(self, key: str) -> float:
        return sum(w[key] for w in self.workers)

    @property
    def requests_per_prediction(self) -> float:
        return self.stats["requests"] / max(1, self.total("answered"))

    @property
    def cpu_ms_per_wait(self) -> float:
        return self.total("cpu_s") / max(1, self.total("waits")) * 1000


class Triggerer:
    """One ``--worker`` interpreter: waits arrive on its stdin, one JSON line each; EOF: no more."""

    def __init__(self, cfg: dict[str, Any], env: dict[str, str]) -> None:
        self._err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [common.PYTHON, __file__, "--worker", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            env={**os.environ, **env},
            cwd=common.REPO,
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the worker prints "ready" or dies (then: EOF)
        if line.strip() != "ready":
            raise RuntimeError(f"triggerer did not start: {line!r}\n{self._stderr_tail()}")

    def hand(self, wait: dict[str, str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(wait) + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> dict[str, Any]:
        try:  # communicate() closes stdin: EOF tells the worker that every wait was handed over
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise RuntimeError(f"triggerer did not finish in {timeout:.0f} s\n{self._stderr_tail()}") from None
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if self.proc.returncode != 0 or not lines:
            raise RuntimeError(f"triggerer failed (rc={self.proc.returncode})\n{self._stderr_tail()}")
        self._err.close()
        return json.loads(lines[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(common.STOP_TIMEOUT)
        self._err.close()

    def _stderr_tail(self) -> str:
        self._err.seek(0)
        return "\n".join(self._err.read().splitlines()[-30:])


async def _submit_all(
    emulator: common.EmulatorProcess, scenario: Scenario, triggerers: list[Triggerer], seed: int
) -> float:
    """Submit the scenario's predictions (at their start offsets), handing each to a triggerer as its reply
    arrives; returns the span from the first submit to the last reply."""
    import httpx

    rng = random.Random(seed)
    plan = [
        (rng.uniform(0.0, scenario.spread) if scenario.spread else 0.0, rng.random() < FAILED_SHARE)
        for _ in range(scenario.waits)
    ]
    gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)
    began = time.monotonic()
    handed = 0
    headers = {"Authorization": f"Bearer {emulator.api_key}"}
    limits = httpx.Limits(max_connections=SUBMIT_CONCURRENCY, max_keepalive_connections=SUBMIT_CONCURRENCY)
    async with httpx.AsyncClient(base_url=emulator.base_url, headers=headers, timeout=60, limits=limits) as client:

        async def one(offset: float, failed: bool) -> None:
            nonlocal handed
            await asyncio.sleep(max(0.0, began + offset - time.monotonic()))
            async with gate:
                reply = await client.post(
                    f"/api/v3/{MODEL}", json={"prompt": PROMPT + (FAILED_MAGIC if failed else "")}
                )
            reply.raise_for_status()
            data = reply.json()["data"]
            wait = {"id": data["id"], "created_at": data["created_at"], "expect": "failed" if failed else "completed"}
            triggerers[handed % len(triggerers)].hand(wait)
            handed += 1

        await asyncio.gather(*(one(offset, failed) for offset, failed in plan))
    return time.monotonic() - began


def run_scenario(emulator: common.EmulatorProcess, scenario: Scenario, seed: int) -> Outcome:
    low, high = scenario.run_range
    mean_run = (low + high) / 2
    # Other pipelines on the account at the scenario's own rate: N predictions over one mean run time.
    background = scenario.waits * 60.0 / (mean_run + scenario.spread)
    emulator.reset()
    emulator.configure(
        queue_seconds=QUEUE_SECONDS,
        run_seconds_range=[low, high],
        background_traffic_per_minute=background,
        background_run_seconds=mean_run,
        background_backfill_seconds=60.0,
    )
    wait_seconds = high + scenario.spread + 300.0
    cfg = {"mode": scenario.mode, "wait_seconds": wait_seconds, "time_limit": wait_seconds + 120.0}
    env = {"AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json()}
    print(
        f"{scenario.name}: {scenario.mode}, {scenario.waits} waits on {scenario.triggerers} triggerer(s), "
        f"jobs {low:.0f}-{high:.0f} s, starts over {scenario.spread:.0f} s, other traffic {background:.0f}/min",
        flush=True,
    )
    triggerers = [Triggerer(cfg, env) for _ in range(scenario.triggerers)]
    try:
        for triggerer in triggerers:
            triggerer.wait_ready()
        before = emulator.stats()
        began = time.monotonic()
        span = asyncio.run(_submit_all(emulator, scenario, triggerers, seed))
        results = [t.finish(timeout=cfg["time_limit"] + 60.0) for t in triggerers]
        wall = time.monotonic() - began
        after = emulator.stats()
    finally:
        for triggerer in triggerers:
            triggerer.kill()
    delta = {key: after[key] - before[key] for key in ("requests_total", "submit_attempts", "result_polls")}
    history = after["history_queries"] - before["history_queries"]
    requests = delta["requests_total"] - delta["submit_attempts"] - 1  # minus the stats GET that read `after`
    stats = {
        "requests": requests,
        "result_polls": delta["result_polls"],
        "history": history,
        "other": requests - delta["result_polls"] - history,
    }
    outcome = Outcome(scenario, results, stats, span, wall, os.getloadavg())
    outcome.delays = [d for w in results for d in w["delays"]]
    print(
        f"  answered {int(outcome.total('answered'))}/{scenario.waits}, requests {requests} "
        f"({outcome.requests_per_prediction:.2f}/prediction), delay mean {_mean(outcome.delays):.1f} s "
        f"p95 {common.percentile(outcome.delays, 95):.1f} s, CPU {outcome.cpu_ms_per_wait:.1f} ms/wait, "
        f"wall {wall:.0f} s, load {outcome.load[0]:.1f}",
        flush=True,
    )
    return outcome


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _correct(outcome: Outcome) -> str:
    t = outcome.total
    ok = (
        t("answered") == outcome.scenario.waits
        and t("wrong_id") == 0
        and t("failed_right") == t("failed_expected") == t("failed_reported")
    )
    return f"{int(t('answered'))}/{outcome.scenario.waits}" + ("" if ok else " (wrong)")


def _report(outcomes: list[Outcome], quick: bool) -> None:
    rows = []
    for o in outcomes:
        base = next((b for b in outcomes if b.scenario.name == o.scenario.name and b.scenario.mode == PER_ID), None)
        ratio = o.requests_per_prediction / base.requests_per_prediction if base else float("nan")
        t = o.total
        rows.append(
            [
                o.scenario.name,
                o.scenario.mode,
                o.scenario.waits,
                o.scenario.triggerers,
                int(t("answered")),
                int(t("wrong_id") + t("not_terminal") + t("unanswered")),
                f"{int(t('failed_right'))}/{int(t('failed_expected'))}",
                o.stats["requests"],
                o.stats["result_polls"],
                o.stats["history"],
                o.stats["other"],
                o.requests_per_prediction,
                f"{ratio:.3f}x" if base else "-",
                _mean(o.delays),
                common.percentile(o.delays, 50),
                common.percentile(o.delays, 95),
                max(o.delays, default=float("nan")),
                t("cpu_s"),
                o.cpu_ms_per_wait,
                max(w["peak_rss_mb"] for w in o.workers),
                max(w["rss_growth_mb"] for w in o.workers),
                max(w["lag_p99_ms"] for w in o.workers),
                int(t("stale")),
                o.submit_span,
                o.wall,
                o.load[0],
            ]
        )
    common.print_table(
        "Coalesced polling against the emulator (per triggerer: peak RSS, RSS growth, lag p99 are the largest)",
        [
            "scenario",
            "mode",
            "waits",
            "triggerers",
            "answered",
            "wrong/missing",
            "failed reported/expected",
            "requests",
            "result polls",
            "history pages",
            "other",
            "requests/prediction",
            "vs per-id",
            "delay mean s",
            "delay p50 s",
            "delay p95 s",
            "delay max s",
            "CPU s",
            "CPU ms/wait",
            "peak RSS MB",
            "RSS growth MB",
            "lag p99 ms",
            "stale fallbacks",
            "submit span s",
            "wall s",
            "load 1 min",
        ],
        rows,
    )
    timing_rows = []
    for o in outcomes:
        polls = [t for w in o.workers for t in w["poll_ms"]]
        pages = [t for w in o.workers for t in w["page_ms"]]
        sweeps = [tuple(sweep) for w in o.workers for sweep in w["sweeps"]]
        seconds, sizes = [d for d, _ in sweeps], [n for _, n in sweeps]
        timing_rows.append(
            [
                o.scenario.name,
                o.scenario.mode,
                len(polls),
                common.percentile(polls, 50),
                common.percentile(polls, 95),
                len(pages),
                common.percentile(pages, 50),
                common.percentile(pages, 95),
                len(sweeps),
                _mean(seconds),
                common.percentile(seconds, 95),
                max(seconds, default=float("nan")),
                _mean([float(n) for n in sizes]),
                max(sizes, default=0),
            ]
        )
    common.print_table(
        "Requests as the triggerers timed them (a sweep: page 1 of its first filter to the page before the next)",
        [
            "scenario",
            "mode",
            "polls by id",
            "poll ms p50",
            "poll ms p95",
            "history pages",
            "page ms p50",
            "page ms p95",
            "sweeps",
            "sweep s mean",
            "sweep s p95",
            "sweep s max",
            "pages/sweep mean",
            "pages/sweep max",
        ],
        timing_rows,
    )
    goals = []
    first = outcomes[0].scenario.name
    a = next(o for o in outcomes if o.scenario.name == first and o.scenario.mode == PER_ID)
    b = next(o for o in outcomes if o.scenario.name == first and o.scenario.mode == COALESCED)
    ratio = b.requests_per_prediction / a.requests_per_prediction
    p95 = common.percentile(b.delays, 95)
    goals += [
        [first, "every wait answered, own id, failed as failed", f"{_correct(a)} / {_correct(b)}", "all", "met"],
        [first, "requests/prediction, coalesced / per-id", f"{ratio:.3f}x", f"<= {GOAL_REQUEST_RATIO}x", ""],
        [
            first,
            "mean detection delay, coalesced",
            f"{_mean(b.delays):.1f} s",
            f"<= {_mean(a.delays):.1f} s (per-id)",
            "",
        ],
        [first, "p95 detection delay, coalesced", f"{p95:.1f} s", f"< {GOAL_P95_S:.0f} s", ""],
        [
            first,
            "CPU per wait, coalesced",
            f"{b.cpu_ms_per_wait:.1f} ms",
            f"<= {a.cpu_ms_per_wait:.1f} ms (per-id)",
            "",
        ],
    ]
    goals[0][4] = common.verdict("wrong" not in goals[0][2])
    goals[1][4] = common.verdict(ratio <= GOAL_REQUEST_RATIO)
    goals[2][4] = common.verdict(_mean(b.delays) <= _mean(a.delays))
    goals[3][4] = common.verdict(p95 < GOAL_P95_S)
    goals[4][4] = common.verdict(b.cpu_ms_per_wait <= a.cpu_ms_per_wait)
    for o in outcomes:
        if o.scenario.name == first:
            continue
        goals.append(
            [
                o.scenario.name,
                f"every wait answered, own id, failed as failed ({o.scenario.mode})",
                _correct(o),
                "all",
                common.verdict("wrong" not in _correct(o)),
            ]
        )
        p95 = common.percentile(o.delays, 95)
        goals.append(
            [
                o.scenario.name,
                f"p95 detection delay ({o.scenario.mode})",
                f"{p95:.1f} s",
                f"< {GOAL_P95_S:.0f} s",
                common.verdict(p95 < GOAL_P95_S),
            ]
        )
    title = "Goals (coalesced polling" + (", --quick: sizes too small to judge)" if quick else ")")
    common.print_table(title, ["scenario", "measure", "measured", "goal", "verdict"], goals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 waits of 3-6 s, then 2 x 20 (about 40 s)")
    parser.add_argument("--waits", type=int, help="waits of the one-triggerer scenario (default 1000)")
    parser.add_argument("--split-waits", type=int, help="waits of the two-triggerer scenario (default 5000; 0: skip)")
    parser.add_argument("--run", type=float, nargs=2, metavar=("LOW", "HIGH"), help="job run time range (60 120)")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="also run the one-triggerer scenario with starts spread over this many seconds (per-id and coalesced)",
    )
    parser.add_argument("--split-per-id", action="store_true", help="also run the two-triggerer scenario per-id")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    waits = args.waits or (60 if args.quick else 1000)
    split = args.split_waits if args.split_waits is not None else (40 if args.quick else 5000)
    run_range = tuple(args.run) if args.run else ((3.0, 6.0) if args.quick else (60.0, 120.0))
    scenarios = [
        Scenario(f"{waits} at once", PER_ID, waits, 1, run_range),
        Scenario(f"{waits} at once", COALESCED, waits, 1, run_range),
    ]
    if args.spread:
        label = f"{waits} over {args.spread:.0f} s"
        scenarios += [Scenario(label, m, waits, 1, run_range, args.spread) for m in (PER_ID, COALESCED)]
    if split:
        label = f"{split} on 2 triggerers"
        scenarios.append(Scenario(label, COALESCED, split, 2, run_range))
        if args.split_per_id:
            scenarios.append(Scenario(label, PER_ID, split, 2, run_range))
    common.print_machine()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    outcomes = []
    with common.EmulatorProcess() as emulator:
        for scenario in scenarios:
            outcomes.append(run_scenario(emulator, scenario, args.seed))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    _report(outcomes, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
