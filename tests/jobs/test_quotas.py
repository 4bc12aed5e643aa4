"""Quotas of users and groups (GET/PUT /api/quotas/users|groups/{name}): who may read and set
them, how a user's own, their groups' and the defaults combine, and the checks at job submission
(queued jobs, Dask workers) and endpoint deploy, under concurrency too."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.endpoints import deploy, wait_status
from tests.support.jobs import home_of, ran_one_at_a_time, submit, unique
from tests.support.launcher import notebook, wait_for
from tests.support.metrics import samples, value

QUANTITIES = ("gpus", "gpu_hours_per_day", "cpu", "memory", "running_jobs", "queued_jobs", "dask_workers", "endpoints")


@pytest.fixture(scope="module")
def people(hub):
    owner, other, group = unique("qu-own"), unique("qu-oth"), unique("qu-team")
    people = {"owner": owner, "owner_token": hub.new_user(owner), "other": other, "other_token": hub.new_user(other),
              "group": group}
    assert hub.api("POST", f"/groups/{group}").status_code == 201
    assert hub.api("POST", f"/groups/{group}/users", json={"users": [owner]}).status_code == 200
    return people


def put(hub, kind, name, body, token=None):
    return hub.executor("PUT", f"quotas/{kind}/{name}", token, json=body)


def assert_error(r, status: int, field: str | None) -> dict:
    assert r.status_code == status, r.text
    assert r.json()["status"] == status and r.json()["field"] == field, r.json()
    return r.json()


def test_who_reads_and_sets_quotas(hub, people):
    owner, other = people["owner"], people["other"]
    path = f"quotas/users/{owner}"
    assert_error(hub.executor("GET", path, ""), 401, None)
    assert_error(hub.executor("GET", path, people["other_token"]), 403, None)
    assert_error(hub.executor("GET", f"quotas/groups/{people['group']}", people["other_token"]), 403, None)
    mine = hub.executor("GET", path, people["owner_token"])
    assert mine.status_code == 200, mine.text
    assert set(QUANTITIES) <= set(mine.json()) and mine.json()["usage"]["queued_jobs"] == 0
    assert hub.executor("GET", f"quotas/groups/{people['group']}", people["owner_token"]).status_code == 200  # a member
    for token in (people["owner_token"], people["other_token"]):  # nobody raises their own
        assert_error(put(hub, "users", owner, {"queued_jobs": None}, token), 403, None)
    assert_error(hub.executor("PUT", f"quotas/users/{other}", "", json={}), 401, None)
    r = put(hub, "users", other, {"endpoints": 4})
    assert r.status_code == 200 and r.json()["endpoints"] == 4 and r.json()["source"]["endpoints"] == "user", r.text
    assert hub.executor("GET", f"quotas/users/{other}", people["other_token"]).json()["endpoints"] == 4
    # Recorded in the audit log, before and after.
    entry = hub.executor("GET", "audit", None, params={"user": other, "action": "quota.update"}).json()["entries"][0]
    assert entry["detail"] == {"before": {}, "after": {"endpoints": 4}} and entry["actor"] == "admin"


@pytest.mark.parametrize("body,field", [
    ({"queued_jobs": "5"}, "queued_jobs"), ({"queued_jobs": -1}, "queued_jobs"), ({"gpus": 1.5}, "gpus"),
    ({"endpoints": True}, "endpoints"), ({"cpus": 4}, "cpus"), ([], "body"),
])
def test_bad_quotas_name_the_field_and_change_nothing(hub, people, body, field):
    before = hub.executor("GET", f"quotas/users/{people['other']}").json()
    assert_error(hub.executor("PUT", f"quotas/users/{people['other']}", None, json=body), 400, field)
    assert hub.executor("GET", f"quotas/users/{people['other']}").json() == before


def test_own_then_groups_then_defaults(hub, people):
    owner, group = people["owner"], people["group"]
    assert put(hub, "groups", group, {"queued_jobs": 7, "dask_workers": None}).status_code == 200
    granted = hub.executor("GET", f"quotas/groups/{group}").json()
    assert (granted["queued_jobs"], granted["source"]["queued_jobs"], granted["source"]["gpus"]) == (7, f"group:{group}", "default")
    assert granted["set"] == {"queued_jobs": 7, "dask_workers": None} and granted["usage"] is None
    q = hub.executor("GET", f"quotas/users/{owner}").json()  # an admin asking: the hub says which groups
    assert (q["queued_jobs"], q["source"]["queued_jobs"]) == (7, f"group:{group}")
    assert (q["dask_workers"], q["source"]["dask_workers"]) == (None, f"group:{group}")
    assert q["source"]["gpus"] == "default"
    assert put(hub, "users", owner, {"queued_jobs": 2}).json()["queued_jobs"] == 2  # their own wins
    assert put(hub, "users", owner, {}).json()["queued_jobs"] == 7  # unset: the group's again
    assert hub.executor("GET", f"quotas/users/{owner}", people["owner_token"]).json()["queued_jobs"] == 7  # as they see it


def test_dask_workers_per_job_refused_with_the_quota(hub, people):
    token = people["owner_token"]
    assert put(hub, "users", people["owner"], {"dask_workers": 1}).status_code == 200
    r = hub.executor("POST", "jobs", token, json={"notebook": notebook("print(1)"), "workers": 2})
    body = assert_error(r, 403, "dask_workers")
    assert (body["quota"], body["limit"], body["current"]) == ("dask_workers", 1, 2)
    assert put(hub, "users", people["owner"], {}).status_code == 200


@pytest.mark.parametrize("quota,limit,profile", [("running_jobs", 1, "cpu"), ("gpus", 1, "gpu"), ("cpu", 3, "cpu")])
def test_a_held_quota_makes_jobs_wait_not_fail(hub, people, quota, limit, profile):
    """Two 1-GPU or 2-core jobs under a quota that fits one at a time: the second waits in the queue
    (saying so in the metrics), then runs; neither fails and they never overlap."""
    token = people["owner_token"]
    assert put(hub, "users", people["owner"], {quota: limit}).status_code == 200
    gate = f"gate-{unique(quota)}"
    first = submit(hub, token, f"import os, time\nwhile not os.path.exists({gate!r}): time.sleep(0.05)", profile=profile)
    second = submit(hub, token, "print('second')", profile=profile)
    hub.wait_job(first["id"], token, until=("running",))
    # The owner's other slot (c.Executor.max_running_jobs_per_user = 2) and a GPU are free: only the quota holds it.
    wait_for(lambda: value(samples(hub), "notebench_jobs_waiting_for_quota", quota=quota) == 1, 60,
             message=f"the second job to be held by {quota}")
    assert hub.executor("GET", f"jobs/{second['id']}", token).json()["status"] == "queued"
    (home_of(hub, people["owner"]) / gate).touch()
    done = [hub.wait_job(j["id"], token) for j in (first, second)]
    assert [j["status"] for j in done] == ["succeeded", "succeeded"], done
    assert ran_one_at_a_time(done), done
    assert put(hub, "users", people["owner"], {}).status_code == 200


@pytest.mark.parametrize("quota,limit,fields,needs", [
    ("cpu", 3, {"workers": 1}, 4),  # the kernel's 2 cores and the worker's 2
    ("memory", 8, {"workers": 1, "worker_profile": "gpu"}, 20),  # 4 GiB and 16 GiB
    ("gpus", 1, {"workers": 1, "worker_profile": "gpu", "profile": "gpu"}, 2),
    ("running_jobs", 0, {}, 1),
])
def test_a_job_that_could_never_start_under_a_quota_is_refused(hub, people, quota, limit, fields, needs):
    assert put(hub, "users", people["owner"], {quota: limit}).status_code == 200
    r = hub.executor("POST", "jobs", people["owner_token"], json={"notebook": notebook("print(1)"), **fields})
    body = assert_error(r, 403, quota)
    assert (body["quota"], body["limit"], body["current"]) == (quota, limit, needs)
    assert "could never start" in body["message"]
    assert value(samples(hub), "notebench_quota_refusals_total", quota=quota) >= 1
    assert put(hub, "users", people["owner"], {}).status_code == 200


def test_twenty_parallel_submissions_never_pass_the_queued_jobs_quota(hub, people):
    token = people["owner_token"]
    # The owner's two running slots (c.Executor.max_running_jobs_per_user) taken: what comes now waits.
    blockers = [submit(hub, token, "import time; time.sleep(600)")["id"] for _ in range(2)]
    for job_id in blockers:
        hub.wait_job(job_id, token, until=("running",))
    assert put(hub, "users", people["owner"], {"queued_jobs": 3}).status_code == 200

    def one(i):
        return hub.executor("POST", "jobs", token, json={"notebook": notebook(f"print({i})"), "name": f"flood-{i}"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    accepted = [r.json()["id"] for r in answers if r.status_code == 201]
    refused = [r.json() for r in answers if r.status_code != 201]
    assert len(accepted) == 3, [r.text for r in answers]
    assert len(refused) == 17 and all(
        (b["status"], b["quota"], b["limit"], b["current"]) == (429, "queued_jobs", 3, 3) for b in refused), refused
    assert hub.executor("GET", f"quotas/users/{people['owner']}", token).json()["usage"]["queued_jobs"] == 3
    for job_id in blockers + accepted:
        hub.executor("POST", f"jobs/{job_id}/cancel", token)
    assert put(hub, "users", people["owner"], {}).status_code == 200


def test_endpoints_quota_at_deploy(hub, people, model):
    token = people["owner_token"]
    assert put(hub, "users", people["owner"], {"endpoints": 0}).status_code == 200
    versions = [{"model": model["name"], "version": "1", "weight": 100}]
    name = unique("qu-ep")
    body = assert_error(hub.executor("POST", "endpoints", token, json={"name": name, "versions": versions}), 409, "endpoints")
    assert (body["quota"], body["limit"], body["current"]) == ("endpoints", 0, 0)
    assert hub.executor("GET", f"endpoints/{name}", token).status_code == 404  # nothing made
    assert put(hub, "users", people["owner"], {"endpoints": None}).status_code == 200  # unlimited
    deploy(hub, token, name, versions)
    wait_status(hub, name, token)
    assert hub.executor("GET", f"quotas/users/{people['owner']}", token).json()["usage"]["endpoints"] == 1
    assert hub.executor("DELETE", f"endpoints/{name}", token).status_code == 204


def test_spawn_is_refused_past_the_gpu_and_cpu_quotas_counting_running_jobs(hub, people):
    """A GPU job holds the owner's one GPU: a GPU server is refused at spawn, naming the quota, and
    nothing is taken (no GPU leased, no server); a CPU server within the CPU quota starts."""
    owner, token = people["owner"], people["owner_token"]
    assert put(hub, "users", owner, {"gpus": 1, "cpu": 1}).status_code == 200
    r = hub.spawn(owner, "cpu")  # 2 cores past the 1 allowed
    assert r.status_code == 403 and "quota cpu, limit 1, current 0" in r.json()["message"], r.text
    assert hub.server(owner) is None
    assert put(hub, "users", owner, {"gpus": 1, "cpu": 8}).status_code == 200
    gate = f"gate-{unique('spawn')}"
    job = submit(hub, token, f"import os, time\nwhile not os.path.exists({gate!r}): time.sleep(0.05)", profile="gpu")
    hub.wait_job(job["id"], token, until=("running",))
    r = hub.spawn(owner, "gpu")
    assert r.status_code == 403, r.text
    assert "needs 1 GPU(s); you hold 1 of your quota of 1 (quota gpus, limit 1, current 1)" in r.json()["message"]
    assert hub.server(owner) is None
    r = hub.spawn(owner, "cpu")
    assert r.status_code in (201, 202), r.text
    hub.stop_server(owner)
    (home_of(hub, owner) / gate).touch()
    assert hub.wait_job(job["id"], token)["status"] == "succeeded"
    assert hub.spawn(owner, "gpu").status_code in (201, 202)  # the GPU is free again
    hub.stop_server(owner)
    assert put(hub, "users", owner, {}).status_code == 200


def test_a_running_server_holds_cpu_so_a_job_waits_until_it_stops(hub, people):
    owner, token = people["owner"], people["owner_token"]
    r = hub.spawn(owner, "cpu")
    assert r.status_code in (201, 202), r.text
    assert put(hub, "users", owner, {"cpu": 3}).json()["usage"]["cpu"] == 2  # the server's 2 cores
    job = submit(hub, token, "print('after the server')")
    wait_for(lambda: value(samples(hub), "notebench_jobs_waiting_for_quota", quota="cpu") == 1, 60,
             message="the job to wait for the server's cores")
    assert hub.executor("GET", f"jobs/{job['id']}", token).json()["status"] == "queued"
    hub.stop_server(owner)
    assert hub.wait_job(job["id"], token)["status"] == "succeeded"  # started once the server was gone
    assert put(hub, "users", owner, {}).status_code == 200


def test_no_gpu_hours_refuses_gpu_jobs_and_servers_but_not_cpu_ones(hub, people):
    owner, token = people["owner"], people["owner_token"]
    assert put(hub, "users", owner, {"gpu_hours_per_day": 0}).status_code == 200
    body = assert_error(hub.executor("POST", "jobs", token, json={"notebook": notebook("1"), "profile": "gpu"}),
                        403, "gpu_hours_per_day")
    assert (body["quota"], body["limit"]) == ("gpu_hours_per_day", 0)
    r = hub.spawn(owner, "gpu")
    assert r.status_code == 403 and "quota gpu_hours_per_day, limit 0" in r.json()["message"], r.text
    assert hub.wait_job(submit(hub, token, "print(1)")["id"], token)["status"] == "succeeded"
    assert put(hub, "users", owner, {}).status_code == 200
