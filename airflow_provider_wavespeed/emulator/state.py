"""Predictions, time-based status, history, deletion and upload bookkeeping. Pure logic, no I/O.

Status is a pure function of the emulator's clock: ``created`` until the prediction starts (its
``queue_seconds`` after submit, or later when a concurrency limit queues it), ``processing`` for
``run_seconds``, then the terminal outcome chosen at submit time.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_wavespeed.emulator.limits import schedule_starts
from airflow_provider_wavespeed.emulator.media import expected_output_bytes, output_file_size

TERMINAL_FAILURES = ("failed", "cancelled", "timeout")
STATUSES = ("created", "processing", "completed", "failed", "cancelled", "timeout", "deleted")
HISTORY_WINDOW_NS = 7 * 24 * 3600 * 1_000_000_000
MAX_PAGE_SIZE = 100
#: Other traffic on the account: of every 100 predictions, how many end each way (the rest complete).
BACKGROUND_MIX: tuple[tuple[str, int], ...] = (("failed", 3), ("timeout", 1), ("cancelled", 1), ("deleted", 1))
#: At most this many other-traffic predictions are made per catch-up (older ones are skipped).
MAX_BACKGROUND_BATCH = 200_000
EXTENSIONS = {"mp4": "mp4", "png": "png", "wav": "wav"}

#: outcome -> (business code, error text) reported once the prediction is terminal.
FAILURE_DETAILS: dict[str, tuple[int, str]] = {
    "failed": (1403, "Task Execution Failed: the emulator was asked to fail this prediction."),
    "cancelled": (1405, "Task Failed: the prediction was cancelled."),
    "timeout": (5004, "Timeout: the prediction exceeded its time limit."),
}
MEDIA_FAILURE_CODE = 1402


def format_timestamp(ns: int) -> str:
    """``2025-09-25T09:12:48.239112031Z`` (UTC, nanoseconds, like the real API)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


_ISO_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9})\d*)?)?)?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2})?"
)


def parse_timestamp(text: str) -> int:
    """ISO 8601 -> epoch nanoseconds (naive times are UTC). Raises ValueError."""
    match = _ISO_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(text)
    year, month, day, hour, minute, second, frac, tz = match.groups()
    moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=UTC)
    ns = int(moment.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        ns -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 1_000_000_000
    return ns


@dataclass
class PredictionRecord:
    """One submitted prediction; its status is derived from the clock, never stored."""

    id: str
    model: str
    inputs: dict[str, Any]
    created_ns: int  # wall clock, for created_at and history filters
    created_monotonic: float  # for status progression
    queue_seconds: float
    run_seconds: float
    #: completed | failed | cancelled | timeout | nsfw
    outcome: str
    output_kind: str
    output_count: int
    output_size: int  # the real byte size of each output
    error_code: int = 0
    error_message: str = ""
    webhook: str | None = None
    deleted: bool = False
    #: Exempt from ``hold_predictions``: a test let this one go on (see ``WaveSpeedEmulator.release``).
    released: bool = False
    #: Creation order (ties of the clock are broken by it).
    seq: int = 0
    #: When the run starts (``processing``); None while a concurrency limit keeps it queued.
    started_monotonic: float | None = None
    deleted_monotonic: float | None = None
    #: ``enable_base64_output``: outputs are reported as naked base64 of their bytes, not URLs.
    base64_output: bool = False
    #: What the submit was billed (USD).
    price: float = 0.0

    @property
    def created_at(self) -> str:
        return format_timestamp(self.created_ns)

    @property
    def eligible_at(self) -> float:
        """When the queue phase ends (the run starts then unless a concurrency limit says wait)."""
        return self.created_monotonic + self.queue_seconds

    @property
    def end_at(self) -> float | None:
        """When the run's slot frees: run finished or prediction deleted (None: not started)."""
        if self.started_monotonic is None:
            return None
        end = self.started_monotonic + self.run_seconds
        if self.deleted_monotonic is not None:
            end = min(end, max(self.deleted_monotonic, self.started_monotonic))
        return end

    def status(self, now: float, *, hold: bool = False) -> str:
        """The status at ``now``; ``hold`` keeps an unreleased prediction that is due to finish ``processing``."""
        if self.deleted:
            return "deleted"
        if self.started_monotonic is None or now < self.started_monotonic:
            return "created"
        if (hold and not self.released) or now < self.started_monotonic + self.run_seconds:
            return "processing"
        return "completed" if self.outcome in ("completed", "nsfw") else self.outcome

    def output_values(self, base_url: str) -> list[str]:
        """What ``outputs`` lists once completed: URLs, or naked base64 of the same bytes."""
        if not self.base64_output:
            return [base_url + self.output_path(i) for i in range(self.output_count)]
        return [
            base64.b64encode(expected_output_bytes(self.id, i, self.output_size, self.output_kind)).decode("ascii")
            for i in range(self.output_count)
        ]

    def output_path(self, index: int) -> str:
        return f"/media/outputs/{self.id}/{index}.{EXTENSIONS[self.output_kind]}"

    def to_api(self, base_url: str, now: float, *, hold: bool = False, with_input: bool = False) -> dict[str, Any]:
        """The prediction object exactly as the API reports it (``input`` only when asked for)."""
        status = self.status(now, hold=hold)
        completed = status == "completed"
        failed = status in TERMINAL_FAILURES
        finished = completed or failed
        elapsed_ms = round(self.run_seconds * 1000) if finished else 0
        outputs = self.output_values(base_url) if completed else []
        data: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "outputs": outputs,
            "urls": {"get": f"{base_url}/api/v3/predictions/{self.id}/result"},
            "has_nsfw_contents": [self.outcome == "nsfw"] * self.output_count if completed else [],
            "status": status,
            "created_at": self.created_at,
            "error": self.error_message if failed else "",
            "code": self.error_code if failed else 0,
            "executionTime": elapsed_ms,
            "timings": {"inference": elapsed_ms},
        }
        if with_input:
            data["input"] = dict(self.inputs)
        return data


