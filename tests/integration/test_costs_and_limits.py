"""Spend only what was approved, and wait out rate limits: quotes, max_cost, the batch budget gate, 429s.

Every test runs a real DAG through dag.test() against the emulator, which prices hunyuan-avatar at
$0.15 per started 5 s of audio when it can read the audio's duration (audio it serves itself, such
as an uploaded WAV), and enforces a per-minute submit limit when asked to.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import airflow_provider_wavespeed.api.submit_plan as submit_plan_module
from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock
from airflow_provider_wavespeed.operators.wavespeed import (
    BATCH_QUOTES_XCOM_KEY,
    BATCH_TOTAL_XCOM_KEY,
    COST_XCOM_KEY,
)
from tests.support import AVATAR, FLUX, dag_file, task_states, tis_of, went_through_deferral, when, xcom_value

PORTRAIT = "https://example.com/portrait.png"


def silent_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A real WAV file of ``seconds`` of silence (8 kHz, mono, 8-bit: small)."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(1)
        handle.setframerate(rate)
        handle.writeframes(b"\x80" * int(seconds * rate))
    return path


@pytest.fixture
def minute_of_audio(tmp_path: Path) -> Path:
    """60 s of audio: 12 started 5 s units at $0.15, so hunyuan-avatar quotes $1.80 for it."""
    return silent_wav(tmp_path / "voice.wav", 60.0)


def test_a_quote_above_max_cost_fails_before_any_submit_naming_quote_limit_and_model(
    emulator, run_dag, tmp_path, minute_of_audio, all_output
):
    dag = dag_file(
        "wavespeed_ft_max_cost_over",
        f"""
        with DAG(dag_id="wavespeed_ft_max_cost_over", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{AVATAR}",
                inputs={{"image": "{PORTRAIT}", "audio": "{minute_of_audio}"}},
                destination="{tmp_path / "out"}", max_cost=1.00, retries=2,
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"render": "failed"}
    assert tis_of(dr, "render")[0].try_number == 1  # final: a retry would quote the same
    assert emulator.stats.submit_attempts == 0 and emulator.predictions == {}
    assert emulator.stats.uploads == 1  # quoted with the uploaded audio, whose length sets the price
    output = all_output()
    assert f"the price quote for {AVATAR} is 1.8000 USD, above max_cost 1.0000 USD; nothing was submitted" in output


