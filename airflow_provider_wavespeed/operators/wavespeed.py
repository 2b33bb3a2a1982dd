"""WaveSpeedSubmitOperator, WaveSpeedBudgetOperator, WaveSpeedDownloadOperator, WaveSpeedRunOperator, the extra link."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import BaseOperator, BaseOperatorLink, Context, XCom

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedError,
    WaveSpeedInputError,
    WaveSpeedRateLimitError,
    WaveSpeedSubmitAmbiguousError,
)
from airflow_provider_wavespeed.api.models import TERMINAL_FAILURE_STATUSES, Prediction
from airflow_provider_wavespeed.api.protocol import check_model_id, check_prediction_id, check_submit_options
from airflow_provider_wavespeed.api.reconcile import UNKNOWN_SKEW_SECONDS, SubmitWindow, ambiguity_message, candidates
from airflow_provider_wavespeed.api.waiting import DeadlinePassed, Failed, Finished
from airflow_provider_wavespeed.assets import emit_output_events
from airflow_provider_wavespeed.deferral import default_deferrable
from airflow_provider_wavespeed.destinations import Destination
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.output_downloads import store_outputs
from airflow_provider_wavespeed.sensors.wavespeed import DEFER_TIMEOUT_GRACE
from airflow_provider_wavespeed.task_results import (
    AirflowFailException,
    check_expected_runtime,
    check_nsfw_policy,
    completed_result,
    deadline_failure,
    final_error,
    flagged_outputs,
    prediction_from_event,
)
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

LINK_XCOM_KEY = "wavespeed_prediction_url"
#: The prediction id a task submitted or adopted, pushed at once: sibling tasks resolving a lost reply skip it.
CLAIM_XCOM_KEY = "wavespeed_prediction_id"
STATE_KEY = "wavespeed_prediction"
#: After an ambiguous lost reply, how often (and how far apart) the history is searched again while
#: sibling tasks that submitted at the same moment push their claims.
SETTLE_CHECKS = 3
SETTLE_PAUSE_SECONDS = 5.0
#: Submits in a row that may go unanswered (each resolved through the history) before the task gives up.
MAX_UNANSWERED_SUBMITS = 3
CONSOLE_MODEL_URL = "https://wavespeed.ai/models/{model}"
#: The price quote (USD) of the task's prediction, None when no quote could be had.
COST_XCOM_KEY = "wavespeed_cost_usd"
#: WaveSpeedBudgetOperator: the quote of every item, in batch order, and their total (USD).
BATCH_QUOTES_XCOM_KEY = "wavespeed_quotes"
#: A task waiting out a rate limit: since when, how many 429s, and the priced inputs to submit on resume.
RATE_LIMITED_XCOM_KEY = "wavespeed_rate_limited"
BATCH_TOTAL_XCOM_KEY = "wavespeed_total_cost_usd"
#: The shortest pause after a rate-limited submit. Deferring for less races Airflow itself: the worker
#: that deferred takes a few seconds to exit, and a task resumed before the scheduler has seen that
#: exit is marked failed ("task state changed externally", seen on Airflow 3.1 and 3.3).
RATE_LIMIT_MIN_PAUSE_SECONDS = 15.0
#: Without a ``Retry-After``, the jitter on top of that minimum: up to this much, doubling per 429.
RATE_LIMIT_FIRST_JITTER_SECONDS = 10.0
RATE_LIMIT_MAX_PAUSE_SECONDS = 90.0


def prediction_console_url(model: str, prediction_id: str) -> str:
    return CONSOLE_MODEL_URL.format(model=quote(model, safe="/")) + f"?prediction_id={quote(prediction_id)}"


class WaveSpeedPredictionLink(BaseOperatorLink):
    """'WaveSpeed prediction' button: the model's page on wavespeed.ai for the submitted prediction."""

    name = "WaveSpeed prediction"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return XCom.get_value(ti_key=ti_key, key=LINK_XCOM_KEY) or ""


