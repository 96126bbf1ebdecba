"""The house's arrows (DESIGN.md §1, docs/architecture.md): read from the source, not from a list.

Every import in ``src/abrflow`` (inside functions too: an import hidden in a function is still an
arrow; only ``if TYPE_CHECKING:`` blocks are left out) is resolved to the abrflow module it names.
The test fails on a module cycle, on an arrow from a lower floor to a higher one, on an arrow
between two packages of the same floor, and on a file that grew past the size a file with one job
has.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "abrflow"
#: Floors, lowest first: a module may import its own package and anything on a lower floor.
FLOORS: dict[str, int] = {
    "abrflow": 0, "errors": 0, "io": 0, "text": 0, "timing": 0,
    "config": 1, "checkpoint": 1,
    "data": 2,
    "models": 3, "diffusion": 3, "clinical": 3,
    "training": 4, "inference": 4,
    "evaluation": 5,
    "view": 6,
    "cli": 7,
}
#: Lines a file in src/ may have ("no file over about 400 lines": a file past it is doing two jobs).
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_package(module: str) -> bool:
    return (SRC / module.replace(".", "/") / "__init__.py").is_file()


def _exists(module: str) -> bool:
    return _is_package(module) or (SRC / (module.replace(".", "/") + ".py")).is_file()


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def imports_of(path: Path) -> set[str]:
    """The abrflow modules ``path`` imports (a ``from package import name`` of a submodule names the submodule)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "abrflow")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "abrflow":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {_module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "abrflow"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def wrong_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Imports that point up a floor or across to another package of the same floor."""
    bad = []
    for module, targets in sorted(graph.items()):
        here = _top(module)
        for target in sorted(targets):
            there = _top(target)
            if here == there:
                continue
            if FLOORS[there] > FLOORS[here]:
                bad.append(f"{module} → {target} (floor {FLOORS[here]} imports floor {FLOORS[there]})")
            elif FLOORS[there] == FLOORS[here]:
                bad.append(f"{module} → {target} (across floor {FLOORS[here]}: {here} and {there})")
    return bad


GRAPH = import_graph()


def test_every_package_has_a_floor():
    assert {_top(m) for m in GRAPH} <= set(FLOORS), "a new top-level module needs a floor in FLOORS"


def test_no_module_cycles():
    assert cycles(GRAPH) == []


def test_arrows_point_down():
    assert wrong_arrows(GRAPH) == []


@pytest.mark.parametrize("lower", ["clinical", "data", "models"])
def test_lower_floors_import_nothing_above(lower):
    above = {"training", "evaluation", "inference", "cli", "view"}
    offending = {f"{m} → {t}" for m, ts in GRAPH.items() if _top(m) == lower for t in ts if _top(t) in above}
    assert not offending


@pytest.mark.parametrize("runner", ["inference", "training"])
def test_runners_do_not_import_evaluation(runner):
    offending = {f"{m} → {t}" for m, ts in GRAPH.items() if _top(m) == runner for t in ts if _top(t) == "evaluation"}
    assert not offending


def test_the_checks_catch_what_they_are_for():
    """A cycle, an upward arrow and a sideways arrow in a made-up graph are all reported."""
    graph = {"abrflow.data.a": {"abrflow.data.b"}, "abrflow.data.b": {"abrflow.data.a"},
             "abrflow.clinical.x": {"abrflow.inference.y"}, "abrflow.inference.y": {"abrflow.training.z"},
             "abrflow.training.z": set()}
    assert cycles(graph) == [["abrflow.data.a", "abrflow.data.b"]]
    assert wrong_arrows(graph) == [
        "abrflow.clinical.x → abrflow.inference.y (floor 3 imports floor 4)",
        "abrflow.inference.y → abrflow.training.z (across floor 4: inference and training)"]


def test_imports_inside_functions_count(tmp_path):
    """A function-level import is an arrow like any other (cycles hidden in functions are still cycles)."""
    path = PACKAGE / "data" / "records.py"
    assert "abrflow.data.records_dir" in imports_of(path)
    assert "abrflow.data.schema" in imports_of(path)


def test_no_file_does_two_jobs():
    sizes = {str(p.relative_to(SRC)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {p: n for p, n in sizes.items() if n > MAX_LINES} == {}
