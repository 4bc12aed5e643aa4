"""A dependency that is down delays jobs and never fails them (issue 13, item 5).

MLflow's front is stopped (SIGSTOP: it accepts connections and never answers, the way a hung or
restarting service looks to its callers) while a job ends and others are submitted. Nothing may
fail: the queued jobs wait, each gets exactly one MLflow run once MLflow answers again, and the
run of the job that ended meanwhile is closed then.
"""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from tests.support.jobs import finished_run, home_of, mlflow_get
from tests.support.launcher import notebook, running_hub, wait_for

pytestmark = pytest.mark.slow

CONFIG = """
c.GPUInventory.devices = ["0", "1"]
c.Executor.max_running_jobs_per_user = 4
"""


@pytest.fixture(scope="module")
def ohub(tmp_path_factory):
    with running_hub(tmp_path_factory, "outage", CONFIG) as h:
        yield h


def mlflow_front(hub) -> psutil.Process:
    """The MLflow front of this hub: the parent of the MLflow server that keeps this data dir."""
    def find():
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if "notebench.hub.mlflow_service.backend" in cmd and str(hub.data_dir) in cmd:
                return p.parent()
    return wait_for(find, 60, message="the MLflow front")


def submit(hub, token, *cells, name):
    r = hub.executor("POST", "jobs", token, json={"notebook": notebook(*cells), "name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def runs_of_job(hub, token, job_id: int, experiment_id: str) -> list:
    r = hub_post(hub, token, "runs/search", {"experiment_ids": [experiment_id],
                                             "filter": f"tags.`notebench.job_id` = '{job_id}'"})
    return r.get("runs", [])


def hub_post(hub, token, path, body):
    import requests

    r = requests.post(f"{hub.url}/services/mlflow/api/2.0/mlflow/{path}", json=body,
                      headers={"Authorization": f"token {token}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_mlflow_down_delays_jobs_and_loses_no_run(ohub):
    hub = ohub
    token = hub.new_user("patient")
    release = f"release-{os.getpid()}"
    # Runs while MLflow goes down, and ends during the outage.
    ending = submit(hub, token, "print('the ending job runs')",
                    f"import os, time\nwhile not os.path.exists({release!r}): time.sleep(0.1)", name="outage")
    # Its cells run: MLflow has answered (its run is made) before the outage starts.
    wait_for(lambda: "the ending job runs" in hub.executor("GET", f"jobs/{ending}/log", token).text, 300,
             message="the first job running its cells")
    front = mlflow_front(hub)
    front.send_signal(signal.SIGSTOP)
    try:
        (home_of(hub, "patient") / release).touch()
        # Submitted during the outage: they wait in the queue.
        waiting = [submit(hub, token, f"print('job {i} ran')", name="outage") for i in range(3)]
        ended = hub.wait_job(ending, token, timeout=120)
        assert ended["status"] == "succeeded", ended  # its end is recorded; its run is closed later

        def statuses():
            return [hub.executor("GET", f"jobs/{job_id}", token).json()["status"] for job_id in waiting]

        # Each has tried to start and met the outage (or, wrongly, failed on it).
        wait_for(lambda: hub.log().count("waits in the queue: a service it needs is down") >= len(waiting)
                 or "failed" in statuses(), 180, message="the executor to try the jobs while MLflow is down")
        assert set(statuses()) <= {"queued", "running"}, statuses()
    finally:
        front.send_signal(signal.SIGCONT)
    for job_id in waiting:
        job = hub.wait_job(job_id, token, timeout=300)
        assert job["status"] == "succeeded", job
        run = finished_run(hub, token, job["mlflow_run_id"], "FINISHED")
        made = runs_of_job(hub, token, job_id, run["info"]["experiment_id"])
        assert [r["info"]["run_id"] for r in made] == [job["mlflow_run_id"]]  # one run, made once
    # The run of the job that ended during the outage is closed once MLflow is back.
    run = wait_for(lambda: (r := mlflow_get(hub, token, "runs/get", run_id=ended["mlflow_run_id"]).json()["run"])
                   ["info"]["status"] == "FINISHED" and r, 180, message="the run of the job that ended during the outage closed")
    artifacts = mlflow_get(hub, token, "artifacts/list", run_id=ended["mlflow_run_id"]).json()
    assert "output.ipynb" in {f["path"] for f in artifacts.get("files", [])}
    assert len(runs_of_job(hub, token, ending, run["info"]["experiment_id"])) == 1
