"""The shared objects every request handler works on."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.limits import SubmitWindow
from airflow_provider_wavespeed.emulator.models import ModelSpec, build_catalogue
from airflow_provider_wavespeed.emulator.state import EmulatorState
from airflow_provider_wavespeed.emulator.stats import EmulatorStats
from airflow_provider_wavespeed.emulator.webhook_queue import WebhookQueue


@dataclass
class AppContext:
    config: EmulatorConfig
    #: Directory for spooled request bodies and stored uploads (removed when the emulator stops).
    spool_dir: str
    base_url: str = ""
    state: EmulatorState = field(default_factory=EmulatorState)
    stats: EmulatorStats = field(default_factory=EmulatorStats)
    #: Model id -> model: the built-ins plus the user's (``--models``, ``models=``).
    catalogue: dict[str, ModelSpec] = field(default_factory=build_catalogue)
    submit_window: SubmitWindow = field(default_factory=SubmitWindow)
    webhooks: WebhookQueue = field(default_factory=WebhookQueue)
    #: Snapshots restored by ``reset``.
    initial_config: EmulatorConfig = field(init=False)
    initial_catalogue: dict[str, ModelSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.initial_config = self.config.copy()
        self.initial_catalogue = dict(self.catalogue)

    def add_models(self, models: Iterable[ModelSpec]) -> list[str]:
        """Add or replace models (until ``reset``); returns their ids."""
        ids = []
        for spec in models:
            self.catalogue[spec.model_id] = spec
            ids.append(spec.model_id)
        return ids

    def refresh(self) -> float:
        """Move time-driven state on (queued predictions start when a slot frees); returns now."""
        return self.state.schedule(self.config.max_concurrency)

    def new_spool_path(self) -> str:
        return os.path.join(self.spool_dir, f"body-{secrets.token_hex(8)}")

    def upload_path(self, token: str) -> str:
        return os.path.join(self.spool_dir, f"upload-{token}")

    def reset(self) -> None:
        """Forget predictions and uploads, zero the counters, restore the initial switches and models."""
        for path in self.state.clear():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.stats.reset()
        self.submit_window.clear()
        self.webhooks.clear()
        self.config.restore_from(self.initial_config)
        self.catalogue = dict(self.initial_catalogue)
