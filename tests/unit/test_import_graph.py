"""The package's import graph (``scripts/import_graph.py``): no import cycles, no constants borrowed from an
operator or sensor module; and the script finds both when they are there (small packages in tmp_path)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "import_graph.py"
PACKAGE_DIR = ROOT / "airflow_provider_wavespeed"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


import_graph = _load_script()


@pytest.fixture(scope="module")
def graph():
    return import_graph.build(PACKAGE_DIR)


def _constant_imports(graph) -> set[tuple[str, str, str]]:
    return {(found.importer, found.source, found.name) for found in graph.constant_imports}


# -- the package --------------------------------------------------------------------------------------------


def test_the_package_has_no_import_cycles(graph):
    assert "airflow_provider_wavespeed.emulator.context" in graph.modules  # it read the real package
    assert graph.cycles() == [], import_graph.report(graph)


def test_no_module_imports_a_constant_from_an_operator_or_sensor_module(graph):
    assert graph.constant_imports == [], import_graph.report(graph)


def test_the_script_prints_the_summary_and_exits_non_zero_only_on_a_finding(graph):
    done = subprocess.run([sys.executable, str(SCRIPT), str(PACKAGE_DIR)], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith(f"Import graph of airflow_provider_wavespeed: {len(graph.modules)} modules")
    assert "Import cycles: none" in done.stdout
    assert done.returncode == (0 if graph.ok else 1), done.stdout + done.stderr


# -- the script, on packages made for it ----------------------------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "pkg"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.parents:
            if parent == package:
                break
            (parent / "__init__.py").touch()
        path.write_text(textwrap.dedent(source))
    return package


def test_a_cycle_is_found_whichever_kind_of_import_closes_it(tmp_path):
    package = _package(
        tmp_path,
        {
            "a.py": "from pkg.b import thing\n",
            "b.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from pkg.a import other
                def lazy():
                    from . import c
                """,
            "c.py": "import pkg.d as d\n",
            "d.py": "def f():\n    import pkg.c\n",
            "e.py": "from pkg import a\n",
        },
    )

    graph = import_graph.build(package)

    assert graph.cycles() == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
    kinds = {(e.importer, e.imported): e.kind for e in graph.edges}
    assert kinds == {
        ("pkg.a", "pkg.b"): "module",
        ("pkg.b", "pkg.a"): "type-checking",
        ("pkg.b", "pkg.c"): "function",
        ("pkg.c", "pkg.d"): "module",
        ("pkg.d", "pkg.c"): "function",
        ("pkg.e", "pkg.a"): "module",
    }
    summary = import_graph.report(graph)
    assert "a <-> b" in summary and "b -> a  [type-checking, pkg/b.py:3]" in summary
    assert import_graph.main([str(package)]) == 1


def test_constants_from_operator_and_sensor_modules_are_found_but_pure_re_exports_and_helpers_are_not(tmp_path):
    package = _package(
        tmp_path,
        {
            "sensors/wavespeed.py": "GRACE = 5\nclass WaitSensor: ...\n",
            "operators/wavespeed.py": """\
                from pkg.sensors.wavespeed import GRACE, WaitSensor
                from pkg.operators.budget import BUDGET_KEY, TOTAL_KEY
                from pkg.operators.base import LINK_KEY
                from pkg.sensors import wavespeed as sensor_module
                __all__ = ["BUDGET_KEY", "TOTAL_KEY", "LINK_KEY"]
                LIMIT = sensor_module.MAX_WAIT
                class SubmitOperator:
                    key = TOTAL_KEY
                """,
            "operators/budget.py": "BUDGET_KEY = 'k'\nTOTAL_KEY = 't'\nclass BudgetOperator: ...\n",
            "operators/base.py": "LINK_KEY = 'l'\nclass SubmitsOnce: ...\nclass _HelperOperator: ...\n",
            "triggers/wavespeed.py": "from pkg.operators.base import LINK_KEY\nfrom ..sensors.wavespeed import GRACE\n",
        },
    )

    graph = import_graph.build(package)

    assert graph.operator_modules == ["pkg.operators.budget", "pkg.operators.wavespeed", "pkg.sensors.wavespeed"]
    assert _constant_imports(graph) == {
        ("pkg.operators.wavespeed", "pkg.sensors.wavespeed", "GRACE"),
        ("pkg.operators.wavespeed", "pkg.sensors.wavespeed", "MAX_WAIT"),
        ("pkg.operators.wavespeed", "pkg.operators.budget", "TOTAL_KEY"),  # in __all__, but also used there
        ("pkg.triggers.wavespeed", "pkg.sensors.wavespeed", "GRACE"),
    }
    assert [(r.importer, r.name) for r in graph.reexports] == [("pkg.operators.wavespeed", "BUDGET_KEY")]
    assert graph.cycles() == []
    assert import_graph.main([str(package)]) == 1


def test_a_clean_package_passes(tmp_path, capsys):
    package = _package(tmp_path, {"a.py": "from pkg.b import VALUE\n", "b.py": "VALUE = 1\n"})

    assert import_graph.main([str(package)]) == 0
    out = capsys.readouterr().out
    assert "3 modules, 1 internal imports (1 module, 0 function, 0 type-checking)" in out
    assert out.rstrip().endswith("OK")
