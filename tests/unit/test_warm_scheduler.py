"""The runner's warm-up of a job's Dask scheduler (executor/runtime/dask_warmup.py), without a hub:
which imports it finds in a cell, which of them it may import, that it follows the cells and stops
at the first graph. tests/jobs/test_distributed.py checks it on a real job's scheduler."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from notebench.executor.runtime.dask_warmup import cell_imports, install_roots, installed


def test_a_cells_imports_are_found_in_order_with_what_is_imported_from_them():
    source = (
        "import os, json as j\nfrom sklearn import svm, datasets\nfrom sklearn.svm import SVC\n"
        "%matplotlib inline\n!pip list\nimport scipy.stats\n"  # magics do not hide the cell's imports
        "def fit():\n    import joblib\n    from . import sibling\n    return joblib\n"  # relative: no module name
        "from numpy import *\n"
    )
    assert cell_imports(source) == [
        ("os", []),
        ("json", []),
        ("sklearn", ["svm", "datasets"]),
        ("sklearn.svm", ["SVC"]),
        ("scipy.stats", []),
        ("numpy", []),
        ("joblib", []),  # the cell's own statements first, then those nested in them
    ]
    assert cell_imports("print(\"unclosed\nimport os") == []  # does not parse: none


def test_only_the_installations_modules_are_importable_not_the_users(tmp_path, monkeypatch):
    (tmp_path / "users_own_module.py").write_text("raise SystemExit('must not be imported')\n")
    (tmp_path / "users_package").mkdir()
    (tmp_path / "users_package" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    roots = install_roots()
    assert installed("json", roots) and installed("xml.dom.minidom", roots)  # standard library
    assert installed("sys", roots)  # built in
    assert installed("sklearn.svm", roots) and installed("distributed", roots)  # site-packages
    assert not installed("users_own_module", roots)
    assert not installed("users_package.sub", roots)
    assert not installed("no_such_module_anywhere", roots)


PROBE = """
import json, sys, threading
sys.path.insert(0, {user_dir!r})
from notebench.executor.runtime.dask_warmup import import_all, install_roots
stop = threading.Event()
if {stopped!r}:
    stop.set()
import_all([("colorsys", []), ("users_own_module", []), ("xml", ["dom"]), ("no_such_module_anywhere", [])], stop, install_roots())
print(json.dumps(sorted(m for m in ("colorsys", "users_own_module", "xml.dom", "no_such_module_anywhere") if m in sys.modules)))
"""


def imported_by_import_all(tmp_path, stopped: bool) -> list:
    (tmp_path / "users_own_module.py").write_text("print('users_own_module ran')\n")
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE.format(user_dir=str(tmp_path), stopped=stopped))],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    assert "users_own_module ran" not in out
    return json.loads(out.strip().splitlines()[-1])


def test_installed_modules_and_named_submodules_are_imported_the_users_never(tmp_path):
    assert imported_by_import_all(tmp_path, stopped=False) == ["colorsys", "xml.dom"]


def test_nothing_is_imported_once_stopped(tmp_path):
    assert imported_by_import_all(tmp_path, stopped=True) == []


CELLS = """
import json, sys
import distributed
from tests.support.launcher import wait_for
from notebench.executor.runtime.dask_warmup import SchedulerWarmer

if __name__ == "__main__":
    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        warmer = SchedulerWarmer(cluster)
        warmer.on_cell_start(cell={"cell_type": "markdown", "source": "import wave"})
        warmer.on_cell_start(cell={"cell_type": "code", "source": "import colorsys"})
        wait_for(lambda: "colorsys" in sys.modules, interval=0.01, message="colorsys imported")
        seen = {"first cell": sorted(m for m in ("colorsys", "wave") if m in sys.modules)}
        with distributed.Client(cluster) as client:
            assert client.submit(sum, [1, 2]).result() == 3  # the first graph
        wait_for(warmer.stop.is_set, interval=0.01, message="the first graph seen")
        warmer.on_cell_start(cell={"cell_type": "code", "source": "import wave"})
        seen["after the first graph"] = {"queued": not warmer.sources.empty()}
        print(json.dumps(seen))
"""


def test_it_follows_the_cells_as_they_start_and_stops_at_the_first_graph(tmp_path):
    script = tmp_path / "cells.py"
    # The script runs outside pytest: it finds tests.support (wait_for) from the repository root.
    script.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n" + CELLS)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "first cell": ["colorsys"],  # not the markdown cell's, nor any cell not started yet
        "after the first graph": {"queued": False},
    }
