"""The runner's warm-up of a job's Dask scheduler (executor/warm_scheduler.py), without a hub:
which imports it finds in a notebook, which of them it may import, and that it stops when told.
tests/test_distributed.py checks it on a real job's scheduler."""

import json
import subprocess
import sys
import textwrap

from launcher import notebook
from notebench.executor.warm_scheduler import installed, notebook_imports


def test_a_notebooks_imports_are_found_in_order_with_what_is_imported_from_them():
    nb = notebook(
        "import os, json as j\nfrom sklearn import svm, datasets\nfrom sklearn.svm import SVC",
        "%matplotlib inline\n!pip list\nimport scipy.stats",  # magics do not hide the cell's imports
        "def fit():\n    import joblib\n    from . import sibling\n    return joblib",  # relative: not a module name
        "this is not python",
        "from numpy import *",
    )
    nb.cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": "import markdown_is_ignored"})
    assert notebook_imports(nb) == [
        ("os", []),
        ("json", []),
        ("sklearn", ["svm", "datasets"]),
        ("sklearn.svm", ["SVC"]),
        ("scipy.stats", []),
        ("joblib", []),
        ("numpy", []),
    ]


def test_only_the_installations_modules_are_importable_not_the_users(tmp_path, monkeypatch):
    (tmp_path / "users_own_module.py").write_text("raise SystemExit('must not be imported')\n")
    (tmp_path / "users_package").mkdir()
    (tmp_path / "users_package" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert installed("json") and installed("xml.dom.minidom")  # standard library
    assert installed("sys")  # built in
    assert installed("sklearn.svm") and installed("distributed")  # site-packages
    assert not installed("users_own_module")
    assert not installed("users_package.sub")
    assert not installed("no_such_module_anywhere")


PROBE = """
import json, sys, threading
sys.path.insert(0, {user_dir!r})
from notebench.executor.warm_scheduler import import_all
stop = threading.Event()
if {stopped!r}:
    stop.set()
import_all([("colorsys", []), ("users_own_module", []), ("xml", ["dom"]), ("no_such_module_anywhere", [])], stop)
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
