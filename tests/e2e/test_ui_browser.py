"""The WaveSpeed plugin in a real browser: headless Chromium signs in to a real Airflow and opens its pages.

One Airflow (api-server with the UI and the REST API, scheduler, dag-processor, triggerer) and one emulator
serve the whole module. A DAG maps six ``WaveSpeedRunOperator`` predictions: three images, a video, an audio
clip and one the emulator fails (prompt marker ``[emulator:failed]``). The run is triggered through the REST
API, as the UI's trigger button does. Then the browser signs in through SimpleAuthManager's login page,
clicks the "WaveSpeed" tab of the DAG run (and of the video's task instance) and opens the "WaveSpeed spend"
nav page, each an iframe Airflow renders for the plugin's external views.

Screenshots go to ``$WAVESPEED_TEST_ARTIFACTS`` (else a pytest temp folder; the path is printed); with
``WAVESPEED_UPDATE_SCREENSHOTS=1`` on Airflow 3.3 the run tab and the spend page are also copied to ``docs/images/``
for the README.

Chromium and chromedriver come from Debian (``scripts/install-test-services.sh``). Without them the test
fails; ``WAVESPEED_TEST_SKIP_BROWSER=1`` turns that into a skip for a machine that cannot install them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from airflow_provider_wavespeed.task_record import RECORD_XCOM_KEY
from tests.e2e import ui_browser
from tests.e2e.airflow_cluster import TERMINAL_TI_STATES, AirflowCluster
from tests.support import wait_until

pytestmark = pytest.mark.e2e

DAG_ID = "wavespeed_ui_browser"
TASK_ID = "generate"
FAILED_PROMPT = "a storm at sea [emulator:failed]"
EMULATOR_ERROR = "the emulator was asked to fail this prediction"
#: map index -> (model, inputs, what it makes): the mapped task instances, in expand order.
PREDICTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("wavespeed-ai/flux-dev", {"prompt": "a red lighthouse"}, "image"),
    ("wavespeed-ai/z-image/turbo", {"prompt": "a green harbour"}, "image"),
    ("bytedance/seedream-v4.5", {"prompt": "a blue boat"}, "image"),
    ("wavespeed-ai/wan-2.2/t2v-480p", {"prompt": "waves at dusk"}, "video"),
    ("minimax/speech-02-hd", {"text": "Good morning"}, "audio"),
    ("wavespeed-ai/flux-dev", {"prompt": FAILED_PROMPT}, "failure"),
]
VIDEO_INDEX = next(i for i, (_, _, kind) in enumerate(PREDICTIONS) if kind == "video")
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
AIRFLOW_VERSION = version("apache-airflow-core")
NEWEST_AIRFLOW = tuple(int(p) for p in AIRFLOW_VERSION.split(".")[:2]) >= (3, 3)
UPDATE_README_SCREENSHOTS = NEWEST_AIRFLOW and os.environ.get("WAVESPEED_UPDATE_SCREENSHOTS") == "1"

DAG_SOURCE = f'''
from datetime import datetime

from airflow.sdk import DAG
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator

PREDICTIONS = {[{"model": model, "inputs": inputs} for model, inputs, _ in PREDICTIONS]!r}

with DAG("{DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    WaveSpeedRunOperator.partial(
        task_id="{TASK_ID}", destination=DESTINATION, poll_interval=0.5
    ).expand_kwargs(PREDICTIONS)
'''


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    records: dict[int, dict[str, Any]]  # map index -> the wavespeed_record XCom
    quoted_total: float  # the sum of the quotes, once per prediction id


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = os.environ.get("WAVESPEED_TEST_ARTIFACTS")
    base = Path(root) if root else tmp_path_factory.mktemp("artifacts")
    folder = base / f"ui-browser-airflow-{AIRFLOW_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nUI browser test artifacts (screenshots): {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = ui_browser.missing_browser()
    if missing:
        if os.environ.get("WAVESPEED_TEST_SKIP_BROWSER") == "1":
            pytest.skip(f"WAVESPEED_TEST_SKIP_BROWSER=1 and {missing}")
        pytest.fail(f"the UI browser test needs Chromium: {missing}", pytrace=False)
    driver = ui_browser.start_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def emulator() -> Iterator[WaveSpeedEmulator]:
    with WaveSpeedEmulator(EmulatorConfig(queue_seconds=0.1, run_seconds=0.5)) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(
    airflow_cluster_module_factory: Any, emulator: WaveSpeedEmulator, tmp_path_factory: pytest.TempPathFactory
) -> AirflowCluster:
    destination = tmp_path_factory.mktemp("wavespeed-outputs")
    source = DAG_SOURCE.replace("DESTINATION", repr(str(destination)))
    cluster = airflow_cluster_module_factory(
        {"wavespeed_ui_browser.py": source},
        env={"AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json()},
        rest_api=True,
    )
    cluster.unpause(DAG_ID)
    return cluster


@pytest.fixture(scope="module")
def finished_run(cluster: AirflowCluster, emulator: WaveSpeedEmulator) -> FinishedRun:
    """Trigger the DAG through the REST API; wait until every mapped task instance is terminal."""
    status, reply = cluster.rest("POST", f"/dags/{DAG_ID}/dagRuns", {"logical_date": None})
    assert status == 200, reply
    run_id = reply["dag_run_id"]

    def all_terminal() -> bool:
        states = cluster.task_states(DAG_ID, run_id)
        return len(states) == len(PREDICTIONS) and all(s in TERMINAL_TI_STATES for s in states.values())

    assert wait_until(all_terminal, seconds=150, step=0.5), f"not finished: {cluster.task_states(DAG_ID, run_id)}"
    states = cluster.task_states(DAG_ID, run_id)
    expected_states = {
        f"{TASK_ID}[{i}]": "failed" if kind == "failure" else "success" for i, (_, _, kind) in enumerate(PREDICTIONS)
    }
    assert states == expected_states

    xcoms = cluster.xcom_values(DAG_ID, run_id)
    records = {i: xcoms.get(f"{TASK_ID}[{i}]", {}).get(RECORD_XCOM_KEY) for i in range(len(PREDICTIONS))}
    missing = [i for i, record in records.items() if not isinstance(record, dict)]
    assert not missing, f"no {RECORD_XCOM_KEY} XCom for map indexes {missing}: {xcoms}"
    quotes = {r["prediction_id"]: r.get("cost_usd") or 0.0 for r in records.values() if r.get("prediction_id")}
    assert len(quotes) == len(PREDICTIONS), records
    # The quotes the tasks recorded are what the emulator billed for each prediction.
    assert quotes == pytest.approx({pid: emulator.predictions[pid].price for pid in quotes}, abs=1e-9)
    quoted_total = sum(quotes.values())
    assert quoted_total > 0, records

    video_outputs = records[VIDEO_INDEX].get("outputs") or []
    assert len(video_outputs) == 1 and video_outputs[0].endswith(".mp4"), records[VIDEO_INDEX]
    return FinishedRun(run_id, records, quoted_total)


@pytest.fixture(scope="module")
def signed_in(browser: Any, cluster: AirflowCluster) -> Any:
    username, password = cluster.admin_credentials()
    ui_browser.log_in(browser, cluster.api_url, username, password, timeout=120)
    return browser


def plugin_view(destination: str) -> dict[str, Any]:
    from airflow_provider_wavespeed.ui.plugin import WaveSpeedPlugin

    views = [v for v in WaveSpeedPlugin.external_views if v.get("destination") == destination]
    assert len(views) == 1, WaveSpeedPlugin.external_views
    return views[0]


def run_page(cluster: AirflowCluster, run_id: str) -> str:
    return f"{cluster.api_url}/dags/{quote(DAG_ID, safe='')}/runs/{quote(run_id, safe='')}"


def frame_text(driver: Any, css: str) -> list[str]:
    return [e.text for e in driver.find_elements("css selector", css)]


def dump_on_failure(driver: Any, artifacts: Path, name: str) -> None:
    """Keep what the browser saw when a test failed: a screenshot, the page source, its console."""
    driver.switch_to.default_content()
    driver.save_screenshot(str(artifacts / f"FAILED-{name}.png"))
    (artifacts / f"FAILED-{name}.html").write_text(driver.page_source)
    console = "\n".join(str(line) for line in driver.get_log("browser"))
    (artifacts / f"FAILED-{name}.console.txt").write_text(console)


@pytest.fixture
def driver(signed_in: Any, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The signed-in browser; when the test fails, what it showed is kept in the artifacts."""
    failed_before = request.session.testsfailed
    yield signed_in
    if request.session.testsfailed > failed_before:
        dump_on_failure(signed_in, artifacts, request.node.name)


