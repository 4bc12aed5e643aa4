"""The generated API files are current (issue 14): executor/api/openapi.json is what the executor's
pydantic models describe, and the extension's TypeScript types (extensions/jupyterlab-notebench/
src/schema.ts) are what openapi-typescript makes of that document. CI fails when the API changed
and either file was not regenerated."""

import json
import os
import subprocess
import sys
from pathlib import Path

from notebench.executor.api.openapi import spec

REPO = Path(__file__).resolve().parents[2]
EXTENSION = REPO / "extensions" / "jupyterlab-notebench"
OPENAPI = REPO / "executor" / "api" / "openapi.json"
SCHEMA_TS = EXTENSION / "src" / "schema.ts"


def test_openapi_json_is_current():
    # Serialized exactly as `python -m notebench.executor.api.openapi` writes the checked-in copy.
    expected = json.dumps(spec(), indent=1, sort_keys=True) + "\n"
    assert OPENAPI.read_text() == expected, (
        f"{OPENAPI.relative_to(REPO)} is not what the executor's models describe: regenerate it with"
        " `python -m notebench.executor.api.openapi` (then the extension's types, `jlpm schema` in"
        f" {EXTENSION.relative_to(REPO)}) and commit both"
    )


def test_extension_schema_ts_is_current(tmp_path):
    # jlpm comes with JupyterLab in the venv (node next to it when the venv has one, else the system's).
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def jlpm(*args: str, timeout: int) -> subprocess.CompletedProcess:
        return subprocess.run(["jlpm", *args], cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=timeout)

    if not (EXTENSION / "node_modules" / ".bin" / "openapi-typescript").exists():  # as scripts/install does
        result = jlpm("install", "--immutable", timeout=600)
        assert result.returncode == 0, f"jlpm install --immutable failed:\n{result.stdout}\n{result.stderr}"
    # `jlpm schema` is `jlpm schema:write src/schema.ts`: the same generator, into a temporary file.
    output = tmp_path / "schema.ts"
    result = jlpm("schema:write", str(output), timeout=300)
    assert result.returncode == 0, f"jlpm schema:write failed:\n{result.stdout}\n{result.stderr}"
    assert SCHEMA_TS.read_text() == output.read_text(), (
        f"{SCHEMA_TS.relative_to(REPO)} is not what openapi-typescript makes of"
        f" {OPENAPI.relative_to(REPO)}: run `jlpm schema` in {EXTENSION.relative_to(REPO)} and commit"
        " src/schema.ts (then fix what `jlpm build` finds in the code that uses the changed types)"
    )