def test_within_max_cost_the_quote_is_logged_pushed_and_returned_as_cost_usd(
    emulator, run_dag, tmp_path, minute_of_audio, all_output
):
    dag = dag_file(
        "wavespeed_ft_max_cost_within",
        f"""
        with DAG(dag_id="wavespeed_ft_max_cost_within", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{AVATAR}",
                inputs={{"image": "{PORTRAIT}", "audio": "{minute_of_audio}"}},
                destination="{tmp_path / "out"}", max_cost=2.00, poll_interval=0.1,
            )
            WaveSpeedSubmitOperator(task_id="submit", model="{FLUX}", inputs={{"prompt": "a fox"}})
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"render": "success", "submit": "success"}
    assert len(emulator.predictions) == 2
    result = xcom_value(dr, "render")
    assert result["cost_usd"] == pytest.approx(1.80)
    assert xcom_value(dr, "render", key=COST_XCOM_KEY) == pytest.approx(1.80)
    flux_price = emulator.catalogue[FLUX].base_price
    assert xcom_value(dr, "submit", key=COST_XCOM_KEY) == pytest.approx(flux_price)
    assert f"Price quote for {AVATAR}: 1.8000 USD (max_cost 2.0000 USD)" in all_output()


@pytest.mark.parametrize("with_max_cost", [True, False], ids=["max_cost-fails-closed", "no-max_cost-warns"])
def test_without_any_pricing_endpoint_max_cost_fails_closed_and_no_max_cost_only_warns(
    emulator, run_dag, tmp_path, all_output, with_max_cost
):
    emulator.configure(pricing_endpoint_enabled=False, price_endpoint_enabled=False)
    limit = "max_cost=5.0," if with_max_cost else ""
    dag = dag_file(
        f"wavespeed_ft_no_pricing_{with_max_cost}".lower(),
        f"""
        with DAG(dag_id="wavespeed_ft_no_pricing_{with_max_cost}".lower(), **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{AVATAR}",
                inputs={{"image": "{PORTRAIT}", "audio": "https://example.com/a.mp3"}},
                destination="{tmp_path / "out"}", {limit} poll_interval=0.1, retries=1,
            )
        """,
    )

    dr = run_dag(dag)

    output = all_output()
    if with_max_cost:
        assert task_states(dr) == {"render": "failed"}
        assert tis_of(dr, "render")[0].try_number == 1
        assert emulator.predictions == {}
        assert "max_cost is 5.00 USD but no price quote" in output and "nothing was submitted" in output
    else:
        assert task_states(dr) == {"render": "success"}
        assert len(emulator.predictions) == 1
        assert xcom_value(dr, "render")["cost_usd"] is None
        assert "submitting without one" in output


BUDGET_DAG = """
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedBudgetOperator

with DAG(dag_id="DAG_ID", **DAG_ARGS):
    budget = WaveSpeedBudgetOperator(
        task_id="budget", model="AVATAR", batch=BATCH, max_total_cost=LIMIT, retries=2,
    )
    WaveSpeedRunOperator.partial(
        task_id="render", model="AVATAR", destination="OUT", poll_interval=0.1,
    ).expand(inputs=budget.output)
"""


def budget_dag(dag_id: str, batch: list[dict[str, str]], limit: float, out: Path):
    body = (
        BUDGET_DAG.replace("DAG_ID", dag_id)
        .replace("AVATAR", AVATAR)
        .replace("BATCH", repr(batch))
        .replace("LIMIT", repr(limit))
        .replace("OUT", str(out))
    )
    return dag_file(dag_id, body)


def test_a_batch_over_its_budget_fails_before_anything_is_submitted_naming_total_limit_and_priciest(
    emulator, run_dag, tmp_path, all_output
):
    long_audio = str(silent_wav(tmp_path / "long.wav", 120.0))  # 24 units: $3.60
    batch = [{"image": PORTRAIT, "audio": "https://example.com/short.mp3", "prompt": f"script {i}"} for i in range(3)]
    batch.append({"image": PORTRAIT, "audio": long_audio, "prompt": "the long one"})
    dag = budget_dag("wavespeed_ft_budget_over", batch, 2.00, tmp_path / "out")

    dr = run_dag(dag)

    assert task_states(dr) == {"budget": "failed", "render": "upstream_failed"}
    assert tis_of(dr, "budget")[0].try_number == 1
    assert emulator.stats.submit_attempts == 0 and emulator.predictions == {}
    assert xcom_value(dr, "budget", key=BATCH_QUOTES_XCOM_KEY) == pytest.approx([0.15, 0.15, 0.15, 3.60])
    assert xcom_value(dr, "budget", key=BATCH_TOTAL_XCOM_KEY) == pytest.approx(4.05)
    output = all_output()
    assert "the 4 items of this batch would cost 4.0500 USD" in output
    assert "above max_total_cost 2.0000 USD; nothing was submitted" in output
    assert "item 3: 3.6000 USD" in output  # the most expensive item is named first


def test_a_batch_within_its_budget_fans_out_to_exactly_one_prediction_per_item(emulator, run_dag, tmp_path):
    batch = [{"image": PORTRAIT, "audio": "https://example.com/a.mp3", "prompt": f"script {i}"} for i in range(3)]
    dag = budget_dag("wavespeed_ft_budget_within", batch, 1.00, tmp_path / "out")

    dr = run_dag(dag)

    assert task_states(dr) == {"budget": "success", "render": "success"}
    assert xcom_value(dr, "budget") == batch  # the batch passes through unchanged
    assert xcom_value(dr, "budget", key=BATCH_TOTAL_XCOM_KEY) == pytest.approx(0.45)
    prompts = sorted(record.inputs["prompt"] for record in emulator.predictions.values())
    assert prompts == [f"script {i}" for i in range(3)]
    assert emulator.stats.submits_accepted == 3


def test_a_bad_item_fails_the_budget_gate_naming_the_item_and_field_before_any_quote(
    emulator, run_dag, tmp_path, all_output
):
    batch = [{"image": PORTRAIT, "audio": "https://example.com/a.mp3"}, {"image": PORTRAIT}]
    dag = budget_dag("wavespeed_ft_budget_bad_item", batch, 10.0, tmp_path / "out")

    dr = run_dag(dag)

    assert task_states(dr) == {"budget": "failed", "render": "upstream_failed"}
    assert emulator.stats.quotes == 0 and emulator.predictions == {}
    assert "item 1:" in all_output() and "audio" in all_output()


@pytest.fixture
def clocked_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[WaveSpeedEmulator, ManualClock]]:
    """An emulator whose clock (and so its per-minute submit window) moves only when the test says."""
    clock = ManualClock()
    config = EmulatorConfig(queue_seconds=0.0, run_seconds=0.0, submits_per_minute=1)
    with WaveSpeedEmulator(config, clock=clock) as running:
        monkeypatch.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", running.connection_json())
        yield running, clock


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "in-the-worker"])
def test_a_rate_limited_submit_waits_for_the_window_and_submits_once_without_failing(
    clocked_emulator, run_dag, all_output, deferrable, monkeypatch
):
    emulator, clock = clocked_emulator
    # dag.test() has no separate worker to race with: a short pause keeps the test quick
    monkeypatch.setattr(submit_plan_module, "RATE_LIMIT_MIN_PAUSE_SECONDS", 1.0)
    monkeypatch.setattr(submit_plan_module, "RATE_LIMIT_FIRST_JITTER_SECONDS", 1.0)
    reply = httpx.post(
        f"{emulator.base_url}/api/v3/{FLUX}",
        json={"prompt": "someone else's prediction fills this minute's window"},
        headers={"Authorization": f"Bearer {emulator.api_key}"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    dag = dag_file(
        f"wavespeed_ft_rate_limited_{deferrable}".lower(),
        f"""
        with DAG(dag_id="wavespeed_ft_rate_limited_{deferrable}".lower(), **DAG_ARGS):
            WaveSpeedSubmitOperator(
                task_id="submit", model="{FLUX}", inputs={{"prompt": "a fox"}}, deferrable={deferrable},
            )
        """,
    )

    # The minute ends only once our submit has been refused: the task must wait, not fail.
    with when(lambda: emulator.stats.submits_rate_limited >= 1, lambda: clock.advance(60.0)):
        dr = run_dag(dag)

    assert task_states(dr) == {"submit": "success"}
    assert tis_of(dr, "submit")[0].try_number == 1  # waited, did not fail and retry
    assert emulator.stats.submits_rate_limited >= 1
    assert emulator.stats.submits_accepted == 2  # the other one and ours, once
    assert xcom_value(dr, "submit") in emulator.predictions
    assert "was rate limited (429, nothing was created" in all_output()
    # waited in the triggerer, not a worker slot (3.3: the 'deferred' log row; 3.1: dag.test()'s inline trigger)
    assert went_through_deferral(dr, "submit", all_output) == deferrable


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("max_cost", -1), ("max_cost", 0), ("max_cost", "ten"), ("rate_limit_timeout", 0), ("queue_timeout", -5)],
)
def test_bad_money_and_limit_parameters_are_rejected_when_the_dag_is_built_naming_the_parameter(parameter, value):
    from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

    with pytest.raises(ValueError, match=parameter):
        WaveSpeedRunOperator(task_id="t", model=AVATAR, inputs={}, destination="/tmp/out", **{parameter: value})


def test_a_budget_gate_without_a_positive_limit_is_rejected_when_the_dag_is_built():
    from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedBudgetOperator

    with pytest.raises(ValueError, match="max_total_cost"):
        WaveSpeedBudgetOperator(task_id="b", model=AVATAR, batch=[], max_total_cost=0)
