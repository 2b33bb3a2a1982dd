"""WaveSpeedPredictionTrigger the way the triggerer uses it: serialize, re-create from the classpath, run."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from typing import Any

import pytest

from airflow_provider_wavespeed.api.loop_clients import clients_in_this_loop
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger
from tests.support import (
    AVATAR,
    AVATAR_INPUTS,
    LONG_KEY,
    FakeClock,
    connection_json,
    held_until,
    raw_submit,
    wait_terminal,
)

POLL = 0.2


def recreate(trigger: WaveSpeedPredictionTrigger) -> WaveSpeedPredictionTrigger:
    """What the triggerer does: store ``serialize()`` as JSON, import the classpath, build from kwargs."""
    classpath, kwargs = trigger.serialize()
    stored = json.loads(json.dumps(kwargs))  # plain JSON or this raises
    module_name, _, class_name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**stored)


async def first_event(trigger: WaveSpeedPredictionTrigger, timeout: float) -> dict[str, Any] | None:
    """The payload of the trigger's first event, or None if it yields nothing within ``timeout``."""
    events = trigger.run()
    try:
        event = await asyncio.wait_for(events.__anext__(), timeout)
    except TimeoutError:
        return None
    finally:
        await events.aclose()
    return dict(event.payload)


def run_first_event(
    trigger: WaveSpeedPredictionTrigger, timeout: float = 60.0, clock: FakeClock | None = None
) -> dict[str, Any] | None:
    """Re-create ``trigger`` as the triggerer would and run it to its first event (bounded by ``timeout``).

    With ``clock`` the trigger's time and pauses are the fake clock's: its schedule and deadlines are
    then exact, whatever the load on the machine.
    """
    again = recreate(trigger)
    if clock is not None:
        again.clock, again.sleep = clock.time, clock.sleep
    return asyncio.run(first_event(again, timeout))


def make_trigger(prediction_id: str, **kwargs: Any) -> WaveSpeedPredictionTrigger:
    kwargs.setdefault("poll_interval", POLL)
    kwargs.setdefault("deadline", time.time() + 30)
    return WaveSpeedPredictionTrigger(prediction_id=prediction_id, **kwargs)


def test_serialized_kwargs_are_plain_json_without_the_key_and_recreate_an_equal_trigger(long_key_emulator):
    trigger = make_trigger(
        "0123456789abcdef", wavespeed_conn_id="wavespeed_default", started_at=1_700_000_000.5, model=AVATAR
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_wavespeed.triggers.wavespeed.WaveSpeedPredictionTrigger"
    text = json.dumps(kwargs)
    assert LONG_KEY not in text
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in kwargs.values())
    again = recreate(trigger)
    assert again.serialize() == (classpath, kwargs)
    assert kwargs["prediction_id"] == "0123456789abcdef"
    assert kwargs["deadline"] == trigger.deadline and kwargs["started_at"] == 1_700_000_000.5


def test_a_prediction_still_processing_yields_no_terminal_event_and_keeps_polling_until_its_deadline(emulator, raw_api):
    emulator.config.hold_predictions = True
    prediction_id = raw_submit(raw_api)
    clock = FakeClock()
    deadline = clock.now + 5.0
    event = run_first_event(make_trigger(prediction_id, deadline=deadline), clock=clock)
    assert event is not None and event["event"] == "deadline"
    assert event["status"] == "processing"
    polls = emulator.stats.polls_by_prediction[prediction_id]
    assert polls == len(clock.sleeps) + 1 >= 5  # polled after every pause, not stuck
    assert all(pause >= POLL for pause in clock.sleeps[:-1])  # never closer than poll_interval
    assert clock.now == pytest.approx(deadline)  # the last pause ended exactly at the deadline


def test_a_completed_prediction_yields_a_terminal_event_carrying_the_prediction_and_outputs(emulator, raw_api):
    prediction_id = raw_submit(raw_api)
    event = run_first_event(make_trigger(prediction_id))
    assert event is not None
    assert event["event"] == "terminal"
    assert event["status"] == "completed"
    assert event["prediction_id"] == prediction_id
    prediction = event["prediction"]
    assert prediction["id"] == prediction_id and prediction["status"] == "completed"
    assert prediction["outputs"] == [emulator.output_url(prediction_id)]
    json.dumps(event)  # the event payload is stored too: plain JSON


def test_a_failed_prediction_yields_a_terminal_event_with_status_failed_error_and_code(emulator, raw_api):
    prediction_id = raw_submit(raw_api, **AVATAR_INPUTS, prompt="[emulator:failed]")
    event = run_first_event(make_trigger(prediction_id))
    assert event is not None
    assert event["event"] == "terminal" and event["status"] == "failed"
    assert event["prediction"]["code"] == 1403
    assert "Task Execution Failed" in event["prediction"]["error"]