@dataclass
class UploadRecord:
    """A media upload: a ticket waiting for its PUT, or stored bytes (``path`` + range)."""

    token: str
    filename: str
    content_type: str
    media_type: str  # image | video | audio | file
    declared_size: int
    path: str | None = None
    offset: int = 0
    length: int = 0

    @property
    def complete(self) -> bool:
        return self.path is not None


@dataclass
class HistoryQuery:
    page: int = 1
    page_size: int = MAX_PAGE_SIZE
    model: str | None = None
    status: str | None = None
    created_after_ns: int | None = None
    created_before_ns: int | None = None


@dataclass(frozen=True)
class OtherTraffic:
    """Predictions of other pipelines on the same account: created every ``60 / per_minute`` emulated
    seconds (the first ``backfill_seconds`` before the traffic was switched on), each running
    ``run_seconds`` on the models of ``models`` in turn, ending as ``BACKGROUND_MIX`` says."""

    per_minute: float
    run_seconds: float
    queue_seconds: float
    backfill_seconds: float
    #: (model id, output kind) in turn.
    models: tuple[tuple[str, str], ...]


def background_outcome(index: int) -> str:
    """The outcome of the ``index``-th other-traffic prediction (a fixed, spread-out mix)."""
    slot = (index * 37) % 100  # 37 is coprime with 100: every outcome appears, spread out
    for outcome, share in BACKGROUND_MIX:
        if slot < share:
            return outcome
        slot -= share
    return "completed"


