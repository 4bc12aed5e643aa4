"""The command of every local user server (NotebenchSpawner's default ``cmd``):
jupyterhub-singleuser, without two costs of its imports that every start paid (bench/README.md,
spawn section, "Where the time goes"):

- ``rfc3987_syntax``: jsonschema imports it for the ``iri``/``iri-reference`` formats, which no
  Jupyter schema uses, and it builds ~35 Lark parsers at import (0.9-1.3 s here). Without it
  jsonschema skips those two format checks, in this process only (kernels are processes of
  their own). Upstream: jupyter-server/jupyter_server#1559.
- jupyterlab runs ``node yarn.js config --json`` at import (0.3-0.6 s) for the npm registry,
  which only matters for building source extensions: a managed server never does (its
  extension manager is pypi).

    python -m notebench.hub.server_command [jupyterhub-singleuser's arguments]
"""

import sys


def prepare() -> None:
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # an import of it now fails: jsonschema skips it
    import jupyterlab.commands

    jupyterlab.commands._yarn_config = lambda logger=None: {"yarn config": {}, "npm config": {}}


def main() -> int:
    prepare()
    from jupyterhub.singleuser import main as singleuser_main

    sys.argv[0] = "jupyterhub-singleuser"
    return singleuser_main()


if __name__ == "__main__":
    sys.exit(main())
