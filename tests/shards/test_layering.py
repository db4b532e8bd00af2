"""The shard layer's modules import each other in layers: no import circle, every import of a
module of the package at the top of its module, and no storage module importing the command
line (shards/cli.py: only the `python -m shards` entry point does)."""
from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shards"
TREES = {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}
CLI_USERS = {"__main__", "cli"}


def imported(node: ast.stmt) -> set[str]:
    """The modules of the package that an import statement imports ("__init__" for a name
    taken from the package itself)."""
    if isinstance(node, ast.Import):
        return {a.name.split(".")[1] for a in node.names if a.name.startswith("shards.")}
    if not isinstance(node, ast.ImportFrom):
        return set()
    module = node.module or ""
    if node.level == 0:
        if module != "shards" and not module.startswith("shards."):
            return set()
        module = module.partition(".")[2]
    if module:
        return {module.split(".")[0]}
    return {a.name if a.name in TREES else "__init__" for a in node.names}


def imports(name: str) -> dict[str, list[ast.stmt]]:
    """module imported -> the statements of module `name` importing it, at any depth."""
    out: dict[str, list[ast.stmt]] = {}
    for node in ast.walk(TREES[name]):
        for target in imported(node) - {name}:
            out.setdefault(target, []).append(node)
    return out


def test_no_import_circle():
    graph = {name: set(imports(name)) for name in TREES}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as e:
        raise AssertionError(f"shards modules import each other in a circle: {' -> '.join(e.args[1])}") from None


def test_own_modules_are_imported_at_the_top():
    inside = [f"shards/{name}.py:{node.lineno}" for name, tree in TREES.items()
              for nodes in imports(name).values() for node in nodes if node not in tree.body]
    assert not inside, f"imports of shards modules inside a function or block: {inside}"


def test_only_the_entry_point_imports_the_cli():
    users = {name for name in TREES if "cli" in imports(name)}
    assert users <= CLI_USERS, f"storage modules importing shards.cli: {sorted(users - CLI_USERS)}"
