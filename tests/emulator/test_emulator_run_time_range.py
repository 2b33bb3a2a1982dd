"""``run_seconds_range``: each prediction runs its own time from a range, fixed by its id (benchmarks of many
concurrent jobs need them to finish at different moments)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.emulator.config import ConfigError, EmulatorConfig, run_seconds_drawn
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from tests.emulator.conftest import AVATAR

Submit = Callable[..., dict[str, Any]]


def status_of(api: httpx.Client, prediction_id: str) -> dict[str, Any]:
    data: dict[str, Any] = api.get(f"/api/v3/predictions/{prediction_id}/result").json()["data"]
    return data


def test_each_prediction_runs_the_time_its_id_draws_from_the_range(
    wavespeed_emulator: WaveSpeedEmulator, api: httpx.Client, submit: Submit, clock: ManualClock
) -> None:
    wavespeed_emulator.configure(run_seconds_range=[60.0, 120.0], queue_seconds=0.5)
    ids = [submit()["id"] for _ in range(40)]
    runs = {pid: wavespeed_emulator.predictions[pid].run_seconds for pid in ids}
    assert all(runs[pid] == run_seconds_drawn(pid, 60.0, 120.0) for pid in ids)
    assert all(60.0 <= run <= 120.0 for run in runs.values())
    assert max(runs.values()) - min(runs.values()) > 30.0  # spread over the range, not one value

    shortest = min(ids, key=runs.__getitem__)
    clock.advance(0.5 + runs[shortest] - 0.01)
    assert status_of(api, shortest)["status"] == "processing"
    clock.advance(0.02)
    done = status_of(api, shortest)
    assert done["status"] == "completed" and done["executionTime"] == round(runs[shortest] * 1000)
    clock.advance(121.0)
    assert {status_of(api, pid)["status"] for pid in ids} == {"completed"}


def test_a_model_override_wins_and_none_switches_the_range_off(
    wavespeed_emulator: WaveSpeedEmulator, submit: Submit
) -> None:
    wavespeed_emulator.configure(run_seconds_range=[60.0, 120.0], model_run_seconds={AVATAR: 7.0})
    overridden = submit()["id"]
    assert wavespeed_emulator.predictions[overridden].run_seconds == 7.0
    wavespeed_emulator.configure(run_seconds_range=None, model_run_seconds={}, run_seconds=3.0)
    plain = submit()["id"]
    assert wavespeed_emulator.predictions[plain].run_seconds == 3.0


def test_the_draw_is_the_same_for_one_id_and_stays_in_the_range() -> None:
    assert run_seconds_drawn("abc", 5.0, 10.0) == run_seconds_drawn("abc", 5.0, 10.0)
    assert run_seconds_drawn("abc", 4.0, 4.0) == 4.0
    draws = [run_seconds_drawn(f"id-{i}", 0.0, 1.0) for i in range(2000)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert 0.45 < sum(draws) / len(draws) < 0.55  # uniform-ish


@pytest.mark.parametrize("value", [[1.0], [5.0, 1.0], [-1.0, 2.0], ["a", 2.0], 3.0, [True, 2.0]])
def test_a_malformed_range_is_refused(wavespeed_emulator: WaveSpeedEmulator, value: object) -> None:
    with pytest.raises(ConfigError, match="run_seconds_range"):
        wavespeed_emulator.configure(run_seconds_range=value)
    assert wavespeed_emulator.config.run_seconds_range is None
    assert EmulatorConfig().run_seconds_for(AVATAR, "x") == EmulatorConfig().run_seconds
