"""Whether a submit pays today, sans I/O: every decision between "a task wants a prediction" and "it has one".

A submit POST is billed and not idempotent. The operators, the hook and the run operator all get their
prediction the same way: they ask :class:`SubmitPlan` what to do, do it (one HTTP request, a sleep, a
deferral), and hand what happened back. The plan decides:

* reuse what an earlier try of the task submitted (saved state), or find it in the history (Airflow < 3.3);
* price the prediction first and refuse it above ``max_cost`` (or unpriceable with ``max_cost`` set);
* submit; after a 429 (nothing was created) pause and submit again, within ``rate_limit_timeout``;
* after an unanswered submit (no reply, a 5xx), search the history in the attempt's window: one unclaimed
  candidate is ours, none means nothing was created (submit again), several are searched again while
  sibling tasks claim theirs, and stay ambiguous (never submitted again) when they do not.

It does no I/O and knows no Airflow or httpx: the drivers (``api.submitting``, the operators) do.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedConnectionError,
    WaveSpeedError,
    WaveSpeedRateLimitError,
    WaveSpeedServerError,
    WaveSpeedSubmitAmbiguousError,
    WaveSpeedSubmitRefused,
)
from airflow_provider_wavespeed.api.models import TERMINAL_FAILURE_STATUSES, Prediction
from airflow_provider_wavespeed.api.reconcile import UNKNOWN_SKEW_SECONDS, SubmitWindow, ambiguity_message

log = logging.getLogger(__name__)

#: Default of submits in a row that may go unanswered or unsent (each resolved through the history) before
#: giving up; the drivers pass their retry policy's ``max_attempts``.
MAX_UNANSWERED_SUBMITS = 3
#: After an ambiguous lost reply: further history searches, this far apart, while sibling tasks that submitted
#: at the same moment push their claims.
SETTLE_SEARCHES = 2
SETTLE_PAUSE_SECONDS = 5.0
#: The shortest pause after a 429, and without a ``Retry-After`` the jitter on top (doubling per 429).
RATE_LIMIT_MIN_PAUSE_SECONDS = 15.0
RATE_LIMIT_FIRST_JITTER_SECONDS = 10.0
RATE_LIMIT_MAX_PAUSE_SECONDS = 90.0


# -- what happened (reported by the driver) ------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """The submit was answered with a prediction."""

    prediction: Prediction


@dataclass(frozen=True)
class Unanswered:
    """The submit may have reached the API and got no clear answer (no reply, a 5xx): it may exist.

    ``window`` is when, on the API's clock, it may have been created."""

    error: WaveSpeedError
    window: SubmitWindow


@dataclass(frozen=True)
class NotSent:
    """The submit never reached the API (connection refused, DNS): nothing was created."""

    error: WaveSpeedError


@dataclass(frozen=True)
class RateLimited:
    """A 429: the API refused the submit, nothing was created."""

    retry_after: float | None


@dataclass(frozen=True)
class Rejected:
    """A 4xx other than 429 (bad key, bad input, unknown model): nothing was created, asking again won't help."""

    error: WaveSpeedError


SubmitOutcome = Accepted | Unanswered | NotSent | RateLimited | Rejected


def classify(error: WaveSpeedError) -> SubmitOutcome:
    """What a submit's exception says happened; ``Unanswered`` needs the window, so the driver builds it."""
    if isinstance(error, WaveSpeedRateLimitError):
        return RateLimited(error.retry_after)
    if isinstance(error, WaveSpeedConnectionError) and not error.request_sent:
        return NotSent(error)
    return Rejected(error)


def is_unanswered(error: WaveSpeedError) -> bool:
    """A submit that failed this way may have created its prediction."""
    return isinstance(error, WaveSpeedServerError) or (
        isinstance(error, WaveSpeedConnectionError) and error.request_sent
    )


# -- what to do next ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LookUp:
    """Fetch ``prediction_id`` (an earlier try's) and report it with :meth:`SubmitPlan.after_lookup`."""

    prediction_id: str


@dataclass(frozen=True)
class SearchHistory:
    """After ``after`` seconds, search the history in ``window`` for unclaimed predictions whose shown ``input``
    matches ``inputs`` (``api.reconcile.candidates``); report them with :meth:`SubmitPlan.after_search`."""

    window: SubmitWindow
    inputs: Mapping[str, Any]
    after: float = 0.0


