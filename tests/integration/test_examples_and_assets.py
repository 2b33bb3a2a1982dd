"""Batch pipelines and data-aware scheduling, with the shipped example DAGs on the emulator.

``example_wavespeed_batch`` renders one video per CSV row (``.expand_kwargs``) and emits an asset
event per stored file through the ``wavespeed_avatar_videos`` alias; ``example_wavespeed_on_new_videos``
is scheduled on that alias. The downstream DAG is registered in the metadata DB (as the DAG processor
would) before the batch runs, so the test can check that the scheduler would now start it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wavespeed.emulator.config import EmulatorConfig
from airflow_provider_wavespeed.emulator.emulator import WaveSpeedEmulator
from tests.support import (
    AVATAR,
    FLUX,
    copy_example_dag,
    dag_file,
    dags_folder,
    task_states,
    tis_of,
    xcom_value,
)

ALIAS = "wavespeed_avatar_videos"
DOWNSTREAM = "example_wavespeed_on_new_videos"
LIMIT = 12


def asset_events(dag_id: str, run_id: str) -> list[Any]:
    """(asset uri, extra, source task, map index, alias names) of every asset event of one DAG run."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(AssetEvent).filter_by(source_dag_id=dag_id, source_run_id=run_id).all()
        return [
            (
                row.asset.uri,
                dict(row.extra or {}),
                row.source_task_id,
                row.source_map_index,
                sorted(alias.name for alias in row.source_aliases),
            )
            for row in rows
        ]


