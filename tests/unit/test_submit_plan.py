"""Whether a submit pays today: every decision of ``api.submit_plan`` and the incidents that shaped them.

No I/O: what happened is handed to the plan, an explicit clock and a fixed jitter source are passed in.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedConnectionError,
    WaveSpeedNotFoundError,
    WaveSpeedRequestError,
    WaveSpeedServerError,
    WaveSpeedSubmitAmbiguousError,
    WaveSpeedSubmitRefused,
)
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.reconcile import SubmitWindow, candidates
from airflow_provider_wavespeed.api.submit_plan import (
    RATE_LIMIT_MAX_PAUSE_SECONDS,
    RATE_LIMIT_MIN_PAUSE_SECONDS,
    SETTLE_PAUSE_SECONDS,
    Accepted,
    Ambiguous,
    Fail,
    LookUp,
    NotSent,
    Pause,
    Prepare,
    RateLimited,
    Rejected,
    SearchHistory,
    Submit,
    SubmitPlan,
    Unanswered,
    Use,
    classify,
    is_unanswered,
)
from airflow_provider_wavespeed.media import comparable_inputs

T0 = 1_800_000_000.0
MODEL = "wavespeed-ai/hunyuan-avatar"
INPUTS = {"image": "https://example.com/p.png", "audio": "https://example.com/v.mp3", "prompt": "hello"}
WINDOW = SubmitWindow(MODEL, T0 - 2, T0 + 3)


def prediction(pid: str = "p1", status: str = "processing", **raw: object) -> Prediction:
    return Prediction.from_api({"id": pid, "model": MODEL, "status": status, **raw})


def lowest(a: float, b: float) -> float:
    return a


def highest(a: float, b: float) -> float:
    return b


def plan(**kwargs: object) -> SubmitPlan:
    kwargs.setdefault("inputs", INPUTS)
    kwargs.setdefault("rand", lowest)
    kwargs.setdefault("retry_wait", lambda attempt, error: 0.5 * attempt)
    return SubmitPlan(MODEL, **kwargs)  # type: ignore[arg-type]


def submitting(**kwargs: object) -> SubmitPlan:
    """A plan whose inputs are ready: the next step is the submit."""
    ready = plan(**kwargs)
    assert ready.start_prepared(INPUTS) == Submit()
    return ready


def lost_reply(ready: SubmitPlan) -> SearchHistory:
    decision = ready.after_submit(Unanswered(WaveSpeedServerError(502, "Bad gateway"), WINDOW), T0)
    assert isinstance(decision, SearchHistory)
    return decision


# -- where a task starts --------------------------------------------------------------------------------------


def test_a_first_try_prepares_check_upload_and_price_before_anything_else():
    assert plan().start(None) == Prepare()


def test_a_retry_with_a_saved_prediction_looks_it_up_and_keeps_its_quote():
    wanted = plan()
    assert wanted.start({"id": "p1", "cost_usd": 0.15}) == LookUp("p1")
    assert wanted.cost_usd == 0.15


@pytest.mark.parametrize("status", ["created", "processing", "completed"])
def test_an_earlier_tries_live_or_finished_prediction_is_reused(status):
    wanted = plan()
    wanted.start({"id": "p1"})
    assert wanted.after_lookup(prediction(status=status)) == Use(prediction(status=status), "reused")


@pytest.mark.parametrize("status", ["failed", "cancelled", "timeout", "deleted"])
def test_an_earlier_tries_failed_prediction_is_not_reused_the_retry_prepares_anew(status):
    wanted = plan()
    wanted.start({"id": "p1", "cost_usd": 0.15})
    assert wanted.after_lookup(prediction(status=status)) == Prepare()
    assert wanted.cost_usd is None  # the new submit is priced anew


# -- incident: the retry after an ambiguous try -----------------------------------------------------------------


def test_the_retry_after_an_ambiguous_try_searches_the_saved_window_with_the_saved_payload_first():
    payload = {**INPUTS, "image": "https://cdn.example/uploaded.png"}
    decision = plan().start({"pending": WINDOW.to_json(), "candidates": ["p1", "p2"], "payload": payload})
    assert decision == SearchHistory(WINDOW, payload)


def test_the_retry_after_an_ambiguous_try_adopts_the_one_candidate_left():
    wanted = plan()
    wanted.start({"pending": WINDOW.to_json(), "payload": INPUTS})
    assert wanted.after_search([prediction("p2")]) == Use(prediction("p2"), "adopted")


def test_the_retry_after_an_ambiguous_try_fails_for_good_when_still_ambiguous_and_submits_nothing():
    wanted = plan()
    wanted.start({"pending": WINDOW.to_json(), "payload": INPUTS})
    decision = wanted.after_search([prediction("p1"), prediction("p2")])
    assert isinstance(decision, Fail) and isinstance(decision.error, WaveSpeedSubmitRefused)
    assert "p1, p2" in str(decision.error) and "WaveSpeedPredictionSensor" in str(decision.error)


def test_the_retry_after_an_ambiguous_try_submits_when_the_history_shows_nothing_was_created():
    wanted = plan()
    wanted.start({"pending": WINDOW.to_json(), "payload": INPUTS})
    assert wanted.after_search([]) == Prepare()


# -- incident: the 3.1 retry with uploaded media ----------------------------------------------------------------


def test_a_31_retry_with_uploaded_media_finds_its_prediction_whose_history_shows_cdn_urls():
    local = {"image": "/data/portrait.png", "audio": "file:///data/voice.mp3", "prompt": "hello"}
    wanted = plan(inputs=comparable_inputs(local))
    decision = wanted.start(None, history_since=T0 - 60, now=T0)
    assert isinstance(decision, SearchHistory)
    assert decision.inputs == {"prompt": "hello"}  # the uploaded fields are left out of the comparison
    shown = prediction("p1", input={"image": "https://cdn/x.png", "audio": "https://cdn/y.mp3", "prompt": "hello"})
    found = candidates(lambda **filters: [shown], decision.window, decision.inputs)
    assert [p.id for p in found] == ["p1"]
    assert wanted.after_search(found) == Use(shown, "reused")


def test_a_31_retry_does_not_take_a_prediction_whose_plain_inputs_differ():
    other = prediction("p9", input={"image": "https://cdn/x.png", "prompt": "someone else's"})
    found = candidates(lambda **filters: [other], WINDOW, comparable_inputs({"image": "/p.png", "prompt": "hello"}))
    assert found == []
    wanted = plan()
    wanted.start(None, history_since=T0 - 60, now=T0)
    assert wanted.after_search(found) == Prepare()


def test_a_31_retry_that_cannot_tell_its_prediction_apart_fails_without_submitting():
    wanted = plan()
    wanted.start(None, history_since=T0 - 60, now=T0)
    decision = wanted.after_search([prediction("p1"), prediction("p2")])
    assert isinstance(decision, Fail) and isinstance(decision.error, WaveSpeedSubmitRefused)
    assert "p1, p2" in str(decision.error) and "reuse_existing=False" in str(decision.error)


# -- pricing -----------------------------------------------------------------------------------------------------


def test_a_quote_within_max_cost_is_submitted_and_recorded():
    wanted = plan(max_cost=1.0)
    assert wanted.prepared(INPUTS, 0.15) == Submit()
    assert wanted.cost_usd == 0.15 and wanted.payload == INPUTS


def test_a_quote_over_max_cost_fails_before_anything_is_billed():
    decision = plan(max_cost=0.10).prepared(INPUTS, 0.15)
    assert isinstance(decision, Fail) and isinstance(decision.error, WaveSpeedSubmitRefused)
    assert "0.1500 USD, above max_cost 0.1000 USD; nothing was submitted" in str(decision.error)


def test_absent_pricing_endpoints_with_max_cost_fail_closed():
    absent = WaveSpeedNotFoundError(404, "Not Found", path="/api/v3/model/price")
    decision = plan(max_cost=1.0).prepared(INPUTS, absent)
    assert isinstance(decision, Fail) and "no price quote" in str(decision.error)


def test_absent_pricing_endpoints_without_max_cost_submit_unquoted():
    wanted = plan()
    assert wanted.prepared(INPUTS, WaveSpeedNotFoundError(404, "Not Found")) == Submit()
    assert wanted.cost_usd is None


# -- submitting ----------------------------------------------------------------------------------------------------


def test_an_answered_submit_is_the_tasks_prediction():
    assert submitting().after_submit(Accepted(prediction()), T0) == Use(prediction(), "submitted")


def test_a_rejected_submit_fails_with_the_apis_reason():
    error = WaveSpeedRequestError(400, "audio is required")
    assert submitting().after_submit(Rejected(error), T0) == Fail(error)


def test_a_429_with_retry_after_pauses_that_long_but_never_less_than_the_minimum():
    wanted = submitting()
    assert wanted.after_submit(RateLimited(30.0), T0) == Pause(30.0, rate_limited=True)
    assert wanted.after_submit(RateLimited(1.0), T0 + 30) == Pause(RATE_LIMIT_MIN_PAUSE_SECONDS, rate_limited=True)


def test_a_429_without_retry_after_pauses_the_minimum_plus_a_jitter_that_doubles_up_to_the_cap():
    wanted = submitting(rand=highest)
    pauses = []
    for n in range(6):
        decision = wanted.after_submit(RateLimited(None), T0 + n)
        assert isinstance(decision, Pause) and decision.rate_limited
        pauses.append(decision.seconds)
    assert pauses[:3] == [RATE_LIMIT_MIN_PAUSE_SECONDS + 10, RATE_LIMIT_MIN_PAUSE_SECONDS + 20, 55.0]
    assert pauses[-1] == RATE_LIMIT_MAX_PAUSE_SECONDS
    assert wanted.earlier_429s == 6


def test_429s_past_rate_limit_timeout_fail_and_the_last_pause_ends_at_the_timeout():
    wanted = submitting(rate_limit_timeout=40.0)
    assert wanted.after_submit(RateLimited(30.0), T0) == Pause(30.0, rate_limited=True)
    assert wanted.after_submit(RateLimited(30.0), T0 + 30) == Pause(10.0, rate_limited=True)
    decision = wanted.after_submit(RateLimited(30.0), T0 + 40)
    assert isinstance(decision, Fail) and "rate_limit_timeout 40 s" in str(decision.error)


def test_a_resumed_rate_limit_wait_counts_from_when_it_started():
    wanted = submitting(rate_limit_timeout=100.0, rate_limited_since=T0 - 100, earlier_429s=4)
    decision = wanted.after_submit(RateLimited(None), T0)
    assert isinstance(decision, Fail)


def test_a_submit_that_never_reached_the_api_is_sent_again_after_the_retry_wait():
    wanted = submitting(max_unanswered=2)
    error = WaveSpeedConnectionError("connection refused", request_sent=False)
    assert wanted.after_submit(NotSent(error), T0) == Pause(0.5, rate_limited=False)
    assert wanted.after_submit(NotSent(error), T0) == Fail(error)


# -- incident: lost submit replies (alone, and inside a batch) --------------------------------------------------


def test_an_unanswered_submit_searches_the_attempts_window_for_the_payload_after_the_retry_wait():
    assert lost_reply(submitting()) == SearchHistory(WINDOW, INPUTS, after=0.5)


def test_an_unanswered_submit_adopts_the_one_unclaimed_candidate():
    wanted = submitting()
    lost_reply(wanted)
    assert wanted.after_search([prediction("p7")]) == Use(prediction("p7"), "adopted")


def test_an_unanswered_submit_with_nothing_in_the_history_submits_again():
    wanted = submitting()
    lost_reply(wanted)
    assert wanted.after_search([]) == Submit()


def test_unanswered_submits_in_a_row_give_up_without_a_window_to_resolve():
    wanted = submitting(max_unanswered=2)
    lost_reply(wanted)
    assert wanted.after_search([]) == Submit()
    lost_reply(wanted)
    decision = wanted.after_search([])
    assert isinstance(decision, Fail) and isinstance(decision.error, WaveSpeedSubmitAmbiguousError)
    assert decision.error.window is None


def test_a_lost_reply_inside_a_batch_searches_again_while_siblings_claim_theirs_then_adopts():
    wanted = submitting()
    lost_reply(wanted)
    siblings = [prediction("p1"), prediction("p2"), prediction("p3")]
    assert wanted.after_search(siblings) == SearchHistory(WINDOW, INPUTS, after=SETTLE_PAUSE_SECONDS)
    assert wanted.after_search(siblings[1:]) == SearchHistory(WINDOW, INPUTS, after=SETTLE_PAUSE_SECONDS)
    assert wanted.after_search([siblings[2]]) == Use(siblings[2], "adopted")


def test_a_lost_reply_that_stays_ambiguous_is_recorded_never_submitted_again():
    wanted = submitting()
    lost_reply(wanted)
    both = [prediction("p1"), prediction("p2")]
    wanted.after_search(both)
    wanted.after_search(both)
    decision = wanted.after_search(both)
    assert decision == Ambiguous(WINDOW, ["p1", "p2"])
    error = decision.error()
    assert error.window == WINDOW.to_json() and error.candidate_ids == ["p1", "p2"]


def test_when_siblings_claim_every_candidate_the_unanswered_submit_created_nothing():
    wanted = submitting()
    lost_reply(wanted)
    wanted.after_search([prediction("p1"), prediction("p2")])
    assert wanted.after_search([]) == Submit()


# -- what a submit's error says happened -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "unanswered", "outcome"),
    [
        (WaveSpeedServerError(503, "Service unavailable"), True, None),
        (WaveSpeedConnectionError("read timeout", request_sent=True), True, None),
        (WaveSpeedConnectionError("connection refused", request_sent=False), False, NotSent),
        (WaveSpeedRequestError(400, "bad input"), False, Rejected),
    ],
)
def test_a_submit_error_is_unanswered_only_when_the_request_may_have_landed(error, unanswered, outcome):
    assert is_unanswered(error) is unanswered
    if outcome is not None:
        assert isinstance(classify(error), outcome)


def test_the_plan_module_imports_neither_airflow_nor_httpx():
    code = (
        "import sys, airflow_provider_wavespeed.api.submit_plan; "
        "print(sorted(m for m in sys.modules if m == 'httpx' or m == 'airflow' or m.startswith('airflow.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
