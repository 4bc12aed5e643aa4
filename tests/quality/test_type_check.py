"""The hub and the executor type-check (issue 14): mypy as pyproject.toml's [tool.mypy] sets it up,
over notebench.hub and notebench.executor, finds no error.

mypy cannot follow setuptools' editable import hook, so it reads the packages through the links
scripts/install makes in .venv/notebench-src (notebench/hub -> hub/, notebench/executor -> executor/).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINKS = ROOT / ".venv" / "notebench-src" / "notebench"


def test_mypy_finds_no_errors():
    for package in ("hub", "executor"):
        link = LINKS / package
        assert link.resolve() == (ROOT / package).resolve(), f"{link} does not lead to {package}/: run scripts/install"
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mypy (rc {result.returncode}):\n{result.stdout}\n{result.stderr}"
