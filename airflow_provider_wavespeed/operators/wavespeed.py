"""WaveSpeedSubmitOperator and WaveSpeedDownloadOperator, and the prediction extra link."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseOperator, BaseOperatorLink, Context
from airflow.sdk.bases.xcom import BaseXCom

from airflow_provider_wavespeed.api.errors import (
    WaveSpeedAuthError,
    WaveSpeedConfigError,
    WaveSpeedDownloadError,
    WaveSpeedError,
    WaveSpeedInputError,
    WaveSpeedRequestError,
)
from airflow_provider_wavespeed.api.models import Prediction, PredictionStatus
from airflow_provider_wavespeed.api.protocol import check_model_id, check_prediction_id
from airflow_provider_wavespeed.api.retry import WaveSpeedIncompleteDownload
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.outcomes import AirflowFailException, check_nsfw_policy, flagged_outputs
from airflow_provider_wavespeed.outputs import store_outputs
from airflow_provider_wavespeed.storage import Destination

LINK_XCOM_KEY = "wavespeed_prediction_url"
STATE_KEY = "wavespeed_prediction"
CONSOLE_MODEL_URL = "https://wavespeed.ai/models/{model}"


def prediction_console_url(model: str, prediction_id: str) -> str:
    return CONSOLE_MODEL_URL.format(model=quote(model, safe="/")) + f"?prediction_id={quote(prediction_id)}"


class WaveSpeedPredictionLink(BaseOperatorLink):
    """'WaveSpeed prediction' button: the model's page on wavespeed.ai for the submitted prediction."""

    name = "WaveSpeed prediction"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return BaseXCom.get_value(ti_key=ti_key, key=LINK_XCOM_KEY) or ""


def _final(exc: WaveSpeedError, task_id: str) -> Exception:
    """Errors a task retry cannot fix fail at once (no retry, nothing billed); the rest stay retryable."""
    if isinstance(exc, WaveSpeedIncompleteDownload):
        return exc
    final = WaveSpeedInputError | WaveSpeedConfigError | WaveSpeedAuthError | WaveSpeedRequestError
    if isinstance(exc, final | WaveSpeedDownloadError):
        return AirflowFailException(f"{task_id}: {exc}")
    return exc


