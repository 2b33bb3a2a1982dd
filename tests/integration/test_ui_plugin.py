"""The WaveSpeed UI plugin's app, mounted by Airflow's own ``create_app()`` through the entry point.

Real pieces: Airflow's api-server app (plugins, auth manager, middlewares), JWTs from SimpleAuthManager's
``POST /auth/token`` login, the session's SQLite metadata DB filled by ``dag.test()`` runs of two small
DAGs whose tasks push ``wavespeed_record`` XComs (as the operators do), and real files on disk.

Per-DAG denial: SimpleAuthManager's roles are global, so ``[core] auth_manager`` is a SimpleAuthManager
that hides one DAG from one viewer (``wavespeed_ui_auth.py``); it changes nothing else.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.integration.wavespeed_ui_auth import AUDITOR_USER, DENIED_DAG, LIMITED_USER
from tests.support import LONG_KEY, load_dag, write_dag, write_sized_file

OPEN_DAG = "ws_ui_open"
AUTH_MANAGER = "tests.integration.wavespeed_ui_auth.OneDagDeniedAuthManager"
PASSWORDS = {"admin": "admin-pw-ui", LIMITED_USER: "limited-pw-ui", AUDITOR_USER: "auditor-pw-ui"}
VIDEO_SIZE = 700_001  # several streaming chunks, odd on purpose
#: Object storage no filesystem serves (offline: no network attempt): a recorded output that cannot be read.
UNREACHABLE_URI = "wavespeed-nofs://no-such-bucket/extra.webp"
TODAY = datetime.now(UTC)

DAG_SOURCE = """
from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

RECORDS = {records!r}

with DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    for name, items in RECORDS.items():

        @task(task_id=name)
        def push(index: int = -1, ti=None, _items=items):
            record = _items[max(index, 0)]
            ti.xcom_push(key="wavespeed_record", value=record)
            if record.get("error"):
                raise RuntimeError(record["error"])

        if len(items) > 1:
            push.expand(index=list(range(len(items))))
        else:
            push()
