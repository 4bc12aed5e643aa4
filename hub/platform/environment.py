"""The environment Notebench gives a user's workload: a server (local or a pod), a job's kernel and
Dask workers, a scoring server. One builder, so they all see the same variables."""

from __future__ import annotations


def workload_env(profile=None, *, gpus: list[str] | None = None, mlflow_url: str = "", mlflow_token=None,
                 notebench_url: str = "") -> dict:
    """The profile's own variables and its name; the GPUs held (``CUDA_VISIBLE_DEVICES``, empty for
    none, so a CPU workload never sees a GPU by accident; None: not set here, e.g. a pod, where
    the device plugin decides); MLflow's URL with the user's token; Notebench's URL (for the CLI
    and the panels). Notebench's own variables win over a profile's."""
    env = {}
    if profile is not None:
        env.update(profile.env)
        env["NOTEBENCH_PROFILE"] = profile.name
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    if mlflow_url:
        env["MLFLOW_TRACKING_URI"] = mlflow_url
        env["MLFLOW_TRACKING_TOKEN"] = mlflow_token  # a KubeSpawner callable on Kubernetes
    if notebench_url:
        env["NOTEBENCH_URL"] = notebench_url
    return env
