"""One notebook, unchanged, logs to MLflow both in JupyterLab (a real kernel of a notebook session
in the user's server) and as a job: examples/train-model.ipynb as shipped, and variants that name
their own experiment, or never start a run. Runs of one notebook land in one experiment."""

from __future__ import annotations

import copy
import json
import secrets
from pathlib import Path

import pytest
import requests

from tests.support.kernels import execute

REPO = Path(__file__).resolve().parents[2]
TRAIN = json.loads((REPO / "examples" / "train-model.ipynb").read_text())


@pytest.fixture(scope="module")
def scientist(hub):
    name = f"both-{secrets.token_hex(3)}"
    token = hub.new_user(name)
    assert hub.spawn(name, "cpu", token=token).status_code in (201, 202)
    yield name, token
    hub.stop_server(name)


def mlflow_get(hub, token, path, **params):
    r = requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/{path}", params=params,
                     headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def run_interactively(hub, user, token, notebook: dict, path: str) -> str:
    """Open ``path`` as JupyterLab does (a notebook session, so its kernel knows its notebook) and
    run its code cells in order; returns the id of the last MLflow run the kernel made."""
    r = requests.post(f"{hub.url}/user/{user}/api/sessions", headers={"Authorization": f"token {token}"},
                      json={"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}}, timeout=60)
    assert r.status_code == 201, r.text
    session = r.json()
    try:
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                execute(hub.url, user, token, session["kernel"]["id"], "".join(cell["source"]), timeout=300)
        printed = execute(hub.url, user, token, session["kernel"]["id"],
                          "import mlflow\nprint(mlflow.last_active_run().info.run_id)", timeout=120)
        return printed.strip().splitlines()[-1]
    finally:
        requests.delete(f"{hub.url}/user/{user}/api/sessions/{session['id']}",
                        headers={"Authorization": f"token {token}"}, timeout=60)


def run_as_job(hub, token, notebook: dict, path: str) -> dict:
    submitted = copy.deepcopy(notebook)
    submitted["metadata"]["notebench"] = {"path": path}  # as the Jobs panel sends it
    r = hub.executor("POST", "jobs", token, json={"notebook": submitted, "parameters": {"C": 0.5}})
    assert r.status_code == 201, r.text
    job = hub.wait_job(r.json()["id"], token, timeout=600)
    assert job["status"] == "succeeded", job
    return job


def experiment_name(hub, token, run_id) -> tuple[str, dict]:
    run = mlflow_get(hub, token, "runs/get", run_id=run_id)["run"]
    experiment = mlflow_get(hub, token, "experiments/get", experiment_id=run["info"]["experiment_id"])
    return experiment["experiment"]["name"], run


def metrics(run) -> set:
    return {m["key"] for m in run["data"].get("metrics", [])}


def with_code_before_start_run(notebook: dict, code: str) -> dict:
    changed = copy.deepcopy(notebook)
    cell = next(c for c in changed["cells"] if "mlflow.start_run" in "".join(c["source"]))
    cell["source"] = code + "".join(cell["source"])
    return changed


def test_the_example_logs_to_the_notebooks_experiment_in_jupyterlab_and_as_a_job(hub, scientist):
    user, token = scientist
    interactive = run_interactively(hub, user, token, TRAIN, "train-model.ipynb")
    name, run = experiment_name(hub, token, interactive)
    assert name == f"{user}/train-model"  # not MLflow's Default experiment (users may not write it)
    assert {"accuracy", "f1"} <= metrics(run)

    job = run_as_job(hub, token, TRAIN, "train-model.ipynb")
    name, run = experiment_name(hub, token, job["mlflow_run_id"])
    assert name == f"{user}/train-model"  # together with the interactive run
    assert {"accuracy", "f1"} <= metrics(run)
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["C"] == "0.5"
    assert run["info"]["status"] == "FINISHED"


def test_a_notebook_that_names_its_experiment_runs_there_both_ways(hub, scientist):
    user, token = scientist
    chosen = f"{user}/iris-tuning"
    notebook = with_code_before_start_run(TRAIN, f"mlflow.set_experiment({chosen!r})\n")
    interactive = run_interactively(hub, user, token, notebook, "tuning.ipynb")
    assert experiment_name(hub, token, interactive)[0] == chosen

    job = run_as_job(hub, token, notebook, "tuning.ipynb")
    name, run = experiment_name(hub, token, job["mlflow_run_id"])
    assert name == chosen  # the job's run moved where the notebook said, with all it holds
    assert {"accuracy", "f1"} <= metrics(run)
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["notebench.job_id"] == str(job["id"])
    assert {p["key"]: p["value"] for p in run["data"]["params"]}["C"] == "0.5"
    artifacts = mlflow_get(hub, token, "artifacts/list", run_id=job["mlflow_run_id"])
    assert "output.ipynb" in {f["path"] for f in artifacts.get("files", [])}
    assert run["info"]["status"] == "FINISHED"


def test_a_notebook_that_never_starts_a_run_logs_both_ways(hub, scientist):
    user, token = scientist
    notebook = with_code_before_start_run(TRAIN, "mlflow.log_metric('warmup', 1.0)\nmlflow.end_run()\n")
    interactive = run_interactively(hub, user, token, notebook, "quick.ipynb")
    assert experiment_name(hub, token, interactive)[0] == f"{user}/quick"

    job = run_as_job(hub, token, notebook, "quick.ipynb")
    name, run = experiment_name(hub, token, job["mlflow_run_id"])
    assert name == f"{user}/quick"
    assert "warmup" in metrics(run)
