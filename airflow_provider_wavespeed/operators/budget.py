"""WaveSpeedBudgetOperator: price a whole batch before anything of it is submitted."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, Context

from airflow_provider_wavespeed.api.errors import WaveSpeedError, WaveSpeedInputError
from airflow_provider_wavespeed.api.protocol import check_model_id
from airflow_provider_wavespeed.costs import most_expensive, priced_inputs
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook
from airflow_provider_wavespeed.operators.recording import push_record, recording_failures
from airflow_provider_wavespeed.parameters import check_count, check_usd
from airflow_provider_wavespeed.task_record import new_record
from airflow_provider_wavespeed.task_results import final_error

#: WaveSpeedBudgetOperator: the quote of every item, in batch order, and their total (USD).
BATCH_QUOTES_XCOM_KEY = "wavespeed_quotes"
BATCH_TOTAL_XCOM_KEY = "wavespeed_total_cost_usd"


class WaveSpeedBudgetOperator(BaseOperator):
    """
    Quote every item of a batch and fail, before anything is submitted, when the total is over budget.

    Put it in front of a mapped submit or run task: ``WaveSpeedRunOperator.partial(...).expand(
    inputs=budget.output)`` fans out only behind the gate. Returns ``batch`` unchanged; the per-item
    quotes and the total (USD) are logged and pushed as XComs ``wavespeed_quotes`` and
    ``wavespeed_total_cost_usd``. Items are checked against the model's schema first, and quoted with
    their media inputs resolved (local files uploaded), as they will be submitted. When any item
    cannot be quoted the gate stays closed.

    :param model: model id every item runs on (templated).
    :param batch: list of input dicts, one per prediction (templated; an ``XComArg`` works).
    :param max_total_cost: the most the whole batch may cost, in USD (templated, e.g. from a param).
    :param wavespeed_conn_id: connection holding the API key.
    :param validate_inputs: check every item against the model's schema before quoting.
    :param media_conn_id: Airflow connection for object-storage media inputs, when not in the URI.
    :param max_concurrency: quotes requested at once.
    """

    template_fields: Sequence[str] = ("model", "batch", "max_total_cost")
    template_fields_renderers = {"batch": "json"}
    ui_color = "#fdf2d0"

    def __init__(
        self,
        *,
        model: str,
        batch: Any,
        max_total_cost: float | str,
        wavespeed_conn_id: str = WaveSpeedHook.default_conn_name,
        validate_inputs: bool = True,
        media_conn_id: str | None = None,
        max_concurrency: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.batch = batch
        if not isinstance(max_total_cost, str):  # a template is checked once rendered, in execute()
            check_usd("max_total_cost", max_total_cost, positive=True)
        self.max_total_cost = max_total_cost
        self.wavespeed_conn_id = wavespeed_conn_id
        self.validate_inputs = validate_inputs
        self.media_conn_id = media_conn_id
        self.max_concurrency = check_count("max_concurrency", max_concurrency)

    @cached_property
    def hook(self) -> WaveSpeedHook:
        return WaveSpeedHook(self.wavespeed_conn_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        with recording_failures(context, "budget"):
            return self._gate(context)

    def _gate(self, context: Context) -> list[dict[str, Any]]:
        try:
            model = check_model_id(self.model)
        except WaveSpeedError as exc:
            raise final_error(exc, self.task_id) from None
        limit = self._limit()
        items = self._items()
        if self.validate_inputs:
            self._validate(model, items)
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, max(len(items), 1))) as pool:
            futures = [pool.submit(self._quote, model, item) for item in items]
            quotes = [future.result() for future in futures]
        total = round(sum(quotes), 6)
        ti = context["ti"]
        ti.xcom_push(key=BATCH_QUOTES_XCOM_KEY, value=quotes)
        ti.xcom_push(key=BATCH_TOTAL_XCOM_KEY, value=total)
        push_record(
            context,
            new_record("budget", model=model, budget_total_usd=total, budget_max_usd=limit, budget_items=len(items)),
        )
        if total > limit:
            listed = "; ".join(f"item {i}: {quotes[i]:.4f} USD {_short(items[i])}" for i in most_expensive(quotes))
            raise AirflowFailException(
                f"{self.task_id}: the {len(items)} items of this batch would cost {total:.4f} USD on {model}, "
                f"above max_total_cost {limit:.4f} USD; nothing was submitted. Most expensive: "
                f"{listed}. Check the batch (a duplicated or runaway input list?) or raise max_total_cost."
            )
        self.log.info(
            "Batch of %d items on %s quoted at %.4f USD in total (max_total_cost %.4f USD): within budget",
            len(items),
            model,
            total,
            limit,
        )
        return items

    def _limit(self) -> float:
        value: Any = self.max_total_cost
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise AirflowFailException(
                    f"{self.task_id}: max_total_cost must be a number of USD, got {self.max_total_cost!r}"
                ) from None
        try:
            limit = check_usd("max_total_cost", value, positive=True)
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from None
        assert limit is not None
        return limit

    def _items(self) -> list[dict[str, Any]]:
        batch = self.batch
        if isinstance(batch, Mapping | str | bytes) or not isinstance(batch, Sequence):
            raise AirflowFailException(
                f"{self.task_id}: batch must be a list of input dicts (one per prediction), got {type(batch).__name__}"
            )
        bad = [i for i, item in enumerate(batch) if not isinstance(item, Mapping)]
        if bad:
            raise AirflowFailException(
                f"{self.task_id}: batch items {bad[:10]} are not dicts of model inputs; each item is one prediction's "
                "inputs"
            )
        return [dict(item) for item in batch]

    def _validate(self, model: str, items: list[dict[str, Any]]) -> None:
        problems: list[str] = []
        for index, item in enumerate(items):
            try:
                self.hook.validate_inputs(model, item)
            except WaveSpeedInputError as exc:
                problems.extend(f"item {index}: {problem}" for problem in exc.problems)
            except WaveSpeedError as exc:
                raise final_error(exc, self.task_id) from None
        if problems:
            raise final_error(WaveSpeedInputError(model, problems), self.task_id)

    def _quote(self, model: str, item: dict[str, Any]) -> float:
        quote: float | Exception
        try:
            _, quote = priced_inputs(self.hook, model, item, self.media_conn_id)
        except (WaveSpeedError, FileNotFoundError) as exc:  # an upload the quote needs failed
            quote = exc
        if isinstance(quote, Exception):
            raise AirflowFailException(
                f"{self.task_id}: no price quote for an item of this batch on {model} ({quote}); the budget cannot "
                "be checked, so nothing will be submitted. Retry later, or remove the budget gate knowingly."
            )
        return quote


def _short(item: Mapping[str, Any], limit: int = 120) -> str:
    text = json.dumps(item, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."
