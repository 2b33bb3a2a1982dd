"""Every plain-value parameter check: a ValueError that names the parameter, before the DAG runs."""

from __future__ import annotations

import re

import pytest

from airflow_provider_wavespeed.parameters import (
    check_count,
    check_nsfw_policy,
    check_optional_seconds,
    check_seconds,
    check_usd,
)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: check_usd("max_cost", None), None),
        (lambda: check_usd("max_cost", 2), 2.0),
        (lambda: check_usd("min_balance", 0), 0.0),
        (lambda: check_seconds("wait_timeout", 5), 5.0),
        (lambda: check_seconds("queue_timeout", 0, allow_zero=True), 0.0),
        (lambda: check_optional_seconds("expected_runtime", None), None),
        (lambda: check_optional_seconds("expected_runtime", 30), 30.0),
        (lambda: check_count("max_concurrency", 4), 4),
        (lambda: check_nsfw_policy("skip"), "skip"),
    ],
)
def test_good_values_pass_normalised(call, expected):
    assert call() == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_usd("max_cost", 0, positive=True), "max_cost must be a positive number of USD, got 0"),
        (lambda: check_usd("min_balance", -1), "min_balance must be a non-negative number of USD"),
        (lambda: check_usd("max_cost", True), "max_cost must be a non-negative number of USD, got True"),
        (lambda: check_seconds("wait_timeout", 0), "wait_timeout must be a positive number of seconds, got 0"),
        (lambda: check_seconds("queue_timeout", -1, allow_zero=True), "queue_timeout must be a non-negative number"),
        (lambda: check_seconds("wait_timeout", "60"), "wait_timeout must be a positive number of seconds, got '60'"),
        (lambda: check_optional_seconds("expected_runtime", 0), "expected_runtime must be a positive number"),
        (lambda: check_count("max_concurrency", 0), "max_concurrency must be an integer >= 1, got 0"),
        (lambda: check_count("max_concurrency", 2.5), "max_concurrency must be an integer >= 1, got 2.5"),
        (lambda: check_nsfw_policy("allow"), "nsfw_policy must be one of keep, skip, fail, got 'allow'"),
    ],
)
def test_bad_values_fail_naming_the_parameter_and_what_it_takes(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