"""


def _record(role: str, **fields: Any) -> dict[str, Any]:
    return {"version": 1, "role": role, **fields}


def _open_records(files: dict[str, Path]) -> dict[str, list[dict[str, Any]]]:
    day = TODAY.isoformat(timespec="seconds")
    three_days_ago = (TODAY - timedelta(days=3)).isoformat(timespec="seconds")
    long_ago = (TODAY - timedelta(days=100)).isoformat(timespec="seconds")
    return {
        "render": [
            _record(
                "run",
                prediction_id="p-image",
                model="wavespeed-ai/flux-dev",
                status="completed",
                cost_usd=0.01,
                submitted_at=day,
                console_url="https://wavespeed.ai/center/default/prediction/p-image",
                outputs=[str(files["image"])],
            ),
            _record(
                "run",
                prediction_id="p-video",
                model="wavespeed-ai/wan-2.1",
                status="completed",
                cost_usd=0.25,
                submitted_at=three_days_ago,
                outputs=["file://" + str(files["video"])],
            ),
            _record(
                "run",
                prediction_id="p-audio",
                model="wavespeed-ai/tts",
                status="completed",
                cost_usd=0.02,
                submitted_at=day,
                outputs=[str(files["audio"]), UNREACHABLE_URI, str(files["other_ti"])],
            ),
        ],
        # The sensor of p-image: the same prediction again, without a quote: counted once.
        "sense": [_record("wait", prediction_id="p-image", status="completed", submitted_at=day)],
        "old": [_record("submit", prediction_id="p-old", model="m-old", cost_usd=9.0, submitted_at=long_ago)],
        "broken": [
            _record(
                "run",
                prediction_id="p-fail",
                model="wavespeed-ai/flux-dev",
                cost_usd=0.03,
                submitted_at=day,
                status="failed",
                error="model exploded: NSFW input",
            )
        ],
        "budget": [_record("budget", budget_total_usd=0.31, budget_max_usd=1.0, budget_items=4)],
    }


def _run_dag(dag_id: str, records: dict[str, list[dict[str, Any]]]) -> Any:
    source = DAG_SOURCE.format(dag_id=dag_id, records=records)
    dag = load_dag(write_dag(dag_id, textwrap.dedent(source)), dag_id)
    return dag.test()


class Runs:
    def __init__(self, open_run: Any, secret_run: Any, files: dict[str, Path]) -> None:
        self.open_run_id: str = open_run.run_id
        self.secret_run_id: str = secret_run.run_id
        self.files = files

    def media(
        self,
        n: int = 0,
        *,
        dag_id: str = OPEN_DAG,
        run_id: str | None = None,
        task_id: str = "render",
        map_index: int | str = 0,
    ) -> str:
        run = run_id if run_id is not None else (self.open_run_id if dag_id == OPEN_DAG else self.secret_run_id)
        return f"/wavespeed/media/{dag_id}/{quote(run, safe='')}/{task_id}/{map_index}/{n}"


@pytest.fixture(scope="module")
def runs(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    folder = tmp_path_factory.mktemp("ws-ui-media")
    files = {
        "image": write_sized_file(folder / "cat.png", 5_000, b"image"),
        "video": write_sized_file(folder / "clip.mp4", VIDEO_SIZE, b"video"),
        "audio": write_sized_file(folder / "voice.mp3", 3_000, b"audio"),
        "secret": write_sized_file(folder / "secret.png", 1_000, b"secret"),
        "other_ti": write_sized_file(folder / "elsewhere.wav", 1_200, b"wav"),
        "unlisted": write_sized_file(folder / "unlisted.png", 100, b"unlisted"),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", json.dumps({"conn_type": "wavespeed", "password": LONG_KEY}))
        open_run = _run_dag(OPEN_DAG, _open_records(files))
        secret_run = _run_dag(
            DENIED_DAG,
            {
                "render": [
                    _record(
                        "run",
                        prediction_id="p-secret",
                        model="secret-model",
                        cost_usd=0.5,
                        submitted_at=TODAY.isoformat(),
                        outputs=[str(files["secret"])],
                    )
                ]
            },
        )
    return Runs(open_run, secret_run, files)


@pytest.fixture(scope="module")
def api(runs: Runs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Airflow's api-server app (``create_app``), with the plugin mounted from its entry point."""
    from airflow.api_fastapi.app import create_app, purge_cached_app
    from fastapi.testclient import TestClient

    passwords = tmp_path_factory.mktemp("ws-ui-auth") / "passwords.json"
    passwords.write_text(json.dumps(PASSWORDS))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW__CORE__AUTH_MANAGER", AUTH_MANAGER)
        users = f"admin:admin,{LIMITED_USER}:viewer,{AUDITOR_USER}:viewer"
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", users)
        mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        mp.setenv("AIRFLOW_CONN_WAVESPEED_DEFAULT", json.dumps({"conn_type": "wavespeed", "password": LONG_KEY}))
        purge_cached_app()
        app = create_app()
        mounts = [getattr(route, "path", None) for route in app.routes]
        assert "/wavespeed" in mounts, f"the wavespeed plugin is not mounted (pip install -e .?): {mounts}"
        yield TestClient(app, base_url="http://testserver")
        purge_cached_app()


def _token(api: Any, user: str) -> str:
    reply = api.post("/auth/token", json={"username": user, "password": PASSWORDS[user]})
    assert reply.status_code in (200, 201), reply.text
    return reply.json()["access_token"]


@pytest.fixture(scope="module")
def admin(api: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api, 'admin')}"}


@pytest.fixture(scope="module")
def limited(api: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api, LIMITED_USER)}"}


@pytest.fixture(scope="module")
def auditor(api: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(api, AUDITOR_USER)}"}


