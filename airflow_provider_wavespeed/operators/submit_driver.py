"""How the submit and run operators get exactly one prediction per task: a thin Airflow driver of
:class:`~airflow_provider_wavespeed.api.submit_plan.SubmitPlan`.

The plan decides (reuse, price, submit, pause, search the history, adopt, give up); this module only gives it
what Airflow knows and carries out its pauses the Airflow way:

* what an earlier try saved, through one small store interface: ``task_state_store`` on Airflow >= 3.3, the
  prediction history on 3.1/3.2 (:func:`prediction_state`);
* the claims of sibling tasks (XCom ``wavespeed_prediction_id``), so a lost reply never adopts theirs;
* a rate-limit pause deferred to the triggerer on a timer (or slept, ``deferrable=False``);
* checking, uploading and pricing the inputs (:mod:`airflow_provider_wavespeed.costs`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, Context

from airflow_provider_wavespeed.api.errors import WaveSpeedError, WaveSpeedSubmitAmbiguousError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.reconcile import candidates
from airflow_provider_wavespeed.api.submit_plan import Pause, SubmitPlan
from airflow_provider_wavespeed.api.submitting import Prepared, carry_out
from airflow_provider_wavespeed.cancellation import CancelsOnKill
from airflow_provider_wavespeed.costs import priced_inputs
from airflow_provider_wavespeed.deferral import min_deferral_seconds
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.media import comparable_inputs
from airflow_provider_wavespeed.operators.recording import push_record
from airflow_provider_wavespeed.task_record import Role, new_record, prediction_fields
from airflow_provider_wavespeed.task_results import final_error

#: The prediction id a task submitted or adopted, pushed at once: sibling tasks resolving a lost reply skip it.
CLAIM_XCOM_KEY = "wavespeed_prediction_id"
STATE_KEY = "wavespeed_prediction"
#: The price quote (USD) of the task's prediction, None when no quote could be had.
COST_XCOM_KEY = "wavespeed_cost_usd"
#: A task waiting out a rate limit: since when, how many 429s, and the priced inputs to submit on resume.
RATE_LIMITED_XCOM_KEY = "wavespeed_rate_limited"
LINK_XCOM_KEY = "wavespeed_prediction_url"
CONSOLE_MODEL_URL = "https://wavespeed.ai/models/{model}"


def prediction_console_url(model: str, prediction_id: str) -> str:
    return CONSOLE_MODEL_URL.format(model=quote(model, safe="/")) + f"?prediction_id={quote(prediction_id)}"


def recorded_prediction(prediction: Prediction, model: str = "") -> dict[str, Any]:
    """The ``wavespeed_record`` fields a prediction tells, with its console link (``model``: when the API's reply
    names none)."""
    fields = prediction_fields(prediction)
    model = prediction.model or model
    if model:
        fields.setdefault("model", model)
        if prediction.id:
            fields["console_url"] = prediction_console_url(model, prediction.id)
    return fields


def inputs_fingerprint(model: str, inputs: Mapping[str, Any]) -> str:
    blob = json.dumps({"model": model, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def own_xcom(context: Context, task_id: str, key: str) -> Any:
    """An XCom this task instance pushed earlier in the same try (before it deferred)."""
    ti = context["ti"]
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=ti.map_index)


# -- what an earlier try left: one interface, two Airflow generations ----------------------------------------


class PredictionState(Protocol):
    """What earlier tries of this task submitted, and where to record what this try does."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def history_since(self) -> float | None:
        """Without saved state: since when (epoch s) the history may hold an earlier try's prediction."""
        ...


@dataclass
class TaskStateStore:
    """Airflow >= 3.3: ``context["task_state_store"]`` survives retries; the state is exact."""

    store: Any

    def load(self) -> dict[str, Any] | None:
        saved = self.store.get(STATE_KEY)
        return saved if isinstance(saved, dict) else None

    def save(self, state: dict[str, Any]) -> None:
        self.store.set(STATE_KEY, state)

    def history_since(self) -> float | None:
        return None


