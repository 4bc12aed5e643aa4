"""Import what a job's notebook imports into its Dask scheduler, cell by cell, as the kernel does.

A Dask scheduler unpickles every task graph it is sent, and unpickling imports the libraries the
tasks refer to (scikit-learn's estimators, for a joblib search). A job's scheduler lives in its
runner, which has not imported them: the notebook's first graph held the scheduler's event loop
for 1-2 s (no task sent to any worker) while it imported what the kernel had imported long before.
So as each code cell starts, a thread of the runner imports that cell's imports alongside the
kernel, never ahead of it (a cell not reached costs nothing), until the first graph arrives, which
brings what it needs itself.

Only installed modules are imported (the standard library, site-packages): a module beside the
notebook is the user's own code, and importing it would run it a second time.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import queue
import site
import sys
import sysconfig
import threading
from pathlib import Path

from distributed.diagnostics.plugin import SchedulerPlugin

log = logging.getLogger(__name__)


def cell_imports(source: str) -> list[tuple[str, list[str]]]:
    """The modules a code cell imports, in order, as (module, names imported from it)."""
    # IPython magics and shell escapes are not Python; a cell that still does not parse has none.
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return []
    found: dict[str, list[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, [])
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.setdefault(node.module, []).extend(alias.name for alias in node.names if alias.name != "*")
    return list(found.items())


def install_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    roots += site.getsitepackages() + [site.getusersitepackages()]
    return [Path(root) for root in dict.fromkeys(roots)]


def installed(module: str, roots: list[Path]) -> bool:
    """Whether the module's top-level package comes from the Python installation or site-packages."""
    try:
        spec = importlib.util.find_spec(module.partition(".")[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    locations: list[str | None] = list(spec.submodule_search_locations or []) or [spec.origin]
    return all(loc and any(Path(loc).is_relative_to(root) for root in roots) for loc in locations)


def import_all(modules: list[tuple[str, list[str]]], stop: threading.Event, roots: list[Path]) -> None:
    """Import each installed module (and the submodules named in `from module import name`)
    until `stop` is set. A module that fails to import is left to the notebook to report."""
    for module, names in modules:
        for name in [module] + [f"{module}.{n}" for n in names]:
            if stop.is_set():
                return
            if name in sys.modules:
                continue
            if name != module:  # `from package import name`: only when name is a submodule
                parent = sys.modules.get(module)
                if parent is None or not hasattr(parent, "__path__") or hasattr(parent, name.rpartition(".")[2]):
                    continue
                if importlib.util.find_spec(name) is None:
                    continue
            elif not installed(module, roots):
                continue
            try:
                importlib.import_module(name)
            except Exception as e:
                log.debug("warm-up import of %s failed: %s", name, e)


class StopAtFirstGraph(SchedulerPlugin):
    name = "notebench-warm-scheduler"

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def update_graph(self, scheduler, **kwargs) -> None:
        self.stop.set()


class SchedulerWarmer:
    """Give `on_cell_start` to papermill (an nbclient hook); the cluster's scheduler must live in
    this process."""

    def __init__(self, cluster):
        self.stop = threading.Event()
        self.sources: queue.SimpleQueue[str] = queue.SimpleQueue()
        # On the scheduler's own event loop: it may be walking its plugins in its thread right now.
        cluster.loop.add_callback(cluster.scheduler.add_plugin, StopAtFirstGraph(self.stop))
        threading.Thread(target=self._import_cells, name="warm-scheduler", daemon=True).start()

    def on_cell_start(self, cell, **kwargs) -> None:
        if cell.get("cell_type") == "code" and not self.stop.is_set():
            self.sources.put(cell.get("source", ""))

    def _import_cells(self) -> None:
        roots = install_roots()
        while not self.stop.is_set():
            import_all(cell_imports(self.sources.get()), self.stop, roots)
