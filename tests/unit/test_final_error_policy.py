"""The one final-vs-retryable policy (``task_results.final_error``), decided for every WaveSpeed error.

Final: asking again cannot fix it, so the task fails at once (``AirflowFailException``, no retry).
Retryable: the error itself is raised, and Airflow's task retries apply.
"""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_wavespeed.api import errors
from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.task_results import final_error

#: One instance of every WaveSpeedError in api/errors.py, and whether the policy makes it final.
DECISIONS: list[tuple[WaveSpeedError, bool]] = [
    (errors.WaveSpeedAuthError(401, "Invalid API key"), True),
    (errors.WaveSpeedAuthError(403, "Account suspended"), True),
    (errors.WaveSpeedRequestError(400, "prompt is required"), True),
    (errors.WaveSpeedNotFoundError(404, "model not found"), True),
    (errors.WaveSpeedConfigError("no API key in connection wavespeed_default"), True),
    (errors.WaveSpeedInputError("wavespeed-ai/flux-dev", ["prompt: required"]), True),
    (errors.WaveSpeedDownloadError("the output is gone (404)"), True),
    (errors.WaveSpeedIncompleteDownload("got 10 of 20 bytes"), False),
    (errors.WaveSpeedRateLimitError("Too many requests", retry_after=2.0), False),
    (errors.WaveSpeedServerError(503, "Service unavailable"), False),
    (errors.WaveSpeedAPIError(418, "an answer no subclass knows"), False),
    (errors.WaveSpeedConnectionError("connection refused"), False),
    (errors.WaveSpeedSubmitAmbiguousError("wavespeed-ai/flux-dev", "reply lost", ["p1", "p2"]), False),
    (errors.WaveSpeedSubmitRefused("the quote is above max_cost; nothing was submitted"), True),
    (errors.WaveSpeedPredictionFailed("p1", model="wavespeed-ai/flux-dev", code=5000), False),
    (errors.WaveSpeedWebhookError("bad signature"), False),
    (errors.WaveSpeedError("anything else"), False),
]


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_all_subclasses(sub)}
    return found


def test_every_wavespeed_error_class_has_a_decision_here():
    defined = {cls for cls in _all_subclasses(WaveSpeedError) if cls.__module__ == errors.__name__} | {WaveSpeedError}
    decided = {type(error) for error, _ in DECISIONS}
    assert defined - decided == set(), "add the new error class to DECISIONS with its final/retryable decision"


def _decision_id(value: object) -> str:
    return type(value).__name__ if isinstance(value, Exception) else ("final" if value else "retryable")


@pytest.mark.parametrize(("error", "final"), DECISIONS, ids=_decision_id)
def test_final_errors_fail_the_task_at_once_and_the_rest_stay_retryable(error, final):
    outcome = final_error(error, "generate")
    if final:
        assert isinstance(outcome, AirflowFailException)
        assert str(outcome) == f"generate: {error}"
    else:
        assert outcome is error


def test_a_cut_download_that_can_resume_stays_retryable_although_it_is_a_download_error():
    cut = errors.WaveSpeedIncompleteDownload("connection closed at 1 MiB of 4 MiB")
    assert isinstance(cut, errors.WaveSpeedDownloadError)
    assert final_error(cut, "download") is cut
