"""The distribution maps hub/ and executor/ to notebench.hub / notebench.executor, never top-level."""

import subprocess
import sys
import venv
import zipfile

from tests.support.launcher import REPO


def test_editable_install_imports_the_namespaced_packages():
    out = subprocess.run(
        [sys.executable, "-c", "import notebench.hub, notebench.executor; print(notebench.hub.__file__, notebench.executor.__file__)"],
        capture_output=True, text=True, cwd="/", check=True,
    ).stdout.split()
    assert out == [str(REPO / "hub" / "__init__.py"), str(REPO / "executor" / "__init__.py")]
    # `hub` and `executor` belong to other PyPI projects: we must not install them.
    r = subprocess.run([sys.executable, "-c", "import hub"], capture_output=True, cwd="/")
    assert r.returncode != 0
    # What users' kernels import as `notebench` (notebench/), next to the sub-packages.
    out = subprocess.run(
        [sys.executable, "-c", "import notebench; print(notebench.__file__, notebench.log_training_profile.__module__)"],
        capture_output=True, text=True, cwd="/", check=True,
    ).stdout.split()
    assert out == [str(REPO / "notebench" / "__init__.py"), "notebench.executor.runtime.profile"]


def test_wheel_ships_namespaced_packages_and_imports(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("notebench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "notebench/hub/__init__.py" in names and "notebench/executor/__init__.py" in names
    assert "notebench/__init__.py" in names and "notebench/executor/runtime/profile.py" in names
    assert "notebench/hub/jupyterhub_config.py" in names
    assert "notebench/hub/mlflow_service/__main__.py" in names
    assert {"notebench/hub/templates/notebench-admin.html", "notebench/hub/templates/notebench-admin.js"} <= set(names)
    assert not any(n.startswith(("hub/", "executor/")) for n in names)

    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    site = next((env / "lib").glob("python3*/site-packages"))
    zipfile.ZipFile(wheel).extractall(site)
    r = subprocess.run(
        [str(env / "bin" / "python"), "-c", "import notebench.hub, notebench.executor; print(notebench.hub.__file__)"],
        capture_output=True, text=True, cwd="/", check=True,
    )
    assert str(site) in r.stdout
