"""Every benchmark still runs end to end at its ``--quick`` size and prints the report it promises.

No timing assertions (numbers are machine-dependent; the benchmarks themselves compare ratios measured
in the same run). What is checked is the report's structure: every table with its columns, one row per
variant / case / goal the benchmark's set-up implies (none missing, none twice), numbers where numbers
belong, and a verdict on every goal that agrees with the goal's own measured value and threshold.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TIMEOUT = 120
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
VERDICTS = {"met", "MISSED"}


def run_quick(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=BENCHMARKS.parent,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


# -- reading the report ---------------------------------------------------------------------------------


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[dict[str, str]]

    def column(self, name: str) -> list[str]:
        return [row[name] for row in self.rows]

    def keyed(self, *names: str) -> dict[tuple[str, ...], dict[str, str]]:
        """Rows by the values of ``names``; each key exactly once."""
        keys = [tuple(row[n] for n in names) for row in self.rows]
        twice = [key for key, count in Counter(keys).items() if count > 1]
        assert not twice, f"rows listed more than once in {self.title!r}: {twice}"
        return dict(zip(keys, self.rows, strict=True))


def tables(output: str) -> list[Table]:
    """Every ``## title`` followed by a Markdown table (header, ``|---|`` rule, rows)."""
    found = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("## "):
            continue
        body = [row for row in lines[i + 1 :] if row.strip()][:2]
        assert len(body) == 2 and body[0].startswith("|") and set(body[1]) <= set("|-"), (line, body)
        start = lines.index(body[1], i + 1) + 1
        headers = cells(body[0])
        rows = []
        for row in lines[start:]:
            if not row.startswith("|"):
                break
            values = cells(row)
            assert len(values) == len(headers), f"{line}: {row!r} has {len(values)} cells, not {len(headers)}"
            rows.append(dict(zip(headers, values, strict=True)))
        found.append(Table(line[3:], headers, rows))
    return found


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def table(output: str, title_start: str) -> Table:
    matches = [t for t in tables(output) if t.title.startswith(title_start)]
    assert len(matches) == 1, f"{len(matches)} tables {title_start!r} in:\n{output}"
    return matches[0]


def number(text: str) -> float:
    match = NUMBER.search(text)
    assert match, f"no number in {text!r}"
    return float(match.group())


def assert_positive_numbers(t: Table, columns: Iterable[str]) -> None:
    for row in t.rows:
        for name in columns:
            assert number(row[name]) > 0, f"{t.title}: {name} = {row[name]!r} in {row}"


def assert_machine_header(output: str) -> None:
    first = output.splitlines()[0]
    assert re.match(r"machine: nproc=\d+, cpu=.+, memory=.+, python=3\.\d+\.\d+, airflow=\d", first), first
    assert re.search(r"^provider source: \S+", output, re.MULTILINE), output[:500]


GOAL = re.compile(r"(<=|>=|<|>)\s*(\d+(?:\.\d+)?)\s*(x|ms|MB|s|%)?(?:\s*\(.*\))?")


def assert_verdict_agrees(measured: str, goal: str, verdict: str, where: str) -> None:
    """The verdict is 'met' exactly when ``measured`` satisfies ``goal`` (a single threshold such as
    ``<= 2x (aim 1.5x)``); values within the rounding of the printed measurement are not judged."""
    assert verdict in VERDICTS or verdict == "met (aim met)", f"{where}: verdict {verdict!r}"
    threshold = GOAL.fullmatch(goal)
    if threshold is None:
        return
    op, limit = threshold.group(1), float(threshold.group(2))
    value_text = NUMBER.search(measured)
    assert value_text is not None, f"{where}: measured {measured!r} has no number"
    value = float(value_text.group())
    decimals = len(value_text.group().partition(".")[2])
    if abs(value - limit) <= 0.5 * 10**-decimals:
        return
    holds = {"<": value < limit, "<=": value <= limit, ">": value > limit, ">=": value >= limit}[op]
    assert verdict.startswith("met") == holds, f"{where}: {measured} against {goal!r} is not {verdict!r}"


# -- the benchmarks ---------------------------------------------------------------------------------------

