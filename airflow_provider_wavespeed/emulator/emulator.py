"""``WaveSpeedEmulator``: the embeddable emulator (its own event loop in a background thread)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from airflow_provider_wavespeed.emulator import media
from airflow_provider_wavespeed.emulator.app import EmulatorApp
from airflow_provider_wavespeed.emulator.clock import Clock, SystemClock
from airflow_provider_wavespeed.emulator.config import EmulatorConfig, apply_config_updates
from airflow_provider_wavespeed.emulator.context import AppContext
from airflow_provider_wavespeed.emulator.models import ModelSpec, ModelsSource, build_catalogue, load_models
from airflow_provider_wavespeed.emulator.server import EmulatorServer, raise_open_file_limit
from airflow_provider_wavespeed.emulator.state import EmulatorState, PredictionRecord
from airflow_provider_wavespeed.emulator.stats import EmulatorStats
from airflow_provider_wavespeed.emulator.wire import is_loopback_host

T = TypeVar("T")
_TIMEOUT = 30.0


class WaveSpeedEmulator:
    """An offline WaveSpeed v3 API on ``http://127.0.0.1:<port>``.

    >>> with WaveSpeedEmulator() as emulator:
    ...     emulator.base_url, emulator.api_key

    ``models``: extra model objects (the shape ``GET /api/v3/models`` lists), ``ModelSpec``s, or the
    path of a JSON file holding a list of them; they join (or replace, by id) the built-in catalogue.
    ``clock``: where time comes from (e.g. ``ManualClock()`` to drive every status, queue, rate
    window and sync window by hand).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        models: ModelsSource = (),
        clock: Clock | None = None,
    ) -> None:
        if not allow_non_loopback and not is_loopback_host(host):
            raise ValueError(f"will not listen on non-loopback host {host!r}; pass allow_non_loopback=True")
        self._models: list[ModelSpec] = load_models(models)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._config = config if config is not None else EmulatorConfig()
        self._host = host
        self._requested_port = port
        self._ctx: AppContext | None = None
        self._server: EmulatorServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._spool_dir: str | None = None
        self._stats = EmulatorStats()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> WaveSpeedEmulator:
        """Bind, start serving in a background thread and return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        raise_open_file_limit()
        self._spool_dir = tempfile.mkdtemp(prefix="wavespeed-emulator-")
        state = EmulatorState(clock=self._clock.monotonic, wall_clock_ns=self._clock.wall_clock_ns)
        self._ctx = AppContext(
            self._config, self._spool_dir, state=state, stats=self._stats, catalogue=build_catalogue(self._models)
        )
        self._server = EmulatorServer(EmulatorApp(self._ctx), self._host, self._requested_port)
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._run_loop, args=(ready, failure), name="wavespeed-emulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(_TIMEOUT):
            raise RuntimeError("emulator did not start listening in time")
        if failure:
            self._thread.join(_TIMEOUT)
            self._cleanup()
            raise failure[0]
        return self

    def _run_loop(self, ready: threading.Event, failure: list[BaseException]) -> None:
        assert self._server is not None
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close every connection, stop the loop, join the thread and delete uploaded files."""
        loop, thread, server = self._loop, self._thread, self._server
        if loop is not None and thread is not None and server is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(server.close(), loop).result(_TIMEOUT)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_TIMEOUT)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
        self._spool_dir = None
        self._thread = None
        self._loop = None

    def __enter__(self) -> WaveSpeedEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def call_in_loop(self, func: Callable[[], T]) -> T:
        """Run ``func`` on the emulator's event loop (inline when it is not running); return the result."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return func()

        async def run() -> T:
            return func()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(_TIMEOUT)

    # -- properties --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None or self._thread is None:
            raise RuntimeError("emulator not started")
        return self._server.base_url

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return self._server.port

    @property
    def api_key(self) -> str:
        return self._config.api_key

    @property
    def config(self) -> EmulatorConfig:
        return self._config

    @property
    def stats(self) -> EmulatorStats:
        return self._stats

    @property
    def predictions(self) -> dict[str, PredictionRecord]:
        """Snapshot of id -> record (model, inputs, created_ns/created_at, outcome, ...); records are live."""
        if self._ctx is None:
            return {}
        return dict(self._ctx.state.predictions)

    @property
    def catalogue(self) -> dict[str, ModelSpec]:
        """Model id -> model this emulator serves (built-ins plus ``models``)."""
        if self._ctx is None:
            return build_catalogue(self._models)
        return dict(self._ctx.catalogue)

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def spool_dir(self) -> str | None:
        """Temp directory holding uploaded bytes while running (deleted by ``stop()``)."""
        return self._spool_dir

    def connection_json(self) -> str:
        """Value for ``AIRFLOW_CONN_WAVESPEED_DEFAULT`` (any conn id works, the value does not name it)."""
        return json.dumps(
            {"conn_type": "wavespeed", "password": self.api_key, "host": self.base_url}, separators=(",", ":")
        )

    # -- helpers for tests -------------------------------------------------------------------------

    def configure(self, **switches: Any) -> None:
        """Validate and set switches atomically on the loop (same rules as ``POST /_emulator/config``)."""
        self.call_in_loop(lambda: apply_config_updates(self._config, switches))

    def add_models(self, models: ModelsSource) -> list[str]:
        """Serve more models until ``reset`` (same input as ``models=``); returns their ids."""
        specs = load_models(models)
        ctx = self._ctx
        if ctx is None:
            self._models.extend(specs)
            return [spec.model_id for spec in specs]
        return self.call_in_loop(lambda: ctx.add_models(specs))

    def reset(self) -> None:
        """Forget predictions/uploads, zero the stats and restore the switches the emulator started with."""
        ctx = self._ctx
        if ctx is not None:
            self.call_in_loop(ctx.reset)

    def release(self, *prediction_ids: str) -> None:
        """Let these predictions finish by their own clock although ``hold_predictions`` is on."""

        def mark() -> None:
            for prediction_id in prediction_ids:
                self.predictions[prediction_id].released = True

        self.call_in_loop(mark)

    def output_url(self, prediction_id: str, index: int = 0) -> str:
        return self.base_url + self.predictions[prediction_id].output_path(index)

    def expected_output_bytes(self, prediction_id: str, index: int = 0) -> bytes:
        record = self.predictions[prediction_id]
        return media.expected_output_bytes(prediction_id, index, record.output_size, record.output_kind)

    def output_sha256(self, prediction_id: str, index: int = 0) -> str:
        record = self.predictions[prediction_id]
        return media.output_sha256(prediction_id, index, record.output_size, record.output_kind)
