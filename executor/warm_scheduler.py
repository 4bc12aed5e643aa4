"""Import a job notebook's libraries into its Dask scheduler before the notebook sends it work.

A Dask scheduler unpickles every task graph it is sent, and unpickling imports the libraries the
tasks refer to (scikit-learn's estimators, for a joblib search). A job's scheduler lives in its
runner, which has not imported them: the notebook's first graph held the scheduler's event loop
for 1-2 s (no task sent to any worker) while it imported what the kernel had imported long before.
So, once the cluster is up, the runner imports the notebook's imports in a background thread while
the kernel runs the first cells, and stops at the first graph, which brings what it needs itself.

Only installed modules are imported (the standard library, site-packages): a module beside the
notebook is the user's own code, and importing it would run it a second time.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import site
import sys
import sysconfig
import threading
from pathlib import Path

from distributed.diagnostics.plugin import SchedulerPlugin

log = logging.getLogger(__name__)


def notebook_imports(notebook: dict) -> list[tuple[str, list[str]]]:
    """The modules a notebook's code cells import, in order, as (module, names imported from it)."""
    found: dict[str, list[str]] = {}
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = source if isinstance(source, str) else "".join(source)
        # IPython magics and shell escapes are not Python; a cell that still does not parse is skipped.
        lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.setdefault(alias.name, [])
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.setdefault(node.module, []).extend(alias.name for alias in node.names if alias.name != "*")
    return list(found.items())


def _install_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    roots = [paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    roots += site.getsitepackages() + [site.getusersitepackages()]
    return [Path(root) for root in dict.fromkeys(roots)]


def installed(module: str, roots: list[Path] | None = None) -> bool:
    """Whether the module's top-level package comes from the Python installation or site-packages."""
    top = module.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    locations = list(spec.submodule_search_locations or []) or [spec.origin]
    roots = _install_roots() if roots is None else roots
    return all(loc and any(Path(loc).is_relative_to(root) for root in roots) for loc in locations)


def import_all(modules: list[tuple[str, list[str]]], stop: threading.Event) -> None:
    """Import each installed module (and the submodules named in `from module import name`)
    until `stop` is set. A module that fails to import is left to the notebook to report."""
    roots = _install_roots()
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
    name = "notebench-warm-imports"

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def update_graph(self, scheduler, **kwargs) -> None:
        self.stop.set()


def warm_scheduler(cluster, notebook: dict) -> threading.Thread:
    """Start importing the notebook's installed imports in this process (the cluster's scheduler's)."""
    stop = threading.Event()
    cluster.scheduler.add_plugin(StopAtFirstGraph(stop))
    thread = threading.Thread(target=import_all, args=(notebook_imports(notebook), stop), name="warm-scheduler", daemon=True)
    thread.start()
    return thread
