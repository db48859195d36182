"""The house: which part may import which, no import circle, and one import name.

The rooms and their allowed imports are ARCHITECTURE.md's tables, written down here once; a
new module lands in a room by its folder and is checked with no new test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("edge", "integrations", "dashboards", "provisioning")

#: room -> the rooms it may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "edge.core": set(),
    "edge.telemetry": {"edge.core"},
    "edge.hours": {"edge.core"},
    "edge.runtime": {"edge.core", "edge.telemetry", "edge.hours"},
    "edge.demo": {"edge.core", "edge.telemetry", "edge.hours", "edge.runtime"},
    "edge.cli": {"edge.core", "edge.telemetry", "edge.hours", "edge.runtime", "edge.demo"},
    "integrations": {"edge.core"},
    "dashboards": {"edge.core", "edge.telemetry", "edge.hours", "integrations"},
    "provisioning": {"edge.core", "integrations", "dashboards"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return "openbranch." + ".".join(p for p in parts if p != "__init__")


def _room(module: str) -> str:
    parts = module.split(".")[1:]  # without "openbranch"
    if parts[0] == "edge":
        return "edge." + (parts[1] if len(parts) > 1 else "core")
    return parts[0]


def _sources() -> Iterator[Path]:
    for package in PRODUCT:
        yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module imported (at any depth of the file, lazy imports included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _sources():
        graph[_module(path)] = {m for _, m in _imports(path) if m.startswith("openbranch.")}
    return graph


def test_every_room_imports_only_what_it_may() -> None:
    wrong = []
    for path in _sources():
        room = _room(_module(path))
        for line, imported in _imports(path):
            if not imported.startswith("openbranch."):
                continue
            target = _room(imported)
            if target != room and target not in ALLOWED[room]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {room} imports {imported}")
    assert wrong == []


def test_the_product_imports_itself_by_its_one_name() -> None:
    """``import edge`` would work in a test run (pytest puts the checkout on sys.path) and
    load a second copy of the module; only ``openbranch.*`` is installed."""
    bare = re.compile(rf"^({'|'.join(PRODUCT)})(\.|$)")
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {imported}"
        for folder in (*PRODUCT, "tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for line, imported in _imports(path)
        if bare.match(imported)
    ]
    assert wrong == []


def test_no_import_circle_between_modules() -> None:
    graph = _graph()
    done: set[str] = set()
    stack: list[str] = []
    circles: list[str] = []

    def visit(module: str) -> None:
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target in stack:
                circles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in done and target in graph:
                visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    assert circles == []


ROOMS = sorted(p.name for p in (ROOT / "edge").iterdir() if (p / "__init__.py").exists())


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_says_what_lives_there(room: str) -> None:
    init = ROOT / "edge" / room / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert doc, f"edge/{room}/__init__.py has no docstring"
    assert "import" in doc.lower(), f"edge/{room}/__init__.py does not say what it may import"


def test_edge_top_level_is_the_map() -> None:
    assert ROOMS == ["core", "demo", "hours", "runtime", "telemetry"]
    entries = sorted(p.name for p in (ROOT / "edge").iterdir() if p.name != "__pycache__")
    assert entries == ["__init__.py", "cli.py", "core", "demo", "hours", "runtime", "telemetry"]
