"""The package's folders follow the workflow's stages, and imports flow one way: a stage imports only
itself and the stages before it (function-level imports included), so there is no cycle to untangle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import spx_data

ROOT = Path(spx_data.__file__).parent
# calendar -> plan -> fetch -> assemble -> record, with the shared core first and the operator last.
ORDER = ("core", "ndjson", "fetch", "plan", "archive", "ledger", "sim", "ops")


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "spx_data" and parts[1] in ORDER else None


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from spx_data.ops import cli` names the module spx_data.ops.cli
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def test_every_module_lives_in_a_stage_folder() -> None:
    loose = sorted(p.name for p in ROOT.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside the stage folders: {loose}"
    assert sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()) == sorted(ORDER)


@pytest.mark.parametrize("stage", ORDER)
def test_imports_flow_one_way(stage: str) -> None:
    allowed = set(ORDER[: ORDER.index(stage) + 1])
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / stage).rglob("*.py"))
        for line, module in _imports(path)
        if (target := _stage(module)) is not None and target not in allowed
    ]
    assert bad == []


def test_the_check_sees_a_backward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from spx_data.ops import cli\n")
    assert (2, "spx_data.ops") in _imports(module) and _stage("spx_data.ops") == "ops"


def _module_graph() -> dict[str, set[str]]:
    names = {
        ".".join(("spx_data", *p.relative_to(ROOT).with_suffix("").parts)): p
        for p in ROOT.rglob("*.py")
        if p.name != "__init__.py"
    }
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in names.items():
        for _, module in _imports(path):
            graph[name] |= {m for m in (module, module.rsplit(".", 1)[0]) if m in names and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            found.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, [*stack, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_no_module_imports_itself_back() -> None:
    assert _cycles(_module_graph()) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
