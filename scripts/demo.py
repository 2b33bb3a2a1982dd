"""`make demo`: run the talking-avatar DAG end to end through Airflow and say where the video landed.

On the offline emulator by default; on the real WaveSpeed API when WAVESPEED_API_KEY is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
DAG_ID = "example_wavespeed_avatar"


def airflow_env(conn_json: str, output_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(DEMO / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW_CONN_WAVESPEED_DEFAULT": conn_json,
            "WAVESPEED_OUTPUT_DIR": str(output_dir),
        }
    )
    env.pop("WAVESPEED_API_KEY", None)  # the key travels only inside the connection
    return env


def run_dag(env: dict[str, str]) -> int:
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    return subprocess.run([airflow, "dags", "test", DAG_ID], env=env).returncode


def main() -> int:
    output_dir = DEMO / "output"
    shutil.rmtree(output_dir, ignore_errors=True)
    api_key = os.environ.get("WAVESPEED_API_KEY", "").strip()
    emulator = None
    if api_key:
        print("WAVESPEED_API_KEY is set: running against the real WaveSpeed API (this is billed).")
        conn_json = json.dumps({"conn_type": "wavespeed", "password": api_key})
    else:
        from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator

        emulator = WaveSpeedEmulator(EmulatorConfig(queue_seconds=1.0, run_seconds=6.0, output_size=2 * 1024 * 1024))
        emulator.start()
        print(f"Offline WaveSpeed emulator on {emulator.base_url} (set WAVESPEED_API_KEY to use the real API)")
        conn_json = emulator.connection_json()
    started = time.monotonic()
    try:
        code = run_dag(airflow_env(conn_json, output_dir))
    finally:
        if emulator is not None:
            emulator.stop()
    videos = sorted(p for p in output_dir.rglob("*") if p.is_file())
    print()
    if code != 0 or not videos:
        print(f"Demo failed (airflow exit code {code}); see the log above.")
        return code or 1
    print(f"Demo finished in {time.monotonic() - started:.1f} s. The video landed at:")
    for video in videos:
        print(f"  {video}  ({video.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
