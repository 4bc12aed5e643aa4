"""The user servers' command (notebench.hub.server_command): jupyterhub-singleuser without
rfc3987_syntax's parsers and jupyterlab's `yarn config` at import, in a process of its own as a
spawn makes it. A `node` on PATH that leaves a mark shows whether jupyterlab ran it."""

import os
import subprocess
import sys

import jupyterhub

CHECK = """
import sys
if sys.argv[1] == "prepared":
    from notebench.hub.server_command import prepare
    prepare()
import jsonschema, jupyter_server.serverapp, jupyterlab.labapp, jupyterlab.commands
from jupyterhub.singleuser import main
print("rfc3987_syntax" if sys.modules.get("rfc3987_syntax") else "-", "iri" in jsonschema.FormatChecker.checkers,
      "email" in jsonschema.FormatChecker.checkers, bool(jupyterlab.commands.AppOptions().registry))
"""


def imports(tmp_path, how: str) -> tuple[str, bool]:
    node = tmp_path / "node"
    node.write_text(f"#!/bin/sh\ntouch {tmp_path / 'node-ran'}\necho '{{}}'\n")
    node.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    out = subprocess.run([sys.executable, "-c", CHECK, how], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1], (tmp_path / "node-ran").exists()


def test_the_server_command_imports_the_server_without_the_slow_parts(tmp_path):
    # The usual imports: rfc3987_syntax's parsers built, node run for yarn's config.
    assert imports(tmp_path, "as-is") == ("rfc3987_syntax True True True", True)
    (tmp_path / "node-ran").unlink()
    # Prepared: neither; only the iri formats go unchecked, and jupyterlab still has a registry.
    assert imports(tmp_path, "prepared") == ("- False True True", False)


def test_the_server_command_is_jupyterhub_singleuser():
    out = subprocess.run([sys.executable, "-m", "notebench.hub.server_command", "--version"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == jupyterhub.__version__
