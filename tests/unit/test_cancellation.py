"""Cancel on kill: which task states cancel, and a delete that survives the triggerer's repeated cancels."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_wavespeed.cancellation import shielded, should_cancel


@pytest.mark.parametrize(
    ("state", "cancel"),
    [
        ("failed", True),  # marked failed, or its DAG run marked failed
        ("success", False),  # marked success: keep what was made
        ("restarting", False),  # cleared while running: the next try reuses the prediction
        ("deferred", False),  # cleared and deferred again, or handed to another triggerer
        ("scheduled", False),
        ("running", False),  # a deferral timeout resumed it, or an execution_timeout
        ("up_for_retry", False),
        (None, False),  # the state could not be read: the safe side
    ],
)
def test_only_a_task_that_now_stands_failed_cancels_its_prediction(state, cancel):
    assert should_cancel(state) is cancel


def test_a_shielded_call_completes_through_repeated_cancels():
    done: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(0.3)
        done.append("deleted")
        return "deleted"

    async def killed_trigger() -> str | None:
        waiter = asyncio.ensure_future(shielded(slow, limit=5.0))
        for _ in range(3):  # the triggerer cancels a stopping trigger about once a second
            await asyncio.sleep(0.05)
            waiter.cancel()
        return await waiter

    assert asyncio.run(killed_trigger()) == "deleted"
    assert done == ["deleted"]


def test_a_shielded_call_gives_up_waiting_at_its_limit_without_cancelling_the_call():
    async def never() -> str:
        await asyncio.sleep(10)
        return "late"

    async def run() -> str | None:
        return await shielded(never, limit=0.1)

    assert asyncio.run(run()) is None
