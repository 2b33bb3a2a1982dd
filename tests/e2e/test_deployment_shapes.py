"""The provider in the Airflow homes users actually have, not in a harness-made one.

Every ``airflow.cfg`` here is written by Airflow itself, the way a user gets one: ``airflow db migrate``
(or ``airflow standalone``, or any component's first start) on an empty home, or ``airflow config list``
as the official docker-compose's ``airflow-init`` runs it. Such a file spells out every option at its
default, ``[operators] default_deferrable = false`` included, which once made every WaveSpeed wait of a
standard deployment hold a worker slot.

Each configuration option the provider reads has a row below, under a generated config: what it decides
when left alone, and that only the provider's own ``[wavespeed]`` options change it.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from airflow import __version__ as airflow_version

from airflow_provider_wavespeed.emulator import EmulatorConfig, WaveSpeedEmulator
from tests.e2e.airflow_cluster import AirflowCluster

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VERSION = tuple(int(part) for part in airflow_version.split(".")[:2])

# What a DAG author's tasks decide, read in a fresh interpreter of the deployment (as a worker or the
# dag-processor parses the DAG file): no CLI entry point runs, so nothing here writes an airflow.cfg.
PROBE = """
import json
from airflow_provider_wavespeed.deferral import min_deferral_seconds
from airflow_provider_wavespeed.operators.wavespeed import WaveSpeedRunOperator, WaveSpeedSubmitOperator
from airflow_provider_wavespeed.sensors.wavespeed import WaveSpeedPredictionSensor

inputs = {"prompt": "a lighthouse"}
print(json.dumps({
    "sensor": WaveSpeedPredictionSensor(task_id="wait", prediction_id="p").deferrable,
    "run": WaveSpeedRunOperator(task_id="run", model="m", inputs=inputs, destination="/tmp/x").deferrable,
    "submit": WaveSpeedSubmitOperator(task_id="submit", model="m", inputs=inputs).deferrable,
    "min_deferral_seconds": min_deferral_seconds(),
}))
"""

DEFERS = {"sensor": True, "run": True, "submit": True, "min_deferral_seconds": 10.0}
WAITS_IN_WORKER = {"sensor": False, "run": False, "submit": False, "min_deferral_seconds": 10.0}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any Airflow setting, pointed at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"AIRFLOW_HOME": str(home), **extra})
    return env


def airflow(env: Mapping[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=dict(env), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def decisions(env: Mapping[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], env=dict(env), capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_config(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


def set_option(path: Path, section: str, option: str, value: str) -> None:
    """Edit one option of a generated airflow.cfg in place, as a user does with an editor."""
    lines = path.read_text().splitlines()
    current = None
    for i, line in enumerate(lines):
        if line.startswith("["):
            current = line.strip()[1:-1]
        elif current == section and line.split("=", 1)[0].strip() == option:
            lines[i] = f"{option} = {value}"
            path.write_text("\n".join(lines) + "\n")
            return
    raise AssertionError(f"[{section}] {option} is not in the generated {path}")


@pytest.fixture(scope="module")
def generated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty AIRFLOW_HOME after a user's first command, ``airflow db migrate``."""
    home = tmp_path_factory.mktemp("generated") / "airflow"
    home.mkdir()
    airflow(clean_env(home), "db", "migrate")
    return home


@pytest.fixture
def home_copy(generated_home: Path, tmp_path: Path) -> Path:
    """This test's own copy of the generated home, free to edit."""
    home = tmp_path / "airflow"
    shutil.copytree(generated_home, home)
    return home


def test_a_generated_airflow_cfg_spells_out_operators_default_deferrable_false_and_our_section(generated_home):
    config = read_config(generated_home / "airflow.cfg")
    assert config.get("operators", "default_deferrable") == "false"  # the trap: present, and false
    assert config.get("wavespeed", "default_deferrable") == "True"
    assert config.get("wavespeed", "min_deferral_seconds") == "10"


def test_waits_defer_by_default_in_a_home_airflow_db_migrate_generated(generated_home):
    assert decisions(clean_env(generated_home)) == DEFERS