def _get(api: Any, url: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    api.cookies.clear()
    return api.get(url, headers=headers or {}, params=params or None)


def _all_routes(runs: Runs) -> list[tuple[str, dict[str, Any]]]:
    run = {"dag_id": OPEN_DAG, "run_id": runs.open_run_id}
    return [
        ("/wavespeed/ui/run", run),
        ("/wavespeed/ui/spend", {}),
        ("/wavespeed/static/wavespeed.css", {}),
        ("/wavespeed/api/runs", run),
        ("/wavespeed/api/spend", {"days": 7}),
        (runs.media(0), {}),
    ]


# -- auth ------------------------------------------------------------------------------------------------


def test_every_route_answers_401_without_a_login(api: Any, runs: Runs) -> None:
    for url, params in _all_routes(runs):
        assert _get(api, url, **params).status_code == 401, url
    # An unknown path under the plugin and the sub-app's docs are no way around it either.
    assert _get(api, "/wavespeed/docs").status_code == 404
    assert _get(api, "/wavespeed/openapi.json").status_code == 404


def test_admin_gets_every_route(api: Any, runs: Runs, admin: dict[str, str]) -> None:
    for url, params in _all_routes(runs):
        reply = _get(api, url, admin, **params)
        if url.startswith(("/wavespeed/ui/", "/wavespeed/static/")):
            # The pages are another helper's files: auth is what this test checks.
            assert reply.status_code not in (401, 403), url
        else:
            assert reply.status_code == 200, (url, reply.text[:200])


def test_the_ui_cookie_logs_in_like_a_bearer_token(api: Any, runs: Runs, admin: dict[str, str]) -> None:
    """The pages load in an iframe of the Airflow UI: the browser sends the UI's ``_token`` cookie."""
    token = admin["Authorization"].removeprefix("Bearer ")
    api.cookies.clear()
    api.cookies.set("_token", token)
    reply = api.get("/wavespeed/api/runs", params={"dag_id": OPEN_DAG, "run_id": runs.open_run_id})
    assert reply.status_code == 200
    assert api.get(runs.media(0)).status_code == 200
    assert api.get("/wavespeed/api/spend").status_code == 200
    api.cookies.clear()


def test_a_user_who_may_not_read_a_dag_gets_403_for_its_runs_and_outputs(
    api: Any, runs: Runs, limited: dict[str, str]
) -> None:
    secret = {"dag_id": DENIED_DAG, "run_id": runs.secret_run_id}
    assert _get(api, "/wavespeed/api/runs", limited, **secret).status_code == 403
    assert _get(api, "/wavespeed/ui/run", limited, **secret).status_code == 403
    assert _get(api, runs.media(0, dag_id=DENIED_DAG), limited).status_code == 403
    # ... and reads the DAGs it may read.
    opened = {"dag_id": OPEN_DAG, "run_id": runs.open_run_id}
    assert _get(api, "/wavespeed/api/runs", limited, **opened).status_code == 200
    assert _get(api, runs.media(0), limited).status_code == 200


def test_spend_leaves_out_the_dags_the_user_may_not_read(
    api: Any, auditor: dict[str, str], limited: dict[str, str]
) -> None:
    everything = _get(api, "/wavespeed/api/spend", auditor, days=30).json()
    mine = _get(api, "/wavespeed/api/spend", limited, days=30).json()
    assert {d["dag_id"] for d in everything["top_dags"]} == {OPEN_DAG, DENIED_DAG}
    assert {d["dag_id"] for d in mine["top_dags"]} == {OPEN_DAG}
    assert "secret-model" not in json.dumps(mine)
    assert all(DENIED_DAG not in day["by_dag"] for day in mine["per_day"])
    assert mine["total_usd"] == pytest.approx(0.01 + 0.25 + 0.02 + 0.03)
    assert everything["total_usd"] == pytest.approx(mine["total_usd"] + 0.5)


# -- data ------------------------------------------------------------------------------------------------


def test_run_json_lists_the_wavespeed_task_instances_with_records_media_and_totals(
    api: Any, runs: Runs, admin: dict[str, str]
) -> None:
    view = _get(api, "/wavespeed/api/runs", admin, dag_id=OPEN_DAG, run_id=runs.open_run_id).json()
    by_key = {(t["task_id"], t["map_index"]): t for t in view["tasks"]}
    assert set(by_key) == {
        ("render", 0),
        ("render", 1),
        ("render", 2),
        ("sense", -1),
        ("old", -1),
        ("broken", -1),
        ("budget", -1),
    }
    image = by_key[("render", 0)]
    assert image["state"] == "success"
    assert image["record"]["prediction_id"] == "p-image"
    assert image["media"] == [{"n": 0, "url": runs.media(0), "name": "cat.png", "kind": "image"}]
    assert by_key[("render", 1)]["media"][0]["kind"] == "video"
    assert [m["kind"] for m in by_key[("render", 2)]["media"]] == ["audio", "image", "audio"]
    broken = by_key[("broken", -1)]
    assert broken["state"] == "failed"
    assert broken["record"]["error"] == "model exploded: NSFW input"
    assert view["totals"] == {
        "task_instances": 7,
        "predictions": 5,  # p-image (twice), p-video, p-audio, p-old, p-fail
        "quoted_cost_usd": pytest.approx(0.01 + 0.25 + 0.02 + 9.0 + 0.03),
        "failed": 1,
    }
    assert view["budget"] == {"total_usd": 0.31, "max_usd": 1.0, "items": 4, "task_id": "budget"}


def test_run_json_for_one_task_instance_and_for_every_index_of_a_task(
    api: Any, runs: Runs, admin: dict[str, str]
) -> None:
    common = {"dag_id": OPEN_DAG, "run_id": runs.open_run_id, "task_id": "render"}
    one = _get(api, "/wavespeed/api/runs", admin, **common, map_index=1).json()
    assert [(t["task_id"], t["map_index"]) for t in one["tasks"]] == [("render", 1)]
    # Airflow leaves {MAP_INDEX} unreplaced where the page has no index: every index of the task.
    every = _get(api, "/wavespeed/api/runs", admin, **common, map_index="{MAP_INDEX}").json()
    assert [t["map_index"] for t in every["tasks"]] == [0, 1, 2]


def test_run_id_with_its_plus_turned_into_a_space_still_finds_the_run(
    api: Any, runs: Runs, admin: dict[str, str]
) -> None:
    """Airflow 3.1 puts {RUN_ID} into the iframe URL unencoded: the '+' of '+00:00' arrives as a space."""
    assert "+" in runs.open_run_id
    mangled = runs.open_run_id.replace("+", " ")
    view = _get(api, "/wavespeed/api/runs", admin, dag_id=OPEN_DAG, run_id=mangled).json()
    assert view["run_id"] == runs.open_run_id
    assert len(view["tasks"]) == 7


def test_unknown_run_is_404(api: Any, admin: dict[str, str]) -> None:
    assert _get(api, "/wavespeed/api/runs", admin, dag_id=OPEN_DAG, run_id="nope").status_code == 404


def test_spend_per_day_and_top_lists(api: Any, admin: dict[str, str], limited: dict[str, str]) -> None:
    spend = _get(api, "/wavespeed/api/spend", limited, days=7).json()
    assert spend["days"] == 7 and len(spend["per_day"]) == 7
    assert spend["until"] == TODAY.date().isoformat()
    by_day = {d["day"]: d for d in spend["per_day"]}
    today = by_day[TODAY.date().isoformat()]
    assert today["total_usd"] == pytest.approx(0.06)
    assert today["by_model"]["wavespeed-ai/flux-dev"] == pytest.approx(0.04)
    assert by_day[(TODAY - timedelta(days=3)).date().isoformat()]["by_dag"] == {OPEN_DAG: 0.25}
    assert spend["predictions"] == 4  # p-old is 100 days old; p-image counted once
    assert spend["top_models"][0] == {"model": "wavespeed-ai/wan-2.1", "usd": 0.25, "predictions": 1}
    ninety = _get(api, "/wavespeed/api/spend", limited, days=90).json()
    assert len(ninety["per_day"]) == 90 and ninety["predictions"] == 4
    assert _get(api, "/wavespeed/api/spend", admin, days=0).status_code == 422


# -- media -----------------------------------------------------------------------------------------------


def test_media_full_file_with_its_content_type(api: Any, runs: Runs, admin: dict[str, str]) -> None:
    reply = _get(api, runs.media(0, map_index=1), admin)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "video/mp4"
    assert reply.headers["accept-ranges"] == "bytes"
    assert int(reply.headers["content-length"]) == VIDEO_SIZE
    assert reply.content == runs.files["video"].read_bytes()
    assert _get(api, runs.media(0), admin).headers["content-type"] == "image/png"
    assert _get(api, runs.media(0, map_index=2), admin).headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=300000-300999", 300_000, 300_999),
        ("bytes=-500", VIDEO_SIZE - 500, VIDEO_SIZE - 1),
        ("bytes=699000-", 699_000, VIDEO_SIZE - 1),
        ("bytes=700000-9999999", 700_000, VIDEO_SIZE - 1),
        ("bytes=-99999999", 0, VIDEO_SIZE - 1),
    ],
)
def test_media_range_is_byte_exact(
    api: Any, runs: Runs, admin: dict[str, str], header: str, first: int, last: int
) -> None:
    reply = _get(api, runs.media(0, map_index=1), {**admin, "Range": header})
    assert reply.status_code == 206
    assert reply.headers["content-range"] == f"bytes {first}-{last}/{VIDEO_SIZE}"
    assert reply.headers["accept-ranges"] == "bytes"
    assert int(reply.headers["content-length"]) == last - first + 1
    # httpx asks for gzip like a browser does: the api-server's GZipMiddleware must leave the bytes alone.
    assert reply.headers.get("content-encoding", "identity") == "identity"
    assert reply.content == runs.files["video"].read_bytes()[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=701001-", f"bytes={VIDEO_SIZE}-{VIDEO_SIZE + 5}", "bytes=-0"])
def test_media_unsatisfiable_range_is_416(api: Any, runs: Runs, admin: dict[str, str], header: str) -> None:
    reply = _get(api, runs.media(0, map_index=1), {**admin, "Range": header})
    assert reply.status_code == 416
    assert reply.headers["content-range"] == f"bytes */{VIDEO_SIZE}"


def test_media_from_object_storage_with_the_recorded_connection(
    api: Any, runs: Runs, admin: dict[str, str], s3: Any
) -> None:
    """An s3:// output (offline moto S3, ``s3test`` extra; skipped without it) read with its conn id."""
    data = b"RIFF" + bytes(range(256)) * 40
    s3.put("ui/clip.webp", data)
    record = _record(
        "store", prediction_id="p-s3", outputs=[f"s3://{s3.bucket}/ui/clip.webp"], destination_conn_id=s3.conn_id
    )
    run = _run_dag("ws_ui_s3", {"store": [record]})
    url = f"/wavespeed/media/ws_ui_s3/{quote(run.run_id, safe='')}/store/-1/0"
    reply = _get(api, url, {**admin, "Range": "bytes=4-1027"})
    assert reply.status_code == 206, reply.text
    assert reply.headers["content-type"] == "image/webp"
    assert reply.headers["content-range"] == f"bytes 4-1027/{len(data)}"
    assert reply.content == data[4:1028]
    assert _get(api, url, admin).content == data


def test_an_unreachable_recorded_object_is_404(api: Any, runs: Runs, admin: dict[str, str]) -> None:
    reply = _get(api, runs.media(1, map_index=2), admin)
    assert reply.status_code == 404
    assert "no-such-bucket" not in reply.text


def test_anything_not_recorded_is_404_without_details(api: Any, runs: Runs, admin: dict[str, str]) -> None:
    run = quote(runs.open_run_id, safe="")
    base = f"/wavespeed/media/{OPEN_DAG}/{run}"
    attempts = [
        f"{base}/render/0/1",  # n out of range
        f"{base}/render/0/99",
        f"{base}/render/0/-1",
        f"{base}/render/0/x",
        f"{base}/render/0/0/../../x",
        f"{base}/render/0/0%2f..%2f..%2fx",
        f"{base}/render/0/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        f"{base}/render/0/..",
        f"{base}/render/0/%2Fetc%2Fpasswd",
        f"{base}/render/99/0",  # no such task instance
        f"{base}/render/-2/0",
        f"{base}/sense/-1/0",  # a task instance whose record lists no output
        f"{base}/..%2f..%2fetc/-1/0",
        f"/wavespeed/media/{OPEN_DAG}/nope/render/0/0",  # no such run
        f"/wavespeed/media/{OPEN_DAG}/%2Fetc%2Fpasswd/render/0/0",
        f"/wavespeed/media/{DENIED_DAG}/{run}/render/0/0",  # another DAG's run id
        "/wavespeed/media/%2Fetc/passwd/x/0/0",
        "/wavespeed/media/..%2F..%2F..%2Fetc%2Fpasswd",
        "/wavespeed/media/" + quote(str(runs.files["unlisted"]), safe="") + "/x/0/0",  # a path not in the DB
    ]
    secrets = [runs.files["secret"].read_bytes(), runs.files["unlisted"].read_bytes(), b"root:"]
    for url in attempts:
        reply = _get(api, url, admin)
        assert reply.status_code == 404, (url, reply.status_code, reply.text[:200])
        assert not any(secret in reply.content for secret in secrets), url
        assert str(runs.files["image"].parent) not in reply.text, url


def test_an_output_recorded_by_another_task_instance_is_not_served_under_this_one(
    api: Any, runs: Runs, admin: dict[str, str]
) -> None:
    # render[2] lists elsewhere.wav as its n=2; render[0] lists one output only.
    assert _get(api, runs.media(2, map_index=2), admin).status_code == 200
    assert _get(api, runs.media(2, map_index=0), admin).status_code == 404
    assert _get(api, runs.media(0, task_id="sense", map_index=-1), admin).status_code == 404


def test_a_recorded_file_that_is_gone_or_not_a_file_is_404(tmp_path: Path) -> None:
    from airflow_provider_wavespeed.ui.media import NotServable, open_output

    for output in [str(tmp_path / "gone.mp4"), str(tmp_path), "relative/x.png", "file://host/x.png", "/etc"]:
        with pytest.raises(NotServable):
            open_output(output, None)


def test_static_files_stay_inside_the_static_folder(api: Any, admin: dict[str, str]) -> None:
    for url in [
        "/wavespeed/static/../app.py",
        "/wavespeed/static/%2e%2e/app.py",
        "/wavespeed/static/%2e%2e%2fapp.py",
        "/wavespeed/static//etc/passwd",
        "/wavespeed/static/%2Fetc%2Fpasswd",
        "/wavespeed/static/nope.js",
    ]:
        reply = _get(api, url, admin)
        assert reply.status_code == 404, (url, reply.status_code)
        assert b"create_app" not in reply.content and b"root:" not in reply.content


def test_the_api_key_is_in_no_response(api: Any, runs: Runs, admin: dict[str, str]) -> None:
    bodies = [_get(api, url, admin, **params).content for url, params in _all_routes(runs)]
    bodies.append(_get(api, "/wavespeed/api/spend", admin, days=90).content)
    bodies.append(_get(api, runs.media(99), admin).content)
    assert not any(LONG_KEY.encode() in body for body in bodies)
