"""The JupyterLab extension's sources pass its linters (issue 14): `jlpm lint:check` in
extensions/jupyterlab-notebench, i.e. prettier (--check) and eslint (typescript-eslint,
@jupyter/eslint-plugin, eslint-plugin-prettier), as set up after the JupyterLab extension template."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "extensions" / "jupyterlab-notebench"
VENV_BIN = Path(sys.executable).parent


def jlpm(*args: str, timeout: int) -> subprocess.CompletedProcess:
    # The venv's bin first: jlpm comes with JupyterLab, and node is found next to it when the venv
    # has one (else the system's).
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(["jlpm", *args], cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def node_modules():
    """The extension's node_modules with the linters in it: installed from yarn.lock as
    scripts/install does when missing (or from before the linters were added)."""
    if not (EXTENSION / "node_modules" / ".bin" / "eslint").exists():
        result = jlpm("install", "--immutable", timeout=600)
        assert result.returncode == 0, f"jlpm install --immutable failed:\n{result.stdout}\n{result.stderr}"


def test_extension_lint_check(node_modules):
    result = jlpm("lint:check", timeout=300)
    assert result.returncode == 0, (
        f"jlpm lint:check failed (rc {result.returncode}); `jlpm lint` in {EXTENSION.relative_to(REPO)}"
        f" fixes what prettier and eslint can fix:\n{result.stdout}\n{result.stderr}"
    )
