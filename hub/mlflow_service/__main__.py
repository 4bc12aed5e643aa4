"""``python -m notebench.hub.mlflow_service``: run by JupyterHub as the ``mlflow`` service.

Its settings are ``c.MlflowService`` (:mod:`.app`). The MLflow backend is started first (its
imports take seconds), then the front is imported and starts listening while MLflow boots;
requests wait for MLflow instead of failing.
"""

import time

_started_at = time.monotonic()

from notebench.hub.mlflow_service.app import MlflowService  # noqa: E402


def main(argv=None):
    MlflowService.launch_instance(argv, started_at=_started_at)


if __name__ == "__main__":
    main()