@dataclass(frozen=True)
class Prepare:
    """Check, upload and price the inputs; report with :meth:`SubmitPlan.prepared`."""


@dataclass(frozen=True)
class Submit:
    """Send the submit once (the prepared payload); report with :meth:`SubmitPlan.after_submit`."""


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` (sleep, or defer when ``rate_limited``), then :class:`Submit`."""

    seconds: float
    rate_limited: bool


@dataclass(frozen=True)
class Use:
    """Done: this is the task's prediction. ``how``: submitted, reused (an earlier try's) or adopted (found in
    the history after an unanswered submit)."""

    prediction: Prediction
    how: str


@dataclass(frozen=True)
class Ambiguous:
    """Several predictions may be the one an unanswered submit created: record ``window`` and ``ids`` for the
    next try (it resolves them before anything else), and fail this one. Nothing is submitted again."""

    window: SubmitWindow
    ids: list[str]

    def error(self) -> WaveSpeedSubmitAmbiguousError:
        return WaveSpeedSubmitAmbiguousError(
            self.window.model, ambiguity_message(self.window, self.ids), self.ids, self.window.to_json()
        )


@dataclass(frozen=True)
class Fail:
    """Stop: nothing (more) is submitted. ``error`` says why."""

    error: WaveSpeedError


Decision = LookUp | SearchHistory | Prepare | Submit | Pause | Use | Ambiguous | Fail


def rate_limit_pause(retry_after: float | None, earlier_429s: int, rand: Callable[[float, float], float]) -> float:
    """Seconds to wait after a 429: the API's ``Retry-After`` (at least the minimum) when it sends one, else the
    minimum plus a jitter that doubles with each 429, so a mapped batch does not retry in lockstep."""
    if retry_after is not None:
        return max(retry_after, RATE_LIMIT_MIN_PAUSE_SECONDS) + rand(0.0, 1.0)
    jitter = RATE_LIMIT_FIRST_JITTER_SECONDS * 2 ** min(earlier_429s, 8)
    return min(RATE_LIMIT_MAX_PAUSE_SECONDS, RATE_LIMIT_MIN_PAUSE_SECONDS + rand(0.0, jitter))


# -- the plan ------------------------------------------------------------------------------------------------


@dataclass
class SubmitPlan:
    """The decisions for one task (or one hook call) getting its one prediction of ``model``.

    :param model: the model id.
    :param inputs: the task's inputs as given (media references unresolved), for history comparisons.
    :param max_cost: refuse a quote above this (USD); None: any price, and an unpriceable prediction is
        submitted unquoted.
    :param rate_limit_timeout: how long submits may keep being rate limited before giving up.
    :param rate_limited_since: when an earlier deferral of this try started waiting out a 429 (epoch s).
    :param earlier_429s: 429s met by this try before that deferral.
    :param max_unanswered: submits in a row that may go unanswered or unsent before giving up.
    :param retry_wait: seconds before submit attempt ``n + 1`` after an unanswered or unsent attempt ``n``.
    :param rand: the jitter source (``random.uniform``; tests pass a fixed one).
    :param log: where decisions are logged (the operators pass their own logger).
    """

    model: str
    inputs: Mapping[str, Any] = field(default_factory=dict)
    max_cost: float | None = None
    rate_limit_timeout: float = 3600.0
    rate_limited_since: float | None = None
    earlier_429s: int = 0
    max_unanswered: int = MAX_UNANSWERED_SUBMITS
    retry_wait: Callable[[int, WaveSpeedError | None], float] = lambda attempt, error: 0.0
    rand: Callable[[float, float], float] = random.uniform
    log: Any = field(default=log, repr=False)
    payload: dict[str, Any] | None = None
    cost_usd: float | None = None
    unanswered: int = 0
    settle_searches: int = 0
    _searching: str = ""
    _window: SubmitWindow | None = None

    # -- where to start --------------------------------------------------------------------------------------

    def start(
        self, saved: Mapping[str, Any] | None, *, history_since: float | None = None, now: float = 0.0
    ) -> Decision:
        """The first step, given what an earlier try saved (``task_state_store``) or, without a store on a retry
        (Airflow < 3.3), since when the history may hold an earlier try's prediction."""
        if saved is not None and saved.get("pending"):
            self._searching, self._window = "pending", SubmitWindow.from_json(saved["pending"])
            return SearchHistory(self._window, dict(saved.get("payload") or {}))
        if saved is not None and saved.get("id"):
            self.cost_usd = saved.get("cost_usd")
            return LookUp(str(saved["id"]))
        if history_since is not None:
            self._searching = "earlier-try"
            return SearchHistory(SubmitWindow(self.model, history_since, now + UNKNOWN_SKEW_SECONDS), self.inputs)
        return Prepare()

    def start_prepared(self, payload: Mapping[str, Any]) -> Decision:
        """Start with inputs that are ready to submit (a direct hook call, or a resume after a rate-limit pause)."""
        self.payload = dict(payload)
        return Submit()

    def after_lookup(self, prediction: Prediction) -> Decision:
        if prediction.status in TERMINAL_FAILURE_STATUSES:
            return self._anew(prediction)
        self.log.info(
            "Reusing prediction %s submitted by an earlier try (status %s); not submitting again",
            prediction.id,
            prediction.status,
        )
        return Use(prediction, "reused")

    # -- pricing -----------------------------------------------------------------------------------------------

    def prepared(self, payload: Mapping[str, Any], quote: float | WaveSpeedError | None) -> Decision:
        """The checked, uploaded inputs and their price quote (or why none could be had; None: priced before,
        when the prediction was found unpriceable and submitted unquoted)."""
        self.payload = dict(payload)
        if quote is None and self.max_cost is None:
            self.cost_usd = None
            return Submit()
        if quote is None:
            quote = WaveSpeedSubmitRefused("no price quote was had earlier")
        if isinstance(quote, WaveSpeedError):
            if self.max_cost is not None:
                return Fail(
                    WaveSpeedSubmitRefused(
                        f"max_cost is {self.max_cost:.2f} USD but no price quote for {self.model} could be had "
                        f"({quote}); nothing was submitted. Retry later, or unset max_cost to submit unquoted."
                    )
                )
            self.log.warning("No price quote for %s (%s); submitting without one", self.model, quote)
            self.cost_usd = None
            return Submit()
        if self.max_cost is not None and quote > self.max_cost:
            return Fail(
                WaveSpeedSubmitRefused(
                    f"the price quote for {self.model} is {quote:.4f} USD, above max_cost {self.max_cost:.4f} USD; "
                    "nothing was submitted. Raise max_cost or change the inputs."
                )
            )
        limit = f" (max_cost {self.max_cost:.4f} USD)" if self.max_cost is not None else ""
        self.log.info("Price quote for %s: %.4f USD%s", self.model, quote, limit)
        self.cost_usd = quote
        return Submit()

    # -- submitting ----------------------------------------------------------------------------------------------

    def after_submit(self, outcome: SubmitOutcome, now: float) -> Decision:
        if isinstance(outcome, Accepted):
            return Use(outcome.prediction, "submitted")
        if isinstance(outcome, Rejected):
            return Fail(outcome.error)
        if isinstance(outcome, RateLimited):
            return self._rate_limited(outcome.retry_after, now)
        self.unanswered += 1
        if isinstance(outcome, NotSent):
            self.log.warning("Submit to %s never reached the API (nothing was created): %s", self.model, outcome.error)
            if self.unanswered >= self.max_unanswered:
                return Fail(outcome.error)
            return Pause(self.retry_wait(self.unanswered, outcome.error), rate_limited=False)
        self._searching, self._window, self.settle_searches = "lost-reply", outcome.window, 0
        self.log.warning(
            "Submit to %s got no clear answer (%s); checking history %s",
            self.model,
            outcome.error,
            outcome.window.describe(),
        )
        return SearchHistory(outcome.window, self._payload(), after=self.retry_wait(self.unanswered, outcome.error))

    def _rate_limited(self, retry_after: float | None, now: float) -> Decision:
        since = self.rate_limited_since if self.rate_limited_since is not None else now
        self.rate_limited_since = since
        if now - since >= self.rate_limit_timeout:
            return Fail(
                WaveSpeedSubmitRefused(
                    f"submits to {self.model} were rate limited for {now - since:.0f} s (rate_limit_timeout "
                    f"{self.rate_limit_timeout:.0f} s); nothing was created. The account's per-minute limit is lower "
                    "than this batch needs: lower the pool or max_active_tis_per_dagrun, raise rate_limit_timeout, "
                    "or upgrade the account level."
                )
            )
        pause = min(rate_limit_pause(retry_after, self.earlier_429s, self.rand), since + self.rate_limit_timeout - now)
        self.earlier_429s += 1
        self.log.warning(
            "Submit to %s was rate limited (429, nothing was created; %d so far): submitting again in %.0f s",
            self.model,
            self.earlier_429s,
            pause,
        )
        return Pause(pause, rate_limited=True)

    # -- the history ---------------------------------------------------------------------------------------------

    def after_search(self, found: list[Prediction]) -> Decision:
        """The unclaimed candidates the last :class:`SearchHistory` found, newest first."""
        searching, window = self._searching, self._window
        if searching == "lost-reply":
            return self._after_lost_reply_search(found)
        self._searching, self._window = "", None
        if len(found) > 1:
            ids = [p.id for p in found]
            if searching == "pending":
                assert window is not None
                return Fail(WaveSpeedSubmitRefused(ambiguity_message(window, ids)))
            return Fail(
                WaveSpeedSubmitRefused(
                    f"a retry cannot tell which of these predictions an earlier try submitted: {', '.join(ids)}. "
                    "Not submitting again to avoid paying twice; wait on the right id with "
                    "WaveSpeedPredictionSensor(prediction_id=...), or set reuse_existing=False to submit anew, "
                    "knowingly accepting a possible second charge (Airflow >= 3.3 tracks this exactly)."
                )
            )
        if not found:
            if searching == "pending" and window is not None:
                self.log.warning(
                    "History %s shows no prediction from the earlier try's unanswered submit: submitting",
                    window.describe(),
                )
            else:
                self.log.info("No prediction of an earlier try found in the history; submitting")
            return Prepare()
        if found[0].status in TERMINAL_FAILURE_STATUSES:
            return self._anew(found[0])
        if searching == "pending":
            self.log.info(
                "Adopted prediction %s of an earlier try's unanswered submit; not submitting again", found[0].id
            )
            return Use(found[0], "adopted")
        self.log.info("Reusing prediction %s of an earlier try (history); not submitting again", found[0].id)
        return Use(found[0], "reused")

    def _after_lost_reply_search(self, found: list[Prediction]) -> Decision:
        assert self._window is not None
        window = self._window
        if len(found) == 1:
            self._searching, self._window = "", None
            if self.settle_searches:
                self.log.warning("Adopted prediction %s: sibling tasks claimed the other candidates", found[0].id)
            else:
                why = "its inputs match" if "input" in found[0].raw else "the only unclaimed one in the window"
                self.log.warning("Adopted prediction %s of the unanswered submit: %s", found[0].id, why)
            return Use(found[0], "adopted")
        if len(found) > 1:
            if self.settle_searches < SETTLE_SEARCHES:
                self.settle_searches += 1
                self.log.info(
                    "History %s: %d unclaimed candidates; searching again in %.0f s while sibling tasks claim theirs",
                    window.describe(),
                    len(found),
                    SETTLE_PAUSE_SECONDS,
                )
                return SearchHistory(window, self._payload(), after=SETTLE_PAUSE_SECONDS)
            self._searching, self._window = "", None
            return Ambiguous(window, [p.id for p in found])
        self._searching, self._window = "", None
        if self.settle_searches:
            self.log.warning("Sibling tasks claimed every candidate: the unanswered submit created nothing")
        else:
            self.log.warning("History shows no prediction from that submit: safe to submit again")
        if self.unanswered >= self.max_unanswered:
            return Fail(
                WaveSpeedSubmitAmbiguousError(
                    self.model,
                    f"{self.unanswered} submits to {self.model} in a row got no reply; not trying again",
                )
            )
        return Submit()

    # -- helpers -------------------------------------------------------------------------------------------------

    def _anew(self, prediction: Prediction) -> Decision:
        """An earlier try's prediction ended failed: this try submits anew."""
        self.log.warning("Prediction %s of an earlier try ended %s; submitting anew", prediction.id, prediction.status)
        self.cost_usd = None
        return Prepare()

    def _payload(self) -> Mapping[str, Any]:
        return self.payload if self.payload is not None else self.inputs