def register_in_db(dag_file_path: Path, dag_id: str) -> None:
    """Parse one DAG file and write it to the metadata DB, unpaused, as the DAG processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    try:
        from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    except ImportError:  # Airflow 3.1 layout
        from airflow.models.dagbag import DagBag, sync_bag_to_db  # type: ignore[no-redef]
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=str(dag_file_path))
    assert not bag.import_errors, bag.import_errors
    assert dag_id in bag.dags
    sync_bag_to_db(bag, "dags-folder", None)
    with create_session() as session:
        session.query(DagModel).filter_by(dag_id=dag_id).update({"is_paused": False})


def ds_of(dag_run: Any) -> str:
    return dag_run.run_after.strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def batch_run(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("batch-out")
    # Queue and run 0 s: every submit is already completed, so the 12 mapped tasks never wait 5 s polls.
    config = EmulatorConfig(queue_seconds=0.0, run_seconds=0.0)
    with WaveSpeedEmulator(config) as emulator, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", emulator.connection_json())
        mp.setenv("WAVESPEED_OUTPUT_DIR", str(out))  # read when the DAG file is imported
        copy_example_dag(f"{DOWNSTREAM}.py", DOWNSTREAM)
        register_in_db(dags_folder() / f"{DOWNSTREAM}.py", DOWNSTREAM)
        dag = copy_example_dag("example_wavespeed_batch.py", "example_wavespeed_batch")
        dr = dag.test(run_conf={"limit": LIMIT})
        yield {"dr": dr, "emulator": emulator, "out": out}


def test_the_batch_example_renders_one_video_per_script_row_up_to_the_limit(batch_run):
    dr, emulator, out = batch_run["dr"], batch_run["emulator"], batch_run["out"]
    assert str(dr.state) == "success", task_states(dr)
    mapped = tis_of(dr, "render_avatar")
    assert [ti.map_index for ti in mapped] == list(range(LIMIT))
    assert {str(ti.state) for ti in mapped} == {"success"}
    assert emulator.stats.submits_accepted == LIMIT
    assert emulator.stats.submits_by_model == {AVATAR: LIMIT}

    folder = out / "batch" / ds_of(dr)
    expected_names = [f"script-{n:03d}.mp4" for n in range(1, LIMIT + 1)]
    assert sorted(p.name for p in folder.iterdir()) == expected_names
    for ti in mapped:
        result = xcom_value_at(dr, "render_avatar", ti.map_index)
        [stored] = result["outputs"]
        assert Path(stored) == folder / expected_names[ti.map_index]
        assert Path(stored).read_bytes() == emulator.expected_output_bytes(result["prediction_id"])
        prompt = emulator.predictions[result["prediction_id"]].inputs["prompt"]
        assert prompt  # the row's own prompt was sent


def test_the_batch_example_emits_one_asset_event_per_video_through_the_alias(batch_run):
    dr, out = batch_run["dr"], batch_run["out"]
    events = asset_events(dr.dag_id, dr.run_id)
    assert len(events) == LIMIT
    folder = out / "batch" / ds_of(dr)
    for uri, extra, task_id, map_index, aliases in events:
        result = xcom_value_at(dr, "render_avatar", map_index)
        assert task_id == "render_avatar"
        assert uri == Path(result["outputs"][0]).resolve().as_uri()
        assert uri.startswith(folder.resolve().as_uri() + "/")
        assert extra["prediction_id"] == result["prediction_id"]
        assert extra["model"] == AVATAR
        assert aliases == [ALIAS]


def test_the_on_new_videos_example_is_scheduled_on_the_alias_and_the_batch_queues_a_run_of_it(batch_run):
    from airflow.models.asset import AssetAliasModel, AssetDagRunQueue, DagScheduleAssetAliasReference
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    dr = batch_run["dr"]
    stored_uris = {uri for uri, *_ in asset_events(dr.dag_id, dr.run_id)}
    assert len(stored_uris) == LIMIT
    with create_session() as session:
        serialized = SerializedDagModel.get_latest_serialized_dags(dag_ids=[DOWNSTREAM], session=session)
        assert len(serialized) == 1
        schedule = serialized[0].data["dag"]["timetable"]
        assert ALIAS in str(schedule)  # the stored schedule names the alias

        alias = session.query(AssetAliasModel).filter_by(name=ALIAS).one()
        references = session.query(DagScheduleAssetAliasReference).filter_by(alias_id=alias.id).all()
        assert DOWNSTREAM in {ref.dag_id for ref in references}
        assert {asset.uri for asset in alias.assets} >= stored_uris  # the alias now resolves to the videos

        queued = session.query(AssetDagRunQueue).filter_by(target_dag_id=DOWNSTREAM).all()
        assert {row.asset.uri for row in queued} == stored_uris

        # The scheduler's own question: which DAGs need an asset-triggered run now?
        _, triggered = DagModel.dags_needing_dagruns(session)
        assert DOWNSTREAM in triggered
        session.rollback()


def xcom_value_at(dag_run: Any, task_id: str, map_index: int, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, map_index=map_index, key=key)
            .one_or_none()
        )
        return None if row is None else row.value


# -- the download operator's alias, several outputs --------------------------------------------------------


def test_the_download_operator_emits_one_asset_event_per_stored_output_with_prediction_and_model(
    emulator, run_dag, tmp_path
):
    from tests.support import completed_prediction

    prediction_id = completed_prediction(emulator, FLUX, prompt="three lighthouses", num_images=3)
    dag = dag_file(
        "wavespeed_ft_alias_download",
        f"""
        with DAG(dag_id="wavespeed_ft_alias_download", **DAG_ARGS):
            WaveSpeedDownloadOperator(
                task_id="store", prediction_id="{prediction_id}", destination="{tmp_path}",
                asset_alias="wavespeed_ft_images",
            )
        """,
    )

    dr = run_dag(dag)

    assert task_states(dr) == {"store": "success"}
    stored = xcom_value(dr, "store")
    assert [Path(p).name for p in stored] == [f"{prediction_id}_{i}.png" for i in range(3)]
    events = sorted(asset_events(dr.dag_id, dr.run_id), key=lambda e: e[1]["output_index"])
    assert [uri for uri, *_ in events] == [Path(p).resolve().as_uri() for p in stored]
    for index, (_, extra, task_id, _, aliases) in enumerate(events):
        assert extra == {"prediction_id": prediction_id, "model": FLUX, "output_index": index}
        assert task_id == "store" and aliases == ["wavespeed_ft_images"]


# -- the daily example ---------------------------------------------------------------------------------------


def test_the_daily_example_stores_one_thumbnail_per_topic_in_the_dated_folder(
    emulator, airflow_db, tmp_path, monkeypatch
):
    emulator.config.queue_seconds = 0.0
    emulator.config.run_seconds = 0.0
    monkeypatch.setenv("WAVESPEED_OUTPUT_DIR", str(tmp_path))
    dag = copy_example_dag("example_wavespeed_daily.py", "example_wavespeed_daily")

    dr = dag.test()

    assert str(dr.state) == "success", task_states(dr)
    mapped = tis_of(dr, "thumbnail")
    assert len(mapped) == 4 and {str(ti.state) for ti in mapped} == {"success"}
    folder = tmp_path / "daily" / ds_of(dr)
    names = ["morning_news.png", "weather.png", "markets.png", "sports.png"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)
    assert emulator.stats.submits_by_model == {FLUX: 4}
    for ti in mapped:
        result = xcom_value_at(dr, "thumbnail", ti.map_index)
        assert Path(result["outputs"][0]) == folder / names[ti.map_index]
        assert (folder / names[ti.map_index]).read_bytes() == emulator.expected_output_bytes(result["prediction_id"])
