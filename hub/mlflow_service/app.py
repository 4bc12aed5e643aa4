"""The MLflow service as a traitlets Application (``python -m notebench.hub.mlflow_service``).

Configured like the hub and the executor (executor/app.py), with ``c.MlflowService``: each setting
is a trait whose default is read from the environment variable the hub (hub/config.py) and the
Helm chart (templates/mlflow.yaml) set, so with no configuration nothing changes. The operator's
config file (the one given to `notebench up --config`, in ``$NOTEBENCH_USER_CONFIG``) is read too,
and what it sets wins over the environment, e.g.::

    c.MlflowService.default_permission = "NO_PERMISSIONS"
    c.MlflowService.max_api_body_size = 64 * 1024**2

The command line takes ``--MlflowService.<setting>=<value>`` and ``--log-level``, over both.

Standard library and traitlets only: the front (tornado, JupyterHub) is imported after the MLflow
backend has been started (its imports take seconds), and requests wait for MLflow meanwhile.
"""

import logging
import os
import secrets
import sys
import time

from traitlets import CaselessStrEnum, Enum, Float, Integer, Unicode, default
from traitlets.config import Application

from notebench.hub.mlflow_service import DEFAULT_PERMISSIONS, config
from notebench.hub.mlflow_service.process import BackendProcess

# The environment variable each setting's default comes from.
ENV = {
    "data_dir": "NOTEBENCH_DATA_DIR",
    "default_permission": "NOTEBENCH_MLFLOW_DEFAULT_PERMISSION",
    "log_level": "NOTEBENCH_MLFLOW_LOG_LEVEL",
    "backend_port": "NOTEBENCH_MLFLOW_BACKEND_PORT",
    "backend_wait": "NOTEBENCH_MLFLOW_BACKEND_WAIT",
    "max_body_size": "NOTEBENCH_MLFLOW_MAX_BODY_SIZE",
    "max_api_body_size": "NOTEBENCH_MLFLOW_MAX_API_BODY_SIZE",
    "upstream_timeout": "NOTEBENCH_MLFLOW_UPSTREAM_TIMEOUT",
}


def _env(setting, fallback):
    return os.environ.get(ENV[setting], fallback)


