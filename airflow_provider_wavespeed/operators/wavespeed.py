"""WaveSpeedSubmitOperator, WaveSpeedDownloadOperator, WaveSpeedRunOperator (with WaveSpeedBudgetOperator,
from ``operators.budget``) and the prediction extra link. How a submit is made exactly once:
``api.submit_plan``, driven by ``operators.submit_driver``."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator, BaseOperatorLink, Context, XCom

from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.protocol import check_model_id, check_prediction_id, check_submit_options
from airflow_provider_wavespeed.api.waiting import DeadlinePassed, Failed, Finished
from airflow_provider_wavespeed.assets import emit_output_events
from airflow_provider_wavespeed.deferral import DEFER_TIMEOUT_GRACE, default_deferrable, min_deferral_seconds
from airflow_provider_wavespeed.destinations import Destination
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.operators.budget import (
    BATCH_QUOTES_XCOM_KEY,
    BATCH_TOTAL_XCOM_KEY,
    WaveSpeedBudgetOperator,
)
from airflow_provider_wavespeed.operators.recording import push_record, recording_failures
from airflow_provider_wavespeed.operators.submit_driver import (
    CLAIM_XCOM_KEY,
    COST_XCOM_KEY,
    LINK_XCOM_KEY,
    SubmitsOnce,
    own_xcom,
    prediction_console_url,
    recorded_prediction,
)
from airflow_provider_wavespeed.output_downloads import store_outputs
from airflow_provider_wavespeed.parameters import (
    check_count,
    check_nsfw_policy,
    check_optional_seconds,
    check_seconds,
    check_usd,
)
from airflow_provider_wavespeed.task_record import Role, new_record
from airflow_provider_wavespeed.task_results import (
    AirflowFailException,
    completed_result,
    deadline_failure,
    final_error,
    flagged_outputs,
    prediction_from_event,
)
from airflow_provider_wavespeed.triggers.wavespeed import WaveSpeedPredictionTrigger

__all__ = [
    "BATCH_QUOTES_XCOM_KEY",
    "BATCH_TOTAL_XCOM_KEY",
    "CLAIM_XCOM_KEY",
    "COST_XCOM_KEY",
    "LINK_XCOM_KEY",
    "WaveSpeedBudgetOperator",
    "WaveSpeedDownloadOperator",
    "WaveSpeedPredictionLink",
    "WaveSpeedRunOperator",
    "WaveSpeedSubmitOperator",
    "prediction_console_url",
]


class WaveSpeedPredictionLink(BaseOperatorLink):
    """'WaveSpeed prediction' button: the model's page on wavespeed.ai for the submitted prediction."""

    name = "WaveSpeed prediction"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return XCom.get_value(ti_key=ti_key, key=LINK_XCOM_KEY) or ""


class WaveSpeedSubmitOperator(SubmitsOnce):
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
        ``[wavespeed] default_deferrable`` option, True unless set to False).
    :param cancel_on_kill: when a user marks this task (or its DAG run) failed while a submit awaits its
        reply (``enable_sync_mode`` waits up to minutes), find the prediction in the history and delete it.
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
        cancel_on_kill: bool = True,
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
        self.cancel_on_kill = cancel_on_kill
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
        with recording_failures(context, self.record_role):
            return self.submit_or_reuse(context).id


class _StoresOutputs:
    """What the download and run operators share: checks, atomic storage, asset events."""

    task_id: str
    log: Any
    record_role: Role
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
        self.max_concurrency = check_count("max_concurrency", max_concurrency)
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

    def _recorded_prediction(self, prediction: Prediction) -> dict[str, Any]:
        return recorded_prediction(prediction)

    def _store(self, context: Context, prediction: Prediction, destination: Destination) -> list[str]:
        if not prediction.is_terminal:
            raise AirflowFailException(
                f"{self.task_id}: prediction {prediction.id} is still {prediction.status}; "
                "wait for it with WaveSpeedPredictionSensor before downloading"
            )
        record = new_record(
            self.record_role, **self._recorded_prediction(prediction), destination_conn_id=self.destination_conn_id
        )
        if not prediction.succeeded:
            push_record(context, record)  # the failure is added by recording_failures, in the task's words
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
        record["outputs"] = stored
        push_record(context, record)
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

    record_role: Role = "store"

    def execute(self, context: Context) -> list[str]:
        with recording_failures(context, self.record_role, prediction_id=self.prediction_id):
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
        ``[wavespeed] default_deferrable`` option, True unless set to False).
    :param wait_timeout: give up waiting after this many seconds (default 3 hours).
    :param queue_timeout: a prediction still queued (``created``: the account's concurrency is full) when
        ``wait_timeout`` passes is waited for this much longer (default 1 hour): it is waiting, not stuck.
    :param poll_interval: shortest pause between polls (default 2 s images, 5 s video).
    :param max_poll_interval: longest pause between polls.
    :param expected_runtime: how long the prediction is expected to run (seconds): the first poll waits
        for half of it (fewer polls); a wrong hint costs at most a few polls.
    :param cancel_on_kill: when a user stops the wait (marks this task or its DAG run failed), delete the
        prediction (default True). Marking success, clearing, a timeout or a triggerer restart never do.

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
        self.expected_runtime = check_optional_seconds("expected_runtime", expected_runtime)
        self._init_storage(destination, filename, destination_conn_id, nsfw_policy, max_concurrency, asset_alias)
        self.outlets = self._alias_outlets(self.outlets)
        self.wait_timeout = check_seconds("wait_timeout", wait_timeout)
        self.queue_timeout = check_seconds("queue_timeout", queue_timeout, allow_zero=True)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval

    record_role: Role = "run"

    def execute(self, context: Context) -> Any:
        with recording_failures(context, self.record_role, model=self.model):
            return self._submit_and_wait(context)

    def _submit_and_wait(self, context: Context) -> Any:
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
            cancel_on_kill=self.cancel_on_kill,
        )
        if not self.deferrable:
            self._wait_starts(context["ti"], prediction.id)
            try:
                waited = self._wait_in_worker(trigger)
            finally:
                self._nothing_left_to_stop()
            return self._finish(context, waited)
        self.log.info("Prediction %s is %s; deferring to the triggerer", prediction.id, prediction.status)
        trigger.not_before = time.time() + min_deferral_seconds()
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
            self._stop_if_killed()

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        with recording_failures(context, self.record_role, model=self.model):
            self.cost_usd = own_xcom(context, self.task_id, COST_XCOM_KEY)
            prediction = prediction_from_event(event, self.task_id)
            if prediction.has_left_out_outputs:  # base64 outputs never ride in the event: fetch them here
                try:
                    prediction = self.hook.get_prediction(prediction.id)
                except WaveSpeedError as exc:
                    raise final_error(exc, self.task_id) from None
            return self._finish(context, prediction)

    def _recorded_prediction(self, prediction: Prediction) -> dict[str, Any]:
        return self.submit_fields(prediction)

    def _finish(self, context: Context, prediction: Prediction) -> dict[str, Any]:
        stored = self._store(context, prediction, self._prepared_destination())
        return {
            "prediction_id": prediction.id,
            "model": prediction.model,
            "outputs": stored,
            "timings": prediction.raw.get("timings") or {},
            "cost_usd": self.cost_usd,
        }
