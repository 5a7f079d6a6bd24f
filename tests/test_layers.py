"""The package's rooms and floors: an import never runs back up a floor, and modules import no cycle.

Floors, lowest first: ``tasks`` (the problems), ``probes`` (scoring heads on a model), ``runs`` (a run's
data model and its store), ``dashboards`` (pictures and live dashboards), ``callbacks`` (the tracker),
then ``train`` and ``analysis`` side by side, neither importing the other. Every import counts, those
inside functions too.
"""

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sparks"
FLOORS = {"tasks": 0, "probes": 1, "runs": 2, "dashboards": 3, "callbacks": 4, "train": 5, "analysis": 5}


def imports(path: Path) -> set[str]:
    """The sparks modules ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("sparks."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sparks"):
            package_names = [f"{node.module}.{alias.name}" for alias in node.names]
            found.update(name if (PACKAGE.parent / (name.replace(".", "/") + ".py")).is_file() else node.module
                         for name in package_names)
    return found


@functools.cache
def modules() -> dict[str, set[str]]:
    return {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts): imports(path) for path in PACKAGE.rglob("*.py")}


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else None


def test_every_room_has_a_floor():
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").is_file()} == set(FLOORS)


@pytest.mark.parametrize("importer", sorted(modules()))
def test_no_import_runs_back_up_a_floor(importer):
    own = room(importer)
    if own is None:
        return
    upward = sorted(name for name in modules()[importer] if (other := room(name)) and other != own and FLOORS[other] >= FLOORS[own])
    assert not upward, f"{importer} imports {upward} from its own floor or above"


def test_modules_import_no_cycle():
    graph = modules()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in sorted(graph.get(module, ())):
            if state.get(name) == "open":
                raise AssertionError(" -> ".join([*path[path.index(name):], name]) if name in path else name)
            if name not in state:
                visit(name, [*path, name])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_reading_a_run_store_needs_neither_the_tracker_nor_training():
    """``sparks compare`` and its report read run stores through runs/, knowing the tracker's settings
    (callbacks.config) but neither the callback, its snapshot or recorder, nor training."""
    graph = modules()
    seen, todo = set(), ["sparks.analysis.compare", "sparks.analysis.compare_report"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    assert not sorted(name for name in seen if room(name) == "train" or (room(name) == "callbacks" and name != "sparks.callbacks.config"))
