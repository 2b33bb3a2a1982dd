"""WaveSpeedHook: an Airflow connection turned into WaveSpeed clients (sync and async)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook, mask_secret

from airflow_provider_wavespeed.api import protocol
from airflow_provider_wavespeed.api.client import (
    DEFAULT_BASE_URL,
    AsyncWaveSpeedClient,
    ClientSettings,
    WaveSpeedClient,
)
from airflow_provider_wavespeed.api.errors import (
    WaveSpeedConfigError,
    WaveSpeedError,
    WaveSpeedInputError,
    WaveSpeedNotFoundError,
)
from airflow_provider_wavespeed.api.loop_clients import shared_async_client
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.retry import RetryPolicy
from airflow_provider_wavespeed.api.schema import request_schema, validate_inputs
from airflow_provider_wavespeed.api.submit_plan import SubmitPlan
from airflow_provider_wavespeed.api.submitting import carry_out
from airflow_provider_wavespeed.api.upload import upload_stream
from airflow_provider_wavespeed.connection_form import hook_form
from airflow_provider_wavespeed.media import open_media, resolve_media_inputs

MODEL_CATALOGUE_TTL = 3600.0
_catalogues: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
_catalogue_lock = threading.Lock()


def _with_port(host: str, port: int) -> str:
    """Put the connection's port field into the host unless the host names a port itself."""
    scheme, sep, rest = host.rpartition("://")
    authority, slash, path = rest.partition("/")
    if urlsplit(f"//{authority}").port is not None:
        return host
    return f"{scheme}{sep}{authority}:{port}{slash}{path}"


def settings_from_connection(conn: Any, *, timeout: float, retry: RetryPolicy) -> ClientSettings:
    """Read key (password) and base URL (host, optional schema/port) from a connection."""
    conn_id = getattr(conn, "conn_id", "?")
    key = (conn.password or "").strip()
    if not key:
        raise WaveSpeedConfigError(
            f"connection {conn_id!r} has no API key: put the WaveSpeed API key in its password field "
            "(UI label 'API Key'), or set AIRFLOW_CONN_" + str(conn_id).upper() + " with a 'password'"
        )
    host = (conn.host or "").strip()
    if host and "://" not in host and conn.schema in ("http", "https"):
        host = f"{conn.schema}://{host}"
    if host and conn.port:
        host = _with_port(host, int(conn.port))
    mask_secret(key)
    mask_secret(f"Bearer {key}")
    try:
        return ClientSettings(api_key=key, base_url=host or DEFAULT_BASE_URL, timeout=timeout, retry=retry)
    except WaveSpeedConfigError as exc:
        raise WaveSpeedConfigError(f"connection {conn_id!r}: {exc}") from None


