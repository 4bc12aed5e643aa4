"""Gated retraining across an MLflow outage and a kill -9 of the executor: the promotion decision
on a job that ended while MLflow was down is delayed, never lost, and made once.

The schedule's job registers a version and logs its metric, then waits; MLflow's front is stopped
(SIGSTOP: it takes connections and answers nothing), the job ends (succeeded: its run cannot be
closed yet, so its decision waits, pending in the store), the executor is killed -9 and restarts,
and MLflow comes back: exactly one decision is made, the alias moved once, audited once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from tests.faults.test_dependency_outage import mlflow_front
from tests.jobs.test_schedules import set_next_run_at
from tests.serving.test_promotion import champion, decisions, job_template, mlflow, policy
from tests.support.jobs import home_of, unique
from tests.support.launcher import BASE_CONFIG, executor_process, running_hub, wait_for

pytestmark = pytest.mark.slow

WAIT_FOR_RELEASE = "import os, time\nprint('registered')\nwhile not os.path.exists({path!r}): time.sleep(0.1)"


@pytest.fixture(scope="module")
def phub(tmp_path_factory):
    with running_hub(tmp_path_factory, "promotion-outage", BASE_CONFIG) as h:
        yield h


def pending(hub, job_id: int) -> bool:
    with sqlite3.connect(hub.data_dir / "executor.sqlite", timeout=60) as db:
        return bool(db.execute("SELECT promotion_pending FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])


def test_a_decision_waits_out_mlflow_and_a_kill_9_and_is_made_once(phub):
    hub = phub
    owner = unique("promo-out")
    token, model = hub.new_user(owner), f"promo-out-{owner}"
    assert mlflow(hub, token, "POST", "registered-models/create", json={"name": model}).status_code == 200
    release = f"release-{os.getpid()}"
    template = job_template(model, 1.0)
    template["notebook"]["cells"].append({"cell_type": "code", "id": "wait", "metadata": {}, "outputs": [],
                                          "execution_count": None, "source": WAIT_FOR_RELEASE.format(path=release)})
    earlier = datetime.now(timezone.utc) - timedelta(hours=2)
    r = hub.executor("POST", "schedules", token, json={"name": "retrain", "cron": f"{earlier.minute} {earlier.hour} * * *",
                                                        "job": template, "promotion": policy(model)})
    assert r.status_code == 201, r.text
    schedule_id = r.json()["id"]
    set_next_run_at(hub, schedule_id, datetime.now(timezone.utc) - timedelta(minutes=1))

    def job_of_schedule():
        return next((j for j in hub.executor("GET", "jobs", token).json()["jobs"] if j["schedule_id"] == schedule_id), None)

    job = wait_for(job_of_schedule, 60, interval=0.2, message="the schedule's job")
    wait_for(lambda: "registered" in hub.executor("GET", f"jobs/{job['id']}/log", token).text, 300,
             message="the job's version registered")

    front = mlflow_front(hub)
    front.send_signal(signal.SIGSTOP)
    try:
        (home_of(hub, owner) / release).touch()
        ended = hub.wait_job(job["id"], token, timeout=300, interval=0.5)
        assert ended["status"] == "succeeded", ended
        assert pending(hub, job["id"])  # waiting for MLflow, in the store
        executor = executor_process(hub)
        executor.send_signal(signal.SIGKILL)
        wait_for(lambda: (p := executor_process(hub)) and p.pid != executor.pid, 120, message="the executor restarted")
        wait_for(lambda: hub.executor("GET", "jobs", token).status_code == 200, 120, message="the executor answering")
        assert decisions(hub, schedule_id, token) == [] and pending(hub, job["id"])
    finally:
        front.send_signal(signal.SIGCONT)

    decided = wait_for(lambda: [d for d in decisions(hub, schedule_id, token) if d["state"] == "done"], 180, interval=0.5,
                       message="the decision once MLflow is back")
    assert len(decided) == 1 and decided[0]["job_id"] == job["id"]
    assert decided[0]["promoted"] is True and decided[0]["challenger_version"] == "1", decided
    assert champion(hub, token, model) == "1"
    wait_for(lambda: not pending(hub, job["id"]), 60, message="the job no longer pending")
    audit = hub.executor("GET", "audit", params={"action": "schedule.promotion", "user": owner}).json()["entries"]
    assert [e["detail"]["job"] for e in audit] == [job["id"]]
    assert hub.executor("DELETE", f"schedules/{schedule_id}", token).status_code == 204
