"""How the submit and run operators get exactly one prediction per task, whatever happens on the way.

A submit is billed and not idempotent, so a task never repeats one blindly:

* a retried task first reuses what an earlier try submitted (``task_state_store`` on Airflow >= 3.3,
  the prediction history before), or resolves what an earlier try left ambiguous;
* an unanswered submit is resolved from the history (``api.reconcile``), leaving out the predictions
  sibling tasks of the DAG run claimed, waiting briefly for their claims to settle; what stays
  ambiguous is recorded for the next try, and fails for good there;
* a rate-limited submit (429: nothing was created) waits, deferred or asleep, and submits again;
* every prediction is priced first: above ``max_cost`` (or unpriceable with ``max_cost`` set) the
  task fails before anything is billed.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, Context

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedError,
    WaveSpeedRateLimitError,
    WaveSpeedSubmitAmbiguousError,
)
from airflow_provider_wavespeed.api.models import TERMINAL_FAILURE_STATUSES, Prediction
from airflow_provider_wavespeed.api.reconcile import UNKNOWN_SKEW_SECONDS, SubmitWindow, ambiguity_message, candidates
from airflow_provider_wavespeed.deferral import min_deferral_seconds
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.media import comparable_inputs
from airflow_provider_wavespeed.task_results import final_error

#: The prediction id a task submitted or adopted, pushed at once: sibling tasks resolving a lost reply skip it.
CLAIM_XCOM_KEY = "wavespeed_prediction_id"
STATE_KEY = "wavespeed_prediction"
#: After an ambiguous lost reply, how often (and how far apart) the history is searched again while
#: sibling tasks that submitted at the same moment push their claims.
SETTLE_CHECKS = 3
SETTLE_PAUSE_SECONDS = 5.0
#: Submits in a row that may go unanswered (each resolved through the history) before the task gives up.
MAX_UNANSWERED_SUBMITS = 3
#: The price quote (USD) of the task's prediction, None when no quote could be had.
COST_XCOM_KEY = "wavespeed_cost_usd"
#: A task waiting out a rate limit: since when, how many 429s, and the priced inputs to submit on resume.
RATE_LIMITED_XCOM_KEY = "wavespeed_rate_limited"
#: The shortest pause after a rate-limited submit (and never shorter than ``deferral.min_deferral_seconds``
#: when the task defers for it: resuming sooner races Airflow itself).
RATE_LIMIT_MIN_PAUSE_SECONDS = 15.0
#: Without a ``Retry-After``, the jitter on top of that minimum: up to this much, doubling per 429.
RATE_LIMIT_FIRST_JITTER_SECONDS = 10.0
RATE_LIMIT_MAX_PAUSE_SECONDS = 90.0


LINK_XCOM_KEY = "wavespeed_prediction_url"
CONSOLE_MODEL_URL = "https://wavespeed.ai/models/{model}"


def prediction_console_url(model: str, prediction_id: str) -> str:
    return CONSOLE_MODEL_URL.format(model=quote(model, safe="/")) + f"?prediction_id={quote(prediction_id)}"


def inputs_fingerprint(model: str, inputs: Mapping[str, Any]) -> str:
    blob = json.dumps({"model": model, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def rate_limit_pause(retry_after: float | None, earlier_429s: int) -> float:
    """Seconds to wait after a 429: the API's ``Retry-After`` when it sends one, else the minimum plus
    a jitter that doubles with each 429, so a mapped batch does not retry in lockstep."""
    if retry_after is not None:
        return max(retry_after, RATE_LIMIT_MIN_PAUSE_SECONDS) + random.uniform(0.0, 1.0)
    jitter = RATE_LIMIT_FIRST_JITTER_SECONDS * 2 ** min(earlier_429s, 8)
    return min(RATE_LIMIT_MAX_PAUSE_SECONDS, RATE_LIMIT_MIN_PAUSE_SECONDS + random.uniform(0.0, jitter))


def own_xcom(context: Context, task_id: str, key: str) -> Any:
    """An XCom this task instance pushed earlier in the same try (before it deferred)."""
    ti = context["ti"]
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=ti.map_index)


class SubmitsOnce(BaseOperator):
    """The submit machinery of ``WaveSpeedSubmitOperator`` (and so of ``WaveSpeedRunOperator``).

    Subclasses set the attributes below in ``__init__`` and provide ``hook`` and ``_checked_arguments``.
    """

    model: str
    webhook: str | None
    validate_inputs: bool
    reuse_existing: bool
    min_balance: float | None
    media_conn_id: str | None
    max_cost: float | None
    rate_limit_timeout: float
    deferrable: bool
    cost_usd: float | None
    _rate_limited: dict[str, Any]
    if TYPE_CHECKING:

        @cached_property
        def hook(self) -> WaveSpeedHook: ...

        def _checked_arguments(self) -> tuple[str, dict[str, Any]]: ...

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
        pause = max(pause, min_deferral_seconds())
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
        task_ids = [t.task_id for t in self.dag.tasks if isinstance(t, SubmitsOnce)] if self.has_dag() else []
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
        of the run claimed. Where the history shows inputs, they must match, except the media inputs an
        earlier try uploaded (the history shows their URLs; ``media.comparable_inputs``). One candidate
        is reused (unless it failed); several fail the task with their ids rather than risk paying twice
        or adopting someone else's prediction.
        """
        ti = context["ti"]
        if getattr(ti, "try_number", 1) <= 1:
            return None
        dag_run = context.get("dag_run")
        since = getattr(dag_run, "start_date", None) or getattr(dag_run, "queued_at", None)
        if since is None:
            return None
        window = SubmitWindow(model, since.timestamp(), time.time() + UNKNOWN_SKEW_SECONDS)
        found = candidates(self.hook.list_predictions, window, comparable_inputs(inputs), self._claims(context))
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
