"""Where the emulator lives: importable and runnable without Airflow; its pytest plugin is opt-in."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}


def test_the_emulator_and_verify_webhook_work_with_airflow_unimportable(tmp_path: Path) -> None:
    # A finder that refuses every airflow module, as in an environment without Airflow installed.
    script = textwrap.dedent(
        """
        import importlib.abc, sys

        class NoAirflow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)")
                return None

        sys.meta_path.insert(0, NoAirflow())
        import httpx
        from airflow_provider_wavespeed.emulator import WaveSpeedEmulator
        from airflow_provider_wavespeed.emulator.cli import build_parser
        from airflow_provider_wavespeed.webhooks import verify_webhook

        with WaveSpeedEmulator() as emulator:
            headers = {"Authorization": f"Bearer {emulator.api_key}"}
            url = emulator.base_url + "/api/v3/wavespeed-ai/flux-dev"
            reply = httpx.post(url, json={"prompt": "x"}, headers=headers)
            assert reply.status_code == 200, reply.text
        assert not [name for name in sys.modules if name == "airflow" or name.startswith("airflow.")]
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_pytest_plugin_is_opt_in_and_works_when_enabled(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixture.py").write_text(
        textwrap.dedent(
            """
            import httpx

            def test_it(wavespeed_emulator):
                headers = {"Authorization": f"Bearer {wavespeed_emulator.api_key}"}
                assert httpx.get(wavespeed_emulator.base_url + "/api/v3/balance", headers=headers).status_code == 200
                assert wavespeed_emulator.config.run_seconds == 0.3
                assert "acme/extra" in wavespeed_emulator.catalogue
            """
        )
    )
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.fixture
            def wavespeed_emulator_models():
                return [{"model_id": "acme/extra", "type": "text-to-image",
                         "api_schema": {"api_schemas": [{"request_schema": {"properties": {}}}]}}]
            """
        )
    )
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *extra], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)

    without = run()
    assert without.returncode != 0 and "fixture 'wavespeed_emulator' not found" in without.stdout
    enabled = run("-p", "airflow_provider_wavespeed.emulator.pytest_plugin")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
