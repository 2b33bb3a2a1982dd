"""WaveSpeedHook against the emulator over real HTTP: connection settings, calls, errors, retries, validation."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedAuthError,
    WaveSpeedConfigError,
    WaveSpeedConnectionError,
    WaveSpeedError,
    WaveSpeedInputError,
    WaveSpeedNotFoundError,
    WaveSpeedRequestError,
)
from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.hooks import wavespeed as hook_module
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from tests.support import (
    AVATAR,
    AVATAR_INPUTS,
    FAST_RETRY,
    LONG_KEY,
    closed_port,
    connection_json,
    raw_submit,
    wait_terminal,
)


@pytest.fixture
def hook(emulator):
    h = WaveSpeedHook(retry=FAST_RETRY)
    yield h
    h.close()


@pytest.fixture
def fresh_catalogue(monkeypatch):
    """No model catalogue cached from an earlier test (it is cached per process and base URL)."""
    monkeypatch.setattr(hook_module, "_catalogues", {})


# -- connection settings -------------------------------------------------------------------------------


def test_settings_come_from_the_env_connection_key_in_password_base_url_in_host(emulator, hook):
    assert hook.settings.api_key == emulator.api_key
    assert hook.settings.base_url == emulator.base_url
    assert hook.get_balance() == pytest.approx(emulator.config.balance)


@pytest.mark.parametrize(
    "host_form",
    ["{host}:{port}", "http://{host}:{port}/", "http://{host}:{port}/api/v3"],
    ids=["bare-host-port", "trailing-slash", "api-prefix-pasted"],
)
def test_base_url_in_host_is_normalised_so_every_common_form_reaches_the_api(emulator, monkeypatch, host_form):
    host = host_form.format(host="127.0.0.1", port=emulator.port)
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, host=host))
    hook = WaveSpeedHook(retry=FAST_RETRY)
    assert hook.settings.base_url == emulator.base_url
    assert hook.get_balance() == pytest.approx(emulator.config.balance)


@pytest.mark.parametrize("form", ["uri", "json-host-port"])
def test_a_port_given_in_the_connections_port_field_is_used(emulator, monkeypatch, form):
    if form == "uri":
        value = f"wavespeed://:{emulator.api_key}@127.0.0.1:{emulator.port}"
    else:
        value = json.dumps(
            {"conn_type": "wavespeed", "password": emulator.api_key, "host": "127.0.0.1", "port": emulator.port}
        )
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", value)
    hook = WaveSpeedHook(retry=RetryPolicy(max_attempts=1))
    assert hook.settings.base_url == emulator.base_url
    assert hook.get_balance() == pytest.approx(emulator.config.balance)


def test_test_connection_success_message_reports_the_account_balance(emulator, hook):
    emulator.config.balance = 42.5
    ok, message = hook.test_connection()
    assert ok is True
    assert "42.50" in message
    assert emulator.base_url in message


def test_test_connection_with_a_wrong_key_gives_the_api_reason_without_the_key(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY))
    ok, message = WaveSpeedHook(retry=FAST_RETRY).test_connection()
    assert ok is False
    assert "401" in message
    assert "invalid API key" in message  # the API's own words
    assert "password" in message  # what to fix
    assert LONG_KEY not in message


@pytest.mark.parametrize("password", ["", "   "], ids=["empty", "blank"])
def test_empty_api_key_is_a_config_error_naming_the_password_field(emulator, monkeypatch, password):
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=password))
    with pytest.raises(WaveSpeedConfigError, match="password") as info:
        WaveSpeedHook().get_balance()
    assert "wavespeed_default" in str(info.value)
    assert emulator.stats.requests_total == 0


def test_missing_api_key_is_a_config_error_naming_the_password_field(emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAVESPEED_DEFAULT", json.dumps({"conn_type": "wavespeed", "host": emulator.base_url})
    )
    with pytest.raises(WaveSpeedConfigError, match="password"):
        WaveSpeedHook().get_balance()
    assert emulator.stats.requests_total == 0


def test_unknown_conn_id_is_a_config_error_naming_the_env_var_to_set(emulator):
    with pytest.raises(WaveSpeedConfigError) as info:
        WaveSpeedHook("wavespeed_nowhere").get_balance()
    text = str(info.value)
    assert "'wavespeed_nowhere' is not defined" in text
    assert "AIRFLOW_CONN_WAVESPEED_NOWHERE" in text


def test_plain_http_to_a_non_loopback_host_is_refused_before_sending_the_key(emulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY, host="http://api.example.com")
    )
    with pytest.raises(WaveSpeedConfigError, match="plain http") as info:
        WaveSpeedHook().get_balance()
    assert "https://" in str(info.value)
    assert LONG_KEY not in str(info.value)


# -- calls ---------------------------------------------------------------------------------------------


def test_get_prediction_returns_the_completed_prediction_with_outputs(emulator, hook):
    submitted = hook.submit(AVATAR, AVATAR_INPUTS)
    assert submitted.id and submitted.status == "created"
    assert wait_terminal(emulator, submitted.id) == "completed"
    prediction = hook.get_prediction(submitted.id)
    assert prediction.id == submitted.id
    assert prediction.model == AVATAR
    assert prediction.status == "completed" and prediction.succeeded and prediction.is_terminal
    assert prediction.output_urls() == [emulator.output_url(submitted.id)]
    prediction.raise_for_status()  # a completed prediction does not raise


@pytest.mark.parametrize("how", ["prompt-magic", "next-outcomes"])
def test_http_200_failed_prediction_comes_back_as_failed_with_error_text_and_code(emulator, hook, how):
    inputs = dict(AVATAR_INPUTS)
    if how == "prompt-magic":
        inputs["prompt"] = "a presenter [emulator:failed]"
    else:
        emulator.config.next_outcomes = ["failed"]
    submitted = hook.submit(AVATAR, inputs)
    wait_terminal(emulator, submitted.id)
    prediction = hook.get_prediction(submitted.id)
    assert prediction.status == "failed"
    assert prediction.is_terminal and not prediction.succeeded
    assert prediction.code == 1403
    assert "Task Execution Failed" in prediction.error
    with pytest.raises(WaveSpeedError) as info:
        prediction.raise_for_status()
    text = str(info.value)
    assert submitted.id in text and "1403" in text and "Task Execution Failed" in text


def test_a_wrong_key_raises_auth_error_without_the_key(emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY))
    hook = WaveSpeedHook(retry=FAST_RETRY)
    with pytest.raises(WaveSpeedAuthError) as info:
        hook.get_prediction("0123456789abcdef")
    assert info.value.status_code == 401
    assert LONG_KEY not in str(info.value) and LONG_KEY not in repr(info.value)
    assert emulator.stats.result_polls == 1  # 401 is never retried


def test_a_missing_input_rejected_by_the_api_names_the_field(emulator, hook):
    with pytest.raises(WaveSpeedRequestError) as info:
        hook.submit(AVATAR, {"image": AVATAR_INPUTS["image"]})
    assert info.value.status_code == 400
    assert "audio" in str(info.value)
    assert emulator.stats.submit_attempts == 1  # a 400 is never retried
    assert emulator.stats.submits_accepted == 0


def test_an_unknown_model_is_not_found_by_validation_and_by_the_api(emulator, hook, fresh_catalogue):
    with pytest.raises(WaveSpeedNotFoundError, match="wavespeed-ai/no-such-model"):
        hook.validate_inputs("wavespeed-ai/no-such-model", AVATAR_INPUTS)
    assert emulator.stats.submit_attempts == 0
    with pytest.raises(WaveSpeedNotFoundError) as info:
        hook.submit("wavespeed-ai/no-such-model", AVATAR_INPUTS)
    assert info.value.status_code == 404
    assert "wavespeed-ai/no-such-model" in str(info.value)
    assert emulator.stats.submits_accepted == 0


def test_unknown_model_hint_lists_similar_models_from_the_catalogue(emulator, hook, fresh_catalogue):
    with pytest.raises(WaveSpeedNotFoundError) as info:
        hook.validate_inputs("someone-else/hunyuan-avatar", AVATAR_INPUTS)
    assert AVATAR in str(info.value)


def test_network_error_on_a_poll_is_a_connection_error_after_bounded_retries(emulator, monkeypatch, caplog):
    port = closed_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY, host=f"http://127.0.0.1:{port}")
    )
    policy = RetryPolicy(max_attempts=3, max_elapsed=5.0, initial_wait=0.01, max_wait=0.02)
    hook = WaveSpeedHook(retry=policy)
    with (
        caplog.at_level(logging.WARNING, logger="airflow_provider_wavespeed.api.retry"),
        pytest.raises(WaveSpeedConnectionError) as info,
    ):
        hook.get_prediction("0123456789abcdef")
    retries = [r for r in caplog.records if "retry" in r.getMessage() and "WaveSpeed call failed" in r.getMessage()]
    assert len(retries) == 2  # three attempts in all
    assert "/api/v3/predictions/0123456789abcdef/result" in str(info.value)
    assert LONG_KEY not in str(info.value)
    assert LONG_KEY not in caplog.text


def test_reads_are_retried_through_a_429_storm_honouring_retry_after(emulator, raw_api, caplog):
    prediction_id = raw_submit(raw_api)
    emulator.config.rate_limit_retry_after = 1
    emulator.config.rate_limit_next = 2
    hook = WaveSpeedHook(retry=FAST_RETRY)  # its own backoff is ~10 ms: a 1 s pause can only be Retry-After's
    with caplog.at_level(logging.WARNING, logger="airflow_provider_wavespeed.api.retry"):
        prediction = hook.get_prediction(prediction_id)
    assert prediction.id == prediction_id
    assert emulator.stats.rate_limited == 2
    assert emulator.stats.result_polls == 3
    pauses = [r.getMessage().rsplit(" in ", 1)[-1] for r in caplog.records if "WaveSpeed call failed" in r.getMessage()]
    assert pauses == ["1.0 s", "1.0 s"], "Retry-After: 1 was not honoured"


def test_reads_are_retried_past_a_503_on_every_second_request(emulator, raw_api, hook):
    prediction_id = raw_submit(raw_api)
    emulator.config.fail_every_nth = 2
    for _ in range(10):
        assert hook.get_prediction(prediction_id).id == prediction_id
    assert emulator.stats.faults_injected >= 5
    assert emulator.stats.result_polls == 10 + emulator.stats.faults_injected


# -- input validation ----------------------------------------------------------------------------------


def test_validate_inputs_lists_every_problem_with_field_allowed_values_and_model_and_submits_nothing(
    emulator, hook, fresh_catalogue
):
    bad = {"image": AVATAR_INPUTS["image"], "resolution": "1080p", "seed": -2, "prompt": 123}
    with pytest.raises(WaveSpeedInputError) as info:
        hook.validate_inputs(AVATAR, bad)
    text = str(info.value)
    assert info.value.model == AVATAR and AVATAR in text
    assert "nothing was submitted" in text
    assert "resolution" in text and "'1080p'" in text and "'480p'" in text and "'720p'" in text
    assert "seed: -2 is out of range" in text and "-1" in text
    assert "audio: required but missing" in text
    assert "prompt: expected string" in text
    assert len(info.value.problems) == 4
    assert emulator.stats.submit_attempts == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"resolution": "1080p"}, "resolution"),
        ({"seed": -2}, "seed"),
        ({"seed": "42"}, "seed"),
        ({"seed": True}, "seed"),
        ({"audio": None}, "audio"),
        ({"audio": "  "}, "audio"),
    ],
    ids=["enum", "minimum", "string-for-integer", "bool-for-integer", "none-required", "blank-required"],
)
def test_validate_inputs_rejects_each_bad_input_naming_its_field(emulator, hook, fresh_catalogue, change, field):
    with pytest.raises(WaveSpeedInputError) as info:
        hook.validate_inputs(AVATAR, {**AVATAR_INPUTS, **change})
    assert [p.split(":")[0] for p in info.value.problems] == [field]
    assert emulator.stats.submit_attempts == 0


def test_validate_inputs_accepts_good_inputs_and_reports_unknown_fields(emulator, hook, fresh_catalogue):
    unknown = hook.validate_inputs(AVATAR, {**AVATAR_INPUTS, "resolution": "720p", "seed": 7, "colour": "red"})
    assert unknown == ["colour"]
    assert emulator.stats.submit_attempts == 0


def test_when_the_models_endpoint_is_down_validation_is_skipped_with_a_log_line_and_the_api_decides(
    emulator, hook, fresh_catalogue, all_output
):
    emulator.config.models_endpoint_status = 503
    assert hook.validate_inputs(AVATAR, {"image": AVATAR_INPUTS["image"]}) == []
    assert "Could not fetch the model catalogue" in all_output()
    with pytest.raises(WaveSpeedRequestError, match="audio"):
        hook.submit(AVATAR, {"image": AVATAR_INPUTS["image"]})
    assert emulator.stats.submits_accepted == 0


# -- the key stays secret ------------------------------------------------------------------------------


def test_the_key_never_appears_in_any_exception_text(emulator, monkeypatch, fresh_catalogue):
    """Every failure mode reachable with a long distinctive key: none of their texts contains it."""
    texts: list[str] = []

    def collect(host: str | None = None, *, server_key: str | None = None, call=None) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", connection_json(emulator, key=LONG_KEY, host=host))
        if server_key is not None:
            emulator.config.api_key = server_key
        hook = WaveSpeedHook(retry=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.01))
        try:
            (call or (lambda h: h.get_prediction("0123456789abcdef")))(hook)
        except Exception as exc:  # every kind is collected
            texts.extend([str(exc), repr(exc), *(str(a) for a in exc.args)])
            cause = exc.__cause__ or exc.__context__
            if cause is not None:
                texts.extend([str(cause), repr(cause)])
        else:
            raise AssertionError("expected a failure")
        finally:
            hook.close()

    collect(server_key="another-key")  # 401
    collect(host="http://api.example.com")  # refused plain http
    collect(host=f"http://127.0.0.1:{closed_port()}")  # no connection
    collect(host="ftp://127.0.0.1")  # unusable base URL
    emulator.config.api_key = LONG_KEY
    collect()  # 404 unknown prediction
    collect(call=lambda h: h.validate_inputs(AVATAR, {"seed": -2}))
    collect(call=lambda h: h.client.submit_prediction(AVATAR, {}))
    _, message = WaveSpeedHook().test_connection()  # succeeds: still must not echo the key
    texts.append(message)
    assert len(texts) >= 14
    leaks = [t for t in texts if LONG_KEY in t or LONG_KEY[:24] in t]
    assert not leaks


# -- deleting (cancel on kill) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("documented", "how"),
    [(True, "POST /api/v3/predictions/delete"), (False, "DELETE /api/v3/predictions/{id}")],
)
def test_deleting_a_running_prediction_stops_it_through_whichever_delete_the_api_has(emulator, hook, documented, how):
    emulator.configure(hold_predictions=True, delete_endpoint_enabled=documented)
    running = hook.submit(AVATAR, AVATAR_INPUTS)

    assert hook.delete_prediction(running.id) == how

    after = hook.get_prediction(running.id)
    assert after.status == "deleted" and after.outputs == []
    assert emulator.stats.predictions_deleted == 1
    assert emulator.predictions[running.id].deleted
