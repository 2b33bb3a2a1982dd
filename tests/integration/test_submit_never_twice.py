"""A submit is billed: under lost replies, 503s and 429s the client ends with exactly one prediction."""

from __future__ import annotations

import pytest

from airflow_provider_wavespeed.api.errors import WaveSpeedSubmitAmbiguousError
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from tests.support import AVATAR, AVATAR_INPUTS, FAST_RETRY, FLUX, raw_submit


class NoWaitSubmitter:
    """``hook.submit`` with its pauses recorded instead of slept (the plan's waits are injected)."""

    def __init__(self, hook: WaveSpeedHook) -> None:
        self.hook = hook
        self.pauses: list[float] = []

    def submit_prediction(self, model, inputs):
        return self.hook.submit(model, inputs, sleep=self.pauses.append)

    def get_balance(self) -> float:
        return self.hook.get_balance()


@pytest.fixture
def client(emulator):
    hook = WaveSpeedHook(retry=FAST_RETRY)
    yield NoWaitSubmitter(hook)
    hook.close()


def test_a_lost_submit_reply_adopts_the_prediction_it_created_instead_of_paying_twice(emulator, client):
    emulator.config.lose_submit_replies = 1
    prediction = client.submit_prediction(AVATAR, AVATAR_INPUTS)
    assert emulator.stats.lost_submit_replies == 1
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.submit_attempts == 1
    assert emulator.stats.history_queries >= 1
    assert list(emulator.predictions) == [prediction.id]
    assert prediction.model == AVATAR


def test_a_503_on_the_submit_finds_nothing_in_history_and_submits_again_exactly_once(emulator, client):
    emulator.config.fail_every_nth = 3  # requests 3, 6, 9... fail: make the submit request number 3
    client.get_balance()
    client.get_balance()
    prediction = client.submit_prediction(AVATAR, AVATAR_INPUTS)
    assert emulator.stats.faults_injected == 1
    assert emulator.stats.submit_attempts == 2  # the 503'd one and the resubmit
    assert emulator.stats.history_queries >= 1  # it looked before submitting again
    assert emulator.stats.submits_accepted == 1
    assert list(emulator.predictions) == [prediction.id]


def test_a_429_on_the_submit_is_retried_and_ends_with_exactly_one_prediction(emulator, client):
    emulator.config.rate_limit_retry_after = 0
    emulator.config.rate_limit_next = 2
    prediction = client.submit_prediction(AVATAR, AVATAR_INPUTS)
    assert emulator.stats.rate_limited == 2
    assert emulator.stats.submit_attempts == 3
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.history_queries == 0  # a 429 created nothing: no need to look
    assert list(emulator.predictions) == [prediction.id]


def test_two_unclaimed_candidates_after_a_lost_reply_raise_ambiguous_listing_both_ids(emulator, client, raw_api):
    someone_elses = raw_submit(raw_api, AVATAR, **AVATAR_INPUTS)
    emulator.config.lose_submit_replies = 1
    with pytest.raises(WaveSpeedSubmitAmbiguousError) as info:
        client.submit_prediction(AVATAR, AVATAR_INPUTS)
    ours = next(pid for pid in emulator.predictions if pid != someone_elses)
    assert sorted(info.value.candidate_ids) == sorted([someone_elses, ours])
    assert someone_elses in str(info.value) and ours in str(info.value)
    assert emulator.stats.submits_accepted == 2  # the extra one and ours: not a third
    assert emulator.stats.submit_attempts == 2


def test_predictions_this_client_already_submitted_are_not_adopted_again(emulator, client):
    first = client.submit_prediction(AVATAR, AVATAR_INPUTS)
    emulator.config.lose_submit_replies = 1
    second = client.submit_prediction(AVATAR, AVATAR_INPUTS)
    assert second.id != first.id
    assert sorted(emulator.predictions) == sorted([first.id, second.id])
    assert emulator.stats.submits_accepted == 2


def test_a_lost_reply_is_matched_within_the_model_only(emulator, client, raw_api):
    other_model = raw_submit(raw_api, FLUX, prompt="a lighthouse")
    emulator.config.lose_submit_replies = 1
    prediction = client.submit_prediction(AVATAR, AVATAR_INPUTS)
    assert prediction.id != other_model
    assert emulator.predictions[prediction.id].model == AVATAR
    assert emulator.stats.submits_accepted == 2