TRIGGER_VARIANTS = ("bare-httpx", "wavespeed-trigger", "http-sensor-trigger", "httpx-client-per-poll")
TRIGGER_PROPOSAL = "trigger+bounded-pool"
TRIGGER_GOALS = (
    "CPU/poll, trigger / bare httpx",
    "CPU/poll, HttpSensorTrigger / trigger",
    f"(proposal) CPU/poll, {TRIGGER_PROPOSAL} / bare httpx",
    f"(proposal) loop lag p99, {TRIGGER_PROPOSAL}",
    "(reference) CPU/poll, httpx-client-per-poll / trigger",
    "loop lag p99 (trigger, steady)",
    "RSS growth per 1,000 triggers",
)


def test_triggerer_benchmark_compares_trigger_with_bare_httpx_and_http_sensor_trigger() -> None:
    if importlib.util.find_spec("airflow.providers.http") is None:
        pytest.skip("apache-airflow-providers-http is not installed (it is the hand-rolled peer)")
    output = run_quick("bench_triggerer.py")
    assert_machine_header(output)
    transports, n = ("http", "https"), "10"  # --quick: N = 10 over both transports

    scale = table(output, "Triggerer scale")
    assert scale.headers == [
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
    ]
    by_variant = scale.keyed("transport", "N", "variant")
    expected = {(t, n, v) for t in transports for v in (*TRIGGER_VARIANTS, TRIGGER_PROPOSAL)}
    assert set(by_variant) == expected
    assert_positive_numbers(scale, ["interval s"])
    for row in scale.rows:  # how many polls fit the short window depends on the machine's load: counts, not rates
        assert re.fullmatch(r"\d+", row["polls"]) and NUMBER.fullmatch(row["CPU/poll ms"]), row
    for transport in transports:
        assert by_variant[(transport, n, "bare-httpx")]["ratio"] == "1.00"  # the baseline of every ratio

    goals = table(output, "Goals (triggerer)")
    assert goals.headers == ["transport", "N", "measure", "measured", "goal", "verdict"]
    assert set(goals.keyed("transport", "N", "measure")) == {(t, n, m) for t in transports for m in TRIGGER_GOALS}
    for row in goals.rows:
        assert_verdict_agrees(row["measured"], row["goal"], row["verdict"], f"triggerer goal {row}")


POLL_JOBS = ("5 s", "30 s", "60 s", "120 s", "30-120 s mean", "600 s")
POLL_HINTS = ("blind", "hint right", "hint 2x long", "hint 2x short")
POLL_VARIANTS = ("fixed 5 s", *(f"before: {h}" for h in POLL_HINTS), *POLL_HINTS, "blind (video, min 5 s)")
POLL_CELL_HEADERS = [
    "job",
    "variant",
    "polls mean",
    "polls max",
    "polls vs fixed 5 s",
    "delay mean s",
    "delay mean %",
    "delay max %",
    "shortest sleep / floor s",
    "verdict",
]
POLL_GOALS = (
    "blind: polls, 30-120 s jobs (mean)",
    "blind: delay, 30-120 s jobs (mean % of run time)",
    "blind: delay, 5 s image job",
    "hint right: polls, 30-120 s",
    "hint right: delay, 30-120 s",
    "hint 2x long: polls / delay vs blind, 30-120 s",
    "hint 2x short: polls / delay vs blind, 30-120 s",
    "API's minimum: shortest sleep, image / video",
)


def expected_polling_verdict(job: str, variant: str) -> re.Pattern[str]:
    """What bench_polling judges each (job, variant) cell against (its ``judge``)."""
    verdict = r"(met|MISSED)"
    if variant == "fixed 5 s":
        return re.compile("baseline")
    if job == "5 s":
        if variant == "blind (video, min 5 s)":
            return re.compile(re.escape("ref (the 3 s goal is for images)"))
        return re.compile(rf"delay <= 3 s: {verdict}")
    if job == "600 s":
        return re.compile("ref")
    if job != "30-120 s mean":
        return re.compile(re.escape("(judged on the 30-120 s mean)"))
    if variant.removeprefix("before: ") in ("blind", "blind (video, min 5 s)"):
        return re.compile(rf"polls <= 12: {verdict}, delay <= 25%: {verdict}")
    if variant.removeprefix("before: ") == "hint right":
        return re.compile(rf"polls <= 8: {verdict}, delay <= 20%: {verdict}")
    return re.compile(rf"no worse than blind: polls {verdict}, delay {verdict}")


