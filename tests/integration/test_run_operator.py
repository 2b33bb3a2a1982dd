"""WaveSpeedRunOperator (submit + deferred wait + download in one task), its extra link and budget guard.

Every test runs a real DAG through dag.test() against the emulator; the trigger runs inline.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.operators.wavespeed import (
    LINK_XCOM_KEY,
    WaveSpeedPredictionLink,
    prediction_console_url,
)
from tests.support import (
    AIRFLOW_VERSION,
    AVATAR,
    AVATAR_INPUTS,
    FLUX,
    dag_file,
    held_until,
    log_events,
    part_files,
    task_states,
    tis_of,
    went_through_deferral,
    xcom_value,
)

# -- the extra link: pushed before deferring, per map index ---------------------------------------------


class DeferralWatcher:
    """Holds every prediction in the emulator until the DB shows its task deferred with its link pushed.

    dag.test() runs each trigger inline, so a task instance sits ``deferred`` in the DB only for an
    instant; instead of racing a sampler against that instant, the emulator keeps each prediction
    ``processing`` (the trigger keeps waiting, the task cannot resume) until this watcher has seen the
    task's ``deferred`` log row and its link XCom, and only then releases that one prediction.
    """

    def __init__(self, dag_id: str, emulator: WaveSpeedEmulator, expected: int, timeout: float = 240.0) -> None:
        self.dag_id = dag_id
        self.emulator = emulator
        self.expected = expected
        self.timeout = timeout
        #: (task_id, map_index) -> the link XCom seen while its prediction was held
        self.links: dict[tuple[str, int], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _deferred_with_link(self) -> dict[tuple[str, int], str]:
        from airflow.models.log import Log
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            deferred = {
                (row.task_id, row.map_index)
                for row in session.query(Log).filter_by(dag_id=self.dag_id, event="deferred")
            }
            links = {
                (x.task_id, x.map_index): x.value
                for x in session.query(XComModel).filter_by(dag_id=self.dag_id, key=LINK_XCOM_KEY)
            }
        return {key: link for key, link in links.items() if key in deferred and link}

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline and len(self.links) < self.expected:
                with contextlib.suppress(Exception):  # a DB lock or a half-created run: look again
                    for key, link in self._deferred_with_link().items():
                        if key not in self.links:
                            self.links[key] = link
                            self.emulator.release(prediction_id_of(link))
                self._stop.wait(0.05)
        finally:  # seen all, or gave up: never leave dag.test() waiting on a held prediction
            self.emulator.configure(hold_predictions=False)

    def __enter__(self) -> DeferralWatcher:
        self.emulator.configure(hold_predictions=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def links_seen_while_deferred(self, task_id: str) -> dict[int, str]:
        return {map_index: link for (tid, map_index), link in self.links.items() if tid == task_id}


def prediction_id_of(link: str) -> str:
    match = re.search(r"prediction_id=([^&]+)", link)
    assert match, link
    return match.group(1)


@pytest.fixture(scope="module")
def link_run(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One DAG run: a plain and a 2-way mapped run operator, each deferring ~3 s, watched from outside."""
    out = tmp_path_factory.mktemp("links")
    config = EmulatorConfig(queue_seconds=0.0, run_seconds=0.2)  # held until the watcher has seen each deferral
    with WaveSpeedEmulator(config) as emulator, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", emulator.connection_json())
        dag_id = "wavespeed_ft_links"
        dag = dag_file(
            dag_id,
            f"""
            from airflow.models.taskinstancekey import TaskInstanceKey
            from airflow.sdk import task

            from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedPredictionLink

            with DAG(dag_id="{dag_id}", **DAG_ARGS) as dag:
                single = WaveSpeedRunOperator(
                    task_id="single", model="{AVATAR}", inputs={AVATAR_INPUTS!r},
                    destination="{out}/single", poll_interval=0.1,
                )
                mapped = WaveSpeedRunOperator.partial(
                    task_id="mapped", model="{AVATAR}", destination="{out}/mapped", poll_interval=0.1,
                ).expand(inputs=[{{**{AVATAR_INPUTS!r}, "prompt": p}} for p in ("one", "two")])

                @task
                def links_from_get_link(dag_run=None):
                    # What the UI button resolves to, asked the way Airflow asks it: get_link(operator, ti_key)
                    link = WaveSpeedPredictionLink()
                    keys = [("single", -1), ("mapped", 0), ("mapped", 1)]
                    return [
                        [task_id, map_index, link.get_link(
                            dag.get_task(task_id),
                            ti_key=TaskInstanceKey(dag.dag_id, task_id, dag_run.run_id, 1, map_index),
                        )]
                        for task_id, map_index in keys
                    ]

                single >> mapped >> links_from_get_link()
            """,
        )
        # 3.1 writes no 'deferred' log row to watch for: nothing is held there (those two tests skip on 3.1)
        expected = 3 if AIRFLOW_VERSION >= (3, 3) else 0
        with DeferralWatcher(dag_id, emulator, expected=expected) as watcher:
            dr = dag.test()
        yield {"dr": dr, "watcher": watcher, "emulator": emulator}


