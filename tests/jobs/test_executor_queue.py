"""The queue: global and per-user limits, and fairness between users."""

import pwd
import uuid

import pytest

from tests.support.launcher import IS_ROOT, notebook, running_hub, wait_for

CONFIG = """
c.Notebench.mlflow_enabled = False
c.Executor.max_running_jobs = 2
c.Executor.max_running_jobs_per_user = 2
"""


@pytest.fixture(scope="module")
def qhub(tmp_path_factory):
    with running_hub(tmp_path_factory, "queue", CONFIG) as h:
        yield h


def home_of(hub, name):
    return pwd.getpwnam(f"nb-{name}").pw_dir if IS_ROOT else str(hub.data_dir / "homes" / name)


RUN = uuid.uuid4().hex[:8]  # homes outlive test runs (real OS accounts): gate names are per run


def blocking_job(hub, token, gate):
    """A job that runs until the file ``gate`` appears in its owner's home."""
    cell = f"import os, time\nwhile not os.path.exists({gate + RUN!r}): time.sleep(0.05)"
    r = hub.executor("POST", "jobs", token, json={"notebook": notebook(cell), "name": gate})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def statuses(hub, token, ids):
    return [hub.executor("GET", f"jobs/{i}", token).json()["status"] for i in ids]


def test_limits_hold_and_a_second_user_is_not_starved(qhub):
    hub = qhub
    ann, bob = hub.new_user("ann"), hub.new_user("bob")
    ann_jobs = [blocking_job(hub, ann, f"ann-{i}") for i in range(4)]
    wait_for(lambda: statuses(hub, ann, ann_jobs[:2]) == ["running", "running"], 120, message="ann's first two running")
    bob_job = blocking_job(hub, bob, "bob-0")
    # Global limit 2: everything else waits.
    assert statuses(hub, ann, ann_jobs[2:]) == ["queued", "queued"]
    assert statuses(hub, bob, [bob_job]) == ["queued"]

    # One slot frees up: bob (no job running) goes before ann's older queued jobs.
    open(f"{home_of(hub, 'ann')}/ann-0{RUN}", "w").close()
    wait_for(lambda: statuses(hub, bob, [bob_job]) == ["running"], 120, message="bob's job started")
    assert statuses(hub, ann, ann_jobs) == ["succeeded", "running", "queued", "queued"]

    for i in range(1, 4):
        open(f"{home_of(hub, 'ann')}/ann-{i}{RUN}", "w").close()
    open(f"{home_of(hub, 'bob')}/bob-0{RUN}", "w").close()
    for job in ann_jobs:
        assert hub.wait_job(job, ann)["status"] == "succeeded"
    assert hub.wait_job(bob_job, bob)["status"] == "succeeded"
