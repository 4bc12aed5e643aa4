"""kill -9 of the executor while a job waits for its owner's quota: after the restart the running
job is found again, the waiting one still waits (neither failed nor started early), and both run,
one after the other, once the quota allows."""

from __future__ import annotations

import signal

import pytest

from tests.support.jobs import home_of, ran_one_at_a_time, submit, unique
from tests.support.launcher import BASE_CONFIG, executor_process, running_hub, wait_for
from tests.support.metrics import samples, value

CONFIG = BASE_CONFIG + "c.Notebench.mlflow_enabled = False\n"


@pytest.fixture(scope="module")
def qhub(tmp_path_factory):
    with running_hub(tmp_path_factory, "quota-restart", CONFIG) as h:
        yield h


def test_a_job_waiting_for_its_quota_still_waits_after_kill_9_and_then_runs(qhub):
    hub = qhub
    owner = unique("qr")
    token = hub.new_user(owner)
    assert hub.executor("PUT", f"quotas/users/{owner}", None, json={"running_jobs": 1}).status_code == 200
    gate = f"gate-{unique('qr')}"
    first = submit(hub, token, f"import os, time\nwhile not os.path.exists({gate!r}): time.sleep(0.05)")
    hub.wait_job(first["id"], token, until=("running",))
    second = submit(hub, token, "print('second')")
    wait_for(lambda: value(samples(hub), "notebench_jobs_waiting_for_quota", quota="running_jobs") == 1, 60,
             message="the second job waiting for the running_jobs quota")

    executor = executor_process(hub)
    executor.send_signal(signal.SIGKILL)
    wait_for(lambda: (p := executor_process(hub)) and p.pid != executor.pid, 120, message="the executor restarted")
    wait_for(lambda: value(samples(hub), "notebench_jobs_waiting_for_quota", quota="running_jobs") == 1, 120,
             message="the restarted executor to hold the second job back again")
    assert [hub.executor("GET", f"jobs/{j['id']}", token).json()["status"] for j in (first, second)] == ["running", "queued"]

    (home_of(hub, owner) / gate).touch()
    done = [hub.wait_job(j["id"], token) for j in (first, second)]
    assert [j["status"] for j in done] == ["succeeded", "succeeded"], done
    assert ran_one_at_a_time(done), done
