"""The MLflow service of Notebench, mounted at ``/services/mlflow/`` by JupyterHub.

Two processes:

- the *front* (``python -m notebench.hub.mlflow_service``, started by the hub as a managed
  service): a tornado server that authenticates every request with JupyterHub identity
  (API token or the hub OAuth cookie) and streams it to
- the *backend*: the MLflow tracking server (FastAPI/Flask app of ``mlflow server --app-name
  basic-auth``) on a loopback port, in its own process group. MLflow's auth app enforces
  permissions; it learns who is calling from headers that only the front can set, because they
  must carry a secret generated at each start of the front (see :mod:`.authz`).

This module stays import-light on purpose: the hub configuration imports it.
"""

import sys

SERVICE_NAME = "mlflow"

# Headers the front adds to every request it forwards to the MLflow backend.
USER_HEADER = "X-Notebench-User"
ADMIN_HEADER = "X-Notebench-Admin"
SECRET_HEADER = "X-Notebench-Secret"
IDENTITY_HEADER_PREFIX = "X-Notebench-"

# Environment of the backend process.
SECRET_ENV = "NOTEBENCH_MLFLOW_FRONT_SECRET"

DEFAULT_PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")


def service_spec(url, data_dir, default_permission="READ", name=SERVICE_NAME):
    """The ``c.JupyterHub.services`` entry that runs this service.

    ``url`` is where the front listens, e.g. ``http://127.0.0.1:8765``.
    """
    return {
        "name": name,
        "url": url,
        "command": [sys.executable, "-m", "notebench.hub.mlflow_service"],
        "environment": {
            "NOTEBENCH_DATA_DIR": str(data_dir),
            "NOTEBENCH_MLFLOW_DEFAULT_PERMISSION": default_permission,
        },
        "oauth_no_confirm": True,
    }


def service_role(name=SERVICE_NAME):
    """The ``c.JupyterHub.load_roles`` entry for the service.

    The service needs no scopes of its own: it identifies callers by asking the hub about
    *their* token (``GET /hub/api/user``), whose answer always includes the ``admin`` flag.
    """
    return {"name": f"{name}-service", "scopes": [], "services": [name]}