def assert_polling_cells(t: Table) -> None:
    assert t.headers == POLL_CELL_HEADERS, t.title
    by_cell = t.keyed("job", "variant")
    assert set(by_cell) == {(job, variant) for job in POLL_JOBS for variant in POLL_VARIANTS}, t.title
    assert_positive_numbers(t, ["polls mean", "polls max", "polls vs fixed 5 s"])
    for (job, variant), row in by_cell.items():
        assert expected_polling_verdict(job, variant).fullmatch(row["verdict"]), (t.title, job, variant, row)
        if variant == "fixed 5 s":
            assert row["polls vs fixed 5 s"] == "1.00" and row["shortest sleep / floor s"] == "-", row
        else:
            floor = "5" if variant == "blind (video, min 5 s)" else "2"
            # "inf": the job was over before the first sleep (a short job on a busy machine: one poll)
            assert re.fullmatch(rf"(\d+\.\d\d|inf) / {floor}", row["shortest sleep / floor s"]), (job, variant, row)
        assert number(row["polls max"]) >= number(row["polls mean"]) * 0.99, (job, variant, row)
    for variant in POLL_VARIANTS:  # equal samples per job: the 30-120 s row is the mean of the three jobs
        mean = sum(number(by_cell[(job, variant)]["polls mean"]) for job in ("30 s", "60 s", "120 s")) / 3
        shown = number(by_cell[("30-120 s mean", variant)]["polls mean"])
        assert shown == pytest.approx(mean, rel=0.02, abs=0.01), (t.title, variant, shown, mean)


def test_polling_benchmark_reports_polls_and_detection_delay_blind_and_hinted_per_job_length() -> None:
    output = run_quick("bench_polling.py")
    assert_machine_header(output)
    assert_polling_cells(table(output, "Polling, live against the emulator"))
    assert_polling_cells(table(output, "Schedule math alone"))

    sweep = table(output, "Run times spread log-uniformly over 30-120 s")
    assert sweep.headers == ["variant", "polls mean", "delay mean %", "delay p95 %", "verdict"]
    assert set(sweep.keyed("variant")) == {(v,) for v in POLL_VARIANTS[1:]}
    assert set(sweep.column("verdict")) <= VERDICTS
    assert_positive_numbers(sweep, ["polls mean"])

    cap = table(output, "Cap decision: 600 s job")
    assert cap.headers == ["schedule", "polls mean", "delay mean %", "fails 3 s in: seen after s"]
    assert set(cap.keyed("schedule")) == {
        ("blind, max_poll_interval 60 s",),
        ("hint 600 s, max 60 s, first sleep capped (shipped)",),
        ("hint 600 s, max 60 s, first sleep not capped (alternative)",),
        ("hint 600 s, max_poll_interval 300 s",),
    }
    assert_positive_numbers(cap, ["polls mean", "fails 3 s in: seen after s"])

    goals = table(output, "Goals (polling")
    assert goals.headers == ["goal", "target", "live", "verdict (live)", "schedule math", "verdict (sim)"]
    assert set(goals.keyed("goal")) == {(g,) for g in POLL_GOALS}
    for row in goals.rows:
        for measured, verdict in (("live", "verdict (live)"), ("schedule math", "verdict (sim)")):
            assert_verdict_agrees(row[measured], row["target"], row[verdict], f"polling goal {row['goal']}")


