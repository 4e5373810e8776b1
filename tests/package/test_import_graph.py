"""No import cycle between the subpackages of lsap, counting imports inside functions.

Every module under ``lsap/`` is parsed with ``ast``; each ``import``/``from ... import``
naming ``lsap.X...`` (or a relative import resolving into ``lsap.X``) adds an arrow from the
module's subpackage to ``lsap.X``. Imports under ``if TYPE_CHECKING:`` are left out: they
never run. Top-level modules (``lsap/io.py``) count as their own node (``lsap.io``).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import lsap

PACKAGE_ROOT = Path(lsap.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _node(module: str) -> str | None:
    """``lsap.X`` for any module inside ``lsap.X``; ``None`` for ``lsap`` itself or outside."""
    parts = module.split(".")
    if parts[0] != "lsap" or len(parts) < 2:
        return None
    return ".".join(parts[:2])


def _is_type_checking_test(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.imported: list[tuple[str, int]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking_test(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imported.append((alias.name, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target == "lsap":
            # ``from lsap import X``: X is a subpackage/module or a name re-exported by lsap.
            for alias in node.names:
                self.imported.append((f"lsap.{alias.name}", node.lineno))
        else:
            self.imported.append((target, node.lineno))


def import_edges() -> dict[tuple[str, str], list[str]]:
    """``(from_node, to_node) -> ["lsap/file.py:line", ...]`` over every module of lsap."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        source = _node(module)
        if source is None:
            continue
        collector = _ImportCollector(module, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for imported, line in collector.imported:
            target = _node(imported)
            if target is not None and target != source:
                edges[(source, target)].append(f"{path.relative_to(PACKAGE_ROOT.parent)}:{line}")
    return dict(edges)


def find_cycle(edges: dict[tuple[str, str], list[str]]) -> list[str] | None:
    """One cycle as a node list ``[a, b, ..., a]``, or ``None``."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == 1:
                return stack[stack.index(successor):] + [successor]
            if successor not in state:
                found = visit(successor)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {("lsap.a", "lsap.b"): ["x"], ("lsap.b", "lsap.c"): ["y"], ("lsap.c", "lsap.a"): ["z"]}
    assert find_cycle(planted) == ["lsap.a", "lsap.b", "lsap.c", "lsap.a"]
    assert find_cycle({("lsap.a", "lsap.b"): ["x"], ("lsap.a", "lsap.c"): ["y"]}) is None


def test_the_collector_sees_function_imports_and_skips_type_checking() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lsap.hidden import X\n"
        "def f():\n    from lsap.inside import Y\n    from . import sibling\n"
    )
    collector = _ImportCollector("lsap.pkg.mod", is_package=False)
    collector.visit(ast.parse(source))
    imported = {name for name, _ in collector.imported}
    assert "lsap.inside" in imported and "lsap.pkg" in imported
    assert "lsap.hidden" not in imported


def test_no_import_cycle_between_subpackages() -> None:
    edges = import_edges()
    assert edges, "no lsap-internal import found: the parser is broken"
    cycle = find_cycle(edges)
    if cycle is not None:
        arrows = [
            f"{a} -> {b} ({', '.join(edges[(a, b)][:3])})" for a, b in zip(cycle, cycle[1:])
        ]
        raise AssertionError("import cycle between subpackages:\n  " + "\n  ".join(arrows))
