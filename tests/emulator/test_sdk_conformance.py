"""The official Python SDK (``wavespeed`` 2.0.5, unmodified) against the emulator, for every flow it has.

Flows: submit + poll (``run``, ``run_no_throw``, ``get_result``), sync mode (completed, failed and the
sync timeout), base64 outputs (polled and sync), upload (ticket + PUT, path and file object), GET
retries through 503s, and errors (401 bad key, 400 missing input, 404 unknown model and prediction,
a failed prediction). The SDK sends no ``?webhook=``, so webhooks are checked over plain HTTP in
``test_emulator_webhooks.py``; the legacy multipart upload, which 2.0.5 no longer uses, in
``test_emulator_transfer.py``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
from airflow_provider_wavespeed.emulator.clock import ManualClock

wavespeed = pytest.importorskip(
    "wavespeed",
    reason="the official WaveSpeed SDK is not installed: pip install 'airflow-provider-wavespeed[test]' "
    "(or wavespeed==2.0.5) to run the SDK conformance tests",
)
from wavespeed import Client  # noqa: E402

WaitUntil = Callable[..., None]
# Every SDK call gets timeout=: the SDK waits for ever by default, and a test must end even if it fails.

MODEL = "wavespeed-ai/z-image/turbo"  # the SDK README's model
AVATAR = "wavespeed-ai/hunyuan-avatar"


@pytest.fixture
def client(wavespeed_emulator: WaveSpeedEmulator) -> Any:
    return Client(api_key=wavespeed_emulator.api_key, base_url=wavespeed_emulator.base_url, retry_interval=0.01)


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def _finish_when_polled(
    emulator: WaveSpeedEmulator, clock: ManualClock, wait_until: WaitUntil, future: Future[Any], polls: int = 2
) -> Any:
    """Let the SDK poll a running prediction ``polls`` times, then end the run; return its result."""
    wait_until(lambda: emulator.stats.result_polls >= polls or future.done(), what="the SDK to poll")
    assert not future.done(), future.result()
    clock.advance(3600)
    return future.result(timeout=60)


def test_run_submits_polls_until_completed_and_returns_the_output_urls(
    wavespeed_emulator: WaveSpeedEmulator,
    client: Any,
    clock: ManualClock,
    background: ThreadPoolExecutor,
    wait_until: WaitUntil,
) -> None:
    future = background.submit(client.run, MODEL, {"prompt": "A cat"}, poll_interval=0.01, timeout=120)
    result = _finish_when_polled(wavespeed_emulator, clock, wait_until, future)
    (record,) = wavespeed_emulator.predictions.values()
    assert result == {"outputs": [wavespeed_emulator.output_url(record.id)]}
    assert httpx.get(result["outputs"][0]).content == wavespeed_emulator.expected_output_bytes(record.id)
    assert record.inputs["prompt"] == "A cat" and record.model == MODEL
    assert wavespeed_emulator.stats.submits_accepted == 1


def test_run_no_throw_and_get_result_report_the_task(
    wavespeed_emulator: WaveSpeedEmulator,
    client: Any,
    clock: ManualClock,
    background: ThreadPoolExecutor,
    wait_until: WaitUntil,
) -> None:
    future = background.submit(client.run_no_throw, MODEL, {"prompt": "A dog"}, poll_interval=0.01, timeout=120)
    result = _finish_when_polled(wavespeed_emulator, clock, wait_until, future)
    assert result["status"] == "completed" and result["error"] is None
    full = client.get_result(result["task_id"])
    assert full["code"] == 200 and full["data"]["outputs"] == result["outputs"]


def test_sync_mode_returns_the_outputs_from_the_submit_alone(
    wavespeed_emulator: WaveSpeedEmulator,
    client: Any,
    clock: ManualClock,
    background: ThreadPoolExecutor,
    wait_until: WaitUntil,
) -> None:
    future = background.submit(client.run, MODEL, {"prompt": "A cat"}, enable_sync_mode=True, timeout=120)
    wait_until(lambda: wavespeed_emulator.stats.submits_accepted == 1, what="the sync submit")
    assert not future.done()
    clock.advance(1)
    result = future.result(timeout=60)
    (record,) = wavespeed_emulator.predictions.values()
    assert result == {"outputs": [wavespeed_emulator.output_url(record.id)]}
    assert record.inputs["enable_sync_mode"] is True
    assert wavespeed_emulator.stats.result_polls == 0


def test_sync_mode_timeout_is_recognised_with_the_task_id_and_the_task_goes_on(
    wavespeed_emulator: WaveSpeedEmulator,
    client: Any,
    clock: ManualClock,
    background: ThreadPoolExecutor,
    wait_until: WaitUntil,
) -> None:
    wavespeed_emulator.configure(sync_window_seconds=1.0, run_seconds=60.0)
    future = background.submit(client.run, MODEL, {"prompt": "slow"}, enable_sync_mode=True, timeout=120)
    wait_until(lambda: wavespeed_emulator.stats.submits_accepted == 1, what="the sync submit")
    clock.advance(1)
    with pytest.raises(RuntimeError) as info:
        future.result(timeout=60)
    (record,) = wavespeed_emulator.predictions.values()
    message = str(info.value)
    assert message.startswith(f"Sync mode timed out (task_id: {record.id}): Sync mode timed out after 1 seconds.")
    assert f"{wavespeed_emulator.base_url}/api/v3/predictions/{record.id}/result" in message

    outcome = client.run_no_throw(MODEL, {"prompt": "slow too"}, enable_sync_mode=True, timeout=30)
    assert outcome["status"] == "processing" and outcome["outputs"] is None  # the SDK's sync-timeout verdict
    clock.advance(60)
    assert client.get_result(record.id)["data"]["status"] == "completed"  # no second submit needed


def test_sync_mode_reports_a_failed_prediction(wavespeed_emulator: WaveSpeedEmulator, client: Any) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0)
    with pytest.raises(RuntimeError, match=r"^Prediction failed \(task_id: [0-9a-f]{32}\): Task Execution Failed"):
        client.run(MODEL, {"prompt": "x [emulator:failed]"}, enable_sync_mode=True, timeout=120)


@pytest.mark.parametrize("sync", [False, True])
def test_base64_outputs_are_naked_base64_of_the_real_bytes(
    wavespeed_emulator: WaveSpeedEmulator, client: Any, sync: bool
) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0, output_size=4096)
    result = client.run(
        MODEL, {"prompt": "A cat", "enable_base64_output": True}, enable_sync_mode=sync, poll_interval=0.01, timeout=120
    )
    (record,) = wavespeed_emulator.predictions.values()
    (value,) = result["outputs"]
    assert base64.b64decode(value, validate=True) == wavespeed_emulator.expected_output_bytes(record.id)


def test_a_failed_prediction_raises_with_the_task_id_and_the_api_error(
    wavespeed_emulator: WaveSpeedEmulator, client: Any
) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0)
    with pytest.raises(RuntimeError, match=r"^Prediction failed \(task_id: [0-9a-f]{32}\): Task Execution Failed"):
        client.run(MODEL, {"prompt": "x [emulator:failed]"}, poll_interval=0.01, timeout=120)
    with pytest.raises(RuntimeError, match=r"^Prediction timeout \(task_id: "):
        client.run(MODEL, {"prompt": "x [emulator:timeout]"}, poll_interval=0.01, timeout=120)


def test_result_polls_are_retried_through_503s(wavespeed_emulator: WaveSpeedEmulator, client: Any) -> None:
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0)
    prediction_id = client.run_no_throw(MODEL, {"prompt": "x"}, timeout=120)["task_id"]
    wavespeed_emulator.configure(fail_every_nth=2)
    for _ in range(4):
        assert client.get_result(prediction_id)["data"]["status"] == "completed"
    assert wavespeed_emulator.stats.faults_injected >= 2


def test_upload_of_a_path_and_of_a_file_object_via_ticket_and_put(
    wavespeed_emulator: WaveSpeedEmulator, client: Any, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 400
    path = tmp_path / "face.png"
    path.write_bytes(payload)
    url = client.upload(str(path))
    assert url.startswith(f"{wavespeed_emulator.base_url}/media/uploads/") and url.endswith("/face.png")
    download = httpx.get(url)
    assert download.content == payload and download.headers["content-type"] == "image/png"

    stream = io.BytesIO(b"RIFF-not-really")
    stream.name = "voice.wav"
    assert httpx.get(client.upload(stream)).content == b"RIFF-not-really"
    assert wavespeed_emulator.stats.uploads == 2
    # The uploaded URL is a usable input.
    wavespeed_emulator.configure(queue_seconds=0.0, run_seconds=0.0)
    result = client.run(AVATAR, {"image": url, "audio": url}, poll_interval=0.01, timeout=120)
    assert len(result["outputs"]) == 1


def test_a_bad_key_is_a_401_for_submit_poll_and_upload(wavespeed_emulator: WaveSpeedEmulator, tmp_path: Path) -> None:
    bad = Client(api_key="not-the-key", base_url=wavespeed_emulator.base_url, retry_interval=0.01)
    with pytest.raises(RuntimeError, match=r"^Failed to submit prediction: HTTP 401: .*Unauthorized"):
        bad.run(MODEL, {"prompt": "x"})
    with pytest.raises(RuntimeError, match="HTTP 401"):
        bad.get_result("0123")
    path = tmp_path / "a.png"
    path.write_bytes(b"x")
    with pytest.raises(RuntimeError, match=r"^Failed to create upload: HTTP 401"):
        bad.upload(str(path))
    assert wavespeed_emulator.predictions == {}


def test_a_missing_input_is_a_400_naming_it_and_nothing_is_created(
    wavespeed_emulator: WaveSpeedEmulator, client: Any
) -> None:
    with pytest.raises(
        RuntimeError, match=r"^Failed to submit prediction: HTTP 400: .*Missing required parameter: prompt"
    ):
        client.run(MODEL, {"size": "1024*1024"})
    assert wavespeed_emulator.predictions == {}


def test_an_unknown_model_and_an_unknown_prediction_are_404s(client: Any) -> None:
    with pytest.raises(RuntimeError, match=r"^Failed to submit prediction: HTTP 404: .*model not found: acme/none"):
        client.run("acme/none", {"prompt": "x"})
    with pytest.raises(RuntimeError, match=r"HTTP 404: .*prediction not found: deadbeef"):
        client.get_result("deadbeef")
