"""The one-way dependency rule: core ← io ← workflows ← interfaces, and no import cycle, deferred imports included."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

LAYERS = {"core": 0, "io": 1, "workflows": 2, "interfaces": 3}
PACKAGE_LAYER = {
    "app": "core",
    "app.defaults": "core",
    "app.maps": "core",
    "app.engine": "core",
    "app.metrics": "core",
    "app.io": "io",
    "app.workflows": "workflows",
    "app.cli": "interfaces",
    "app.web": "interfaces",
    "app.__main__": "interfaces",
}


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted name → file of every module under ``root`` (``package/__init__.py`` is ``package``)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported_modules(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """Every module of ``known`` that ``path`` imports, at any depth of the file (functions, ``TYPE_CHECKING`` blocks)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in known:
                    yield sub
                elif source in known:
                    yield source


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of the same package it imports."""
    names = module_names(root, package)
    known = set(names)
    return {name: set(imported_modules(path, name, known)) - {name} for name, path in names.items()}


def layer_of(module: str) -> str:
    """The layer of ``module``: the entry of its longest package prefix in :data:`PACKAGE_LAYER`."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in PACKAGE_LAYER:
            return PACKAGE_LAYER[prefix]
    raise KeyError(module)


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower layer into a higher one."""
    return sorted(
        f"{src} ({layer_of(src)}) -> {dst} ({layer_of(dst)})" for src, dsts in graph.items() for dst in dsts if LAYERS[layer_of(src)] < LAYERS[layer_of(dst)]
    )


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer() -> None:
    graph = import_graph(APP, "app")
    unassigned = []
    for module in graph:
        try:
            layer_of(module)
        except KeyError:
            unassigned.append(module)
    assert not unassigned, f"add these modules' package to PACKAGE_LAYER: {unassigned}"
    assert len(graph) > 40


def test_no_import_points_up_a_layer() -> None:
    assert upward_edges(import_graph(APP, "app")) == []


def test_no_import_cycle() -> None:
    assert cycles(import_graph(APP, "app")) == []


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_sees_deferred_cycles_and_upward_imports(tmp_path: Path) -> None:
    """The checks fail on a planted cycle through a function-level import and on a core module importing the CLI."""
    _write(
        tmp_path / "app",
        {
            "__init__.py": "",
            "defaults.py": "def f():\n    from app.cli import main\n",
            "io/__init__.py": "",
            "io/a.py": "from app.io import b\n",
            "io/b.py": "def g():\n    from . import a\n",
            "cli/__init__.py": "from app.io.a import x\ndef main(): ...\n",
        },
    )
    graph = import_graph(tmp_path / "app", "app")
    assert graph["app.io.b"] == {"app.io.a"}
    assert cycles(graph) == [["app.io.a", "app.io.b"]]
    assert upward_edges(graph) == ["app.defaults (core) -> app.cli (interfaces)"]


@pytest.mark.parametrize("module", ["app.maps.registry", "app.engine.sampling", "app.metrics.scoring"])
def test_core_imports_no_io_or_web_framework(module: str) -> None:
    """Core modules import neither the web framework nor image files' I/O."""
    path = module_names(APP, "app")[module]
    text = path.read_text()
    assert "fastapi" not in text and "PIL" not in text
