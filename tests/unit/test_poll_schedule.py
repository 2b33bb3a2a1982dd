"""PollSchedule: the API's minimums, the hint, the cap, jitter; and the polling goals on the schedule alone.

No I/O and no timing: ``next_interval`` is a pure function of the time waited and a seeded random source.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest

from airflow_provider_wavespeed.api.polling import (
    IMAGE_MIN_INTERVAL,
    VIDEO_MIN_INTERVAL,
    PollSchedule,
    default_min_interval,
)
from airflow_provider_wavespeed.api.waiting import Sleep, WaitPlan

WAITED = [0.0, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 200, 300, 600, 1200, 3600, 86_400]


def schedule(seed: int = 7, **kwargs: object) -> PollSchedule:
    return PollSchedule(rng=random.Random(seed), **kwargs)  # type: ignore[arg-type]


def draws(s: PollSchedule, waited: float, n: int = 300) -> list[float]:
    return [s.next_interval(waited) for _ in range(n)]


def run(s: PollSchedule, job: float) -> tuple[int, float]:
    """Poll at t=0 and after each sleep; (polls, delay) once the job has ended (bounded loop)."""
    t, polls = 0.0, 1
    for _ in range(10_000):
        if t >= job:
            break
        t += s.next_interval(t)
        polls += 1
    return polls, t - job


# -- the API's minimums ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "floor"), [("wavespeed-ai/flux-dev", 2.0), ("wavespeed-ai/hunyuan-avatar", 5.0)])
@pytest.mark.parametrize("hint", [None, 1.0, 4.0, 30.0, 600.0])
def test_no_sleep_is_shorter_than_the_apis_guidance_for_the_model_hint_or_not(model, floor, hint):
    s = schedule(min_interval=default_min_interval(model), expected_runtime=hint)
    assert default_min_interval(model) == floor
    assert min(x for w in WAITED for x in draws(s, w, 50)) >= floor


def test_the_wait_plan_uses_the_guidance_unless_the_user_sets_poll_interval():
    image = WaitPlan("p", started_at=0.0, model="wavespeed-ai/flux-dev", expected_runtime=1.0)._schedule
    video = WaitPlan("p", started_at=0.0, model="wavespeed-ai/hunyuan-avatar")._schedule
    asked = WaitPlan("p", started_at=0.0, model="wavespeed-ai/hunyuan-avatar", poll_interval=0.5)._schedule
    assert image.min_interval == IMAGE_MIN_INTERVAL
    assert video.min_interval == VIDEO_MIN_INTERVAL
    assert asked.min_interval == 0.5
    assert min(asked.next_interval(0.0) for _ in range(100)) < IMAGE_MIN_INTERVAL  # only because it was asked


# -- the hint ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", [20.0, 60.0, 100.0])
def test_the_first_sleep_with_a_hint_goes_to_half_of_it_jittered(hint):
    s = schedule(expected_runtime=hint)
    first = draws(s, 0.0)
    assert all(0.9 * hint / 2 <= x <= 1.1 * hint / 2 for x in first)
    assert statistics.fmean(first) == pytest.approx(hint / 2, rel=0.02)
    # A trigger that starts late (or is re-created) still aims at E/2, not E/2 after it started.
    assert all(0.9 * (hint / 2 - 4) <= x <= 1.1 * (hint / 2 - 4) for x in draws(s, 4.0))


def test_a_first_sleep_that_jitter_ended_just_short_of_half_the_hint_is_not_topped_up():
    s = schedule(expected_runtime=100.0)
    assert s.base_interval(45.5) == pytest.approx(0.2 * 45.5)  # not a 4.5 s hop to 50 s


def test_between_half_the_hint_and_the_hint_polls_are_20_percent_of_the_time_waited_apart():
    s = schedule(expected_runtime=100.0)
    assert s.base_interval(50.0) == pytest.approx(10.0)
    assert s.base_interval(80.0) == pytest.approx(16.0)
    assert all(14.4 <= x <= 17.6 for x in draws(s, 80.0))


def test_past_the_hint_the_hint_has_proven_short_and_the_blind_rule_takes_over():
    hinted, blind = schedule(expected_runtime=50.0), schedule()
    for waited in (50.0, 70.0, 100.0, 140.0, 1000.0):
        assert hinted.base_interval(waited) == blind.base_interval(waited)
    assert blind.base_interval(100.0) == pytest.approx(40.0)  # 40 % of the time waited


def test_a_hint_too_long_by_2x_finds_the_job_at_the_first_or_second_poll_after_the_start():
    s = schedule(expected_runtime=120.0)
    polls = [run(s, 60.0 * random.Random(i).uniform(0.95, 1.05))[0] for i in range(200)]
    assert max(polls) <= 4
    assert statistics.fmean(polls) <= 3.5


def test_a_hint_too_short_by_2x_costs_fewer_polls_than_no_hint():
    hinted, blind = schedule(seed=1, expected_runtime=30.0), schedule(seed=1)
    jobs = [60.0 * random.Random(i).uniform(0.95, 1.05) for i in range(500)]
    assert statistics.fmean(run(hinted, j)[0] for j in jobs) < statistics.fmean(run(blind, j)[0] for j in jobs)


def test_a_short_hint_does_not_pull_sleeps_under_the_minimum():
    s = schedule(min_interval=5.0, expected_runtime=2.0)
    assert min(x for w in WAITED for x in draws(s, w, 50)) >= 5.0


# -- the cap ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, 600.0, 10_000.0])
def test_no_sleep_is_longer_than_max_interval_the_hints_first_sleep_included(hint):
    s = schedule(min_interval=2.0, max_interval=60.0, expected_runtime=hint)
    longest = max(x for w in WAITED for x in draws(s, w, 50))
    assert longest <= 60.0
    assert longest > 50.0  # the cap is reached, not undershot by much


def test_a_prediction_failing_early_is_seen_within_the_cap_even_with_a_long_hint():
    s = schedule(max_interval=60.0, expected_runtime=600.0)
    polls, delay = run(s, 3.0)
    assert polls == 2 and delay <= 60.0


def test_a_fixed_interval_still_gets_jitter_upwards_only():
    s = schedule(min_interval=10.0, max_interval=10.0)
    sleeps = draws(s, 100.0, 1000)
    assert all(10.0 <= x <= 11.0 for x in sleeps)
    assert len({round(x, 6) for x in sleeps}) > 900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_interval": 0}, "poll_interval"),
        ({"min_interval": 10, "max_interval": 5}, "max_poll_interval"),
        ({"expected_runtime": 0}, "expected_runtime"),
        ({"growth": 0}, "growth"),
        ({"jitter": 1.0}, "jitter"),
    ],
)
def test_settings_that_make_no_sense_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PollSchedule(**kwargs)  # type: ignore[arg-type]


# -- jitter ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, 100.0])
def test_jitter_stays_within_10_percent_of_the_base_and_inside_the_bounds(hint):
    s = schedule(expected_runtime=hint)
    for waited in WAITED:
        base = s.base_interval(waited)
        sleeps = draws(s, waited, 200)
        low, high = max(s.min_interval, 0.9 * base), min(s.max_interval, 1.1 * base)
        assert all(low <= x <= high for x in sleeps), waited
        assert max(sleeps) - min(sleeps) > 0.5 * (high - low), waited  # it does spread


def test_no_jitter_means_the_base_exactly():
    s = schedule(jitter=0.0, expected_runtime=40.0)
    assert s.next_interval(0.0) == 20.0
    assert s.next_interval(30.0) == pytest.approx(6.0)


def test_a_thousand_schedules_started_together_do_not_poll_in_lockstep():
    """A triggerer restart: 1,000 waits start at once; after a few polls their poll times are spread."""
    for hint in (None, 60.0):
        times = []
        for i in range(1000):
            s = schedule(seed=i, expected_runtime=hint)
            t = 0.0
            for _ in range(5):
                t += s.next_interval(t)
            times.append(t)
        mean = statistics.fmean(times)
        assert statistics.pstdev(times) > 0.02 * mean
        # No 0.5 %-of-the-time window holds more than 10 % of them (lockstep would put them all in one).
        buckets: dict[int, int] = {}
        for t in times:
            buckets[int(t / (0.005 * mean))] = buckets.get(int(t / (0.005 * mean)), 0) + 1
        assert max(buckets.values()) <= 100, (hint, max(buckets.values()))


def test_the_injected_random_source_makes_the_draws_reproducible():
    assert draws(schedule(seed=3), 100.0, 20) == draws(schedule(seed=3), 100.0, 20)
    assert draws(schedule(seed=3), 100.0, 20) != draws(schedule(seed=4), 100.0, 20)


# -- the goals of benchmarks/bench_polling.py, on the schedule alone (seeded, deterministic) --------------

GOAL_JOBS = (30.0, 60.0, 120.0)


def mix(hint_factor: float | None, trials: int = 400, seed: int = 13, floor: float = IMAGE_MIN_INTERVAL):
    """Mean polls and mean delay share over 30/60/120 s jobs (+-5 %), as bench_polling.py measures them."""
    rng = random.Random(seed)
    polls, shares = [], []
    for job in GOAL_JOBS:
        hint = None if hint_factor is None else hint_factor * job
        for _ in range(trials):
            actual = job * rng.uniform(0.95, 1.05)
            p, d = run(PollSchedule(min_interval=floor, expected_runtime=hint, rng=rng), actual)
            polls.append(p)
            shares.append(d / actual)
    return statistics.fmean(polls), statistics.fmean(shares)


def test_goal_blind_at_most_12_polls_and_25_percent_delay_for_30_to_120_s_jobs():
    for floor in (IMAGE_MIN_INTERVAL, VIDEO_MIN_INTERVAL):
        polls, share = mix(None, floor=floor)
        assert polls <= 12 and share <= 0.25, (floor, polls, share)


def test_goal_blind_whatever_the_job_length_between_30_and_120_s():
    """Over run times spread log-uniformly (no lucky poll grid): still within the blind goals."""
    rng = random.Random(5)
    jobs = [30 * math.exp(math.log(4) * (i + 0.5) / 400) for i in range(400)]
    runs = [run(PollSchedule(rng=rng), job) for job in jobs]
    assert statistics.fmean(p for p, _ in runs) <= 12
    assert statistics.fmean(d / job for (_, d), job in zip(runs, jobs, strict=True)) <= 0.25


def test_goal_blind_a_5_s_image_job_is_seen_within_3_s():
    rng = random.Random(13)
    delays = [run(PollSchedule(rng=rng), 5.0 * rng.uniform(0.95, 1.05))[1] for _ in range(1000)]
    assert statistics.fmean(delays) <= 3.0
    assert max(delays) <= 3.0


def test_goal_hint_right_at_most_8_polls_and_20_percent_delay():
    polls, share = mix(1.0)
    assert polls <= 8 and share <= 0.20, (polls, share)


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_goal_a_hint_off_by_2x_is_no_worse_than_no_hint(factor):
    blind_polls, blind_share = mix(None)
    polls, share = mix(factor)
    assert polls <= blind_polls, (polls, blind_polls)
    assert share <= max(blind_share, 0.25), (share, blind_share)


def test_goal_fewer_polls_than_fixed_5_s_polling_from_30_s_on():
    fixed = statistics.fmean(math.ceil(job / 5.0) + 1 for job in GOAL_JOBS)
    assert mix(None)[0] < fixed
    assert mix(1.0)[0] < 0.5 * fixed


def test_the_wait_plan_follows_the_schedule_with_its_hint():
    plan = WaitPlan("p", started_at=0.0, model="wavespeed-ai/flux-dev", expected_runtime=60.0)
    from airflow_provider_wavespeed.api.models import Prediction

    decision = plan.after_poll(Prediction.from_api({"id": "p", "status": "processing"}), 1.0)
    assert isinstance(decision, Sleep) and 0.9 * 29 <= decision.seconds <= 1.1 * 29
