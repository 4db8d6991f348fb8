"""The shape of the code, enforced: layers import one way, no import cycle, small modules and
functions, every environment variable in the README, and a README module map that matches the
tree.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from template_pipeline.domain import config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "template_pipeline"
README = ROOT / "README.md"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_import_contracts_hold():
    """``lint-imports`` (pyproject's contracts: layers downwards, no Dagster below defs)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def _import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append(
                        (child, iter(sorted(graph.find_modules_directly_imported_by(child))))
                    )
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_no_import_cycle():
    graph = grimp.build_graph("template_pipeline")
    assert _import_cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    graph = grimp.ImportGraph()
    for name in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(name)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.x")
    graph.add_import(importer="a.z", imported="a.x")
    assert _import_cycles(graph) == [["a.x", "a.y"]]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES, f"{path.name}: split it along its sections"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def _section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _defines_code(path: Path) -> bool:
    """A package ``__init__`` with functions or classes of its own (not only re-exports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body)


def test_readme_module_map_matches_the_tree():
    mapped = set(re.findall(r"`(template_pipeline/[\w/]+\.py)`", _section("Module map")))
    actual = {
        str(path.relative_to(ROOT))
        for path in _modules()
        if path.name != "__init__.py" or path.parent == PACKAGE or _defines_code(path)
    }
    assert sorted(actual - mapped) == [], "modules missing from the README's module map"
    assert sorted(mapped - actual) == [], "the README's module map names modules that are gone"


def test_every_environment_variable_is_documented():
    readme = README.read_text(encoding="utf-8")
    names = [v.name for v in config.VARIABLES if not v.name.startswith("<")]
    missing = [name for name in names if f"`{name.replace('*', '<KEY>')}`" not in readme]
    assert missing == []


def test_secret_variables_are_marked_secret():
    secret = {v.name for v in config.VARIABLES if v.secret}
    assert {"TEMPLATE_API_KEY", "DASHBOARD_DATABASE_URL", "ALERT_WEBHOOK_URL"} <= secret
    assert "TEMPLATE_WEBHOOK_SECRET_*" in secret