#: These observe the deferral from outside through its 'deferred' log row, which 3.1's dag.test() does not write
#: (it runs the trigger inline); the extra-link tests below still check the pushed links on 3.1.
needs_deferred_log_row = pytest.mark.skipif(
    AIRFLOW_VERSION < (3, 3), reason="Airflow 3.1's dag.test() records no 'deferred' log row to observe"
)


@needs_deferred_log_row
def test_the_run_operator_pushes_the_prediction_link_before_it_defers(link_run):
    dr, watcher = link_run["dr"], link_run["watcher"]
    assert task_states(dr) == {"single": "success", "mapped": "success", "links_from_get_link": "success"}
    prediction_id = xcom_value(dr, "single")["prediction_id"]
    expected = prediction_console_url(AVATAR, prediction_id)
    assert expected.startswith("https://wavespeed.ai/models/") and prediction_id in expected
    # While the task instance sat deferred in the DB, its link XCom was already there.
    assert watcher.links_seen_while_deferred("single") == {-1: expected}
    assert xcom_value(dr, "single", key=LINK_XCOM_KEY) == expected


@needs_deferred_log_row
def test_each_map_index_of_a_mapped_run_operator_gets_its_own_prediction_link_while_deferred(link_run):
    dr, watcher, emulator = link_run["dr"], link_run["watcher"], link_run["emulator"]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, task_id="mapped")
        links = {x.map_index: x.value for x in rows.filter_by(key=LINK_XCOM_KEY)}
        results = {x.map_index: x.value for x in rows.filter_by(key="return_value")}
    assert sorted(links) == [0, 1]
    for map_index in (0, 1):
        prediction_id = results[map_index]["prediction_id"]
        assert emulator.predictions[prediction_id].inputs["prompt"] == ("one", "two")[map_index]
        assert links[map_index] == prediction_console_url(AVATAR, prediction_id)
    assert links[0] != links[1]
    seen = watcher.links_seen_while_deferred("mapped")
    assert seen == {0: links[0], 1: links[1]}


def test_the_extra_link_resolves_to_the_pushed_url_for_every_task_instance(link_run):
    """Airflow evaluates ``get_link`` in the task process and stores the result under the link's xcom_key."""
    dr = link_run["dr"]
    link = WaveSpeedPredictionLink()
    assert link.name == "WaveSpeed prediction"
    for task_id in ("single", "mapped"):
        for ti in tis_of(dr, task_id):
            pushed = xcom_value_at(dr, task_id, ti.map_index, LINK_XCOM_KEY)
            assert pushed, (task_id, ti.map_index)
            assert xcom_value_at(dr, task_id, ti.map_index, link.xcom_key) == pushed


def test_get_link_returns_the_pushed_url_of_the_task_instance_it_is_given(link_run):
    dr = link_run["dr"]
    resolved = xcom_value(dr, "links_from_get_link")
    assert len(resolved) == 3
    for task_id, map_index, url in resolved:
        assert url == xcom_value_at(dr, task_id, map_index, LINK_XCOM_KEY), (task_id, map_index)
        assert url.startswith("https://wavespeed.ai/models/")
    assert len({url for _, _, url in resolved}) == 3


def xcom_value_at(dag_run: Any, task_id: str, map_index: int, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, map_index=map_index, key=key)
            .one_or_none()
        )
        return None if row is None else row.value


# -- submit + wait + download in one task ----------------------------------------------------------------


