"""The package's layers, as docs/architecture.md draws them: imports run downwards only, and never in a cycle.

Every `import` and `from ... import` in `edge_agent/` is read from the source (including imports inside
functions, which are dependencies too; the package facade `edge_agent/__init__.py` is exempt, it names the
public API lazily). A module may import a module of a lower layer, or of its own package; the four middle
packages may not import each other; and no chain of imports, inside a package or across, comes back to
where it started.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_agent"

# Highest first. A part may import the parts below it. The middle four share a layer: none imports another.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("lab", "console"),
    ("service",),
    ("fleet",),
    ("engine",),
    ("capture", "vision", "watchlist", "events"),
    ("base",),
)
RANK = {part: len(LAYERS) - index for index, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The layer part a module belongs to. Settings modules (`settings`, `*_settings`) are base wherever
    they live: `config.py` composes them, so they may import only base modules and pydantic."""
    pieces = module.split(".")
    if pieces[-1] == "settings" or pieces[-1].endswith("_settings"):
        return "base"
    if len(pieces) == 1:  # the package facade (`edge_agent`): the version, lazily the public names
        return "base"
    if len(pieces) == 2 and pieces[1] not in RANK:  # a root module: types, config, errors, ...
        return "base"
    return pieces[1]


def imports_of(path: Path, modules: set[str]) -> Iterator[tuple[int, str]]:
    """(line, imported edge_agent module) for every import in the file."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            targets = [f"{target}.{alias.name}" for alias in node.names]
            targets = [t for t in targets if t in modules] or [target]
        else:
            targets = [alias.name for alias in node.names]
        for target in targets:
            if target in modules and target != name:
                yield node.lineno, target


def import_graph() -> dict[str, dict[str, int]]:
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(files)
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        if path == PACKAGE / "__init__.py":
            graph[name] = {}
            continue
        graph[name] = {target: line for line, target in imports_of(path, modules)}
    return graph


def allowed(importer: str, imported: str) -> bool:
    a, b = part_of(importer), part_of(imported)
    if a == b:
        return True
    return RANK[b] < RANK[a]


def test_every_import_runs_downwards() -> None:
    graph = import_graph()
    wrong = [
        f"{importer} ({part_of(importer)}) imports {imported} ({part_of(imported)}), line {line}"
        for importer, targets in sorted(graph.items())
        for imported, line in sorted(targets.items())
        if not allowed(importer, imported)
    ]
    assert not wrong, "imports against the layers of docs/architecture.md:\n" + "\n".join(wrong)


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One import cycle, as the modules around it, or None (depth-first search, colouring)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_no_import_cycle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("importer", "imported", "ok"),
    [
        ("edge_agent.cli.main", "edge_agent.lab.markdown", True),
        ("edge_agent.engine.live", "edge_agent.watchlist.store", True),
        ("edge_agent.watchlist.store", "edge_agent.events.schema", False),  # middle packages are peers
        ("edge_agent.events.store", "edge_agent.engine.live", False),  # upwards
        ("edge_agent.config", "edge_agent.capture.settings", True),  # a settings module is base
        ("edge_agent.vision.detect", "edge_agent.config", True),
        ("edge_agent.signed", "edge_agent.fleet.command", False),
    ],
)
def test_the_rule_itself(importer: str, imported: str, ok: bool) -> None:
    assert allowed(importer, imported) is ok


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_the_graph_sees_imports_of_every_kind() -> None:
    graph = import_graph()
    assert "edge_agent.engine.live" in graph["edge_agent.service"]  # from x.y import Name
    assert "edge_agent.bounded" in graph["edge_agent.signed"]  # from edge_agent import module
    assert "edge_agent.engine.offline" in graph["edge_agent.cli.faces"]  # inside a function