def test_a_deadline_already_past_yields_a_deadline_event_at_once(emulator, raw_api):
    emulator.config.hold_predictions = True
    prediction_id = raw_submit(raw_api)
    clock = FakeClock()
    event = run_first_event(make_trigger(prediction_id, deadline=clock.now - 1), clock=clock)
    assert event is not None and event["event"] == "deadline"
    assert event["prediction_id"] == prediction_id
    assert event["status"] in ("created", "processing")
    assert clock.sleeps == []  # no pause before giving up
    assert emulator.stats.polls_by_prediction[prediction_id] == 1


def test_a_near_deadline_ends_the_wait_when_it_passes_not_a_poll_interval_later(emulator, raw_api):
    emulator.config.hold_predictions = True
    prediction_id = raw_submit(raw_api)
    clock = FakeClock()
    deadline = clock.now + 0.6
    event = run_first_event(make_trigger(prediction_id, deadline=deadline, poll_interval=5.0), clock=clock)
    assert event is not None and event["event"] == "deadline"
    assert event["waited"] > 0
    assert clock.sleeps == [pytest.approx(0.6)]  # slept only up to the deadline, not 5 s
    assert clock.now == pytest.approx(deadline)


def test_a_bad_key_yields_an_error_event_immediately_without_the_key(emulator, raw_api, monkeypatch):
    prediction_id = raw_submit(raw_api)
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY))
    clock = FakeClock()
    event = run_first_event(make_trigger(prediction_id), clock=clock)
    assert event is not None and event["event"] == "error"
    assert event["error_type"] == "WaveSpeedAuthError"
    assert "401" in event["message"]
    assert LONG_KEY not in json.dumps(event)
    assert clock.sleeps == []  # no pause: it gave up at once
    assert emulator.stats.polls_by_prediction[prediction_id] == 1  # not retried


def test_an_unknown_connection_yields_an_error_event_naming_it(emulator, raw_api):
    prediction_id = raw_submit(raw_api)
    event = run_first_event(make_trigger(prediction_id, wavespeed_conn_id="wavespeed_missing"))
    assert event is not None and event["event"] == "error"
    assert "wavespeed_missing" in event["message"]


def test_a_503_storm_while_polling_does_not_end_the_wait_and_it_still_completes(emulator, raw_api):
    # Held: on a busy machine a 0.3 s prediction can be over before the first poll, and then no poll meets a 503.
    with held_until(emulator, lambda: emulator.stats.faults_injected >= 1):
        prediction_id = raw_submit(raw_api)
        emulator.config.fail_every_nth = 2
        event = run_first_event(make_trigger(prediction_id), timeout=60.0)
    assert event is not None
    assert event["event"] == "terminal" and event["status"] == "completed"
    assert emulator.stats.faults_injected >= 1


def test_fifty_triggers_in_one_loop_share_one_client_which_is_closed_when_the_loop_ends(emulator, raw_api):
    ids = [raw_submit(raw_api) for _ in range(50)]
    triggers = [recreate(make_trigger(pid)) for pid in ids]

    async def main() -> tuple[list[dict[str, Any] | None], int, Any]:
        events = await asyncio.gather(*(first_event(t, 60.0) for t in triggers))
        shared = await WaveSpeedHook().get_async_conn()  # the loop's client for these settings
        return list(events), clients_in_this_loop(), shared

    events, clients, shared = asyncio.run(main())
    assert clients == 1
    assert all(e is not None and e["event"] == "terminal" and e["status"] == "completed" for e in events)
    assert sorted(e["prediction_id"] for e in events if e) == sorted(ids)
    assert shared.http.is_closed, "the shared client must be closed when asyncio.run's loop ends"


def test_each_event_loop_gets_its_own_client(emulator, raw_api):
    prediction_id = raw_submit(raw_api)

    async def one() -> Any:
        await first_event(recreate(make_trigger(prediction_id)), 60.0)
        assert clients_in_this_loop() == 1
        return await WaveSpeedHook().get_async_conn()

    first, second = asyncio.run(one()), asyncio.run(one())
    assert first is not second
    assert first.http.is_closed and second.http.is_closed


def test_an_event_is_held_until_not_before_so_a_task_never_resumes_too_soon_after_deferring(emulator, raw_api):
    prediction_id = raw_submit(raw_api)
    wait_terminal(emulator, prediction_id)  # done before the trigger even starts
    clock = FakeClock()
    event = run_first_event(make_trigger(prediction_id, not_before=clock.now + 10.0), clock=clock)
    assert event is not None and event["event"] == "terminal"
    assert clock.sleeps == [pytest.approx(10.0)]  # one poll, then held until not_before
    assert emulator.stats.polls_by_prediction[prediction_id] == 1
