"""Jobs through the executor's API on a running hub: submit one, find its files and events, and
the MLflow run it logs to. Shared by the jobs, faults and other modules that run jobs."""

from __future__ import annotations

import json
import pwd
import secrets
from datetime import datetime
from pathlib import Path

import psutil
import requests

from tests.support.launcher import IS_ROOT, notebook, wait_for

API = "/services/executor/api/"


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def home_of(hub, user: str) -> Path:
    return Path(pwd.getpwnam(f"nb-{user}").pw_dir) if IS_ROOT else hub.data_dir / "homes" / user


def job_dir(hub, job_id: int) -> Path:
    return hub.data_dir / "executor" / "jobs" / str(job_id)


def started_event(hub, job_id: int) -> dict:
    def find():
        try:
            lines = (job_dir(hub, job_id) / "events.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return None
        return next((json.loads(x) for x in lines if x.strip() and json.loads(x)["event"] == "started"), None)

    return wait_for(find, 120, message=f"job {job_id} started")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def submit(hub, token, *cells, parameters_cell=None, **fields) -> dict:
    body = {"notebook": notebook(*cells, parameters=parameters_cell), **fields}
    r = hub.executor("POST", "jobs", token, json=body)
    assert r.status_code == 201, r.text
    assert r.headers["Location"].endswith(f"{API}jobs/{r.json()['id']}")
    return r.json()


def mlflow_get(hub, token, path, **params):
    return requests.get(f"{hub.url}/services/mlflow/api/2.0/mlflow/{path}", params=params,
                        headers={"Authorization": f"token {token}"}, timeout=60)


def finished_run(hub, token, run_id, status):
    """The run, once the executor has closed it (it does so just after the job's status is final)."""
    def closed():
        run = mlflow_get(hub, token, "runs/get", run_id=run_id).json()["run"]
        return run if run["info"]["status"] != "RUNNING" else None

    run = wait_for(closed, 60, message=f"MLflow run {run_id} closed")
    assert run["info"]["status"] == status, run["info"]
    return run


def ran_one_at_a_time(jobs: list[dict]) -> bool:
    """Whether the (ended) jobs' runs, from started_at to finished_at, never overlapped."""
    spans = sorted((datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in jobs)
    return all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))