def test_run_tab_shows_five_previews_one_failure_and_the_quoted_total(
    driver: Any, cluster: AirflowCluster, finished_run: FinishedRun, artifacts: Path
) -> None:
    view = plugin_view("dag_run")
    driver.get(run_page(cluster, finished_run.run_id))
    ui_browser.click_tab(driver, view["url_route"], view["name"], timeout=120)
    try:
        with ui_browser.plugin_frame(driver):
            ui_browser.wait_ready(driver)
            tasks = driver.find_elements("css selector", "[data-testid=ws-task]")
            previews = driver.find_elements("css selector", "[data-testid=ws-preview]")
            errors = frame_text(driver, "[data-testid=ws-error]")
            total = driver.find_element("css selector", "[data-testid=ws-total-cost]")

            assert len(tasks) == len(PREDICTIONS)
            assert sorted(p.tag_name for p in previews) == ["audio", "img", "img", "img", "video"]
            assert len(errors) == 1 and EMULATOR_ERROR in errors[0], errors
            assert float(total.get_attribute("data-usd")) == pytest.approx(finished_run.quoted_total, abs=1e-9)
            # The video's data arrives through the media endpoint's Range support: readyState 2 is a decoded frame.
            video = "video[data-testid=ws-preview]"
            assert ui_browser.wait_media_ready_state(driver, video, 2, timeout=60) >= 2
            video_url = driver.execute_script("return document.querySelector(arguments[0]).currentSrc", video)
        answers = ui_browser.media_responses(driver, video_url)
        assert any(a["status"] == 206 and a["content_range"] for a in answers), answers
    finally:
        driver.switch_to.default_content()
    shot = ui_browser.save_full_page(driver, artifacts / "wavespeed-run-tab.png")
    print(f"\nrun tab screenshot: {shot}")
    if UPDATE_README_SCREENSHOTS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGES / "wavespeed-run-tab.png")