class MlflowService(Application):
    name = "notebench-mlflow"
    description = (
        "Notebench's MLflow service: a front that authenticates with JupyterHub, and the MLflow "
        "tracking server and model registry behind it."
    )

    data_dir = Unicode(
        help="Notebench's data dir; the service keeps its store, artifacts and secrets in its mlflow/ "
        "folder (default: $NOTEBENCH_DATA_DIR, which the hub sets from c.Notebench.data_dir).",
    ).tag(config=True)

    @default("data_dir")
    def _data_dir_default(self):
        return _env("data_dir", "")

    default_permission = CaselessStrEnum(
        DEFAULT_PERMISSIONS,
        default_value="READ",
        help="What every user may do with the experiments and models of others: READ (a team "
        "workbench), USE, EDIT, MANAGE or NO_PERMISSIONS (private). Owners and admins are not "
        "affected. Default: $NOTEBENCH_MLFLOW_DEFAULT_PERMISSION, which the hub sets from "
        "c.Notebench.mlflow_default_permission, else READ.",
    ).tag(config=True)

    @default("default_permission")
    def _default_permission_default(self):
        value = (_env("default_permission", "") or "READ").strip().upper()
        if value not in DEFAULT_PERMISSIONS:
            raise SystemExit(
                f"notebench mlflow service: {ENV['default_permission']}={value!r} is not one "
                f"of {', '.join(DEFAULT_PERMISSIONS)}"
            )
        return value

    log_level = Enum(
        (0, 10, 20, 30, 40, 50, "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL"),
        default_value=logging.INFO,
        help="Log level of the service, by value or name (default: $NOTEBENCH_MLFLOW_LOG_LEVEL, else INFO).",
    ).tag(config=True)

    @default("log_level")
    def _log_level_default(self):
        name = _env("log_level", "INFO").upper()
        level = logging.getLevelName(name)
        if not isinstance(level, int):
            raise ValueError(f"Unknown level: {name!r}")
        return level

    backend_port = Integer(
        None,
        allow_none=True,
        help="Loopback port of the MLflow backend process (default: $NOTEBENCH_MLFLOW_BACKEND_PORT, "
        "else a free port at each start of the backend).",
    ).tag(config=True)

    @default("backend_port")
    def _backend_port_default(self):
        value = _env("backend_port", "")
        return int(value) if value else None

    backend_wait = Float(
        30.0,
        help="Seconds a request waits for MLflow to be ready (at start, after a restart) before "
        "it is answered with 503 (default: $NOTEBENCH_MLFLOW_BACKEND_WAIT, else 30).",
    ).tag(config=True)

    @default("backend_wait")
    def _backend_wait_default(self):
        return float(_env("backend_wait", "30"))

    max_body_size = Integer(
        64 * 1024**3,
        help="Largest request body, in bytes, that the service takes: artifact uploads, which "
        "stream to the artifact store (default: $NOTEBENCH_MLFLOW_MAX_BODY_SIZE, else 64 GiB).",
    ).tag(config=True)

    @default("max_body_size")
    def _max_body_size_default(self):
        return int(_env("max_body_size", str(64 * 1024**3)))

    max_api_body_size = Integer(
        16 * 1024**2,
        help="Largest body, in bytes, of a REST call (anything but an artifact upload), which "
        "MLflow reads whole; a larger one is answered with a JSON 413 "
        "(default: $NOTEBENCH_MLFLOW_MAX_API_BODY_SIZE, else 16 MiB).",
    ).tag(config=True)

    @default("max_api_body_size")
    def _max_api_body_size_default(self):
        return int(_env("max_api_body_size", str(16 * 1024**2)))

    upstream_timeout = Float(
        3600.0,
        help="Upper bound, in seconds, for one request to MLflow, large artifact uploads and "
        "downloads included (default: $NOTEBENCH_MLFLOW_UPSTREAM_TIMEOUT, else 3600).",
    ).tag(config=True)

    @default("upstream_timeout")
    def _upstream_timeout_default(self):
        return float(_env("upstream_timeout", "3600"))

    started_at = Float(help="time.monotonic() when the process started (for the start-up times it logs).")

    @default("started_at")
    def _started_at_default(self):
        return time.monotonic()

    def initialize(self, argv=None):
        super().initialize(argv)
        user_config = os.environ.get("NOTEBENCH_USER_CONFIG")
        if user_config:
            self.load_config_file(user_config)

    def start(self):
        logging.basicConfig(
            level=self.log_level,
            format="[%(levelname).1s %(asctime)s.%(msecs).03d %(name)s] %(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
            stream=sys.stderr,
        )
        # Set by JupyterHub for the services it manages (and by the chart on Kubernetes).
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/mlflow/")
        listen_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
        if not listen_url:
            raise SystemExit("notebench mlflow service: JUPYTERHUB_SERVICE_URL is not set "
                             "(run it as a JupyterHub managed service)")
        if not self.data_dir:
            raise SystemExit(f"notebench mlflow service: {ENV['data_dir']} is not set")
        paths, values = config.prepare(self.data_dir, self.default_permission)
        front_secret = secrets.token_urlsafe(32)
        process = BackendProcess(paths, prefix, front_secret, values, port=self.backend_port)
        process.start()
        try:
            import asyncio

            from notebench.hub.mlflow_service.front import serve
            from notebench.hub.platform.audit_outbox import outbox_from_env

            asyncio.run(
                serve(
                    process=process,
                    prefix=prefix,
                    listen_url=listen_url,
                    cookie_secret=values["cookie_secret"],
                    front_secret=front_secret,
                    started_at=self.started_at,
                    backend_wait=self.backend_wait,
                    max_body_size=self.max_body_size,
                    max_api_body_size=self.max_api_body_size,
                    upstream_timeout=self.upstream_timeout,
                    audit_outbox=outbox_from_env(paths.root / "audit-outbox.sqlite"),
                )
            )
        finally:
            # whatever happened to the front, take MLflow down with it
            process.stop(timeout=5)


main = MlflowService.launch_instance
