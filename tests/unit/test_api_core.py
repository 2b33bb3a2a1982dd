"""The API core without Airflow and without I/O: protocol, schema checks, retry waits, poll schedule."""

from __future__ import annotations

import json

import pytest

from airflow_provider_wavespeed.api import protocol
from airflow_provider_wavespeed.api.client import ClientSettings, normalize_base_url
from airflow_provider_wavespeed.api.errors import (
    WaveSpeedAuthError,
    WaveSpeedConfigError,
    WaveSpeedNotFoundError,
    WaveSpeedRateLimitError,
    WaveSpeedRequestError,
    WaveSpeedServerError,
)
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.polling import PollSchedule, default_min_interval
from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.api.schema import validate_inputs

AVATAR_SCHEMA = {
    "type": "object",
    "properties": {
        "image": {"type": "string"},
        "audio": {"type": "string"},
        "prompt": {"type": "string"},
        "resolution": {"type": "string", "enum": ["480p", "720p"], "default": "480p"},
        "seed": {"type": "integer", "minimum": -1, "maximum": 2147483647},
    },
    "required": ["image", "audio"],
}


def envelope(data: object, code: int = 200) -> bytes:
    return json.dumps({"code": code, "message": "success", "data": data}).encode()


def test_submit_request_posts_flat_inputs_to_the_model_path_and_is_not_retry_safe():
    request = protocol.submit("wavespeed-ai/hunyuan-avatar", {"image": "u", "audio": "a"})
    assert (request.method, request.path) == ("POST", "/api/v3/wavespeed-ai/hunyuan-avatar")
    assert request.json == {"image": "u", "audio": "a"}
    assert request.retry_safe is False
    assert protocol.get_result("abc123").retry_safe is True


@pytest.mark.parametrize("bad", ["hunyuan-avatar", "../etc/passwd", "a/../b", "/abs/model", "a/b?x=1", ""])
def test_model_ids_that_would_change_the_url_are_refused(bad):
    with pytest.raises(WaveSpeedConfigError, match="model must be"):
        protocol.check_model_id(bad)


@pytest.mark.parametrize("bad", ["", "abc/def", "a b", "../x", "x?y"])
def test_prediction_ids_that_would_change_the_url_are_refused(bad):
    with pytest.raises(WaveSpeedConfigError, match="prediction_id"):
        protocol.get_result(bad)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, WaveSpeedAuthError),
        (403, WaveSpeedAuthError),
        (404, WaveSpeedNotFoundError),
        (400, WaveSpeedRequestError),
        (429, WaveSpeedRateLimitError),
        (503, WaveSpeedServerError),
    ],
)
def test_http_errors_map_to_typed_errors_carrying_the_api_message(status, error):
    body = json.dumps({"code": status, "message": "the API says why", "data": None}).encode()
    with pytest.raises(error, match="the API says why"):
        protocol.parse_reply(protocol.get_balance(), status, {}, body)


def test_an_http_200_envelope_with_an_error_code_is_an_error():
    with pytest.raises(WaveSpeedRequestError, match="bad thing"):
        body = json.dumps({"code": 400, "message": "bad thing"}).encode()
        protocol.parse_reply(protocol.get_balance(), 200, {}, body)


def test_retry_after_is_read_from_seconds_and_from_http_dates():
    error = protocol.error_for(429, "slow down", path="/x", headers={"retry-after": "7"})
    assert isinstance(error, WaveSpeedRateLimitError) and error.retry_after == 7
    assert protocol.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 5) == pytest.approx(5)
    assert protocol.parse_retry_after("soon") is None


def test_a_failed_prediction_in_an_http_200_reply_raises_with_id_code_and_error_text():
    data = {"id": "p1", "model": "m/x", "status": "failed", "code": 1402, "error": "Failed to download image"}
    prediction = Prediction.from_api(protocol.parse_reply(protocol.get_result("p1"), 200, {}, envelope(data)))
    assert prediction.is_terminal and not prediction.succeeded
    message = str(prediction.failure())
    assert "p1" in message and "1402" in message and "Failed to download image" in message and "m/x" in message


@pytest.mark.parametrize("status", ["created", "processing", "pending", ""])
def test_non_terminal_and_unknown_statuses_keep_waiting(status):
    assert not Prediction.from_api({"id": "p", "status": status}).is_terminal


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled", "timeout", "deleted"])
def test_all_five_terminal_statuses_end_the_wait(status):
    assert Prediction.from_api({"id": "p", "status": status}).is_terminal


