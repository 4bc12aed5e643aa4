"""Notebench's MLflow plugins, which MLflow loads in users' kernels (entry points in pyproject.toml),
so that one notebook logs the same way in JupyterLab and as a job, unchanged:

- ``NotebookExperiment`` (``mlflow.default_experiment_provider``): when the code names no
  experiment, its runs go to the notebook's own, ``<user>/<notebook name>``, made on first use.
  A job's runs go to ``<owner>/<job name>`` (the executor sets ``NOTEBENCH_MLFLOW_EXPERIMENT``), and
  a job is named after its notebook unless the user names it: interactive runs and job runs of a
  notebook land together. Without it MLflow would use its Default experiment, which users may not
  write (403).
- ``JobRunTags`` (``mlflow.run_context_provider``): every run made in a job carries the job's id.
- The job's run follows the notebook's ``set_experiment``. The executor makes each job's run ahead
  (its parameters, then its output notebook and status at the end) in ``<owner>/<job name>`` and
  hands it to the kernel as ``MLFLOW_RUN_ID``; MLflow refuses to resume a run of another experiment
  than the one the notebook named. Where the notebook named another, the job's run moves there
  when MLflow first asks for it (``move_job_run``): a new run with its tags and parameters, and the
  old one deleted with a ``notebench.moved_to`` tag, which the executor follows
  (services.MlflowRuns.current_run). MLflow offers no hook there, so this replaces the ``get`` of
  its ``MLFLOW_RUN_ID`` variable (start_run's only way to the run it resumes) in job kernels only.

All of it runs as the user, with the user's own MLflow token.
"""

from __future__ import annotations

import os
from pathlib import Path

JOB_EXPERIMENT = "NOTEBENCH_MLFLOW_EXPERIMENT"  # set by the executor in a job's kernel
JOB_ID = "NOTEBENCH_JOB_ID"
MOVED_TO = "notebench.moved_to"


def notebook_experiment_name(environ=os.environ) -> str | None:
    """The experiment of this kernel's notebook: the job's, or ``<user>/<notebook name>`` in a
    user's server (jupyter_server gives a notebook's kernel its path as ``JPY_SESSION_NAME``);
    ``<user>/interactive`` for a console or a kernel of no notebook."""
    if environ.get(JOB_EXPERIMENT):
        return environ[JOB_EXPERIMENT]
    user = environ.get("JUPYTERHUB_USER")
    if not user:
        return None  # not in a Notebench server: MLflow's own defaults
    session = environ.get("JPY_SESSION_NAME", "")
    name = Path(session).name
    if name.endswith(".ipynb") and name != ".ipynb":
        return f"{user}/{name[: -len('.ipynb')]}"
    return f"{user}/interactive"


def get_or_create_experiment(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # made meanwhile by another kernel


class NotebookExperiment:
    """MLflow's default experiment provider interface (in_context, get_experiment_id)."""

    def in_context(self) -> bool:
        return notebook_experiment_name() is not None

    def get_experiment_id(self) -> str:
        from mlflow import MlflowClient

        name = notebook_experiment_name()
        assert name is not None, "MLflow asks only when in_context() is true"
        return get_or_create_experiment(MlflowClient(), name)


class JobRunTags:
    """MLflow's run context provider interface (in_context, tags)."""

    def in_context(self) -> bool:
        return bool(os.environ.get(JOB_ID))

    def tags(self) -> dict:
        return {"notebench.job_id": os.environ[JOB_ID]}


def move_job_run(run_id: str, experiment_id: str) -> str:
    """The job's run ``run_id``, moved to ``experiment_id`` (see the module's docstring); its new id."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient()
    old = client.get_run(run_id)
    tags = dict(old.data.tags)
    run_name = tags.pop("mlflow.runName", None)
    new = client.create_run(experiment_id, start_time=old.info.start_time, tags=tags, run_name=run_name)
    params = [Param(k, v) for k, v in old.data.params.items()]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(new.info.run_id, params=params[start : start + 100])
    client.set_tag(run_id, MOVED_TO, new.info.run_id)
    client.delete_run(run_id)
    return new.info.run_id


def _job_run_id(variable):
    """``MLFLOW_RUN_ID.get`` in a job kernel: the job's run, in the experiment the notebook named."""
    original = type(variable).get

    def get():
        run_id = original(variable)
        from mlflow.tracking import fluent

        wanted = fluent._active_experiment_id  # set by set_experiment() only
        if not run_id or wanted is None:
            return run_id
        from mlflow import MlflowClient

        if MlflowClient().get_run(run_id).info.experiment_id == wanted:
            return run_id
        moved = move_job_run(run_id, wanted)
        os.environ[variable.name] = moved
        return moved

    return get


def _install_in_job_kernel() -> None:
    if not os.environ.get(JOB_ID):
        return
    from mlflow.environment_variables import MLFLOW_RUN_ID

    MLFLOW_RUN_ID.get = _job_run_id(MLFLOW_RUN_ID)  # type: ignore[method-assign]


_install_in_job_kernel()  # on import: MLflow imports its plugins while it is imported