def test_download_benchmark_compares_store_outputs_with_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    output = run_quick("bench_download.py")
    assert_machine_header(output)
    cases = ("1 x 8 MB", "3 x 2 MB")  # --quick: one 8 MiB output, then three of 2 MiB at once

    download = table(output, "Download over loopback")
    assert download.headers == [
        "case",
        "curl MB/s",
        "store_outputs MB/s",
        "ratio",
        "curl CPU s",
        "ours CPU s",
        "CPU ours/curl",
        "ours peak RSS +MB",
        "sampled RSS +MB",
    ]
    assert set(download.keyed("case")) == {(c,) for c in cases}
    assert_positive_numbers(download, ["curl MB/s", "store_outputs MB/s", "ratio"])
    for row in download.rows:
        assert re.fullmatch(r"\d+\.\d\dx", row["ratio"]) and re.fullmatch(r"\d+\.\d\dx", row["CPU ours/curl"]), row

    goals = table(output, "Goals (download)")
    assert goals.headers == ["case", "measure", "measured", "goal", "verdict"]
    measures = goals.keyed("case", "measure")
    assert len(measures) == 2 * len(cases)
    for case in cases:
        assert (case, "throughput, store_outputs / curl") in measures, measures
        assert [m for c, m in measures if c == case and re.fullmatch(r"peak RSS growth \(\w+\)", m)], measures
    for row in goals.rows:
        assert_verdict_agrees(row["measured"], row["goal"], row["verdict"], f"download goal {row}")


def test_import_benchmark_compares_operator_import_with_http_provider() -> None:
    if importlib.util.find_spec("airflow.providers.http") is None:
        pytest.skip("apache-airflow-providers-http is not installed (it is the baseline)")
    output = run_quick("bench_import.py")
    assert_machine_header(output)

    imports = table(output, "Import after `import airflow.sdk`")
    assert imports.headers == [
        "what",
        "module",
        "best ms",
        "median ms",
        "ratio",
        "new modules",
        "of which not its own package",
    ]
    by_what = imports.keyed("what")
    assert {what: row["module"] for (what,), row in by_what.items()} == {
        "wavespeed operators": "airflow_provider_wavespeed.operators.wavespeed",
        "http operator": "airflow.providers.http.operators.http",
    }
    assert_positive_numbers(imports, ["best ms", "median ms", "new modules"])
    assert by_what[("http operator",)]["ratio"] == "1.00x"  # the baseline

    goals = table(output, "Goals (import)")
    assert goals.headers == ["measure", "measured", "goal", "verdict"]
    assert set(goals.keyed("measure")) == {
        ("wavespeed operators import (best)",),
        ("wavespeed operators vs http operator",),
    }
    for row in goals.rows:
        assert_verdict_agrees(row["measured"], row["goal"], row["verdict"], f"import goal {row}")


UI_CALLS = (
    "GET /wavespeed/api/spend?days=30",
    "GET /wavespeed/api/spend?days=90",
    "spend_summary(days=30), direct",
    "floor: one SELECT of the records, no decoding",
    "REST: list the records (no values), 100/page",
    "GET /wavespeed/api/runs (50 mapped TIs)",  # --quick: a 50-TI run (200 at full size)
    "run_view(), direct",
    "REST: list the run's records (no values)",
    "REST: one XCom GET per task instance (values)",
)
UI_GOALS = (
    "spend API p95, 30 days",
    "spend API p95, 90 days",
    "run tab API p95, 50 mapped TIs",
    "spend API SQL queries per call",
    "run tab API SQL queries per call",
    "spend API / REST listing the records (p50)",
    "run tab API / REST one GET per TI (p50)",
)