def test_task_instance_tab_shows_only_that_task(
    driver: Any, cluster: AirflowCluster, finished_run: FinishedRun, artifacts: Path
) -> None:
    view = plugin_view("task_instance")
    driver.get(f"{run_page(cluster, finished_run.run_id)}/tasks/{TASK_ID}/mapped/{VIDEO_INDEX}")
    ui_browser.click_tab(driver, view["url_route"], view["name"], timeout=120)
    with ui_browser.plugin_frame(driver):
        ui_browser.wait_ready(driver)
        tasks = driver.find_elements("css selector", "[data-testid=ws-task]")
        assert [(t.get_attribute("data-task-id"), t.get_attribute("data-map-index")) for t in tasks] == [
            (TASK_ID, str(VIDEO_INDEX))
        ]
        previews = driver.find_elements("css selector", "[data-testid=ws-preview]")
        assert [p.tag_name for p in previews] == ["video"]
    ui_browser.save_full_page(driver, artifacts / "wavespeed-task-instance-tab.png")


def test_spend_page_plots_the_same_total(
    driver: Any, cluster: AirflowCluster, finished_run: FinishedRun, artifacts: Path
) -> None:
    view = plugin_view("nav")
    driver.get(f"{cluster.api_url}/plugin/{view['url_route']}")
    with ui_browser.plugin_frame(driver, timeout=120):
        ui_browser.wait_ready(driver)
        assert driver.find_elements("css selector", "canvas[data-testid=ws-spend-chart]")
        total = driver.find_element("css selector", "[data-testid=ws-spend-total]")
        assert float(total.get_attribute("data-usd")) == pytest.approx(finished_run.quoted_total, abs=1e-9)
        assert DAG_ID in driver.find_element("css selector", "[data-testid=ws-top-dags]").text
    shot = ui_browser.save_full_page(driver, artifacts / "wavespeed-spend.png")
    print(f"\nspend page screenshot: {shot}")
    if UPDATE_README_SCREENSHOTS:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMAGES / "wavespeed-spend.png")