def inputs_fingerprint(model: str, inputs: Mapping[str, Any]) -> str:
    blob = json.dumps({"model": model, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class WaveSpeedSubmitOperator(BaseOperator):
    """
    Submit a prediction to a WaveSpeed model and return its id (XCom ``return_value``).

    Bad inputs fail before anything is submitted (checked against the model's published schema).
    A submit is billed, so it is never blindly repeated: an unanswered submit is resolved from the
    prediction history, and a retried task reuses the prediction its earlier try created.

    :param model: model id, e.g. ``wavespeed-ai/hunyuan-avatar`` (templated).
    :param inputs: the model's inputs as a dict (templated).
    :param wavespeed_conn_id: connection holding the API key.
    :param validate_inputs: check ``inputs`` against the model's schema before submitting.
    :param reuse_existing: on a task retry, reuse the prediction an earlier try submitted (unless
        it failed or the model/inputs changed) instead of paying for a new one.
    :param webhook: optional HTTPS URL WaveSpeed calls when the prediction finishes (templated).
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
        webhook: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.inputs = inputs
        self.wavespeed_conn_id = wavespeed_conn_id
        self.validate_inputs = validate_inputs
        self.reuse_existing = reuse_existing
        self.webhook = webhook

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def _checked_arguments(self) -> tuple[str, dict[str, Any]]:
        try:
            model = check_model_id(self.model)
        except WaveSpeedError as exc:
            raise _final(exc, self.task_id) from None
        if not isinstance(self.inputs, Mapping):
            raise AirflowFailException(
                f"{self.task_id}: inputs must be a dict of model inputs, got {type(self.inputs).__name__}"
            )
        if self.webhook is not None and not str(self.webhook).startswith("https://"):
            raise AirflowFailException(f"{self.task_id}: webhook must be an https:// URL, got {self.webhook!r}")
        return model, dict(self.inputs)

    def execute(self, context: Context) -> str:
        model, inputs = self._checked_arguments()
        fingerprint = inputs_fingerprint(model, inputs)
        store = context.get("task_state_store") if self.reuse_existing else None
        try:
            reused = self._reusable_prediction(store, fingerprint) if self.reuse_existing else None
            if reused is not None:
                self._announce(context, reused)
                return reused.id
            if self.validate_inputs:
                unknown = self.hook.validate_inputs(model, inputs)
                if unknown:
                    self.log.warning("Model %s does not declare inputs %s; sending them anyway", model, unknown)
            prediction = self.hook.submit(model, inputs, webhook=self.webhook)
        except WaveSpeedError as exc:
            raise _final(exc, self.task_id) from None
        if store is not None:
            store.set(STATE_KEY, {"id": prediction.id, "model": model, "fingerprint": fingerprint})
        self.log.info("Submitted prediction %s to %s (status %s)", prediction.id, model, prediction.status)
        self._announce(context, prediction)
        return prediction.id

    def _reusable_prediction(self, store: Any, fingerprint: str) -> Prediction | None:
        if store is None:
            return None
        saved = store.get(STATE_KEY)
        if not isinstance(saved, dict) or not saved.get("id"):
            return None
        if saved.get("fingerprint") != fingerprint:
            self.log.warning(
                "An earlier try submitted prediction %s with other model/inputs; submitting anew", saved["id"]
            )
            return None
        previous = self.hook.get_prediction(str(saved["id"]))
        if previous.status in (PredictionStatus.FAILED, PredictionStatus.CANCELLED, PredictionStatus.TIMEOUT,
                               PredictionStatus.DELETED):
            self.log.warning(
                "Prediction %s from an earlier try ended %s; submitting a new one", previous.id, previous.status
            )
            return None
        self.log.info(
            "Reusing prediction %s submitted by an earlier try (status %s); not submitting again",
            previous.id,
            previous.status,
        )
        return previous

    def _announce(self, context: Context, prediction: Prediction) -> None:
        ti = context["ti"]
        ti.xcom_push(key=LINK_XCOM_KEY, value=prediction_console_url(prediction.model or self.model, prediction.id))


class WaveSpeedDownloadOperator(BaseOperator):
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prediction_id = prediction_id
        self.destination = destination
        self.filename = filename
        self.destination_conn_id = destination_conn_id
        self.wavespeed_conn_id = wavespeed_conn_id
        self.nsfw_policy = check_nsfw_policy(nsfw_policy)
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def execute(self, context: Context) -> list[str]:
        try:
            prediction_id = check_prediction_id(self.prediction_id)
            destination = Destination(self.destination, self.destination_conn_id)
            destination.prepare()
            prediction = self.hook.get_prediction(prediction_id)
        except WaveSpeedError as exc:
            raise _final(exc, self.task_id) from None
        if not prediction.is_terminal:
            raise AirflowFailException(
                f"{self.task_id}: prediction {prediction_id} is still {prediction.status}; "
                "wait for it with WaveSpeedPredictionSensor before downloading"
            )
        if not prediction.succeeded:
            raise AirflowFailException(f"{self.task_id}: {prediction.failure()}")
        flagged = flagged_outputs(prediction)
        if flagged and self.nsfw_policy == "fail":
            raise AirflowFailException(f"{self.task_id}: outputs {flagged} of {prediction_id} were flagged NSFW")
        skip = frozenset(flagged) if self.nsfw_policy == "skip" else frozenset()
        if not prediction.output_urls():
            raise AirflowFailException(f"{self.task_id}: prediction {prediction_id} completed without outputs")
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
            raise _final(exc, self.task_id) from None
        self.log.info("Stored %d output(s) of %s in %s", len(stored), prediction_id, destination)
        return stored
