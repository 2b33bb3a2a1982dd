"""Data-aware scheduling: runs whenever the batch DAG stores new avatar videos.

The download/run operators emit one asset event per stored file through the
``wavespeed_avatar_videos`` alias, with the prediction id and model in the event's extra.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, AssetAlias, task

with DAG(
    dag_id="example_wavespeed_on_new_videos",
    description="Publish avatar videos as soon as they land",
    schedule=[AssetAlias("wavespeed_avatar_videos")],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wavespeed"],
) as dag:

    @task
    def publish(triggering_asset_events: Any = None) -> list[str]:
        published = []
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                print(f"New video {asset.uri} from prediction {event.extra.get('prediction_id')}")
                published.append(asset.uri)
        return published

    publish()
