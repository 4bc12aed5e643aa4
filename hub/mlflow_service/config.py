"""Files of the MLflow service under the data directory, and its secrets.

Layout (``<data>`` is ``c.MlflowService.data_dir``, by default ``$NOTEBENCH_DATA_DIR``)::

    <data>/mlflow/mlflow.db       tracking + model registry store (SQLite)
    <data>/mlflow/artifacts/      artifact store, served through the service
    <data>/mlflow/auth.db         MLflow auth app: users and permissions
    <data>/mlflow/auth.ini        MLflow auth app configuration, rewritten at each start
    <data>/mlflow/secrets.json    generated once, mode 0600: MLflow admin password,
                                  Flask secret key, cookie secret of the front

Standard library only: the front imports this before it starts the backend.
"""

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ADMIN_USERNAME = "admin"
AUTHORIZATION_FUNCTION = "notebench.hub.mlflow_service.authz:authenticate_request"


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def from_data_dir(cls, data_dir):
        return cls(Path(data_dir).absolute() / "mlflow")

    @property
    def db(self):
        return self.root / "mlflow.db"

    @property
    def artifacts(self):
        return self.root / "artifacts"

    @property
    def auth_db(self):
        return self.root / "auth.db"

    @property
    def auth_ini(self):
        return self.root / "auth.ini"

    @property
    def secrets(self):
        return self.root / "secrets.json"

    @property
    def backend_store_uri(self):
        return f"sqlite:///{self.db}"

    @property
    def auth_db_uri(self):
        return f"sqlite:///{self.auth_db}"


def _write_private(path, text):
    """Write ``text`` to ``path`` with mode 0600, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_SECRET_KEYS = ("admin_password", "flask_secret_key", "cookie_secret")


def load_secrets(paths):
    """The service's persistent secrets, generated on first use (file mode 0600)."""
    values = {}
    if paths.secrets.exists():
        values = json.loads(paths.secrets.read_text())
    missing = [k for k in _SECRET_KEYS if not values.get(k)]
    if missing:
        for key in missing:
            values[key] = secrets.token_urlsafe(32)
        _write_private(paths.secrets, json.dumps(values, indent=1) + "\n")
    elif paths.secrets.stat().st_mode & 0o077:
        os.chmod(paths.secrets, 0o600)
    return values


def prepare(data_dir, default_permission):
    """Create the directories and write the auth configuration; returns (paths, secrets)."""
    paths = Paths.from_data_dir(data_dir)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(paths.root, 0o700)
    paths.artifacts.mkdir(exist_ok=True, mode=0o700)
    values = load_secrets(paths)
    # The admin password is not written here: the backend gets it through
    # MLFLOW_AUTH_ADMIN_PASSWORD, and it only matters when auth.db is created.
    ini = (
        "# Written by notebench.hub.mlflow_service at each start; edits are lost.\n"
        "[mlflow]\n"
        f"default_permission = {default_permission}\n"
        f"database_uri = {paths.auth_db_uri}\n"
        f"admin_username = {ADMIN_USERNAME}\n"
        f"authorization_function = {AUTHORIZATION_FUNCTION}\n"
    )
    _write_private(paths.auth_ini, ini)
    return paths, values
