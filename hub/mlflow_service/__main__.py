"""``python -m notebench.hub.mlflow_service``: run by JupyterHub as the ``mlflow`` service.

The MLflow backend is started first (its imports take seconds), then the front is imported and
starts listening while MLflow boots; requests wait for MLflow instead of failing.
"""

import time

_started_at = time.monotonic()

import logging  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402

from notebench.hub.mlflow_service import config  # noqa: E402
from notebench.hub.mlflow_service.process import BackendProcess  # noqa: E402

log = logging.getLogger("notebench.mlflow")


def main():
    logging.basicConfig(
        level=os.environ.get("NOTEBENCH_MLFLOW_LOG_LEVEL", "INFO").upper(),
        format="[%(levelname).1s %(asctime)s.%(msecs).03d %(name)s] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/mlflow/")
    listen_url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not listen_url:
        raise SystemExit("notebench mlflow service: JUPYTERHUB_SERVICE_URL is not set "
                         "(run it as a JupyterHub managed service)")
    data_dir = config.data_dir_from_env()
    default_permission = config.default_permission_from_env()
    paths, values = config.prepare(data_dir, default_permission)
    front_secret = secrets.token_urlsafe(32)
    backend_port = os.environ.get("NOTEBENCH_MLFLOW_BACKEND_PORT")
    process = BackendProcess(
        paths, prefix, front_secret, values, port=int(backend_port) if backend_port else None
    )
    process.start()
    try:
        import asyncio

        from notebench.hub.mlflow_service.front import serve

        asyncio.run(
            serve(
                process=process,
                prefix=prefix,
                listen_url=listen_url,
                cookie_secret=values["cookie_secret"],
                front_secret=front_secret,
                started_at=_started_at,
            )
        )
    finally:
        # whatever happened to the front, take MLflow down with it
        process.stop(timeout=5)


if __name__ == "__main__":
    main()