def test_a_retry_after_a_failed_download_reuses_the_prediction_and_ends_with_the_file_stored(
    emulator, run_dag, tmp_path, fast_retries, all_output
):
    emulator.config.cut_downloads = fast_retries.max_attempts  # try 1 resumes until its retries run out
    emulator.config.cut_after_bytes = 4096
    dag = dag_file(
        "wavespeed_ft_run_retry",
        f"""
        with DAG(dag_id="wavespeed_ft_run_retry", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{AVATAR}", inputs={AVATAR_INPUTS!r},
                destination="{tmp_path / "out"}", poll_interval=0.1, retries=1,
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"render": "success"}
    assert tis_of(dr, "render")[0].try_number == 2
    assert went_through_deferral(dr, "render", all_output)  # try 1 really went through the trigger
    assert emulator.stats.cut_downloads == fast_retries.max_attempts
    # Try 2 reused try 1's prediction (3.3 finds it in task_state_store, 3.1 in the history): one submit in
    # all, and try 2's result is that prediction, downloaded in full.
    assert emulator.stats.submits_accepted == 1
    assert emulator.stats.submit_attempts == 1
    [prediction_id] = emulator.predictions
    result = xcom_value(dr, "render")
    stored = tmp_path / "out" / f"{prediction_id}.mp4"
    assert result["prediction_id"] == prediction_id and result["outputs"] == [str(stored)]
    assert stored.read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert part_files(tmp_path) == []
    # XComs are cleared for a retry: try 2 pushes the link again, for the same prediction
    assert xcom_value(dr, "render", key=LINK_XCOM_KEY) == prediction_console_url(AVATAR, prediction_id)


def test_the_run_operator_waits_in_the_worker_when_not_deferrable(emulator, run_dag, tmp_path):
    emulator.config.queue_seconds = 0.0
    emulator.config.run_seconds = 0.0
    dag = dag_file(
        "wavespeed_ft_run_sync",
        f"""
        with DAG(dag_id="wavespeed_ft_run_sync", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{AVATAR}", inputs={AVATAR_INPUTS!r},
                destination="{tmp_path}", deferrable=False, poll_interval=0.1,
            )
        """,
    )

    with held_until(emulator, lambda: max(emulator.stats.polls_by_prediction.values(), default=0) >= 2):
        dr = run_dag(dag)

    assert task_states(dr) == {"render": "success"}
    assert "deferred" not in log_events(dr, "render")
    [prediction_id] = emulator.predictions
    assert emulator.stats.polls_by_prediction[prediction_id] >= 2  # it polled from the worker
    stored = tmp_path / f"{prediction_id}.mp4"
    assert xcom_value(dr, "render")["outputs"] == [str(stored)]
    assert stored.read_bytes() == emulator.expected_output_bytes(prediction_id)


def test_wait_timeout_fails_the_run_operator_with_the_deadline_message_deferred_or_not(
    emulator, run_dag, tmp_path, all_output
):
    emulator.config.run_seconds = 600.0
    dag = dag_file(
        "wavespeed_ft_run_deadline",
        f"""
        with DAG(dag_id="wavespeed_ft_run_deadline", **DAG_ARGS):
            for deferrable in (True, False):
                WaveSpeedRunOperator(
                    task_id=f"deferrable_{{deferrable}}".lower(), model="{AVATAR}", inputs={AVATAR_INPUTS!r},
                    destination="{tmp_path}", deferrable=deferrable, poll_interval=0.1, wait_timeout=1,
                )
        """,
    )

    dr = run_dag(dag)  # the predictions would complete after 600 s: only the deadline can fail the tasks

    assert task_states(dr) == {"deferrable_true": "failed", "deferrable_false": "failed"}
    assert went_through_deferral(dr, "deferrable_true", all_output)
    output = all_output()
    for prediction_id in emulator.predictions:
        message = rf"Gave up waiting for WaveSpeed prediction {prediction_id} after \d+ s \(last status processing\)"
        assert re.search(message, output), prediction_id
    assert len(emulator.predictions) == 2
    assert list(tmp_path.iterdir()) == []


# -- budget guard and timings ----------------------------------------------------------------------------


def test_min_balance_above_the_balance_fails_before_submitting_and_names_both_amounts(
    emulator, run_dag, tmp_path, all_output
):
    emulator.config.balance = 12.5
    dag = dag_file(
        "wavespeed_ft_min_balance",
        f"""
        with DAG(dag_id="wavespeed_ft_min_balance", **DAG_ARGS):
            WaveSpeedSubmitOperator(
                task_id="too_poor", model="{FLUX}", inputs={{"prompt": "a lighthouse"}},
                min_balance=1000, retries=2,
            ) >> WaveSpeedRunOperator(
                task_id="can_afford", model="{AVATAR}", inputs={AVATAR_INPUTS!r},
                destination="{tmp_path}", min_balance=10, poll_interval=0.1, trigger_rule="all_done",
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"too_poor": "failed", "can_afford": "success"}
    assert tis_of(dr, "too_poor")[0].try_number == 1  # final: a retry would not top up the account
    assert emulator.stats.submit_attempts == 1  # the affordable one only
    assert emulator.stats.submits_by_model == {AVATAR: 1}
    output = all_output()
    assert "too_poor: account balance 12.50 USD is below min_balance 1000.00 USD; nothing was submitted" in output


def test_the_run_operator_and_sensor_results_include_the_prediction_timings(emulator, run_dag, tmp_path):
    dag = dag_file(
        "wavespeed_ft_timings",
        f"""
        from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

        with DAG(dag_id="wavespeed_ft_timings", **DAG_ARGS):
            WaveSpeedRunOperator(
                task_id="render", model="{AVATAR}", inputs={AVATAR_INPUTS!r},
                destination="{tmp_path}", poll_interval=0.1,
            )
            submit = WaveSpeedSubmitOperator(task_id="submit", model="{FLUX}", inputs={{"prompt": "a fox"}})
            submit >> WaveSpeedPredictionSensor(task_id="wait", prediction_id=submit.output, poll_interval=0.1)
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"render": "success", "submit": "success", "wait": "success"}
    run_timings = xcom_value(dr, "render")["timings"]
    assert run_timings == {"inference": round(emulator.config.run_seconds * 1000)}
    assert xcom_value(dr, "wait")["timings"] == {"inference": round(emulator.config.run_seconds * 1000)}