@pytest.mark.parametrize(
    ("edits", "env", "expected"),
    [
        pytest.param({("operators", "default_deferrable"): "true"}, {}, DEFERS, id="operators-true-in-cfg"),
        pytest.param(
            {}, {"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "False"}, DEFERS, id="operators-false-in-env-not-read"
        ),
        pytest.param({("wavespeed", "default_deferrable"): "False"}, {}, WAITS_IN_WORKER, id="wavespeed-false-in-cfg"),
        pytest.param(
            {}, {"AIRFLOW__WAVESPEED__DEFAULT_DEFERRABLE": "false"}, WAITS_IN_WORKER, id="wavespeed-false-in-env"
        ),
        pytest.param(
            {("wavespeed", "min_deferral_seconds"): "3"}, {}, {**DEFERS, "min_deferral_seconds": 3.0}, id="min-in-cfg"
        ),
        pytest.param(
            {},
            {"AIRFLOW__WAVESPEED__MIN_DEFERRAL_SECONDS": "0"},
            {**DEFERS, "min_deferral_seconds": 0.0},
            id="min-in-env",
        ),
    ],
)
def test_only_the_wavespeed_section_changes_what_a_generated_home_decides(home_copy, edits, env, expected):
    for (section, option), value in edits.items():
        set_option(home_copy / "airflow.cfg", section, option, value)
    assert decisions(clean_env(home_copy, **env)) == expected


def test_waits_defer_with_environment_variables_only_and_no_airflow_cfg(tmp_path):
    home = tmp_path / "airflow"
    home.mkdir()
    env = clean_env(
        home,
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    assert decisions(env) == DEFERS
    assert not (home / "airflow.cfg").exists()


def test_waits_defer_in_the_official_container_images_layout(tmp_path):
    """The official image and docker-compose: AIRFLOW_HOME /opt/airflow, AIRFLOW_CONFIG under config/,
    written by the compose's ``airflow-init`` step (``airflow config list``), settings in the environment."""
    home = tmp_path / "opt" / "airflow"
    (home / "config").mkdir(parents=True)
    env = clean_env(
        home,
        AIRFLOW_CONFIG=str(home / "config" / "airflow.cfg"),
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__FERNET_KEY="",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="true",
        AIRFLOW__CORE__LOAD_EXAMPLES="false",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="true",
    )
    airflow(env, "config", "list")
    config = read_config(home / "config" / "airflow.cfg")
    assert config.get("operators", "default_deferrable") == "false"
    assert decisions(env) == DEFERS


def test_airflow_config_list_shows_the_wavespeed_options_with_their_descriptions(generated_home):
    # Airflow 3.2 hides values unless asked (--show-values); 3.1 always shows them and lacks the flag.
    show_values = ["--show-values"] if AIRFLOW_VERSION >= (3, 2) else []
    shown = airflow(
        clean_env(generated_home), "config", "list", "--section", "wavespeed", "--include-descriptions", *show_values
    )
    assert "default_deferrable = True" in shown
    assert "Airflow's own [operators] default_deferrable is not read" in shown
    assert "min_deferral_seconds = 10" in shown
    value = airflow(clean_env(generated_home), "config", "get-value", "wavespeed", "default_deferrable")
    assert value.strip() == "True"


# -- a real Airflow on a home with nothing but `airflow db migrate` and the connection ----------------------


@pytest.fixture
def emulator() -> Iterator[WaveSpeedEmulator]:
    with WaveSpeedEmulator(EmulatorConfig(queue_seconds=0.5, run_seconds=3.0, output_size=64 * 1024)) as running:
        yield running


def test_the_example_dag_defers_to_the_triggerer_on_a_home_with_only_db_migrate_and_the_connection(
    airflow_cluster_factory, emulator, tmp_path
):
    output_dir = tmp_path / "videos"
    example = (ROOT / "example_dags" / "example_wavespeed_avatar.py").read_text()
    cluster: AirflowCluster = airflow_cluster_factory(
        {"example_wavespeed_avatar.py": example},
        env={"AIRFLOW_CONN_WAVESPEED_DEFAULT": emulator.connection_json(), "WAVESPEED_OUTPUT_DIR": str(output_dir)},
        minimal_env=True,
    )
    assert read_config(cluster.home / "airflow.cfg").get("operators", "default_deferrable") == "false"
    assert not any(key.startswith(("AIRFLOW__CORE", "AIRFLOW__SCHEDULER", "AIRFLOW__TRIGGERER")) for key in cluster.env)
    cluster.unpause("example_wavespeed_avatar")

    emulator.configure(hold_predictions=True)  # still running when the sensor looks, so it must wait
    try:
        run_id = cluster.trigger("example_wavespeed_avatar")
        cluster.wait_for_task_state("example_wavespeed_avatar", run_id, "wait", "deferred", timeout=240)
        trigger = cluster.wait_for_trigger_assigned("example_wavespeed_avatar", run_id, "wait", timeout=120)
        assert trigger["triggerer_id"] == cluster.triggerer_job_id()
    finally:
        emulator.configure(hold_predictions=False)

    # (deferred with its trigger on the triggerer, seen above: Airflow 3.1 writes no "deferred" log row to ask)
    assert cluster.wait_for_run("example_wavespeed_avatar", run_id, timeout=240) == "success"
    xcoms = cluster.xcom_values("example_wavespeed_avatar", run_id)
    prediction_id = xcoms["submit"]["return_value"]
    [stored] = xcoms["fetch"]["return_value"]
    assert Path(stored).read_bytes() == emulator.expected_output_bytes(prediction_id)
    assert emulator.stats.submits_accepted == 1
