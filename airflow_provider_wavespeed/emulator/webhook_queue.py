"""The webhooks still to deliver: what a submit adds and ``reset`` clears (delivery is in ``webhooks``).

Apart from the dispatcher, so that ``context.AppContext`` can own the queue while the dispatcher works on
the context: each of the two modules imports this one, neither imports the other at run time.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_wavespeed.emulator.state import PredictionRecord


@dataclass
class Delivery:
    """One webhook to deliver: waits for its prediction to finish, then is attempted until done."""

    prediction_id: str
    url: str
    webhook_id: str = field(default_factory=lambda: f"msg_{secrets.token_hex(12)}")
    body: bytes | None = None
    attempts: int = 0
    next_attempt_at: float = 0.0
    in_flight: bool = False


@dataclass
class WebhookQueue:
    """Deliveries not finished yet. Only the emulator's event loop touches it."""

    pending: dict[str, Delivery] = field(default_factory=dict)
    wakeup: asyncio.Event | None = None

    def track(self, record: PredictionRecord) -> None:
        if record.webhook:
            self.pending[record.id] = Delivery(record.id, record.webhook)
            if self.wakeup is not None:
                self.wakeup.set()

    def clear(self) -> None:
        self.pending.clear()
