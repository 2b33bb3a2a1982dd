"""The ``wavespeed`` Airflow plugin (entry point ``airflow.plugins``): iframe views served by its FastAPI app.

Every Airflow process loads plugins (workers too), so importing this module stays cheap: the FastAPI app
(``ui/app.py``) is imported the first time ``fastapi_apps`` is read, which only the api-server (and
``airflow plugins``) does.

Each external view needs its own ``url_route``: Airflow drops a view whose route another one already took.
The task-instance tab gets ``{MAP_INDEX}`` unreplaced (literally) where the page has no map index; the app
then shows every index of the task.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/wavespeed"
RUN_VIEW = URL_PREFIX + "/ui/run?dag_id={DAG_ID}&run_id={RUN_ID}"


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    from airflow_provider_wavespeed.ui.app import app

    return [{"app": app, "url_prefix": URL_PREFIX, "name": "WaveSpeed"}]


class _LazyFastAPIApps:
    """``fastapi_apps``, built on first read."""

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        return _fastapi_apps()


class WaveSpeedPlugin(AirflowPlugin):
    """The WaveSpeed run tab (DAG run and task instance pages), the spend page (nav) and the media endpoint."""

    name = "wavespeed"
    fastapi_apps = _LazyFastAPIApps()
    external_views = [
        {
            "name": "WaveSpeed",
            "href": RUN_VIEW,
            "destination": "dag_run",
            "url_route": "wavespeed",
        },
        {
            "name": "WaveSpeed",
            "href": RUN_VIEW + "&task_id={TASK_ID}&map_index={MAP_INDEX}",
            "destination": "task_instance",
            "url_route": "wavespeed-task",
        },
        {
            "name": "WaveSpeed spend",
            "href": URL_PREFIX + "/ui/spend",
            "destination": "nav",
            "url_route": "wavespeed-spend",
            "category": "browse",
        },
    ]
