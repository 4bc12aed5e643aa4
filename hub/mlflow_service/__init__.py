"""The MLflow service of Notebench, mounted at ``/services/mlflow/`` by JupyterHub.

Two processes:

- the *front* (``python -m notebench.hub.mlflow_service``, started by the hub as a managed
  service): a tornado server that authenticates every request with JupyterHub identity
  (API token or the hub OAuth cookie) and streams it to
- the *backend*: the MLflow tracking server (FastAPI/Flask app of ``mlflow server --app-name
  basic-auth``) on a loopback port, in its own process group. MLflow's auth app enforces
  permissions; it learns who is calling from headers that only the front can set, because they
  must carry a secret generated at each start of the front (see :mod:`.authz`). Notebench's
  own rules on top of MLflow's (reserved ``<user>/`` namespaces, grants to users MLflow has not
  seen yet) are in :mod:`.policy`.

Its settings are traitlets configuration, ``c.MlflowService`` (:mod:`.app`), whose defaults are the
``NOTEBENCH_MLFLOW_*`` environment variables the hub and the Helm chart set.

This module stays import-light: the front reads it before it starts MLflow.
"""

SERVICE_NAME = "mlflow"

# Headers the front adds to every request it forwards to the MLflow backend.
USER_HEADER = "X-Notebench-User"
ADMIN_HEADER = "X-Notebench-Admin"
SECRET_HEADER = "X-Notebench-Secret"
IDENTITY_HEADER_PREFIX = "X-Notebench-"

# Environment of the backend process.
SECRET_ENV = "NOTEBENCH_MLFLOW_FRONT_SECRET"

DEFAULT_PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")
