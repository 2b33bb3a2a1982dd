"""The plugin's FastAPI app, mounted by the api-server at ``/wavespeed``.

A plugin app gets no auth from Airflow, so every route declares it with Airflow's own dependencies
(``airflow.api_fastapi.core_api.security``, the same on 3.1 and 3.3): ``get_user`` reads a Bearer token or
the UI's ``_token`` cookie (401 without either), ``requires_access_dag`` asks the auth manager about the
``dag_id`` path or query parameter (403). Spend lists only the DAGs ``get_auth_manager()`` authorizes:
``ReadableDagsFilterDep`` reads ``request.app.state``, which a mounted sub-app does not have.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep, get_user, requires_access_dag
from airflow.utils.session import create_session
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, Response, StreamingResponse

from airflow_provider_wavespeed.ui import media, records
from airflow_provider_wavespeed.ui.run_view import run_view
from airflow_provider_wavespeed.ui.spend import spend_summary

STATIC_DIR = Path(__file__).resolve().parent / "static"

logged_in = Depends(get_user)
#: Reads ``dag_id`` from the path (media) or the query string (run page and API).
can_read_task_instances = Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))

NOT_FOUND = HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")


def _map_index(value: str | None) -> int | None:
    """The ``map_index`` query parameter; None (every index) when absent or an unreplaced placeholder."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _page(name: str) -> FileResponse:
    path = STATIC_DIR / name
    if not path.is_file():
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, f"WaveSpeed UI file {name} is not installed")
    return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})


def create_app() -> FastAPI:
    app = FastAPI(
        title="WaveSpeed",
        description="WaveSpeed outputs and spend for the Airflow UI",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/ui/run", dependencies=[can_read_task_instances], include_in_schema=False)
    def run_page(dag_id: str, run_id: str) -> FileResponse:
        return _page("run.html")

    @app.get("/ui/spend", dependencies=[logged_in], include_in_schema=False)
    def spend_page() -> FileResponse:
        return _page("spend.html")

    @app.get("/static/{path:path}", dependencies=[logged_in], include_in_schema=False)
    def static_file(path: str) -> FileResponse:
        root = STATIC_DIR.resolve()
        try:
            target = (root / path).resolve()
        except (OSError, ValueError):
            raise NOT_FOUND from None
        if not target.is_relative_to(root) or not target.is_file():
            raise NOT_FOUND
        return FileResponse(target, media_type=media.content_type(target.name) if target.suffix else None)

    @app.get("/api/runs", dependencies=[can_read_task_instances])
    def runs(
        session: SessionDep,
        dag_id: str,
        run_id: str,
        task_id: str | None = None,
        map_index: str | None = None,
    ) -> dict[str, Any]:
        view = run_view(session, dag_id, run_id, task_id or None, _map_index(map_index) if task_id else None)
        if view is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "DAG run not found")
        return view

    @app.get("/api/spend")
    def spend(
        session: SessionDep,
        user: GetUserDep,
        days: Annotated[int, Query(ge=1, le=366)] = 30,
    ) -> dict[str, Any]:
        dag_ids = get_auth_manager().get_authorized_dag_ids(user=user, method="GET")
        return spend_summary(session, set(dag_ids), days, datetime.now(UTC))

    @app.get("/media/{dag_id}/{run_id}/{task_id}/{map_index}/{n}", dependencies=[can_read_task_instances])
    def media_file(request: Request, dag_id: str, run_id: str, task_id: str, map_index: str, n: str) -> Response:
        if not _is_index(map_index, allow_minus_one=True) or not _is_index(n):
            raise NOT_FOUND
        with create_session(scoped=False) as session:
            found = records.recorded_output(session, dag_id, run_id, task_id, int(map_index), int(n))
        if found is None:
            raise NOT_FOUND
        try:
            opened = media.open_output(*found)
        except media.NotServable:
            raise NOT_FOUND from None
        return _stream(opened, request.headers.get("range"))

    return app


def _is_index(text: str, *, allow_minus_one: bool = False) -> bool:
    return text.isascii() and (text.isdigit() or (allow_minus_one and text == "-1"))


def _stream(opened: media.OpenedOutput, range_header: str | None) -> Response:
    ctype = media.content_type(opened.name)
    headers = {
        "Accept-Ranges": "bytes",
        # Keeps the api-server's GZipMiddleware (Airflow 3.1 compresses every type) off these bytes: a
        # compressed 206 would drop Content-Length and no longer match its Content-Range.
        "Content-Encoding": "identity",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private",
    }
    if not media.served_inline(ctype):
        ctype = "application/octet-stream"
        headers["Content-Disposition"] = "attachment"
    try:
        selected = media.parse_range(range_header, opened.size)
    except media.Unsatisfiable:
        headers["Content-Range"] = f"bytes */{opened.size}"
        return Response(status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE, headers=headers)
    if selected is None:
        first, last, code = 0, opened.size - 1, status.HTTP_200_OK
    else:
        (first, last), code = selected, status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {first}-{last}/{opened.size}"
    headers["Content-Length"] = str(max(0, last - first + 1))
    body = opened.chunks(first, last) if last >= first else iter(())
    return StreamingResponse(body, status_code=code, media_type=ctype, headers=headers)


app = create_app()
