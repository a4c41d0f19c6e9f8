"""The package's import graph has no circles, and the command line is the top floor that nothing imports.

Imports inside functions count too: a lazy import hides a circle from Python, not from a reader.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reidlab"


def module_name(path: Path) -> str:
    """reidlab/gpucheck/fit.py -> reidlab.gpucheck.fit; a package's __init__.py is the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reidlab"):
                # `from reidlab import config`, `from reidlab.gpucheck import fit`: modules; else names in one
                edges |= {f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}")}
                if not all(is_module(f"{node.module}.{a.name}") for a in node.names):
                    edges.add(node.module)
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("reidlab.")}
        graph[name] = edges - {name, "reidlab"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_has_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_command_line_is_imported_by_nothing():
    importers = [m for m, edges in import_graph().items() if "reidlab.__main__" in edges]
    assert importers == []


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "reidlab.train" in graph["reidlab.ablate"]  # imported inside functions only


def test_graph_sees_subpackages():
    graph = import_graph()
    assert "reidlab.gpucheck" in graph["reidlab.__main__"]  # `from reidlab import gpucheck`, a package
    assert "reidlab.gpucheck.fit" in graph["reidlab.gpucheck"]  # `from reidlab.gpucheck import ..., fit, ...`
    assert "reidlab.train" in graph["reidlab.gpucheck.fit"]