def test_ui_benchmark_reads_back_the_generated_records_and_counts_sql_queries_per_call() -> None:
    output = run_quick("bench_ui.py")
    assert_machine_header(output)

    data = table(output, "Data")
    assert data.headers[:3] == ["database", "WaveSpeed TIs", "other TIs"]
    assert set(data.keyed("database")) == {("sqlite",)}  # --quick: SQLite only
    assert_positive_numbers(data, ["WaveSpeed TIs", "other TIs", "DAG runs", "XCom rows", "wavespeed_record"])
    assert number(data.rows[0]["WaveSpeed TIs"]) >= 1000

    read_back = table(output, "Read back")
    assert read_back.headers == ["database", "check", "plugin", "generated", "verdict"]
    assert len(read_back.rows) == 5
    for row in read_back.rows:  # correctness, not timing: the plugin reads exactly what was generated
        assert row["verdict"] == "met", row

    scale = table(output, "UI plugin API at scale")
    assert scale.headers == [
        "database",
        "call",
        "calls",
        "HTTP requests/call",
        "p50 ms",
        "p95 ms",
        "max ms",
        "SQL queries/call",
        "p50 vs baseline (REST)",
        "response KB",
    ]
    by_call = scale.keyed("database", "call")
    assert set(by_call) == {("sqlite", call) for call in UI_CALLS}
    assert_positive_numbers(scale, ["calls", "HTTP requests/call", "p50 ms", "p95 ms", "SQL queries/call"])
    for row in scale.rows:
        assert re.fullmatch(r"\d+(-\d+)?", row["SQL queries/call"]) and re.fullmatch(
            r"\d+\.\d+x", row["p50 vs baseline (REST)"]
        ), row
    for baseline in ("REST: list the records (no values), 100/page", "REST: one XCom GET per task instance (values)"):
        assert by_call[("sqlite", baseline)]["p50 vs baseline (REST)"] == "1.00x"
    assert by_call[("sqlite", "REST: one XCom GET per task instance (values)")]["HTTP requests/call"] == "50"

    goals = table(output, "Goals (UI plugin at scale)")
    assert goals.headers == ["database", "measure", "measured", "goal", "verdict"]
    assert set(goals.keyed("database", "measure")) == {("sqlite", m) for m in UI_GOALS}
    for row in goals.rows:
        assert_verdict_agrees(row["measured"], row["goal"], row["verdict"], f"UI goal {row}")


COALESCED_SCENARIOS = (
    ("60 at once", "per-id", "1"),
    ("60 at once", "coalesced", "1"),
    ("40 on 2 triggerers", "coalesced", "2"),
)
COALESCED_GOALS = (
    ("60 at once", "every wait answered, own id, failed as failed"),
    ("60 at once", "requests/prediction, coalesced / per-id"),
    ("60 at once", "mean detection delay, coalesced"),
    ("60 at once", "p95 detection delay, coalesced"),
    ("60 at once", "CPU per wait, coalesced"),
    ("40 on 2 triggerers", "every wait answered, own id, failed as failed (coalesced)"),
    ("40 on 2 triggerers", "p95 detection delay (coalesced)"),
)


def test_coalesced_benchmark_answers_every_wait_per_id_and_coalesced_and_counts_requests() -> None:
    output = run_quick("bench_coalesced.py")
    assert_machine_header(output)

    runs = table(output, "Coalesced polling against the emulator")
    assert runs.headers[:7] == [
        "scenario",
        "mode",
        "waits",
        "triggerers",
        "answered",
        "wrong/missing",
        "failed reported/expected",
    ]
    by_run = runs.keyed("scenario", "mode", "triggerers")
    assert set(by_run) == set(COALESCED_SCENARIOS)
    assert_positive_numbers(runs, ["requests", "requests/prediction", "CPU ms/wait", "peak RSS MB"])
    for row in runs.rows:  # correctness, not timing: every wait gets its own prediction's event
        assert row["answered"] == row["waits"] and row["wrong/missing"] == "0", row
        reported, expected = row["failed reported/expected"].split("/")
        assert reported == expected, row
        polls, pages, other = (int(row[c]) for c in ("result polls", "history pages", "other"))
        assert polls + pages + other == int(row["requests"]), row
    assert by_run[("60 at once", "per-id", "1")]["history pages"] == "0"  # per-id never reads the history
    assert by_run[("60 at once", "per-id", "1")]["vs per-id"] == "1.000x"
    assert number(by_run[("60 at once", "coalesced", "1")]["history pages"]) > 0

    goals = table(output, "Goals (coalesced polling")
    assert goals.headers == ["scenario", "measure", "measured", "goal", "verdict"]
    assert set(goals.keyed("scenario", "measure")) == set(COALESCED_GOALS)
    for row in goals.rows:
        assert_verdict_agrees(row["measured"], row["goal"], row["verdict"], f"coalesced goal {row}")