def test_schema_check_names_the_field_the_allowed_values_and_ranges():
    problems, unknown = validate_inputs(
        AVATAR_SCHEMA, {"image": "https://x/y.png", "resolution": "1080p", "seed": -2, "colour": "red"}
    )
    text = "\n".join(problems)
    assert "audio: required" in text
    assert "resolution: '1080p' is not allowed; use one of '480p', '720p'" in text
    assert "seed: -2 is out of range" in text
    assert unknown == ["colour"]


def test_schema_check_rejects_wrong_types_but_not_integral_floats():
    problems, _ = validate_inputs(AVATAR_SCHEMA, {"image": "i", "audio": "a", "seed": "7"})
    assert problems == ["seed: expected integer, got str '7'"]
    assert validate_inputs(AVATAR_SCHEMA, {"image": "i", "audio": "a", "seed": 7.0})[0] == []
    assert validate_inputs(AVATAR_SCHEMA, {"image": "i", "audio": "a", "seed": True})[0]


def test_base_url_normalisation():
    assert normalize_base_url(None) == "https://api.wavespeed.ai"
    assert normalize_base_url("api.wavespeed.ai") == "https://api.wavespeed.ai"
    assert normalize_base_url("https://api.wavespeed.ai/api/v3/") == "https://api.wavespeed.ai"
    assert normalize_base_url("127.0.0.1:8931") == "http://127.0.0.1:8931"


def test_the_key_is_never_sent_over_plain_http_except_to_loopback():
    with pytest.raises(WaveSpeedConfigError, match="plain http"):
        ClientSettings(api_key="k", base_url="http://api.wavespeed.ai")
    assert ClientSettings(api_key="k", base_url="http://127.0.0.1:1").base_url == "http://127.0.0.1:1"
    assert ClientSettings(api_key="k", base_url="http://localhost:1").base_url == "http://localhost:1"


def test_an_empty_key_is_refused_and_the_key_stays_out_of_repr():
    with pytest.raises(WaveSpeedConfigError, match="password field"):
        ClientSettings(api_key="  ")
    assert "sekrit-key" not in repr(ClientSettings(api_key="sekrit-key"))


def test_retry_waits_honour_retry_after_and_otherwise_back_off_exponentially_with_jitter():
    policy = RetryPolicy(initial_wait=1.0, max_wait=8.0, max_retry_after=60)
    assert policy.next_wait(1, WaveSpeedRateLimitError("x", retry_after=12)) == 12
    assert policy.next_wait(1, WaveSpeedRateLimitError("x", retry_after=600)) == 60
    waits = [policy.next_wait(attempt, None) for attempt in (1, 2, 3, 4, 5, 6) for _ in range(50)]
    assert all(0.5 <= w <= 8.0 for w in waits)
    assert max(policy.next_wait(6, None) for _ in range(200)) > 4  # grows
    assert len({round(w, 6) for w in waits}) > 100  # jittered


def test_poll_interval_grows_with_time_waited_within_bounds_and_is_jittered():
    schedule = PollSchedule(min_interval=2, max_interval=30, growth=0.2, jitter=0.1)
    assert 2 <= schedule.next_interval(0) <= 2.2
    assert 18 <= schedule.next_interval(100) <= 22
    assert schedule.next_interval(10_000) <= 33
    assert len({schedule.next_interval(100) for _ in range(20)}) > 1


def test_video_models_default_to_five_second_polls_and_images_to_two():
    assert default_min_interval("wavespeed-ai/hunyuan-avatar") == 5
    assert default_min_interval("wavespeed-ai/flux-dev") == 2


def test_poll_schedule_refuses_nonsense_bounds():
    with pytest.raises(ValueError, match="poll_interval"):
        PollSchedule(min_interval=0)
    with pytest.raises(ValueError, match="max_poll_interval"):
        PollSchedule(min_interval=10, max_interval=5)


def test_a_failed_prediction_message_keeps_the_api_error_and_ends_each_sentence_once():
    from airflow_provider_wavespeed.api.errors import WaveSpeedPredictionFailed

    message = str(WaveSpeedPredictionFailed("p1", model="m", error="The image is too small.", code=1403))
    assert "The image is too small. Fix the inputs named above" in message
    assert ".." not in message
