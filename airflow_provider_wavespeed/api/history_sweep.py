"""Which of many waits finished, from the prediction history, sans I/O: the decisions of one coalesced poller.

One triggerer may hold thousands of waits of one account. Instead of one ``GET .../result`` per wait and
poll, :class:`HistorySweepPlan` asks the history (``POST /api/v3/predictions``, 100 a page, most recent
first) "which of these finished?" in a few pages per cycle, and says which registered wait saw what.

A **cycle** starts every ``cycle_seconds``: a *terminal sweep* pages through ``status=completed`` and then
``status=failed`` over the created-time window of the pending waits (``margin`` seconds wider on each side,
for clock skew); every ``audit_seconds`` the cycle is an *audit* instead, one sweep without a status filter,
which also sees ``created``/``processing``/``cancelled``/``timeout``. A sweep pages until ``page x page_size
>= total``; a page that fails ends its sweep. The upper end of the window is fixed when the sweep starts, so
predictions created meanwhile cannot shift the pages under it.

Correctness comes first, savings second:

- only ids that were registered are handed out (matched by id; other traffic on the account is skipped);
- a wait that no sweep has seen for ``stale_seconds`` (deleted predictions leave the history; one older
  than 7 days or made with another key never shows) is reported *stale*: its owner polls it by id once;
- below ``min_waits`` pending waits the plan sweeps nothing (a sweep costs at least two requests): every
  wait polls by id as before;
- a status never moves backwards (a page answered late cannot undo a newer per-id poll).

The caller does the I/O: ``next(now)`` says what to ask (:class:`Query`) or how long to wait
(:class:`Idle`); ``after_page(...)`` takes the answer and returns the observations to hand out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from airflow_provider_wavespeed.api.models import Prediction, PredictionStatus, is_terminal

#: The history's largest page.
PAGE_SIZE = 100
#: Status filters of a terminal sweep, in order (the documented filters: completed, failed, processing).
TERMINAL_FILTERS: tuple[str, ...] = (PredictionStatus.COMPLETED, PredictionStatus.FAILED)
#: An audit sweep has no status filter.
AUDIT_FILTERS: tuple[str | None, ...] = (None,)


@dataclass(frozen=True)
class Query:
    """Ask the history for this page. ``created_after``/``created_before`` are epoch seconds."""

    page: int
    status: str | None
    created_after: float
    created_before: float
    page_size: int = PAGE_SIZE


@dataclass(frozen=True)
class Idle:
    """Nothing to ask for ``seconds`` (a new wait may end it sooner)."""

    seconds: float


Step = Query | Idle


@dataclass
class PendingWait:
    """One registered wait: when its prediction was created (the API's time when known), what was last seen."""

    created: float
    status: str
    last_seen: float


@dataclass
class _Sweep:
    filters: tuple[str | None, ...]
    started: float
    created_after: float
    created_before: float
    audit: bool
    filter_index: int = 0
    page: int = 1

    @property
    def status(self) -> str | None:
        return self.filters[self.filter_index]


def status_rank(status: str) -> int:
    """Order of statuses in a prediction's life: a known status never gives way to an earlier one."""
    if is_terminal(status):
        return 3
    if status == PredictionStatus.PROCESSING:
        return 2
    if status == PredictionStatus.CREATED:
        return 1
    return 0


@dataclass
class HistorySweepPlan:
    """What to ask the history next for the registered waits, and who gets which answer.

    :param cycle_seconds: a sweep cycle starts this often (S).
    :param audit_seconds: every this often a cycle is an unfiltered audit sweep (A).
    :param stale_seconds: a wait no sweep saw for this long is handed back to a per-id poll (F).
    :param margin: seconds added on both sides of the created-time window (M): clock skew, unknown created_at.
    :param min_waits: fewer pending waits than this: no sweeps, every wait polls by id (break-even).
    :param max_backoff: after failed pages, cycles are spread out up to this many seconds.
    """

    # Defaults from the simulation (benchmarks/bench_polling.py, "Coalesced polling"): S = 3 s has the widest
    # margin on the request and delay goals; M = 5 s covers the clock skew; sweeping pays from ~8 pending waits.
    cycle_seconds: float = 3.0
    audit_seconds: float = 30.0
    stale_seconds: float = 60.0
    margin: float = 5.0
    min_waits: int = 8
    max_backoff: float = 60.0
    page_size: int = PAGE_SIZE
    waits: dict[str, PendingWait] = field(default_factory=dict)
    #: Failed pages in a row (spreads cycles out).
    errors: int = 0
    _sweep: _Sweep | None = field(default=None, repr=False)
    _next_cycle: float = field(default=-math.inf, repr=False)
    _next_audit: float | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.cycle_seconds <= 0 or self.audit_seconds <= 0 or self.stale_seconds <= 0:
            raise ValueError("cycle_seconds, audit_seconds and stale_seconds must be > 0")
        if self.margin < 0 or self.min_waits < 1 or not 1 <= self.page_size <= PAGE_SIZE:
            raise ValueError(f"margin must be >= 0, min_waits >= 1 and page_size in 1..{PAGE_SIZE}")

    # -- the waits -------------------------------------------------------------------------------------

    def register(self, prediction_id: str, created: float, status: str, now: float) -> None:
        """Start sweeping for ``prediction_id``, just seen (by its own poll) in ``status``."""
        self.waits[prediction_id] = PendingWait(created=created, status=status, last_seen=now)
        if self._next_audit is None:
            self._next_audit = now + self.audit_seconds

    def unregister(self, prediction_id: str) -> None:
        self.waits.pop(prediction_id, None)
        if not self.waits:
            self._sweep, self._next_audit = None, None

    def polled(self, prediction: Prediction, now: float) -> None:
        """The wait polled its prediction by id: that counts as seen."""
        wait = self.waits.get(prediction.id)
        if wait is not None:
            wait.last_seen = now
            if status_rank(prediction.status) >= status_rank(wait.status):
                wait.status = prediction.status

    @property
    def sweeping(self) -> bool:
        """Whether the waits are answered from the history (enough of them to be worth it)."""
        return len(self.waits) >= self.min_waits

    def take_stale(self, now: float) -> list[str]:
        """Waits no sweep saw for ``stale_seconds``: each gets one per-id poll (its timer restarts here)."""
        if not self.sweeping:
            return []
        stale = [pid for pid, wait in self.waits.items() if now - wait.last_seen >= self.stale_seconds]
        for pid in stale:
            self.waits[pid].last_seen = now
        return stale

    # -- the sweeps ------------------------------------------------------------------------------------

    def next(self, now: float) -> Step:
        """The next page to ask for, or how long nothing needs asking."""
        if not self.sweeping:
            self._sweep = None
            return Idle(self.cycle_seconds)
        if self._sweep is None:
            if now < self._next_cycle:
                return Idle(self._next_cycle - now)
            self._sweep = self._start_sweep(now)
        sweep = self._sweep
        return Query(sweep.page, sweep.status, sweep.created_after, sweep.created_before, self.page_size)

    def _start_sweep(self, now: float) -> _Sweep:
        created = [wait.created for wait in self.waits.values()]
        audit = self._next_audit is not None and now >= self._next_audit
        return _Sweep(
            filters=AUDIT_FILTERS if audit else TERMINAL_FILTERS,
            started=now,
            created_after=min(created) - self.margin,
            created_before=max(max(created), now) + self.margin,
            audit=audit,
        )

    def after_page(self, page: list[Prediction] | Exception, total: int | None, now: float) -> dict[str, Prediction]:
        """Take the answer to the last :class:`Query` (its items, or the error it raised) and the history's
        ``total`` for that query (None when unknown: then a short page is the last); returns
        {prediction_id: newest observation} for registered waits whose status moved on."""
        sweep = self._sweep
        if sweep is None:  # the waits fell below min_waits while the page was in flight: nothing to advance
            return self._observations(page if isinstance(page, list) else [], now)
        if isinstance(page, Exception):
            self.errors += 1
            self._end_sweep(sweep, completed=False)
            return {}
        self.errors = 0
        observations = self._observations(page, now)
        last = len(page) < self.page_size if total is None else sweep.page * self.page_size >= total
        if last or not page:
            sweep.filter_index += 1
            sweep.page = 1
            if sweep.filter_index >= len(sweep.filters):
                self._end_sweep(sweep, completed=True)
        else:
            sweep.page += 1
        return observations

    def _observations(self, items: list[Prediction], now: float) -> dict[str, Prediction]:
        found: dict[str, Prediction] = {}
        for item in items:
            wait = self.waits.get(item.id)
            if wait is None:  # someone else's prediction (or a wait already over)
                continue
            wait.last_seen = now
            if status_rank(item.status) > status_rank(wait.status):
                wait.status = item.status
                found[item.id] = item
        return found

    def _end_sweep(self, sweep: _Sweep, *, completed: bool) -> None:
        self._sweep = None
        pause = self.cycle_seconds * 2 ** min(self.errors, 16)
        self._next_cycle = sweep.started + min(pause, max(self.max_backoff, self.cycle_seconds))
        if sweep.audit and completed:
            self._next_audit = sweep.started + self.audit_seconds
