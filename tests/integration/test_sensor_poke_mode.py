"""``WaveSpeedPredictionSensor(deferrable=False)`` through ``dag.test()``: the worker waits by the trigger's plan.

The sensor's ``clock`` and ``sleep`` are replaced on the in-memory task (what ``dag.test()`` runs) by a
``WorkerTime``: time moves only when the sensor pauses, and, bound to an emulator on a ``ManualClock``,
every pause moves the emulator's time too. Queue and run phases, deadlines and the pause schedule are
then exact, whatever the load on the machine, and a two-minute wait takes a fraction of a second.
"""

from __future__ import annotations

import contextlib
import re
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.polling import PollSchedule
from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.task_results import deadline_failure
from tests.support import (
    AVATAR,
    AVATAR_INPUTS,
    load_dag,
    log_events,
    polled,
    task_states,
    tis_of,
    went_through_deferral,
    when,
    write_dag,
    xcom_value,
)

HEADER = """
from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

DAG_ARGS = dict(
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    default_args={"retry_delay": timedelta(seconds=0)},
)
"""


class WorkerTime:
    """The poke-mode sensor's ``clock`` and ``sleep``: time moves only when the sensor pauses.

    With ``emulator_clock`` the emulator's time is this time (a pause advances it); without, the clock
    starts at the real time of its first reading. ``on_pause[n]`` runs after the n-th pause, before the
    poll that follows it.
    """

    def __init__(self, emulator_clock: ManualClock | None = None) -> None:
        self.emulator_clock = emulator_clock
        self._now: float | None = None
        self.pauses: list[float] = []
        self.paused_at: list[float] = []
        self.on_pause: dict[int, Callable[[], object]] = {}

    def time(self) -> float:
        if self.emulator_clock is not None:
            return self.emulator_clock.wall_clock_ns() / 1e9
        if self._now is None:
            self._now = time.time()
        return self._now

    def sleep(self, seconds: float) -> None:
        self.paused_at.append(self.time())
        self.pauses.append(seconds)
        if self.emulator_clock is not None:
            self.emulator_clock.advance(seconds)
        else:
            self._now = self.time() + seconds
        if action := self.on_pause.get(len(self.pauses)):
            action()

    def drive(self, dag: Any, task_id: str = "wait") -> Any:
        """Make the in-memory task (the one ``dag.test()`` runs) wait on this time; returns the DAG."""
        task = dag.get_task(task_id)
        task.clock, task.sleep = self.time, self.sleep
        return dag


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[WaveSpeedEmulator, WorkerTime]]]:
    """``emulated(**switches)``: an emulator on a ManualClock (set as ``wavespeed_default``) and the
    ``WorkerTime`` that moves it."""
    with contextlib.ExitStack() as stack:

        def start(**switches: Any) -> tuple[WaveSpeedEmulator, WorkerTime]:
            clock = ManualClock()
            emulator = stack.enter_context(WaveSpeedEmulator(EmulatorConfig(**switches), clock=clock))
            monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", emulator.connection_json())
            return emulator, WorkerTime(clock)

        yield start


