"""Counters that tests read to check what a client actually did on the wire."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EmulatorStats:
    """Request counters. Only the emulator's event loop writes them; reading from other threads is fine."""

    #: Submits that created (and billed) a prediction, including those whose reply was then lost.
    submits_accepted: int = 0
    #: Accepted submits per model id.
    submits_by_model: dict[str, int] = field(default_factory=dict)
    #: Every POST to a model endpoint, including rejected and fault-injected ones.
    submit_attempts: int = 0
    #: Every GET of ``/api/v3/predictions/{id}[/result]``, including fault-injected ones.
    result_polls: int = 0
    polls_by_prediction: dict[str, int] = field(default_factory=dict)
    #: Every ``POST /api/v3/predictions`` (history) request.
    history_queries: int = 0
    #: Predictions deleted (``deleted_count`` summed).
    predictions_deleted: int = 0
    #: Output GETs that started sending a body (HEAD not counted).
    downloads_started: int = 0
    #: Output GETs whose whole body was written.
    downloads_completed: int = 0
    #: Output body bytes written.
    bytes_served: int = 0
    #: Completed uploads (ticket PUTs and legacy multipart uploads).
    uploads: int = 0
    #: HTTP status -> number of responses sent.
    requests_by_status: dict[int, int] = field(default_factory=dict)
    #: Fault switches that fired.
    rate_limited: int = 0
    faults_injected: int = 0
    lost_submit_replies: int = 0
    cut_downloads: int = 0
    #: TCP connections accepted in total / open right now (keep-alive shows as opened << requests).
    connections_opened: int = 0
    connections_open: int = 0
    #: Most connections open at the same time since the last reset.
    connections_peak: int = 0
    #: Every HTTP request received (any path).
    requests_total: int = 0
    #: Submits refused with 429 by ``submits_per_minute``.
    submits_rate_limited: int = 0
    #: Submits answered with the sync-mode timeout body (``data.code`` 5004).
    sync_timeouts: int = 0
    #: Price quotes answered (both pricing endpoints).
    quotes: int = 0
    #: Webhooks: POSTs that got a 2xx / gave up after every attempt / not sent (not a loopback URL).
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    webhooks_skipped: int = 0
    #: Every webhook POST attempt, and one entry per attempt (or skip): prediction_id, url,
    #: webhook_id, attempt, status (None on a network error), error. The last 1,000 are kept.
    webhook_attempts: int = 0
    webhook_log: list[dict[str, Any]] = field(default_factory=list)

    def count_status(self, status: int) -> None:
        self.requests_by_status[status] = self.requests_by_status.get(status, 0) + 1

    def count_poll(self, prediction_id: str) -> None:
        self.result_polls += 1
        self.polls_by_prediction[prediction_id] = self.polls_by_prediction.get(prediction_id, 0) + 1

    def count_accepted_submit(self, model_id: str) -> None:
        self.submits_accepted += 1
        self.submits_by_model[model_id] = self.submits_by_model.get(model_id, 0) + 1

    def reset(self) -> None:
        """Zero every counter in place (the open-connection gauge is kept: those sockets still exist)."""
        open_now = self.connections_open
        fresh = EmulatorStats()
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(fresh, f.name))
        self.connections_open = self.connections_peak = open_now

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["requests_by_status"] = {str(k): v for k, v in sorted(self.requests_by_status.items())}
        return data
