"""The shared objects every request handler works on."""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field

from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.state import EmulatorState
from airflow_provider_wavespeed.emulator.stats import EmulatorStats


@dataclass
class AppContext:
    config: EmulatorConfig
    #: Directory for spooled request bodies and stored uploads (removed when the emulator stops).
    spool_dir: str
    base_url: str = ""
    state: EmulatorState = field(default_factory=EmulatorState)
    stats: EmulatorStats = field(default_factory=EmulatorStats)
    #: Snapshot restored by ``reset``.
    initial_config: EmulatorConfig = field(init=False)

    def __post_init__(self) -> None:
        self.initial_config = self.config.copy()

    def new_spool_path(self) -> str:
        return os.path.join(self.spool_dir, f"body-{secrets.token_hex(8)}")

    def upload_path(self, token: str) -> str:
        return os.path.join(self.spool_dir, f"upload-{token}")

    def reset(self) -> None:
        """Forget predictions and uploads, zero the counters and restore the initial switches."""
        for path in self.state.clear():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.stats.reset()
        self.config.restore_from(self.initial_config)