def submit(emulator: WaveSpeedEmulator) -> str:
    """Create a prediction straight on the emulator (not through the provider); return its id."""
    reply = httpx.post(
        f"{emulator.base_url}/api/v3/{AVATAR}",
        json=AVATAR_INPUTS,
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    return str(reply.json()["data"]["id"])


def sensor_dag(dag_id: str, **sensor_kwargs: Any) -> Any:
    """A DAG with one sensor ``wait`` on ``dag_run.conf['prediction_id']``."""
    arguments = "".join(f", {name}={value!r}" for name, value in sensor_kwargs.items())
    body = f"""
    with DAG(dag_id={dag_id!r}, **DAG_ARGS):
        WaveSpeedPredictionSensor(
            task_id="wait", prediction_id="{{{{ dag_run.conf['prediction_id'] }}}}"{arguments}
        )
    """
    return load_dag(write_dag(dag_id, textwrap.dedent(HEADER) + textwrap.dedent(body)), dag_id)


def try_number(dag_run: Any) -> int:
    return int(tis_of(dag_run, "wait")[0].try_number)


def without_waited_seconds(text: str) -> str:
    return re.sub(r"after \d+ s", "after N s", text)


# -- deadline and queue grace ------------------------------------------------------------------------------


def test_poke_mode_keeps_waiting_for_a_prediction_still_queued_at_the_timeout_and_returns_it_completed(
    emulated, run_dag, all_output
):
    emulator, worker = emulated(queue_seconds=40.0, run_seconds=0.0)  # queued 40 s, then done at once
    prediction_id = submit(emulator)
    dag = worker.drive(
        sensor_dag(
            "wavespeed_poke_queue_grace",
            deferrable=False,
            timeout=10,
            queue_timeout=60,
            poll_interval=2.0,
            max_poll_interval=5.0,
            retries=2,
        )
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"wait": "success"}
    assert try_number(dr) == 1
    assert "deferred" not in log_events(dr, "wait")  # waited in the worker
    result = xcom_value(dr, "wait")
    assert result["id"] == prediction_id and result["status"] == "completed"
    started = Prediction.from_api(result).created_epoch
    assert started is not None
    # polls after the 10 s timeout found it still queued and went on; it completed 40 s in
    assert any(at - started > 10 for at in worker.paused_at)
    assert 40 <= worker.time() - started <= 40 + 5  # seen within one (longest) pause of completing
    assert emulator.stats.polls_by_prediction[prediction_id] == len(worker.pauses) + 1
    assert "Gave up waiting" not in all_output()


def test_poke_mode_without_queue_timeout_gives_up_on_a_queued_prediction_at_the_timeout_naming_the_queue(
    emulated, run_dag, all_output
):
    emulator, worker = emulated(queue_seconds=40.0, run_seconds=0.0)
    prediction_id = submit(emulator)
    dag = worker.drive(
        sensor_dag(
            "wavespeed_poke_no_queue_grace",
            deferrable=False,
            timeout=10,
            queue_timeout=0,
            poll_interval=2.0,
            max_poll_interval=5.0,
            retries=2,
        )
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"wait": "failed"}
    assert try_number(dr) == 1  # a deadline is final, as in deferred mode
    assert sum(worker.pauses) == pytest.approx(10.0)  # the last pause ended exactly at the deadline
    expected = without_waited_seconds(str(deadline_failure(prediction_id, "created", 10)))
    assert "never left the queue" in expected
    assert expected in without_waited_seconds(all_output())


def test_poke_mode_times_out_with_the_same_message_as_deferred_mode(emulator, run_dag, all_output):
    emulator.config.queue_seconds = 0.0
    emulator.config.run_seconds = 600.0  # still processing when both timeouts pass
    settings = dict(timeout=1, queue_timeout=0, poll_interval=0.2, retries=2)
    deferred_dag = sensor_dag("wavespeed_poke_timeout_deferred", deferrable=True, **settings)
    worker = WorkerTime()
    poke_dag = worker.drive(sensor_dag("wavespeed_poke_timeout_in_the_worker", deferrable=False, **settings))

    waited_deferred, waited_in_the_worker = submit(emulator), submit(emulator)
    deferred = run_dag(deferred_dag, prediction_id=waited_deferred)
    in_the_worker = run_dag(poke_dag, prediction_id=waited_in_the_worker)

    assert task_states(deferred) == task_states(in_the_worker) == {"wait": "failed"}
    assert try_number(deferred) == try_number(in_the_worker) == 1
    assert went_through_deferral(deferred, "wait", all_output)
    assert "deferred" not in log_events(in_the_worker, "wait")
    output = without_waited_seconds(all_output())
    for prediction_id in (waited_deferred, waited_in_the_worker):  # each says what deferred mode says
        assert without_waited_seconds(str(deadline_failure(prediction_id, "processing", 1))) in output, prediction_id
    assert sum(worker.pauses) == pytest.approx(1.0)  # waited exactly to the deadline, by the plan


def test_poke_mode_with_soft_fail_skips_at_the_deadline(emulator, run_dag):
    emulator.config.queue_seconds = 0.0
    emulator.config.run_seconds = 600.0
    prediction_id = submit(emulator)
    worker = WorkerTime()
    dag = worker.drive(
        sensor_dag("wavespeed_poke_soft_fail", deferrable=False, timeout=5, poll_interval=1.0, soft_fail=True)
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"wait": "skipped"}
    assert sum(worker.pauses) == pytest.approx(5.0)


# -- the pause schedule ------------------------------------------------------------------------------------


def test_poke_mode_pauses_grow_with_the_predictions_age_as_the_poll_schedule_says(emulated, run_dag):
    run = 120.0
    emulator, worker = emulated(queue_seconds=0.0, run_seconds=run)
    prediction_id = submit(emulator)
    dag = worker.drive(
        sensor_dag("wavespeed_poke_schedule", deferrable=False, timeout=3600, poll_interval=2.0, max_poll_interval=30.0)
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"wait": "success"}
    started = Prediction.from_api(xcom_value(dr, "wait")).created_epoch
    assert started is not None
    schedule = PollSchedule(min_interval=2.0, max_interval=30.0)
    for at, pause in zip(worker.paused_at, worker.pauses, strict=True):
        base = schedule.base_interval(at - started)  # the schedule's pause for the age at that poll, +-10 % jitter
        low, high = max(2.0, base * (1 - schedule.jitter)), min(30.0, base * (1 + schedule.jitter))
        assert low - 1e-9 <= pause <= high + 1e-9, (at - started, pause)
    assert worker.pauses[-1] > 10 * worker.pauses[0]  # ~2 s at first, ~30 s (the cap) at the end

    def polls_until_done(pick: Callable[[float], float]) -> int:
        age, polls = 0.0, 1  # the first look, at age 0 (the clock stood still since the submit)
        while age < run:
            age += pick(schedule.base_interval(age))
            polls += 1
        return polls

    most = polls_until_done(lambda base: max(2.0, base * (1 - schedule.jitter)))
    fewest = polls_until_done(lambda base: min(30.0, base * (1 + schedule.jitter)))
    polls = emulator.stats.polls_by_prediction[prediction_id]
    assert polls == len(worker.pauses) + 1  # one poll per pause, plus the first look
    assert fewest <= polls <= most < 20  # a fixed 2 s poke would take 61


# -- errors: final ones fail at once, transient ones are waited through ------------------------------------


def test_an_error_asking_again_cannot_fix_fails_at_once_with_the_message_of_deferred_mode(
    emulator, run_dag, all_output
):
    emulator.config.queue_seconds = 0.0
    emulator.config.run_seconds = 600.0
    waited_deferred, waited_in_the_worker = submit(emulator), submit(emulator)
    key = emulator.config.api_key

    def revoke() -> None:
        emulator.config.api_key = "the-account-was-given-a-new-key"

    deferred_dag = sensor_dag("wavespeed_poke_final_deferred", deferrable=True, poll_interval=0.2, retries=2)
    with when(polled(emulator, 2), revoke):  # after the first look and the trigger's first poll
        deferred = run_dag(deferred_dag, prediction_id=waited_deferred)
    emulator.config.api_key = key
    worker = WorkerTime()
    worker.on_pause[2] = revoke
    poke_dag = worker.drive(
        sensor_dag("wavespeed_poke_final_in_the_worker", deferrable=False, poll_interval=0.2, retries=2)
    )
    in_the_worker = run_dag(poke_dag, prediction_id=waited_in_the_worker)

    assert task_states(deferred) == task_states(in_the_worker) == {"wait": "failed"}
    assert try_number(deferred) == try_number(in_the_worker) == 1  # final: no retry
    assert len(worker.pauses) == 2  # no pause after the 401: it failed at once
    assert emulator.stats.polls_by_prediction[waited_in_the_worker] == 3  # look, poll, 401 (not retried)
    output = all_output()
    deferred_prefix = f"Waiting for WaveSpeed prediction {waited_deferred} failed: "
    reasons = {line.split(deferred_prefix, 1)[1][:40] for line in output.splitlines() if deferred_prefix in line}
    assert reasons and all("401" in reason or "key" in reason.lower() for reason in reasons), reasons
    assert any(f"Waiting for WaveSpeed prediction {waited_in_the_worker} failed: {r}" in output for r in reasons)


def test_poke_mode_waits_through_a_503_storm_and_still_completes(emulated, run_dag, fast_retries, all_output):
    emulator, worker = emulated(queue_seconds=0.0, run_seconds=30.0)
    prediction_id = submit(emulator)
    worker.on_pause[1] = lambda: setattr(emulator.config, "fail_every_nth", 1)  # every request: 503
    worker.on_pause[3] = lambda: setattr(emulator.config, "fail_every_nth", 0)
    dag = worker.drive(
        sensor_dag("wavespeed_poke_503_storm", deferrable=False, poll_interval=2.0, max_poll_interval=10.0, retries=0)
    )

    dr = run_dag(dag, prediction_id=prediction_id)

    assert task_states(dr) == {"wait": "success"}
    assert xcom_value(dr, "wait")["status"] == "completed"
    assert emulator.stats.faults_injected >= 2 * fast_retries.max_attempts  # two polls' retries all got 503
    assert f"Polling prediction {prediction_id} failed" in all_output()
