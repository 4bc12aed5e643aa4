"""The MLflow tracking server behind the front, in one process.

    python -m notebench.hub.mlflow_service.backend --host 127.0.0.1 --port PORT \
        --data-dir DATA --static-prefix /services/mlflow

This does what ``mlflow server --app-name basic-auth --workers 1 --serve-artifacts
--artifacts-destination DATA/mlflow/artifacts --static-prefix PREFIX`` does, but runs uvicorn in
this process instead of exec'ing a fresh interpreter for it: the CLI imports MLflow twice (once
to prepare, once in the uvicorn child), which costs ~2.5 s of start-up on a small machine.
MLflow's job runner (huey consumers) is disabled: Notebench runs jobs in its executor.

The front sets, in the environment: MLFLOW_AUTH_CONFIG_PATH, MLFLOW_AUTH_ADMIN_PASSWORD,
MLFLOW_FLASK_SERVER_SECRET_KEY and NOTEBENCH_MLFLOW_FRONT_SECRET.
"""

import argparse
import os
import signal
import sys
import threading
import time
import uuid

from notebench.hub.mlflow_service.config import Paths

# What `mlflow server` puts in its workers' environment (mlflow.server._run_server), by name:
# they must be set before mlflow.server is imported, because routes (static prefix) are computed
# at import time. Checked against MLflow's own constants after the import.
_ENV_NAMES = {
    "BACKEND_STORE_URI_ENV_VAR": "_MLFLOW_SERVER_FILE_STORE",
    "REGISTRY_STORE_URI_ENV_VAR": "_MLFLOW_SERVER_REGISTRY_STORE",
    "ARTIFACT_ROOT_ENV_VAR": "_MLFLOW_SERVER_ARTIFACT_ROOT",
    "SERVE_ARTIFACTS_ENV_VAR": "_MLFLOW_SERVER_SERVE_ARTIFACTS",
    "ARTIFACTS_DESTINATION_ENV_VAR": "_MLFLOW_SERVER_ARTIFACT_DESTINATION",
}
_STATIC_PREFIX_ENV = "_MLFLOW_STATIC_PREFIX"
_SGI_NAME_ENV = "_MLFLOW_SGI_NAME"
_DEFAULT_ARTIFACT_ROOT = "mlflow-artifacts:/"


def _server_environment(paths, static_prefix):
    return {
        _ENV_NAMES["BACKEND_STORE_URI_ENV_VAR"]: paths.backend_store_uri,
        _ENV_NAMES["REGISTRY_STORE_URI_ENV_VAR"]: paths.backend_store_uri,
        _ENV_NAMES["ARTIFACT_ROOT_ENV_VAR"]: _DEFAULT_ARTIFACT_ROOT,
        _ENV_NAMES["SERVE_ARTIFACTS_ENV_VAR"]: "true",
        _ENV_NAMES["ARTIFACTS_DESTINATION_ENV_VAR"]: str(paths.artifacts),
        _STATIC_PREFIX_ENV: static_prefix,
        _SGI_NAME_ENV: "uvicorn",
        "_MLFLOW_SERVER_BOOT_ID": uuid.uuid4().hex,
        "_MLFLOW_IN_JOB_EXECUTOR": "false",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_ENABLE_WORKSPACES": "false",
        # Deny, rather than let through, any route MLflow has no permission check for.
        "MLFLOW_BASIC_AUTH_FAIL_CLOSED": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def _check_env_names():
    import mlflow.environment_variables as mlflow_env
    import mlflow.server.constants as constants
    import mlflow.server.handlers as handlers

    wrong = [
        f"{attr}={getattr(constants, attr, None)!r} (expected {name!r})"
        for attr, name in _ENV_NAMES.items()
        if getattr(constants, attr, None) != name
    ]
    if handlers.STATIC_PREFIX_ENV_VAR != _STATIC_PREFIX_ENV:
        wrong.append(f"STATIC_PREFIX_ENV_VAR={handlers.STATIC_PREFIX_ENV_VAR!r}")
    if mlflow_env._MLFLOW_SGI_NAME.name != _SGI_NAME_ENV:
        wrong.append(f"_MLFLOW_SGI_NAME={mlflow_env._MLFLOW_SGI_NAME.name!r}")
    if wrong:
        raise SystemExit(
            "notebench mlflow backend: this MLflow version names its server settings "
            "differently: " + ", ".join(wrong)
        )


def _exit_with_parent():
    """Stop (SIGTERM, which uvicorn handles gracefully) when the front goes away."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m notebench.hub.mlflow_service.backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--static-prefix", required=True, help="e.g. /services/mlflow")
    args = parser.parse_args(argv)

    _exit_with_parent()
    paths = Paths.from_data_dir(args.data_dir)
    os.environ.update(_server_environment(paths, args.static_prefix.rstrip("/")))
    for name in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        if not os.environ.get(name):
            raise SystemExit(f"notebench mlflow backend: {name} is not set")

    _check_env_names()
    from mlflow.server.handlers import initialize_backend_stores

    initialize_backend_stores(
        paths.backend_store_uri, paths.backend_store_uri, _DEFAULT_ARTIFACT_ROOT
    )
    # create_app initializes the auth store and creates the admin user on first start.
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app

    from notebench.hub.mlflow_service.policy import install as install_policy

    app = create_app(flask_app)
    install_policy(flask_app)  # after MLflow's own checks, which create_app installed

    import uvicorn

    log_config = os.path.join(os.path.dirname(sys.modules["mlflow.server"].__file__),
                              "uvicorn_log_config.yaml")
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=log_config,
        access_log=False,
        timeout_graceful_shutdown=5,
        # The front is the only client; it does not reuse connections.
        timeout_keep_alive=5,
    )


if __name__ == "__main__":
    main()
