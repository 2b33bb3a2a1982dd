"""Every benchmark still runs end to end at its ``--quick`` size (no timing assertions: numbers are
machine-dependent; the benchmarks themselves compare ratios measured in the same run)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TIMEOUT = 120


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


def assert_has_goal_table(output: str, *expected_rows: str) -> None:
    assert "machine: nproc=" in output
    assert "## Goals" in output
    table = output.split("## Goals", 1)[1]
    assert "| verdict" in table.splitlines()[2], table
    for row in expected_rows:
        assert row in table, f"{row!r} missing from the goals table:\n{table}"
    assert ("met" in table) or ("MISSED" in table)


def test_triggerer_benchmark_compares_trigger_with_bare_httpx_and_http_sensor_trigger() -> None:
    if importlib.util.find_spec("airflow.providers.http") is None:
        pytest.skip("apache-airflow-providers-http is not installed (it is the hand-rolled peer)")
    output = run_quick("bench_triggerer.py")
    for variant in ("bare-httpx", "wavespeed-trigger", "http-sensor-trigger"):
        assert f"| {variant}" in output
    assert_has_goal_table(output, "CPU/poll, trigger / bare httpx", "loop lag p99", "RSS growth per 1,000 triggers")


def test_polling_benchmark_reports_polls_and_detection_delay_blind_and_hinted_per_job_length() -> None:
    output = run_quick("bench_polling.py")
    for job in ("| 5 s", "| 30 s", "| 60 s", "| 120 s", "| 600 s", "| 30-120 s mean"):
        assert job in output
    for variant in ("| fixed 5 s", "| blind", "| hint right", "| hint 2x long", "| hint 2x short", "| before: blind"):
        assert variant in output
    assert "## Polling, live against the emulator" in output
    assert "## Schedule math alone" in output
    assert_has_goal_table(
        output,
        "blind: polls, 30-120 s jobs",
        "blind: delay, 5 s image job",
        "hint right: polls",
        "hint 2x long",
        "hint 2x short",
        "API's minimum",
    )


def test_download_benchmark_compares_store_outputs_with_curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    output = run_quick("bench_download.py")
    assert "| curl MB/s" in output
    assert_has_goal_table(output, "throughput, store_outputs / curl", "peak RSS growth")


def test_import_benchmark_compares_operator_import_with_http_provider() -> None:
    if importlib.util.find_spec("airflow.providers.http") is None:
        pytest.skip("apache-airflow-providers-http is not installed (it is the baseline)")
    output = run_quick("bench_import.py")
    assert "| http operator" in output
    assert_has_goal_table(output, "wavespeed operators import (best)")
