"""Provider metadata: valid against Airflow's schema and discovered by the real ProvidersManager."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest
from packaging.utils import canonicalize_name

from airflow_provider_wavespeed.get_provider_info import get_provider_info
from airflow_provider_wavespeed.hooks.wavespeed import WaveSpeedHook

INFO = get_provider_info()
AIRFLOW_VERSION = tuple(int(part) for part in airflow.__version__.split(".")[:2])


def _class_paths() -> list[str]:
    paths = [ct["hook-class-name"] for ct in INFO["connection-types"]]
    paths += INFO.get("extra-links", [])
    return paths


def _our_entry_point() -> EntryPoint:
    """The one ``apache_airflow_provider`` entry point of this package (Airflow loads every one it finds)."""
    (ep,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("airflow_provider_wavespeed")
    ]
    return ep


def _module_paths() -> list[str]:
    modules = []
    for kind in ("operators", "sensors", "hooks", "triggers"):
        for entry in INFO.get(kind, []):
            modules.extend(entry["python-modules"])
    return modules


def test_provider_info_validates_against_the_installed_airflow_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(INFO, schema)


def test_package_name_matches_the_installed_distribution_that_declares_the_entry_point():
    """Airflow's provider discovery compares ``package-name`` with the canonical name of the distribution
    its ``apache_airflow_provider`` entry point comes from, and a mismatch breaks every provider."""
    ep = _our_entry_point()
    assert ep.dist is not None
    assert INFO["package-name"] == canonicalize_name(ep.dist.metadata["Name"])


def test_entry_point_points_at_get_provider_info():
    assert _our_entry_point().load()() == INFO


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


def test_airflow_3_1_and_3_2_plus_show_the_same_valid_connection_form():
    """3.1 shows ``WaveSpeedHook.get_ui_field_behaviour()``, 3.2+ the provider info's ``ui-field-behaviour``."""
    from airflow_provider_wavespeed.api.client import DEFAULT_BASE_URL

    # Airflow 3.1 calls the method only when the hook class defines it itself (``hook_class.__dict__``)
    assert "get_ui_field_behaviour" in WaveSpeedHook.__dict__
    shown_by_3_1 = WaveSpeedHook.get_ui_field_behaviour()
    # Airflow 3.2+ turns provider info's kebab-case keys into these (ProvidersManager._add_customized_fields)
    declared = next(ct for ct in INFO["connection-types"] if ct["connection-type"] == WaveSpeedHook.conn_type)
    behaviour = declared["ui-field-behaviour"]
    shown_by_3_2 = {
        "hidden_fields": behaviour.get("hidden-fields", []),
        "relabeling": behaviour.get("relabeling", {}),
        "placeholders": behaviour.get("placeholders", {}),
    }
    assert shown_by_3_1 == shown_by_3_2
    # both versions drop a form that fails this schema (with only a log line), so it must pass it
    schema_file = Path(airflow.__file__).parent / "customized_form_field_behaviours.schema.json"
    jsonschema.validate(shown_by_3_1, json.loads(schema_file.read_text()))
    if AIRFLOW_VERSION >= (3, 2):  # what the installed Airflow really shows
        from airflow.providers_manager import ProvidersManager

        assert ProvidersManager().field_behaviours["wavespeed"] == shown_by_3_1
    # and it is the right form: the key field says what to put there, the URL is the client's default
    assert shown_by_3_1["relabeling"] == {"password": "API Key", "host": "Base URL"}
    assert shown_by_3_1["placeholders"]["host"] == DEFAULT_BASE_URL
    assert set(shown_by_3_1["hidden_fields"]) == {"schema", "port", "login", "extra"}
