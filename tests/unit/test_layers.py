"""The import structure the folder tree promises: no cycles, and lower layers never import higher ones.

Read from the sources (every import, also those inside functions), so nothing is imported here.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"notebench.hub": ROOT / "hub", "notebench.executor": ROOT / "executor"}

# Each executor module's layer (the first prefix that matches); a module imports only from its own
# layer or lower ones.
LAYERS = [
    ("notebench.hub.platform", 0),
    ("notebench.executor.errors", 1),
    ("notebench.executor.db", 1),
    ("notebench.executor.migrations", 1),
    ("notebench.executor.schemas", 1),
    ("notebench.executor.user_files", 1),
    ("notebench.executor.background", 1),
    ("notebench.executor.services", 1),
    ("notebench.executor.runtime", 1),
    ("notebench.executor.backends", 2),
    ("notebench.executor.jobs", 3),
    ("notebench.executor.schedules", 3),
    ("notebench.executor.serving", 3),
    ("notebench.executor.api", 4),
    ("notebench.executor.app", 5),
    ("notebench.executor.__main__", 6),
    ("notebench.executor.cli", 6),
    ("notebench.executor", 1),  # the package's __init__
]


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The notebench modules that ``name`` imports (a package counts as its __init__)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer(name: str) -> int | None:
    return next((n for prefix, n in LAYERS if name == prefix or name.startswith(prefix + ".")), None)


def test_the_import_graph_is_read():
    g = graph()
    assert "notebench.executor.jobs.dispatcher" in g["notebench.executor.app"]
    assert "notebench.hub.platform.profiles" in g["notebench.hub.spawner"]


def test_there_are_no_import_cycles():
    g = graph()
    cycles, index, low, stack, on_stack, counter = [], {}, {}, [], set(), [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
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
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_platform_imports_nothing_of_the_hub_or_the_executor():
    g = graph()
    bad = {m: sorted(i for i in deps if not i.startswith("notebench.hub.platform"))
           for m, deps in g.items() if m.startswith("notebench.hub.platform")}
    assert {m: deps for m, deps in bad.items() if deps} == {}


@pytest.mark.parametrize("side, other, allowed", [
    # the hub's CLI adds the executor's own commands (`notebench jobs`): the one way across
    ("notebench.hub", "notebench.executor", {"notebench.hub.cli"}),
    ("notebench.executor", "notebench.hub", set()),
])
def test_the_hub_and_the_executor_meet_only_in_the_platform(side, other, allowed):
    g = graph()
    crossing = {m: sorted(i for i in deps if i.startswith(other) and not i.startswith("notebench.hub.platform"))
                for m, deps in g.items() if m.startswith(side) and not m.startswith("notebench.hub.platform")}
    assert {m: deps for m, deps in crossing.items() if deps and m not in allowed} == {}


def test_executor_layers_only_import_downwards():
    g = graph()
    upward = {}
    for module, deps in g.items():
        if not module.startswith("notebench.executor"):
            continue
        assert layer(module) is not None, f"{module} has no layer in LAYERS"
        up = sorted(d for d in deps if layer(d) is not None and layer(d) > layer(module))
        if up:
            upward[module] = up
    assert upward == {}


def test_the_code_that_runs_as_the_user_imports_only_itself_and_the_lowest_layers():
    g = graph()
    allowed = ("notebench.executor.runtime", "notebench.hub.platform", "notebench.executor.user_files")
    bad = {m: sorted(d for d in deps if not d.startswith(allowed))
           for m, deps in g.items() if m.startswith("notebench.executor.runtime")}
    assert {m: deps for m, deps in bad.items() if deps} == {}