@dataclass
class EmulatorState:
    """All mutable emulator data except the switches and the counters."""

    clock: Callable[[], float] = time.monotonic
    wall_clock_ns: Callable[[], int] = time.time_ns
    predictions: dict[str, PredictionRecord] = field(default_factory=dict)
    uploads: dict[str, UploadRecord] = field(default_factory=dict)
    #: Predictions a concurrency limit still holds in the queue (no start time yet).
    _queued: dict[str, PredictionRecord] = field(default_factory=dict)
    _seq: int = 0
    _nth_setting: int = 0
    _nth_count: int = 0
    _nth_submit_setting: int = 0
    _nth_submit_count: int = 0
    #: Other traffic made so far: its settings, when the n-th would be created (n = 0 at origin), next n.
    _traffic: OtherTraffic | None = None
    _traffic_origin: float = 0.0
    _traffic_next: int = 0

    def now(self) -> float:
        return self.clock()

    def schedule(self, max_concurrency: int) -> float:
        """Start queued predictions whose slot has freed by now; returns now."""
        now = self.clock()
        if self._queued:
            schedule_starts(list(self._queued.values()), self.predictions.values(), now, max_concurrency)
            for prediction_id in [k for k, r in self._queued.items() if r.started_monotonic is not None or r.deleted]:
                del self._queued[prediction_id]
        return now

    # -- predictions -------------------------------------------------------------------------------

    def create_prediction(
        self,
        *,
        model: str,
        inputs: dict[str, Any],
        queue_seconds: float,
        run_seconds: float,
        outcome: str,
        output_kind: str,
        output_count: int,
        output_size: int,
        error: tuple[int, str] | None = None,
        webhook: str | None = None,
        max_concurrency: int = 0,
        base64_output: bool = False,
        price: float = 0.0,
        run_seconds_for_id: Callable[[str], float] | None = None,
    ) -> PredictionRecord:
        """A new prediction; ``run_seconds_for_id`` (when given) picks its run time from its new id."""
        prediction_id = self._new_id()
        if run_seconds_for_id is not None:
            run_seconds = run_seconds_for_id(prediction_id)
        if error is not None:  # an explicit error (e.g. an undownloadable media input) wins
            outcome = "failed"
        elif outcome in FAILURE_DETAILS:
            error = FAILURE_DETAILS[outcome]
        code, message = error if error is not None else (0, "")
        record = PredictionRecord(
            id=prediction_id,
            model=model,
            inputs=inputs,
            created_ns=self.wall_clock_ns(),
            created_monotonic=self.clock(),
            queue_seconds=queue_seconds,
            run_seconds=run_seconds,
            outcome=outcome,
            output_kind=output_kind,
            output_count=output_count,
            output_size=output_file_size(output_size, output_kind),
            error_code=code,
            error_message=message,
            webhook=webhook,
            base64_output=base64_output,
            price=price,
        )
        self._seq += 1
        record.seq = self._seq
        self.predictions[prediction_id] = record
        if max_concurrency > 0:
            self._queued[prediction_id] = record
            self.schedule(max_concurrency)
        else:
            record.started_monotonic = record.eligible_at
        return record

    def get(self, prediction_id: str) -> PredictionRecord | None:
        return self.predictions.get(prediction_id)

    def history(self, query: HistoryQuery, *, hold: bool = False) -> tuple[int, list[PredictionRecord]]:
        """(total matching, records of the requested page), most recent first (ties: creation order).

        Only predictions created in the 7 days before the emulator's wall clock; ``status`` matches the
        status exactly (so ``completed`` / ``failed`` / ``processing`` never list a queued ``created``,
        a ``cancelled`` or a ``timeout`` one). Deleted predictions are left out unless
        ``status == "deleted"`` is asked for explicitly (an emulator extension, like the other
        undocumented status values).
        """
        now = self.clock()
        oldest = self.wall_clock_ns() - HISTORY_WINDOW_NS
        matching: list[PredictionRecord] = []
        for record in self.predictions.values():
            status = record.status(now, hold=hold)
            if record.created_ns < oldest:
                continue
            if query.model is not None and record.model != query.model:
                continue
            if query.status is not None and status != query.status:
                continue
            if query.status is None and status == "deleted":
                continue
            if query.created_after_ns is not None and record.created_ns < query.created_after_ns:
                continue
            if query.created_before_ns is not None and record.created_ns > query.created_before_ns:
                continue
            matching.append(record)
        matching.sort(key=lambda r: (r.created_ns, r.created_monotonic, r.seq), reverse=True)
        start = (query.page - 1) * query.page_size
        return len(matching), matching[start : start + query.page_size]

    def add_other_traffic(self, traffic: OtherTraffic | None) -> int:
        """Create the other traffic due by now (lazily: statuses follow the clock, so a prediction made
        late with its scheduled times is the same as one made on time). ``None`` or a rate of 0 stops
        it; changed settings go on from the last one made. Returns how many were made."""
        now = self.clock()
        if traffic is None or traffic.per_minute <= 0 or not traffic.models:
            self._traffic = None
            return 0
        step = 60.0 / traffic.per_minute
        if self._traffic is None:
            self._traffic_origin, self._traffic_next = now - traffic.backfill_seconds, 0
        elif self._traffic != traffic:
            last = self._traffic_origin + (self._traffic_next - 1) * 60.0 / self._traffic.per_minute
            self._traffic_origin, self._traffic_next = last, 1
        self._traffic = traffic
        due = int((now - self._traffic_origin) / step) + 1  # indexes 0 .. due-1 are at or before now
        oldest = now - HISTORY_WINDOW_NS / 1e9
        first = max(self._traffic_next, due - MAX_BACKGROUND_BATCH, int((oldest - self._traffic_origin) / step))
        for index in range(first, due):
            model, kind = traffic.models[index % len(traffic.models)]
            at = self._traffic_origin + index * step
            self.add_other_prediction(
                model, at, traffic.run_seconds, background_outcome(index), kind, traffic.queue_seconds
            )
        made = max(0, due - first)
        self._traffic_next = max(self._traffic_next, due)
        return made

    def add_other_prediction(
        self,
        model: str,
        at: float,
        run_seconds: float,
        outcome: str = "completed",
        output_kind: str = "png",
        queue_seconds: float = 0.0,
    ) -> PredictionRecord:
        """A prediction of someone else on the account, created at ``at`` (the emulator's monotonic
        clock; the past is fine). ``outcome`` ``deleted``: someone deleted it (absent from history).
        Never held by ``hold_predictions``; it starts at once and its run counts against
        ``max_concurrency`` like any prediction on the account."""
        now = self.clock()
        created_ns = self.wall_clock_ns() - round((now - at) * 1_000_000_000)
        deleted = outcome == "deleted"
        outcome = "completed" if deleted else outcome
        code, message = FAILURE_DETAILS.get(outcome, (0, ""))
        record = PredictionRecord(
            id=self._new_id(),
            model=model,
            inputs={"prompt": "another pipeline on this account"},
            created_ns=created_ns,
            created_monotonic=at,
            queue_seconds=queue_seconds,
            run_seconds=run_seconds,
            outcome=outcome,
            output_kind=output_kind,
            output_count=1,
            output_size=output_file_size(0, output_kind),
            error_code=code,
            error_message=message,
            released=True,
            started_monotonic=at + queue_seconds,
            deleted=deleted,
            deleted_monotonic=at + queue_seconds + run_seconds if deleted else None,
        )
        self._seq += 1
        record.seq = self._seq
        self.predictions[record.id] = record
        return record

    def _new_id(self) -> str:
        prediction_id = secrets.token_hex(16)
        while prediction_id in self.predictions:  # pragma: no cover - 128-bit collision
            prediction_id = secrets.token_hex(16)
        return prediction_id

    def delete(self, ids: list[str]) -> int:
        """Mark predictions deleted; unknown or already deleted ids are ignored. Returns the count."""
        count = 0
        for prediction_id in dict.fromkeys(ids):
            record = self.predictions.get(prediction_id)
            if record is not None and not record.deleted:
                record.deleted = True
                record.deleted_monotonic = self.clock()
                count += 1
        return count

    # -- faults ------------------------------------------------------------------------------------

    def nth_request_fails(self, every_nth: int) -> bool:
        """Count one request; True if it is the Nth since ``every_nth`` was (re)set."""
        if every_nth != self._nth_setting:
            self._nth_setting, self._nth_count = every_nth, 0
        if every_nth <= 0:
            return False
        self._nth_count += 1
        return self._nth_count % every_nth == 0

    def nth_submit_loses_reply(self, every_nth: int) -> bool:
        """Count one accepted submit; True if it is the Nth since ``every_nth`` was (re)set."""
        if every_nth != self._nth_submit_setting:
            self._nth_submit_setting, self._nth_submit_count = every_nth, 0
        if every_nth <= 0:
            return False
        self._nth_submit_count += 1
        return self._nth_submit_count % every_nth == 0

    # -- uploads -----------------------------------------------------------------------------------

    def create_upload(self, filename: str, content_type: str, media_type: str, size: int) -> UploadRecord:
        token = secrets.token_hex(16)
        record = UploadRecord(token, filename, content_type, media_type, size)
        self.uploads[token] = record
        return record

    def complete_upload(self, token: str, path: str, offset: int, length: int) -> UploadRecord | None:
        record = self.uploads.get(token)
        if record is None:
            return None
        record.path, record.offset, record.length = path, offset, length
        return record

    def clear(self) -> list[str]:
        """Forget everything; returns the upload file paths the caller should delete."""
        paths = [u.path for u in self.uploads.values() if u.path is not None]
        self.predictions.clear()
        self.uploads.clear()
        self._queued.clear()
        self._nth_setting = self._nth_count = 0
        self._nth_submit_setting = self._nth_submit_count = 0
        self._traffic, self._traffic_next = None, 0
        return sorted(set(paths))
