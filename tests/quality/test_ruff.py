"""Ruff ([tool.ruff] in pyproject.toml) finds nothing in the Python of the checkout (issue 14):
pyflakes, pycodestyle and import order, the same check as `ruff check .` from the repository root."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    print(result.stdout, result.stderr)
    assert result.returncode == 0, (
        f"ruff check . failed (rc {result.returncode}); `ruff check . --fix` fixes import order:\n"
        f"{result.stdout}{result.stderr}"
    )
