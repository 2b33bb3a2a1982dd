"""The package's internal import graph, read from the source with ``ast`` (nothing is imported).

    python scripts/import_graph.py [PACKAGE_DIR] [--edges]

Every import of one package module by another is an edge, marked by where the import statement is:

- ``module``: runs when the importing module is imported (module or class body);
- ``function``: inside a function or method, runs when it is called (a lazy import);
- ``type-checking``: under ``if TYPE_CHECKING:``, never runs, but is still a dependency of the code.

It reports, and exits 1 when it finds any:

1. import cycles among package modules, all three kinds of edge counted (a cycle through a lazy or a
   type-checking import still ties the modules together; the kinds are printed so it is clear whether
   it would also fail at import time);
2. a package module importing a constant (an UPPER_CASE name) from an operator or sensor module, by
   ``from ... import NAME`` or as ``module.NAME``: a value two of them share belongs in a neutral
   module both import. An operator or sensor module is one under ``operators/`` or ``sensors/`` that
   defines a public ``...Operator`` or ``...Sensor`` class (a helper module beside them, e.g. a base
   class or shared constants, is neutral). A pure re-export, a name the importer lists in its
   ``__all__`` and does not use itself, keeps the public API in one place: it is listed, not counted.

An ``import a.b.c`` or ``from a.b import c`` edge goes to the module it names (``a.b.c``), not to the
parent packages Python also initialises on the way; dynamic imports (``importlib.import_module``)
are not followed. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MODULE = "module"
FUNCTION = "function"
TYPE_CHECKING = "type-checking"
KINDS = (MODULE, FUNCTION, TYPE_CHECKING)
#: Subpackages whose modules hold Airflow operators and sensors.
OPERATOR_SENSOR_PACKAGES = ("operators", "sensors")
CONSTANT_NAME = re.compile(r"_?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
DEFAULT_PACKAGE = Path(__file__).resolve().parent.parent / "airflow_provider_wavespeed"


@dataclass(frozen=True, order=True)
class Edge:
    importer: str
    imported: str
    kind: str
    line: int


@dataclass(frozen=True, order=True)
class ConstantImport:
    importer: str
    source: str
    name: str
    line: int


@dataclass
class ImportGraph:
    package: str
    #: Module name -> its file, relative to the package's parent directory.
    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)
    constant_imports: list[ConstantImport] = field(default_factory=list)
    #: Constants imported only to be re-exported (in the importer's ``__all__``): shown, not a finding.
    reexports: list[ConstantImport] = field(default_factory=list)
    #: Modules under ``operators/`` or ``sensors/`` that define a public ``...Operator``/``...Sensor`` class.
    operator_modules: list[str] = field(default_factory=list)

    def successors(self, module: str) -> set[str]:
        return {edge.imported for edge in self.edges if edge.importer == module}

    def cycles(self) -> list[list[str]]:
        """Groups of modules that import each other (strongly connected components with a cycle), sorted."""
        found = []
        for component in strongly_connected(sorted(self.modules), self.successors):
            if len(component) > 1 or component[0] in self.successors(component[0]):
                found.append(sorted(component))
        return sorted(found)

    def edges_within(self, modules: Iterable[str]) -> list[Edge]:
        group = set(modules)
        return sorted(edge for edge in self.edges if edge.importer in group and edge.imported in group)

    @property
    def ok(self) -> bool:
        return not self.cycles() and not self.constant_imports


def strongly_connected(nodes: list[str], successors: Callable[[str], set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit), in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(successors(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(successors(child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/sub/mod.py`` -> ``pkg.sub.mod``; a package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_type_checking_test(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _ImportVisitor(ast.NodeVisitor):
    """Every import statement of one module (with where it sits), and what the constant rule needs."""

    def __init__(self) -> None:
        self.in_function = 0
        self.in_type_checking = 0
        #: (module as written, relative level, names or None for ``import x``, kind, line, names bound or None)
        self.found: list[tuple[str, int, list[str] | None, str, int, list[str] | None]] = []
        #: Attribute reads ``alias.NAME``: alias -> [(NAME, line)].
        self.attributes: dict[str, list[tuple[str, int]]] = {}
        #: The names in a module-level ``__all__`` (list or tuple of strings, ``=`` or ``+=``).
        self.exported: set[str] = set()
        #: Every name read anywhere in the module (``ast.Name`` in a load context).
        self.names_read: set[str] = set()
        #: Classes defined at the top level of the module.
        self.classes: set[str] = set()
        self._depth = 0

    @property
    def kind(self) -> str:
        if self.in_type_checking:
            return TYPE_CHECKING
        return FUNCTION if self.in_function else MODULE

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node)

    def _function(self, node: ast.AST) -> None:
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking_test(node.test):
            self.in_type_checking += 1
            for child in node.body:
                self.visit(child)
            self.in_type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            # ``import a.b.c`` binds ``a``; ``import a.b.c as m`` binds ``m`` to ``a.b.c``.
            bound = [alias.asname] if alias.asname else None
            self.found.append((alias.name, 0, None, self.kind, node.lineno, bound))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = [alias.name for alias in node.names]
        bound = [alias.asname or alias.name for alias in node.names]
        self.found.append((node.module or "", node.level, names, self.kind, node.lineno, bound))

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            self._export(node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and node.target.id == "__all__":
            self._export(node.value)
        self.generic_visit(node)

    def _export(self, value: ast.expr) -> None:
        if not self.in_function and isinstance(value, ast.List | ast.Tuple):
            self.exported.update(
                e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if not self.in_function and not self._depth:
            self.classes.add(node.name)
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.names_read.add(node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            self.attributes.setdefault(node.value.id, []).append((node.attr, node.lineno))
        self.generic_visit(node)


def resolve_relative(importer: str, is_package: bool, module: str, level: int) -> str:
    if level == 0:
        return module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def is_operator_or_sensor_module(module: str, package: str, classes: Iterable[str]) -> bool:
    parts = module.split(".")
    in_place = len(parts) >= 3 and parts[0] == package and parts[1] in OPERATOR_SENSOR_PACKAGES
    public = [name for name in classes if not name.startswith("_")]
    return in_place and any(name.endswith(("Operator", "Sensor")) for name in public)


def build(package_dir: Path) -> ImportGraph:
    package_dir = package_dir.resolve()
    root = package_dir.parent
    modules = {module_name(path, root): path.relative_to(root) for path in sorted(package_dir.rglob("*.py"))}
    graph = ImportGraph(package=package_dir.name, modules=modules)
    visitors = {}
    for name, relative_path in modules.items():
        path = root / relative_path
        visitors[name] = visitor = _ImportVisitor()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    graph.operator_modules = [
        m for m, v in visitors.items() if is_operator_or_sensor_module(m, graph.package, v.classes)
    ]
    operator_modules = set(graph.operator_modules)
    for importer, visitor in visitors.items():
        is_package = modules[importer].name == "__init__.py"
        aliases: dict[str, tuple[str, int]] = {}  # name bound to an operator/sensor module -> (module, line)
        for target, level, names, kind, line, bound in visitor.found:
            base = resolve_relative(importer, is_package, target, level)
            if names is None:
                # ``import a.b.c``: the deepest package module named.
                parts = base.split(".")
                prefixes = (".".join(parts[:n]) for n in range(len(parts), 0, -1))
                hit = next((prefix for prefix in prefixes if prefix in modules), None)
                if hit is not None and hit != importer:
                    graph.edges.append(Edge(importer, hit, kind, line))
                if hit is not None and bound and hit == base and hit in operator_modules:
                    aliases[bound[0]] = (hit, line)
                continue
            for name, alias in zip(names, bound or names, strict=True):
                submodule = f"{base}.{name}"
                if submodule in modules:
                    if submodule != importer:
                        graph.edges.append(Edge(importer, submodule, kind, line))
                    if submodule in operator_modules:
                        aliases[alias] = (submodule, line)
                elif base in modules:
                    if base != importer:
                        graph.edges.append(Edge(importer, base, kind, line))
                    if base != importer and base in operator_modules and CONSTANT_NAME.fullmatch(name):
                        found = ConstantImport(importer, base, name, line)
                        reexport = alias in visitor.exported and alias not in visitor.names_read
                        (graph.reexports if reexport else graph.constant_imports).append(found)
        for alias, (source, _) in aliases.items():
            if source == importer:
                continue
            for attr, line in visitor.attributes.get(alias, []):
                if CONSTANT_NAME.fullmatch(attr):
                    graph.constant_imports.append(ConstantImport(importer, source, attr, line))
    graph.edges = sorted(set(graph.edges))
    graph.constant_imports = sorted(set(graph.constant_imports))
    graph.reexports = sorted(set(graph.reexports))
    return graph


def short(module: str, package: str) -> str:
    return module[len(package) + 1 :] if module.startswith(package + ".") else module


def report(graph: ImportGraph, *, edges: bool = False) -> str:
    pkg = graph.package
    counts = {kind: sum(1 for e in graph.edges if e.kind == kind) for kind in KINDS}
    lines = [
        f"Import graph of {pkg}: {len(graph.modules)} modules, {len(graph.edges)} internal imports "
        f"({', '.join(f'{n} {kind}' for kind, n in counts.items())})"
    ]
    if edges:
        lines.append("")
        lines.append("Imports (importer -> imported [kind, line]):")
        for e in graph.edges:
            lines.append(f"  {short(e.importer, pkg)} -> {short(e.imported, pkg)} [{e.kind}, line {e.line}]")
    operators = ", ".join(short(m, pkg) for m in graph.operator_modules) or "none"
    lines.append(f"Operator/sensor modules (a public ...Operator/...Sensor class): {operators}")
    lines.append("")
    cycles = graph.cycles()
    if cycles:
        lines.append(f"Import cycles: {len(cycles)}")
        for group in cycles:
            inner = graph.edges_within(group)
            at_import_time = all(e.kind == MODULE for e in inner)
            lines.append(
                f"  {' <-> '.join(short(m, pkg) for m in group)}"
                + (" (fails at import time)" if at_import_time else "")
            )
            for e in inner:
                path = graph.modules[e.importer]
                lines.append(f"    {short(e.importer, pkg)} -> {short(e.imported, pkg)}  [{e.kind}, {path}:{e.line}]")
    else:
        lines.append("Import cycles: none")
    if graph.constant_imports:
        lines.append(f"Constants imported from operator/sensor modules: {len(graph.constant_imports)}")
        for found in graph.constant_imports:
            lines.append(
                f"  {short(found.importer, pkg)} imports {found.name} from {short(found.source, pkg)}"
                f"  [{graph.modules[found.importer]}:{found.line}]"
            )
        lines.append("  (move a shared value to a neutral module both import)")
    else:
        lines.append("Constants imported from operator/sensor modules: none")
    if graph.reexports:
        lines.append(f"Re-exported only (in the importer's __all__, not used there; allowed): {len(graph.reexports)}")
        for found in graph.reexports:
            lines.append(f"  {short(found.importer, pkg)} re-exports {found.name} from {short(found.source, pkg)}")
    lines.append("")
    lines.append("OK" if graph.ok else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", nargs="?", type=Path, default=DEFAULT_PACKAGE, help="the package's directory")
    parser.add_argument("--edges", action="store_true", help="also list every internal import")
    args = parser.parse_args(argv)
    if not (args.package_dir / "__init__.py").is_file():
        parser.error(f"{args.package_dir} is not a package (no __init__.py)")
    graph = build(args.package_dir)
    print(report(graph, edges=args.edges))
    return 0 if graph.ok else 1


if __name__ == "__main__":
    sys.exit(main())
