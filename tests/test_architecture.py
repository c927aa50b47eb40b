"""The layer contract of docs/ARCHITECTURE.md: import-linter's ``layers`` contract (pyproject.toml) holds, and no
import cycle exists among skewtune's modules, counting imports made inside functions (grimp records those too)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

grimp = pytest.importorskip("grimp")
pytest.importorskip("importlinter")


def test_layers_contract_is_kept() -> None:
    # in a child process: import-linter configures logging with dictConfig, which disables every logger that
    # exists in the calling process (skewtune's own, for the tests that run after this one)
    program = ("import sys; from importlinter.cli import lint_imports; "
               f"sys.exit(lint_imports(config_filename={str(REPO / 'pyproject.toml')!r}, no_cache=True, no_logo=True))")
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    report = proc.stdout
    assert proc.returncode == 0, report[report.find("Broken contracts"):] or report + proc.stderr


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=len, reverse=True)


def test_strongly_connected_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    sys.path.insert(0, str(REPO / "src"))  # the checkout's package, as import-linter sees it
    try:
        imports = grimp.build_graph("skewtune", cache_dir=None)
    finally:
        sys.path.remove(str(REPO / "src"))
    graph = {module: set(imports.find_modules_directly_imported_by(module)) for module in imports.modules}
    cycles = strongly_connected(graph)
    details = []
    for component in cycles:
        members = set(component)
        edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
        details.append(f"{len(component)} modules: " + "; ".join(edges))
    assert not cycles, "import cycles (imports inside functions count):\n" + "\n".join(details)