class WaveSpeedHook(BaseHook):
    """
    Talk to the WaveSpeedAI API through an Airflow connection of type ``wavespeed``.

    :param wavespeed_conn_id: connection with the API key in ``password`` and, optionally, the base
        URL in ``host`` (default ``https://api.wavespeed.ai``).
    :param timeout: read timeout of one HTTP request, in seconds.
    :param retry: bounds of the retry policy for retry-safe calls.
    """

    conn_name_attr = "wavespeed_conn_id"
    default_conn_name = "wavespeed_default"
    conn_type = "wavespeed"
    hook_name = "WaveSpeed"

    def __init__(
        self,
        wavespeed_conn_id: str = default_conn_name,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wavespeed_conn_id = wavespeed_conn_id
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._settings: ClientSettings | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form for Airflow 3.1 (3.2+ reads the same form from provider info): ``connection_form``."""
        return hook_form()

    def _settings_from(self, conn: Any) -> ClientSettings:
        self._settings = settings_from_connection(conn, timeout=self.timeout, retry=self.retry)
        return self._settings

    def _missing_connection(self, exc: Exception) -> Exception:
        """A clear error for an unknown conn id; any other lookup failure is passed on unchanged."""
        if isinstance(exc, AirflowNotFoundException):
            return WaveSpeedConfigError(
                f"connection {self.wavespeed_conn_id!r} is not defined: create it with conn type 'wavespeed' "
                f"or set AIRFLOW_CONN_{self.wavespeed_conn_id.upper()}"
            )
        return exc

    @property
    def settings(self) -> ClientSettings:
        if self._settings is not None:
            return self._settings
        try:
            conn = self.get_connection(self.wavespeed_conn_id)
        except Exception as exc:
            raise self._missing_connection(exc) from None
        return self._settings_from(conn)

    async def asettings(self) -> ClientSettings:
        """Like :attr:`settings`, without blocking the event loop."""
        if self._settings is not None:
            return self._settings
        try:
            conn = await self._aget_connection()
        except Exception as exc:
            raise self._missing_connection(exc) from None
        return self._settings_from(conn)

    async def _aget_connection(self) -> Any:
        aget = getattr(BaseHook, "aget_connection", None)
        if aget is not None:
            return await aget(self.wavespeed_conn_id)
        from asgiref.sync import sync_to_async  # Airflow < 3.3: a thread, never the event loop

        return await sync_to_async(self.get_connection)(self.wavespeed_conn_id)

    @cached_property
    def client(self) -> WaveSpeedClient:
        return WaveSpeedClient(self.settings)

    def get_conn(self) -> WaveSpeedClient:
        return self.client

    async def get_async_conn(self) -> AsyncWaveSpeedClient:
        """The running event loop's shared client for this connection."""
        return await shared_async_client(await self.asettings())

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    # -- API calls -----------------------------------------------------------------------------

    def submit(
        self,
        model: str,
        inputs: Mapping[str, Any],
        *,
        webhook: str | None = None,
        claimed_ids: Iterable[str] | Callable[[], Iterable[str]] = (),
        rate_limit_timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Prediction:
        """Submit one prediction of ``model`` with ready ``inputs``, billed once (``api.submit_plan``).

        A 429 is waited out (``Retry-After``, else 15-25 s growing) for up to ``rate_limit_timeout`` seconds;
        an unanswered submit is resolved from the history, never blindly repeated.

        :param claimed_ids: prediction ids known to be someone else's (or a callable asked when a lost
            reply is resolved), never adopted as this submit's.
        :param sleep: how to wait (tests pass their own).
        """
        client = self.client
        plan = SubmitPlan(
            model,
            inputs,
            rate_limit_timeout=rate_limit_timeout,
            max_unanswered=client.settings.retry.max_attempts,
            retry_wait=client.settings.retry.next_wait,
            log=self.log,
        )
        claimed = claimed_ids if callable(claimed_ids) else (lambda: claimed_ids)
        done = carry_out(plan, plan.start_prepared(inputs), client, webhook=webhook, claimed=claimed, sleep=sleep)
        return done.prediction

    def get_prediction(self, prediction_id: str) -> Prediction:
        return self.client.get_prediction(prediction_id)

    async def aget_prediction(self, prediction_id: str) -> Prediction:
        return await (await self.get_async_conn()).get_prediction(prediction_id)

    def get_balance(self) -> float:
        return self.client.get_balance()

    def delete_prediction(self, prediction_id: str) -> str:
        """Delete a prediction (the API's only way to stop one); returns the endpoint that did it."""
        return self.client.delete_prediction(protocol.check_prediction_id(prediction_id))

    async def adelete_prediction(self, prediction_id: str) -> str:
        return await (await self.get_async_conn()).delete_prediction(protocol.check_prediction_id(prediction_id))

    def quote(self, model: str, inputs: Mapping[str, Any]) -> float:
        """The price in USD of one run of ``model`` with ``inputs`` (pass fully resolved inputs: a quote
        with a price-driving input missing, e.g. the audio of an avatar model, understates the cost)."""
        return self.client.quote(protocol.check_model_id(model), inputs)

    def list_predictions(self, **filters: Any) -> list[Prediction]:
        return self.client.list_predictions(**filters)

    def upload(self, source: Any, *, conn_id: str | None = None) -> str:
        """Upload a local file or ``ObjectStoragePath``/URI (streamed) and return the URL to use as an input.

        :param source: local path, ``file://`` URI, object-storage URI or ``ObjectStoragePath``.
        :param conn_id: Airflow connection for the object store, when not in the URI.
        """
        with open_media(str(source), conn_id) as (stream, filename, size, content_type):
            self.log.info("Uploading %s (%d bytes) to WaveSpeed", source, size)
            url = upload_stream(self.client, stream, filename=filename, size=size, content_type=content_type)
        self.log.info("Uploaded %s -> %s", source, url)
        return url

    def resolve_media_inputs(self, inputs: Mapping[str, Any], *, conn_id: str | None = None) -> dict[str, Any]:
        """Upload local/object-storage media inputs; URLs and other values pass through unchanged."""
        return resolve_media_inputs(inputs, lambda ref: self.upload(ref, conn_id=conn_id))

    def test_connection(self) -> tuple[bool, str]:
        """Check the key with the balance endpoint; report the balance or the API's reason."""
        try:
            balance = self.get_balance()
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to {self.settings.base_url}; account balance {balance:.2f} USD"

    # -- model catalogue and input validation ---------------------------------------------------

    def model_catalogue(self) -> dict[str, dict[str, Any]]:
        """``GET /api/v3/models`` by model id, cached per process and base URL for an hour."""
        base = self.settings.base_url
        with _catalogue_lock:
            cached = _catalogues.get(base)
            if cached and time.monotonic() - cached[0] < MODEL_CATALOGUE_TTL:
                return cached[1]
        models = {str(m.get("model_id") or m.get("id")): m for m in self.client.list_models()}
        with _catalogue_lock:
            _catalogues[base] = (time.monotonic(), models)
        return models

    def validate_inputs(self, model: str, inputs: Mapping[str, Any]) -> list[str]:
        """Raise :class:`WaveSpeedInputError` for inputs the model's schema rejects (nothing is submitted).

        Returns the input names the schema does not know (a warning, not an error). When the
        catalogue cannot be fetched the check is skipped with a log line and the API decides.
        """
        protocol.check_model_id(model)
        try:
            catalogue = self.model_catalogue()
        except WaveSpeedError as exc:
            if isinstance(exc, WaveSpeedConfigError) or getattr(exc, "status_code", 0) in (401, 403):
                raise
            self.log.warning("Could not fetch the model catalogue (%s); the API will validate the inputs", exc)
            return []
        entry = catalogue.get(model)
        if entry is None:
            close = sorted(m for m in catalogue if model.split("/")[-1] in m)[:5]
            hint = f" Similar: {', '.join(close)}." if close else ""
            raise WaveSpeedNotFoundError(404, f"unknown model {model!r}: not in the WaveSpeed catalogue.{hint}")
        schema = request_schema(entry)
        if schema is None:
            self.log.warning("Model %s publishes no input schema; the API will validate the inputs", model)
            return []
        problems, unknown = validate_inputs(schema, inputs)
        for option in ("enable_sync_mode", "enable_base64_output"):
            if option in unknown and inputs.get(option) is True:
                problems.append(
                    f"{option}: model {model} does not offer it (its schema does not declare it); remove it"
                )
                unknown.remove(option)
        if problems:
            raise WaveSpeedInputError(model, problems)
        return unknown
