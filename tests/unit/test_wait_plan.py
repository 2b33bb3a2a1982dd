"""The one wait loop's decisions (trigger, run operator in the worker, sensor poke): no I/O, an explicit clock."""

from __future__ import annotations

import pytest

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedAuthError,
    WaveSpeedConfigError,
    WaveSpeedConnectionError,
    WaveSpeedInputError,
    WaveSpeedNotFoundError,
    WaveSpeedRateLimitError,
    WaveSpeedRequestError,
    WaveSpeedServerError,
)
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.polling import IMAGE_MIN_INTERVAL, VIDEO_MIN_INTERVAL
from airflow_provider_wavespeed.api.waiting import DeadlinePassed, Failed, Finished, Sleep, WaitPlan, is_final

T0 = 1_800_000_000.0
VIDEO = "wavespeed-ai/hunyuan-avatar"
IMAGE = "wavespeed-ai/flux-dev"


def prediction(status: str, model: str = VIDEO) -> Prediction:
    return Prediction.from_api({"id": "p1", "model": model, "status": status})


def plan(**kwargs: object) -> WaitPlan:
    kwargs.setdefault("prediction_id", "p1")
    kwargs.setdefault("started_at", T0)
    return WaitPlan(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled", "timeout", "deleted"])
def test_a_terminal_prediction_finishes_the_wait_even_past_the_deadline(status):
    decision = plan(deadline=T0 + 10).after_poll(prediction(status), T0 + 999)
    assert isinstance(decision, Finished) and decision.prediction.status == status


def test_a_running_prediction_sleeps_at_least_the_models_minimum_and_grows_with_the_time_waited():
    wait = plan(model=VIDEO, deadline=T0 + 3600)
    early = wait.after_poll(prediction("processing"), T0 + 1)
    late = wait.after_poll(prediction("processing"), T0 + 300)
    assert isinstance(early, Sleep) and isinstance(late, Sleep)
    assert early.seconds >= VIDEO_MIN_INTERVAL
    assert late.seconds > early.seconds  # (the cap and jitter are PollSchedule's, tested with it)


def test_the_schedule_switches_to_the_model_learned_from_the_first_poll():
    wait = plan(deadline=T0 + 3600)  # model unknown: image guidance (2 s)
    first = wait.after_poll(prediction("processing", model=VIDEO), T0 + 1)
    assert wait.model == VIDEO
    assert isinstance(first, Sleep) and first.seconds >= VIDEO_MIN_INTERVAL


def test_an_explicit_poll_interval_wins_over_the_models_guidance():
    decision = plan(model=VIDEO, poll_interval=0.5, deadline=T0 + 3600).after_poll(prediction("processing"), T0 + 1)
    assert isinstance(decision, Sleep) and 0.5 <= decision.seconds < IMAGE_MIN_INTERVAL


def test_the_pause_never_runs_past_the_deadline_and_the_deadline_gives_up_with_the_last_status():
    wait = plan(model=VIDEO, deadline=T0 + 3.0)
    pause = wait.after_poll(prediction("processing"), T0 + 1.0)
    assert isinstance(pause, Sleep) and pause.seconds == pytest.approx(2.0)
    done = wait.after_poll(prediction("processing"), T0 + 3.0)
    assert done == DeadlinePassed("processing", 3.0)


def test_a_queued_prediction_gets_the_queue_grace_past_the_deadline_a_running_one_does_not():
    queued = plan(model=VIDEO, deadline=T0 + 10, queue_grace=600)
    assert isinstance(queued.after_poll(prediction("created"), T0 + 20), Sleep)
    assert isinstance(queued.after_poll(prediction("created"), T0 + 610), DeadlinePassed)
    running = plan(model=VIDEO, deadline=T0 + 10, queue_grace=600)
    assert isinstance(running.after_poll(prediction("processing"), T0 + 20), DeadlinePassed)


def test_no_deadline_means_waiting_on():
    assert isinstance(plan(model=IMAGE).after_poll(prediction("processing"), T0 + 10**7), Sleep)


@pytest.mark.parametrize(
    "error",
    [
        WaveSpeedAuthError(401, "bad key"),
        WaveSpeedNotFoundError(404, "no such prediction"),
        WaveSpeedRequestError(400, "bad"),
        WaveSpeedConfigError("no key"),
        WaveSpeedInputError("m", ["x"]),
    ],
    ids=type,
)
def test_an_error_asking_again_cannot_fix_fails_the_wait(error):
    assert is_final(error)
    assert plan(deadline=T0 + 100).after_poll(error, T0 + 1) == Failed(error)


@pytest.mark.parametrize(
    "error",
    [WaveSpeedServerError(503, "busy"), WaveSpeedRateLimitError("slow down"), WaveSpeedConnectionError("reset")],
    ids=type,
)
def test_a_transient_error_keeps_the_last_status_and_waits_on_until_the_deadline(error):
    wait = plan(model=VIDEO, deadline=T0 + 100)
    wait.after_poll(prediction("processing"), T0 + 1)
    assert not is_final(error)
    assert isinstance(wait.after_poll(error, T0 + 50), Sleep)
    assert wait.after_poll(error, T0 + 100) == DeadlinePassed("processing", 100.0)