@dataclass
class HistoryState:
    """Airflow 3.1/3.2: no store; a retry looks for its earlier try's prediction in the history since the DAG
    run started (nothing can be recorded)."""

    context: Context

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        return None

    def history_since(self) -> float | None:
        if getattr(self.context["ti"], "try_number", 1) <= 1:
            return None
        dag_run = self.context.get("dag_run")
        since = getattr(dag_run, "start_date", None) or getattr(dag_run, "queued_at", None)
        return since.timestamp() if since is not None else None


@dataclass
class NoState:
    """``reuse_existing=False``: every try submits anew."""

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        return None

    def history_since(self) -> float | None:
        return None


def prediction_state(context: Context, reuse_existing: bool) -> PredictionState:
    if not reuse_existing:
        return NoState()
    store = context.get("task_state_store")
    return TaskStateStore(store) if store is not None else HistoryState(context)


# -- the operator side ----------------------------------------------------------------------------------------


class SubmitsOnce(BaseOperator, CancelsOnKill):
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
    #: What the task is, in its ``wavespeed_record`` (the UI plugin's view of it).
    record_role: Role = "submit"
    #: How the driver waits (tests of the driver pass their own).
    sleep: Callable[[float], None] = staticmethod(time.sleep)
    if TYPE_CHECKING:

        @cached_property
        def hook(self) -> WaveSpeedHook: ...

        def _checked_arguments(self) -> tuple[str, dict[str, Any]]: ...

    def on_kill(self) -> None:
        CancelsOnKill.on_kill(self)

    def resume_after_rate_limit(self, context: Context, event: Any = None) -> Any:
        """Back from a deferred rate-limit pause: run ``execute`` again (it submits; nothing was created)."""
        saved = own_xcom(context, self.task_id, RATE_LIMITED_XCOM_KEY)
        self._rate_limited = dict(saved) if isinstance(saved, dict) else {}
        return self.execute(context)

    def submit_or_reuse(self, context: Context) -> Prediction:
        """The prediction for this task: reused from an earlier try, or submitted now (once)."""
        model, inputs = self._checked_arguments()
        fingerprint = inputs_fingerprint(model, inputs)
        state = prediction_state(context, self.reuse_existing)
        earlier = self._rate_limited if self._rate_limited.get("fingerprint") == fingerprint else {}
        plan = SubmitPlan(
            model,
            comparable_inputs(inputs),
            max_cost=self.max_cost,
            rate_limit_timeout=self.rate_limit_timeout,
            rate_limited_since=earlier.get("since"),
            earlier_429s=int(earlier.get("count") or 0),
            max_unanswered=self.hook.client.settings.retry.max_attempts,
            retry_wait=self.hook.client.settings.retry.next_wait,
            log=self.log,
        )
        try:
            first = plan.start(self._saved(state, fingerprint), history_since=state.history_since(), now=time.time())
            done = carry_out(
                plan,
                first,
                self.hook.client,
                webhook=self.webhook,
                claimed=lambda: self._claims(context),
                prepare=lambda: self._prepare(model, inputs, earlier),
                pause=lambda pause: self._pause(context, pause, plan, fingerprint),
                sleep=self.sleep,
                sending=lambda sent_at: self._sending(context, plan, sent_at),
            )
        except WaveSpeedSubmitAmbiguousError as exc:
            if exc.window is not None:
                state.save(
                    {
                        "pending": exc.window,
                        "candidates": exc.candidate_ids,
                        "model": model,
                        "fingerprint": fingerprint,
                        "payload": plan.payload,
                    }
                )
            raise final_error(exc, self.task_id) from None
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        except FileNotFoundError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        finally:
            self._nothing_left_to_stop()
        prediction = done.prediction
        self.cost_usd = plan.cost_usd
        state.save({"id": prediction.id, "model": model, "fingerprint": fingerprint, "cost_usd": self.cost_usd})
        if done.how == "submitted":
            self.log.info("Submitted prediction %s to %s (status %s)", prediction.id, model, prediction.status)
        self._announce(context, prediction)
        return prediction

    def _sending(self, context: Context, plan: SubmitPlan, sent_at: float) -> None:
        """A submit is on its way (a sync-mode one may wait minutes for its reply): until the reply names the
        prediction, a kill finds it in the history, as a lost reply is found."""
        client = self.hook.client

        def find(hook: WaveSpeedHook) -> str | None:
            window = client.server_clock.window(plan.model, sent_at, time.time())
            payload = plan.payload or {}
            found = candidates(hook.list_predictions, window, payload, self._claims(context) | client.submitted_ids)
            if len(found) == 1:
                return found[0].id
            self.log.warning(
                "The task was marked failed while its submit awaited a reply; the history %s shows %d candidates, "
                "so none is deleted",
                window.describe(),
                len(found),
            )
            return None

        self._stoppable = (context["ti"], "A submit awaiting its reply", find)

    def _saved(self, state: PredictionState, fingerprint: str) -> dict[str, Any] | None:
        """What an earlier try saved for these very model and inputs."""
        saved = state.load()
        if saved is None or not (saved.get("id") or saved.get("pending")):
            return None
        if saved.get("fingerprint") != fingerprint:
            what = saved.get("id") or f"an unanswered submit ({', '.join(saved.get('candidates') or [])})"
            self.log.warning("An earlier try submitted %s with other model/inputs; submitting anew", what)
            return None
        return saved

    def _prepare(self, model: str, inputs: dict[str, Any], earlier: Mapping[str, Any]) -> Prepared:
        """Checked, uploaded and priced inputs (after a rate-limit pause: as they were then)."""
        if isinstance(earlier.get("payload"), dict):
            return dict(earlier["payload"]), earlier.get("cost_usd")
        if self.validate_inputs:
            unknown = self.hook.validate_inputs(model, inputs)
            if unknown:
                self.log.warning("Model %s does not declare inputs %s; sending them anyway", model, unknown)
        self._check_balance()
        return priced_inputs(self.hook, model, inputs, self.media_conn_id)

    def _pause(self, context: Context, pause: Pause, plan: SubmitPlan, fingerprint: str) -> None:
        """A rate-limited submit waits in the triggerer on a timer (deferrable), else here."""
        if not (pause.rate_limited and self.deferrable):
            self.sleep(pause.seconds)
            return
        from airflow.providers.common.compat.standard.triggers import TimeDeltaTrigger

        state = {
            "since": plan.rate_limited_since,
            "count": plan.earlier_429s,
            "fingerprint": fingerprint,
            "payload": plan.payload,
            "cost_usd": plan.cost_usd,
        }
        # XCom, not the deferral's kwargs: they outlive the deferral within this try, in dag.test() too.
        context["ti"].xcom_push(key=RATE_LIMITED_XCOM_KEY, value=state)
        seconds = max(pause.seconds, min_deferral_seconds())
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=seconds)), method_name="resume_after_rate_limit")

    def _claims(self, context: Context) -> set[str]:
        """Prediction ids that the WaveSpeed tasks of this DAG run (mapped siblings included) have claimed."""
        task_ids = [t.task_id for t in self.dag.tasks if isinstance(t, SubmitsOnce)] if self.has_dag() else []
        pulled = context["ti"].xcom_pull(task_ids=task_ids or [self.task_id], key=CLAIM_XCOM_KEY)
        values = pulled if isinstance(pulled, list) else [pulled]
        return {v for v in values if isinstance(v, str) and v}

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

    def _announce(self, context: Context, prediction: Prediction) -> None:
        """Claim the prediction (sibling tasks resolving a lost reply leave it out) and push its console link."""
        ti = context["ti"]
        fields = self.submit_fields(prediction)
        ti.xcom_push(key=CLAIM_XCOM_KEY, value=prediction.id)
        ti.xcom_push(key=LINK_XCOM_KEY, value=fields["console_url"])
        ti.xcom_push(key=COST_XCOM_KEY, value=self.cost_usd)
        push_record(context, new_record(self.record_role, **fields))

    def submit_fields(self, prediction: Prediction) -> dict[str, Any]:
        """The record's fields this task knows as the one that submitted (or adopted) ``prediction``."""
        fields = recorded_prediction(prediction, self.model)
        fields.setdefault("status", "submitted")
        return {**fields, "cost_usd": self.cost_usd}
