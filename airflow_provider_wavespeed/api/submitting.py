"""The one driver of :class:`~airflow_provider_wavespeed.api.submit_plan.SubmitPlan`: carries out its decisions
with a blocking client (one request, a sleep, a history search) until the plan names the prediction.

The hook calls it for a plain submit; the operators call it with their own ``prepare`` (check, upload, price)
and ``pause`` (defer while rate limited), and their claims (predictions sibling tasks already own).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from airflow_provider_wavespeed.api.errors import WaveSpeedError
from airflow_provider_wavespeed.api.models import Prediction
from airflow_provider_wavespeed.api.reconcile import candidates
from airflow_provider_wavespeed.api.submit_plan import (
    Ambiguous,
    Decision,
    Fail,
    LookUp,
    Pause,
    Prepare,
    SearchHistory,
    Submit,
    SubmitOutcome,
    SubmitPlan,
    Use,
)

#: What ``prepare`` returns: the payload to submit, and its price quote (USD) or why none could be had.
Prepared = tuple[Mapping[str, Any], "float | WaveSpeedError | None"]


class SubmitClient(Protocol):
    submitted_ids: set[str]

    def send_submit(self, model: str, inputs: Mapping[str, Any], *, webhook: str | None = None) -> SubmitOutcome: ...

    def get_prediction(self, prediction_id: str) -> Prediction: ...

    def list_predictions(self, **filters: Any) -> list[Prediction]: ...


def carry_out(
    plan: SubmitPlan,
    decision: Decision,
    client: SubmitClient,
    *,
    webhook: str | None = None,
    claimed: Callable[[], Iterable[str]] = tuple,
    prepare: Callable[[], Prepared] | None = None,
    pause: Callable[[Pause], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    sending: Callable[[float], None] | None = None,
) -> Use:
    """Do what ``plan`` says, starting with ``decision``, until it names the prediction (returned).

    Raises the plan's error when it fails, and :class:`WaveSpeedSubmitAmbiguousError` (with the window and
    the candidates) when an unanswered submit stays ambiguous. ``sending`` is told when each submit is sent.
    """
    while True:
        if isinstance(decision, Use):
            client.submitted_ids.add(decision.prediction.id)
            return decision
        if isinstance(decision, Fail):
            raise decision.error
        if isinstance(decision, Ambiguous):
            raise decision.error()
        if isinstance(decision, LookUp):
            decision = plan.after_lookup(client.get_prediction(decision.prediction_id))
        elif isinstance(decision, SearchHistory):
            if decision.after > 0:
                sleep(decision.after)
            taken = set(claimed()) | client.submitted_ids
            decision = plan.after_search(candidates(client.list_predictions, decision.window, decision.inputs, taken))
        elif isinstance(decision, Prepare):
            if prepare is None:
                raise RuntimeError("the submit plan asked to prepare inputs, but this caller passed them prepared")
            payload, quote = prepare()
            decision = plan.prepared(payload, quote)
        elif isinstance(decision, Pause):
            if pause is not None:
                pause(decision)
            else:
                sleep(decision.seconds)
            decision = Submit()
        elif isinstance(decision, Submit):
            assert plan.payload is not None
            if sending is not None:
                sending(clock())
            decision = plan.after_submit(client.send_submit(plan.model, plan.payload, webhook=webhook), clock())
        else:  # pragma: no cover - every Decision is handled above
            raise TypeError(f"unknown submit decision {decision!r}")
