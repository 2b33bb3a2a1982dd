"""Provider metadata: valid against Airflow's schema and discovered by the real ProvidersManager."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_wavespeed.get_provider_info import get_provider_info
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook

INFO = get_provider_info()
AIRFLOW_VERSION = tuple(int(part) for part in airflow.__version__.split(".")[:2])


def _class_paths() -> list[str]:
    paths = [ct["hook-class-name"] for ct in INFO["connection-types"]]
    paths += INFO.get("extra-links", [])
    return paths


def _module_paths() -> list[str]:
    modules = []
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for entry in INFO.get(kind, []):
            modules.extend(entry["python-modules"])
    return modules


def test_provider_info_validates_against_the_installed_airflow_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(INFO, schema)


def test_package_name_matches_the_distribution_name():
    assert INFO["package-name"] == "airflow-provider-wavespeed"


def test_entry_point_points_at_get_provider_info():
    group = entry_points(group="apache_airflow_provider")
    ours = [e for e in group if e.value.startswith("airflow_provider_wavespeed")]
    (ep,) = ours
    assert ep.load()() == INFO


@pytest.mark.parametrize("path", _class_paths())
def test_every_listed_class_path_imports(path):
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("module", _module_paths())
def test_every_listed_module_imports(module):
    importlib.import_module(module)


def test_providers_manager_discovers_the_provider_hook_and_connection_form():
    from airflow.providers_manager import ProvidersManager

    try:  # Airflow >= 3.2 finds hooks through the task-sdk runtime manager (ProvidersManager.hooks is deprecated)
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as HooksManager
    except ImportError:
        from airflow.providers_manager import ProvidersManager as HooksManager

    manager = ProvidersManager()
    assert "airflow-provider-wavespeed" in manager.providers
    hook = HooksManager().hooks["wavespeed"]
    assert hook is not None and hook.hook_class_name.endswith("WaveSpeedHook")
    assert hook.connection_id_attribute_name == "wavespeed_conn_id"
    if AIRFLOW_VERSION >= (3, 2):  # 3.1 reads the form from the hook, and only with the FAB UI installed
        behaviour = manager.field_behaviours["wavespeed"]
        assert behaviour["relabeling"] == {"password": "API Key", "host": "Base URL"}
        assert set(behaviour["hidden_fields"]) == {"schema", "port", "login", "extra"}
    assert any(link.endswith("WaveSpeedPredictionLink") for link in manager.extra_links_class_names)
    assert any(t.package_name == "airflow-provider-wavespeed" for t in manager.trigger)


def test_hook_method_form_matches_provider_info_for_airflow_3_1():
    declared = INFO["connection-types"][0]["ui-field-behaviour"]
    from_hook = WaveSpeedHook.get_ui_field_behaviour()
    assert from_hook["hidden_fields"] == declared["hidden-fields"]
    assert from_hook["relabeling"] == declared["relabeling"]
    assert from_hook["placeholders"] == declared["placeholders"]