def inputs_fingerprint(model: str, inputs: Mapping[str, Any]) -> str:
    blob = json.dumps({"model": model, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def check_usd(name: str, value: float | None, *, positive: bool = False) -> float | None:
    """``value`` when it is an amount of USD (None allowed); else a ValueError naming the parameter."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind} number of USD, got {value!r}")
    return float(value)


def check_seconds(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def rate_limit_pause(retry_after: float | None, earlier_429s: int) -> float:
    """Seconds to wait after a 429: the API's ``Retry-After`` when it sends one, else the minimum plus
    a jitter that doubles with each 429, so a mapped batch does not retry in lockstep."""
    if retry_after is not None:
        return max(retry_after, RATE_LIMIT_MIN_PAUSE_SECONDS) + random.uniform(0.0, 1.0)
    jitter = RATE_LIMIT_FIRST_JITTER_SECONDS * 2 ** min(earlier_429s, 8)
    return min(RATE_LIMIT_MAX_PAUSE_SECONDS, RATE_LIMIT_MIN_PAUSE_SECONDS + random.uniform(0.0, jitter))


class WaveSpeedSubmitOperator(BaseOperator):
    """
    Submit a prediction to a WaveSpeed model and return its id (XCom ``return_value``).

    Bad inputs fail before anything is submitted (checked against the model's published schema).
    A submit is billed, so it is never blindly repeated: an unanswered submit is resolved from the
    prediction history, and a retried task reuses the prediction its earlier try created.

    :param model: model id, e.g. ``wavespeed-ai/hunyuan-avatar`` (templated).
    :param inputs: the model's inputs as a dict (templated). Media inputs may be public URLs, local
        file paths or object-storage URIs; files are uploaded first and replaced by their URLs.
    :param wavespeed_conn_id: connection holding the API key.
    :param validate_inputs: check ``inputs`` against the model's schema before submitting.
    :param reuse_existing: on a task retry, reuse the prediction an earlier try submitted (unless
        it failed or the model/inputs changed) instead of paying for a new one.
    :param min_balance: fail before submitting when the account balance (USD) is below this.
    :param media_conn_id: Airflow connection for object-storage media inputs, when not in the URI.
    :param webhook: optional HTTPS URL WaveSpeed calls when the prediction finishes (templated).
    :param max_cost: fail before submitting when the price quote (USD) of the fully resolved inputs is
        above this; when no quote can be had, fail closed. The quote is logged and pushed as XCom
        ``wavespeed_cost_usd`` either way.
    :param rate_limit_timeout: how long (seconds) a submit may keep being rate limited (HTTP 429: nothing
        was created) before the task fails. The task waits in the triggerer meanwhile (deferrable) or sleeps.
    :param deferrable: wait out rate limits in the triggerer instead of the worker (default: the
        ``[operators] default_deferrable`` option, True when unset).
    """

    template_fields: Sequence[str] = ("model", "inputs", "webhook")
    template_fields_renderers = {"inputs": "json"}
    operator_extra_links = (WaveSpeedPredictionLink(),)
    ui_color = "#d6ecfa"

    def __init__(
        self,
        *,
        model: str,
        inputs: dict[str, Any],
        wavespeed_conn_id: str = WaveSpeedHook.default_conn_name,
        validate_inputs: bool = True,
        reuse_existing: bool = True,
        min_balance: float | None = None,
        media_conn_id: str | None = None,
        webhook: str | None = None,
        max_cost: float | None = None,
        rate_limit_timeout: float = 3600.0,
        deferrable: bool = default_deferrable(),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.inputs = inputs
        self.wavespeed_conn_id = wavespeed_conn_id
        self.validate_inputs = validate_inputs
        self.reuse_existing = reuse_existing
        self.min_balance = check_usd("min_balance", min_balance)
        self.media_conn_id = media_conn_id
        self.webhook = webhook
        self.max_cost = check_usd("max_cost", max_cost, positive=True)
        self.rate_limit_timeout = check_seconds("rate_limit_timeout", rate_limit_timeout)
        self.deferrable = deferrable
        self.cost_usd: float | None = None
        self._rate_limited: dict[str, Any] = {}

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def _checked_arguments(self) -> tuple[str, dict[str, Any]]:
        try:
            model = check_model_id(self.model)
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        if not isinstance(self.inputs, Mapping):
            raise AirflowFailException(
                f"{self.task_id}: inputs must be a dict of model inputs, got {type(self.inputs).__name__}"
            )
        if self.webhook is not None and not str(self.webhook).startswith("https://"):
            raise AirflowFailException(f"{self.task_id}: webhook must be an https:// URL, got {self.webhook!r}")
        try:
            check_submit_options(self.inputs, self.webhook)
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        return model, dict(self.inputs)

    def execute(self, context: Context) -> str:
        return self.submit_or_reuse(context).id

    def resume_after_rate_limit(self, context: Context, event: Any = None) -> Any:
        """Back from a deferred rate-limit pause: run ``execute`` again (it submits; nothing was created)."""
        saved = own_xcom(context, self.task_id, RATE_LIMITED_XCOM_KEY)
        self._rate_limited = dict(saved) if isinstance(saved, dict) else {}
        return self.execute(context)

    def submit_or_reuse(self, context: Context) -> Prediction:
        """The prediction for this task: reused from an earlier try, or submitted now (once)."""
        model, inputs = self._checked_arguments()
        fingerprint = inputs_fingerprint(model, inputs)
        store = context.get("task_state_store") if self.reuse_existing else None
        saved = self._saved_state(store, fingerprint)
        try:
            if saved is not None and "pending" in saved:
                reused = self._resolve_pending(context, saved)
            elif saved is not None:
                reused = self._reusable_prediction(saved)
            elif store is None and self.reuse_existing:
                reused = self._reusable_from_history(context, model, inputs)
            else:
                reused = None
            if reused is not None:
                self._announce(context, reused)
                return reused
            payload = self._payload_and_cost(model, inputs, fingerprint)
            prediction = self._submit_when_allowed(context, store, model, payload, fingerprint)
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        except FileNotFoundError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        if store is not None:
            store.set(
                STATE_KEY, {"id": prediction.id, "model": model, "fingerprint": fingerprint, "cost_usd": self.cost_usd}
            )
        self.log.info("Submitted prediction %s to %s (status %s)", prediction.id, model, prediction.status)
        self._announce(context, prediction)
        return prediction

    def _payload_and_cost(self, model: str, inputs: dict[str, Any], fingerprint: str) -> dict[str, Any]:
        """Checked, uploaded and priced inputs, ready to submit (after a rate-limit pause: as they were)."""
        earlier = self._rate_limited
        if earlier.get("fingerprint") == fingerprint and isinstance(earlier.get("payload"), dict):
            self.cost_usd = earlier.get("cost_usd")
            return dict(earlier["payload"])
        if self.validate_inputs:
            unknown = self.hook.validate_inputs(model, inputs)
            if unknown:
                self.log.warning("Model %s does not declare inputs %s; sending them anyway", model, unknown)
        self._check_balance()
        payload = self.hook.resolve_media_inputs(inputs, conn_id=self.media_conn_id)
        self.cost_usd = self._quote(model, payload)
        return payload

    def _quote(self, model: str, payload: dict[str, Any]) -> float | None:
        """The price of this prediction; above ``max_cost``, or unknown with ``max_cost`` set: fail, unbilled."""
        try:
            cost = self.hook.quote(model, payload)
        except WaveSpeedError as exc:
            if self.max_cost is not None:
                raise AirflowFailException(
                    f"{self.task_id}: max_cost is {self.max_cost:.2f} USD but no price quote for {model} could be "
                    f"had ({exc}); nothing was submitted. Retry later, or unset max_cost to submit unquoted."
                ) from None
            self.log.warning("No price quote for %s (%s); submitting without one", model, exc)
            return None
        if self.max_cost is not None and cost > self.max_cost:
            raise AirflowFailException(
                f"{self.task_id}: the price quote for {model} is {cost:.4f} USD, above max_cost "
                f"{self.max_cost:.4f} USD; nothing was submitted. Raise max_cost or change the inputs."
            )
        limit = f" (max_cost {self.max_cost:.4f} USD)" if self.max_cost is not None else ""
        self.log.info("Price quote for %s: %.4f USD%s", model, cost, limit)
        return cost

    def _submit_when_allowed(
        self, context: Context, store: Any, model: str, payload: dict[str, Any], fingerprint: str
    ) -> Prediction:
        """Submit; a rate-limited submit (429: nothing was created) waits and submits again, within bounds."""
        state = self._rate_limited
        while True:
            try:
                return self._submit(context, store, model, payload, fingerprint)
            except WaveSpeedRateLimitError as exc:
                now = time.time()
                since = float(state.get("since") or now)
                count = int(state.get("count") or 0)
                if now - since >= self.rate_limit_timeout:
                    raise AirflowFailException(
                        f"{self.task_id}: submits to {model} were rate limited for {now - since:.0f} s "
                        f"(rate_limit_timeout {self.rate_limit_timeout:.0f} s); nothing was created. The account's "
                        "per-minute limit is lower than this batch needs: lower the pool or max_active_tis_per_dagrun, "
                        "raise rate_limit_timeout, or upgrade the account level."
                    ) from None
                pause = min(rate_limit_pause(exc.retry_after, count), since + self.rate_limit_timeout - now)
                state = {"since": since, "count": count + 1}
                self.log.warning(
                    "Submit to %s was rate limited (429, nothing was created; %d so far): submitting again in %.0f s",
                    model,
                    count + 1,
                    pause,
                )
                if self.deferrable:
                    self._defer_for_rate_limit(
                        context, pause, {**state, "fingerprint": fingerprint, "payload": payload}
                    )
                time.sleep(pause)

    def _defer_for_rate_limit(self, context: Context, pause: float, state: dict[str, Any]) -> None:
        from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

        state["cost_usd"] = self.cost_usd
        # XCom, not the deferral's kwargs: they outlive the deferral within this try, in dag.test() too.
        context["ti"].xcom_push(key=RATE_LIMITED_XCOM_KEY, value=state)
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=pause)), method_name="resume_after_rate_limit")

    def _submit(
        self, context: Context, store: Any, model: str, payload: dict[str, Any], fingerprint: str
    ) -> Prediction:
        """Submit; when the reply is lost and history is ambiguous, wait for sibling tasks' claims to settle.

        Still ambiguous after that: the window and candidates are recorded in the task state store
        before the task fails, so that no later try submits these inputs again before resolving them.
        """
        for _ in range(MAX_UNANSWERED_SUBMITS):
            try:
                return self.hook.submit(
                    model,
                    payload,
                    webhook=self.webhook,
                    claimed_ids=lambda: self._claims(context),
                    retry_rate_limits=False,
                )
            except WaveSpeedSubmitAmbiguousError as exc:
                if exc.window is None:
                    raise
                window = SubmitWindow.from_json(exc.window)
                found = self._settled_candidates(context, window, payload, len(exc.candidate_ids))
                if len(found) == 1:
                    self.log.warning("Adopted prediction %s: sibling tasks claimed the other candidates", found[0].id)
                    return found[0]
                if found:
                    ids = [p.id for p in found]
                    if store is not None:
                        store.set(
                            STATE_KEY,
                            {
                                "pending": window.to_json(),
                                "candidates": ids,
                                "model": model,
                                "fingerprint": fingerprint,
                                "payload": payload,
                            },
                        )
                    raise WaveSpeedSubmitAmbiguousError(
                        model, ambiguity_message(window, ids), ids, exc.window
                    ) from None
                self.log.warning("Sibling tasks claimed every candidate: the unanswered submit created nothing")
        raise WaveSpeedSubmitAmbiguousError(
            model, f"{MAX_UNANSWERED_SUBMITS} submits to {model} in a row got no reply; not trying again"
        )

    def _settled_candidates(
        self, context: Context, window: SubmitWindow, payload: dict[str, Any], seen: int
    ) -> list[Prediction]:
        """Search ``window`` again while sibling tasks that submitted at the same time claim their predictions."""
        found: list[Prediction] = []
        for check in range(SETTLE_CHECKS):
            if check:
                time.sleep(SETTLE_PAUSE_SECONDS)
            found = candidates(self.hook.list_predictions, window, payload, self._claims(context))
            self.log.info("History %s: %d unclaimed candidate(s) of %d", window.describe(), len(found), seen)
            if len(found) <= 1:
                break
        return found

    def _claims(self, context: Context) -> set[str]:
        """Prediction ids that the WaveSpeed tasks of this DAG run (mapped siblings included) have claimed."""
        task_ids = (
            [t.task_id for t in self.dag.tasks if isinstance(t, WaveSpeedSubmitOperator)] if self.has_dag() else []
        )
        pulled = context["ti"].xcom_pull(task_ids=task_ids or [self.task_id], key=CLAIM_XCOM_KEY)
        values = pulled if isinstance(pulled, list) else [pulled]
        return {v for v in values if isinstance(v, str) and v}

    def _saved_state(self, store: Any, fingerprint: str) -> dict[str, Any] | None:
        saved = store.get(STATE_KEY) if store is not None else None
        if not isinstance(saved, dict) or not (saved.get("id") or saved.get("pending")):
            return None
        if saved.get("fingerprint") != fingerprint:
            what = saved.get("id") or f"an unanswered submit ({', '.join(saved.get('candidates') or [])})"
            self.log.warning("An earlier try submitted %s with other model/inputs; submitting anew", what)
            return None
        return saved

    def _resolve_pending(self, context: Context, saved: dict[str, Any]) -> Prediction | None:
        """An earlier try's submit got no reply and history was ambiguous: resolve it before anything else."""
        window = SubmitWindow.from_json(saved["pending"])
        payload = saved.get("payload") or {}
        found = candidates(self.hook.list_predictions, window, payload, self._claims(context))
        if len(found) > 1:
            ids = [p.id for p in found]
            raise AirflowFailException(f"{self.task_id}: {ambiguity_message(window, ids)}")
        if not found:
            self.log.warning(
                "History %s shows no prediction from the earlier try's unanswered submit: submitting", window.describe()
            )
            return None
        adopted = found[0]
        if adopted.status in TERMINAL_FAILURE_STATUSES:
            self.log.warning("Prediction %s of an earlier try ended %s; submitting anew", adopted.id, adopted.status)
            return None
        self.log.info("Adopted prediction %s of an earlier try's unanswered submit; not submitting again", adopted.id)
        store = context.get("task_state_store")
        if store is not None:
            store.set(STATE_KEY, {"id": adopted.id, "model": window.model, "fingerprint": saved.get("fingerprint")})
        return adopted

    def _check_balance(self) -> None:
        if self.min_balance is None:
            return
        balance = self.hook.get_balance()
        if balance < self.min_balance:
            raise AirflowFailException(
                f"{self.task_id}: account balance {balance:.2f} USD is below min_balance "
                f"{self.min_balance:.2f} USD; nothing was submitted. Top up at https://wavespeed.ai"
            )
        self.log.info("Account balance %.2f USD (min_balance %.2f)", balance, self.min_balance)

    def _reusable_prediction(self, saved: dict[str, Any]) -> Prediction | None:
        previous = self.hook.get_prediction(str(saved["id"]))
        self.cost_usd = saved.get("cost_usd")
        if previous.status in TERMINAL_FAILURE_STATUSES:
            self.log.warning("Prediction %s of an earlier try ended %s; submitting anew", previous.id, previous.status)
            return None
        self.log.info(
            "Reusing prediction %s submitted by an earlier try (status %s); not submitting again",
            previous.id,
            previous.status,
        )
        return previous

    def _reusable_from_history(self, context: Context, model: str, inputs: dict[str, Any]) -> Prediction | None:
        """Airflow < 3.3 has no task_state_store: find an earlier try's prediction in the history instead.

        Candidates are this model's predictions created since the DAG run started that no other task
        of the run claimed. Where the history shows inputs, they must match. One candidate is reused
        (unless it failed); several fail the task with their ids rather than risk paying twice or
        adopting someone else's prediction.
        """
        ti = context["ti"]
        if getattr(ti, "try_number", 1) <= 1:
            return None
        dag_run = context.get("dag_run")
        since = getattr(dag_run, "start_date", None) or getattr(dag_run, "queued_at", None)
        if since is None:
            return None
        window = SubmitWindow(model, since.timestamp(), time.time() + UNKNOWN_SKEW_SECONDS)
        found = candidates(self.hook.list_predictions, window, inputs, self._claims(context))
        if not found:
            self.log.info("No prediction of an earlier try found in the history; submitting")
            return None
        if len(found) > 1:
            ids = ", ".join(p.id for p in found)
            raise AirflowFailException(
                f"{self.task_id}: try {ti.try_number} cannot tell which of these predictions an earlier try "
                f"submitted: {ids}. Not submitting again to avoid paying twice; wait on the right id with "
                "WaveSpeedPredictionSensor(prediction_id=...), or set reuse_existing=False to submit anew, "
                "knowingly accepting a possible second charge (Airflow >= 3.3 tracks this exactly)."
            )
        if found[0].status in TERMINAL_FAILURE_STATUSES:
            self.log.warning("Prediction %s of an earlier try ended %s; submitting anew", found[0].id, found[0].status)
            return None
        self.log.info("Reusing prediction %s of an earlier try (history); not submitting again", found[0].id)
        return found[0]

    def _announce(self, context: Context, prediction: Prediction) -> None:
        """Claim the prediction (sibling tasks resolving a lost reply leave it out) and push its console link."""
        ti = context["ti"]
        ti.xcom_push(key=CLAIM_XCOM_KEY, value=prediction.id)
        ti.xcom_push(key=LINK_XCOM_KEY, value=prediction_console_url(prediction.model or self.model, prediction.id))
        ti.xcom_push(key=COST_XCOM_KEY, value=self.cost_usd)


class WaveSpeedBudgetOperator(BaseOperator):
    """
    Quote every item of a batch and fail, before anything is submitted, when the total is over budget.

    Put it in front of a mapped submit or run task: ``WaveSpeedRunOperator.partial(...).expand(
    inputs=budget.output)`` fans out only behind the gate. Returns ``batch`` unchanged; the per-item
    quotes and the total (USD) are logged and pushed as XComs ``wavespeed_quotes`` and
    ``wavespeed_total_cost_usd``. Items are checked against the model's schema first, and quoted with
    their media inputs resolved (local files uploaded), as they will be submitted. When any item
    cannot be quoted the gate stays closed.

    :param model: model id every item runs on (templated).
    :param batch: list of input dicts, one per prediction (templated; an ``XComArg`` works).
    :param max_total_cost: the most the whole batch may cost, in USD (templated, e.g. from a param).
    :param wavespeed_conn_id: connection holding the API key.
    :param validate_inputs: check every item against the model's schema before quoting.
    :param media_conn_id: Airflow connection for object-storage media inputs, when not in the URI.
    :param max_concurrency: quotes requested at once.
    """

    template_fields: Sequence[str] = ("model", "batch", "max_total_cost")
    template_fields_renderers = {"batch": "json"}
    ui_color = "#fdf2d0"

    def __init__(
        self,
        *,
        model: str,
        batch: Any,
        max_total_cost: float | str,
        wavespeed_conn_id: str = WaveSpeedHook.default_conn_name,
        validate_inputs: bool = True,
        media_conn_id: str | None = None,
        max_concurrency: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.batch = batch
        if not isinstance(max_total_cost, str):  # a template is checked once rendered, in execute()
            check_usd("max_total_cost", max_total_cost, positive=True)
        self.max_total_cost = max_total_cost
        self.wavespeed_conn_id = wavespeed_conn_id
        self.validate_inputs = validate_inputs
        self.media_conn_id = media_conn_id
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        self.max_concurrency = max_concurrency

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        try:
            model = check_model_id(self.model)
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        limit = self._limit()
        items = self._items()
        if self.validate_inputs:
            self._validate(model, items)
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(len(items), 1))) as pool:
            futures = [pool.submit(self._quote, model, item) for item in items]
            quotes = [future.result() for future in futures]
        total = round(sum(quotes), 6)
        ti = context["ti"]
        ti.xcom_push(key=BATCH_QUOTES_XCOM_KEY, value=quotes)
        ti.xcom_push(key=BATCH_TOTAL_XCOM_KEY, value=total)
        if total > limit:
            priciest = sorted(range(len(items)), key=lambda i: quotes[i], reverse=True)[:3]
            listed = "; ".join(f"item {i}: {quotes[i]:.4f} USD {_short(items[i])}" for i in priciest)
            raise AirflowFailException(
                f"{self.task_id}: the {len(items)} items of this batch would cost {total:.4f} USD on {model}, "
                f"above max_total_cost {limit:.4f} USD; nothing was submitted. Most expensive: "
                f"{listed}. Check the batch (a duplicated or runaway input list?) or raise max_total_cost."
            )
        self.log.info(
            "Batch of %d items on %s quoted at %.4f USD in total (max_total_cost %.4f USD): within budget",
            len(items),
            model,
            total,
            limit,
        )
        return items

    def _limit(self) -> float:
        value: Any = self.max_total_cost
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise AirflowFailException(
                    f"{self.task_id}: max_total_cost must be a number of USD, got {self.max_total_cost!r}"
                ) from None
        try:
            limit = check_usd("max_total_cost", value, positive=True)
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        assert limit is not None
        return limit

    def _items(self) -> list[dict[str, Any]]:
        batch = self.batch
        if isinstance(batch, Mapping | str | bytes) or not isinstance(batch, Sequence):
            raise AirflowFailException(
                f"{self.task_id}: batch must be a list of input dicts (one per prediction), got {type(batch).__name__}"
            )
        bad = [i for i, item in enumerate(batch) if not isinstance(item, Mapping)]
        if bad:
            raise AirflowFailException(
                f"{self.task_id}: batch items {bad[:10]} are not dicts of model inputs; each item is one prediction's "
                "inputs"
            )
        return [dict(item) for item in batch]

    def _validate(self, model: str, items: list[dict[str, Any]]) -> None:
        problems: list[str] = []
        for index, item in enumerate(items):
            try:
                self.hook.validate_inputs(model, item)
            except WaveSpeedInputError as exc:
                problems.extend(f"item {index}: {problem}" for problem in exc.problems)
            except WaveSpeedError as exc:
                raise final_error(exc, self.task_id) from None
        if problems:
            raise final_error(WaveSpeedInputError(model, problems), self.task_id)

    def _quote(self, model: str, item: dict[str, Any]) -> float:
        try:
            return self.hook.quote(model, self.hook.resolve_media_inputs(item, conn_id=self.media_conn_id))
        except (WaveSpeedError, FileNotFoundError) as exc:
            raise AirflowFailException(
                f"{self.task_id}: no price quote for an item of this batch on {model} ({exc}); the budget cannot "
                "be checked, so nothing will be submitted. Retry later, or remove the budget gate knowingly."
            ) from None


def own_xcom(context: Context, task_id: str, key: str) -> Any:
    """An XCom this task instance pushed earlier in the same try (before it deferred)."""
    ti = context["ti"]
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=ti.map_index)


def _short(item: Mapping[str, Any], limit: int = 120) -> str:
    text = json.dumps(item, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _StoresOutputs:
    """What the download and run operators share: checks, atomic storage, asset events."""

    task_id: str
    log: Any
    if TYPE_CHECKING:

        @property
        def hook(self) -> WaveSpeedHook: ...

    def _init_storage(
        self,
        destination: str,
        filename: str | None,
        destination_conn_id: str | None,
        nsfw_policy: str,
        max_concurrency: int,
        asset_alias: str | None,
    ) -> None:
        self.destination = destination
        self.filename = filename
        self.destination_conn_id = destination_conn_id
        self.nsfw_policy = check_nsfw_policy(nsfw_policy)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self.asset_alias = asset_alias

    def _alias_outlets(self, outlets: Any) -> list[Any]:
        from airflow.sdk import AssetAlias

        current = list(outlets or [])
        if self.asset_alias and not any(getattr(o, "name", None) == self.asset_alias for o in current):
            current.append(AssetAlias(self.asset_alias))
        return current

    def _prepared_destination(self) -> Destination:
        try:
            destination = Destination(self.destination, self.destination_conn_id)
            destination.prepare()
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        return destination

    def _store(self, context: Context, prediction: Prediction, destination: Destination) -> list[str]:
        if not prediction.is_terminal:
            raise AirflowFailException(
                f"{self.task_id}: prediction {prediction.id} is still {prediction.status}; "
                "wait for it with WaveSpeedPredictionSensor before downloading"
            )
        completed_result(prediction, self.nsfw_policy, self.log)
        skip = frozenset(flagged_outputs(prediction)) if self.nsfw_policy == "skip" else frozenset()
        if not prediction.outputs:
            raise AirflowFailException(f"{self.task_id}: prediction {prediction.id} completed without outputs")
        try:
            stored = store_outputs(
                self.hook.client,
                prediction,
                destination,
                stem=self.filename,
                skip=skip,
                max_concurrency=self.max_concurrency,
            )
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        self.log.info("Stored %d output(s) of %s in %s", len(stored), prediction.id, destination)
        if self.asset_alias:
            emit_output_events(context, self.asset_alias, stored, prediction)
        return stored


class WaveSpeedDownloadOperator(_StoresOutputs, BaseOperator):
    """
    Stream a completed prediction's outputs to a local directory or object storage.

    Each output lands at ``<destination>/<prediction id>[_<index>]<ext>`` (or ``<filename>...``),
    written to a temporary name and moved into place only once its byte count checks out. A
    retried task skips outputs that are already stored completely. Returns the stored paths/URIs,
    one per output, in output order.

    :param prediction_id: the prediction whose outputs to store (templated).
    :param destination: local directory or object-storage URI such as ``s3://bucket/avatars/``
        (templated).
    :param filename: base name for the stored files instead of the prediction id (templated).
    :param destination_conn_id: Airflow connection for the object store, when not in the URI.
    :param wavespeed_conn_id: connection holding the API key.
    :param nsfw_policy: ``keep`` (warn), ``skip`` (do not store flagged outputs) or ``fail``.
    :param max_concurrency: how many outputs to download at once.
    :param asset_alias: emit an asset event per stored file through ``AssetAlias(asset_alias)``,
        with the prediction id and model in the event's extra.
    """

    template_fields: Sequence[str] = ("prediction_id", "destination", "filename")
    ui_color = "#c9e7f8"

    def __init__(
        self,
        *,
        prediction_id: str,
        destination: str,
        filename: str | None = None,
        destination_conn_id: str | None = None,
        wavespeed_conn_id: str = WaveSpeedHook.default_conn_name,
        nsfw_policy: str = "keep",
        max_concurrency: int = 4,
        asset_alias: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prediction_id = prediction_id
        self.wavespeed_conn_id = wavespeed_conn_id
        self._init_storage(destination, filename, destination_conn_id, nsfw_policy, max_concurrency, asset_alias)
        self.outlets = self._alias_outlets(self.outlets)

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def execute(self, context: Context) -> list[str]:
        destination = self._prepared_destination()
        try:
            prediction = self.hook.get_prediction(check_prediction_id(self.prediction_id))
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        return self._store(context, prediction, destination)


class WaveSpeedRunOperator(_StoresOutputs, WaveSpeedSubmitOperator):
    """
    Submit, wait (deferred by default) and store the outputs, in one task.

    The same guarantees as the three separate tasks: a retry reuses the prediction instead of
    paying again, the wait carries an absolute deadline through triggerer restarts, and files
    are written atomically. Returns ``{"prediction_id", "model", "outputs": [stored paths], "timings"}``.

    Takes every parameter of :class:`WaveSpeedSubmitOperator` and of
    :class:`WaveSpeedDownloadOperator` (except ``prediction_id``), plus:

    :param deferrable: wait (and wait out rate limits) in the triggerer instead of the worker (default: the
        ``[operators] default_deferrable`` option, True when unset).
    :param wait_timeout: give up waiting after this many seconds (default 3 hours).
    :param queue_timeout: a prediction still queued (``created``: the account's concurrency is full) when
        ``wait_timeout`` passes is waited for this much longer (default 1 hour): it is waiting, not stuck.
    :param poll_interval: shortest pause between polls (default 2 s images, 5 s video).
    :param max_poll_interval: longest pause between polls.
    :param expected_runtime: how long the prediction is expected to run (seconds): the first poll waits
        for half of it (fewer polls); a wrong hint costs at most a few polls.

    The return value also carries ``cost_usd``, the price quote of the prediction (None when unknown).
    """

    template_fields: Sequence[str] = ("model", "inputs", "webhook", "destination", "filename")

    def __init__(
        self,
        *,
        destination: str,
        filename: str | None = None,
        destination_conn_id: str | None = None,
        nsfw_policy: str = "keep",
        max_concurrency: int = 4,
        asset_alias: str | None = None,
        wait_timeout: float = 3 * 3600,
        queue_timeout: float = 3600.0,
        poll_interval: float | None = None,
        max_poll_interval: float = 60.0,
        expected_runtime: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.expected_runtime = check_expected_runtime(expected_runtime)
        self._init_storage(destination, filename, destination_conn_id, nsfw_policy, max_concurrency, asset_alias)
        self.outlets = self._alias_outlets(self.outlets)
        self.wait_timeout = check_seconds("wait_timeout", wait_timeout)
        self.queue_timeout = check_seconds("queue_timeout", queue_timeout)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval

    def execute(self, context: Context) -> Any:
        self._prepared_destination()
        prediction = self.submit_or_reuse(context)
        if prediction.is_terminal:
            return self._finish(context, prediction)
        trigger = WaveSpeedPredictionTrigger(
            prediction_id=prediction.id,
            wavespeed_conn_id=self.wavespeed_conn_id,
            deadline=time.time() + self.wait_timeout,
            started_at=prediction.created_epoch or time.time(),
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            model=prediction.model,
            queue_grace=self.queue_timeout,
            expected_runtime=self.expected_runtime,
        )
        if not self.deferrable:
            return self._finish(context, self._wait_in_worker(trigger))
        self.log.info("Prediction %s is %s; deferring to the triggerer", prediction.id, prediction.status)
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=self.wait_timeout + self.queue_timeout) + DEFER_TIMEOUT_GRACE,
        )

    def _wait_in_worker(self, trigger: WaveSpeedPredictionTrigger) -> Prediction:
        """The trigger's wait, with blocking sleeps: the same plan decides."""
        plan = trigger.plan()
        plan.log = self.log
        while True:
            outcome: Prediction | WaveSpeedError
            try:
                outcome = self.hook.get_prediction(trigger.prediction_id)
            except WaveSpeedError as exc:
                outcome = exc
            decision = plan.after_poll(outcome, time.time())
            if isinstance(decision, Finished):
                return decision.prediction
            if isinstance(decision, DeadlinePassed):
                raise deadline_failure(trigger.prediction_id, decision.status, decision.waited)
            if isinstance(decision, Failed):
                raise final_error(decision.error, self.task_id)
            time.sleep(decision.seconds)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        self.cost_usd = own_xcom(context, self.task_id, COST_XCOM_KEY)
        prediction = prediction_from_event(event, self.task_id)
        if prediction.has_left_out_outputs:  # base64 outputs never ride in the event: fetch them here
            try:
                prediction = self.hook.get_prediction(prediction.id)
            except WaveSpeedError as exc:
                raise final_error(exc, self.task_id) from None
        return self._finish(context, prediction)

    def _finish(self, context: Context, prediction: Prediction) -> dict[str, Any]:
        stored = self._store(context, prediction, self._prepared_destination())
        return {
            "prediction_id": prediction.id,
            "model": prediction.model,
            "outputs": stored,
            "timings": prediction.raw.get("timings") or {},
            "cost_usd": self.cost_usd,
        }
