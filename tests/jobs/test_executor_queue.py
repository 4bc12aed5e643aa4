"""The queue: global and per-user limits, and fairness between users."""

import pwd
import uuid
from datetime import datetime, timezone

import pytest

from tests.support.launcher import BASE_CONFIG, IS_ROOT, notebook, running_hub, wait_for

CONFIG = BASE_CONFIG + """
c.Notebench.mlflow_enabled = False
c.Executor.max_running_jobs = 2
c.Executor.max_running_jobs_per_user = 2
c.FairShare.start_charge_seconds = 1
c.FairShare.by = "group"  # users in no group count as themselves: the first two tests hold either way
"""


@pytest.fixture(scope="module")
def qhub(tmp_path_factory):
    with running_hub(tmp_path_factory, "queue", CONFIG) as h:
        yield h


def home_of(hub, name):
    return pwd.getpwnam(f"nb-{name}").pw_dir if IS_ROOT else str(hub.data_dir / "homes" / name)


RUN = uuid.uuid4().hex[:8]  # homes outlive test runs (real OS accounts): gate names are per run


def blocking_job(hub, token, gate, **fields):
    """A job that runs until the file ``gate`` appears in its owner's home."""
    cell = f"import os, time\nwhile not os.path.exists({gate + RUN!r}): time.sleep(0.05)"
    r = hub.executor("POST", "jobs", token, json={"notebook": notebook(cell), "name": gate, **fields})
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


def test_the_user_with_the_least_recent_usage_starts_first(qhub):
    """Fair share: ann's GPU job ran a while (a GPU-second weighs 16 CPU-seconds); carl's job has just
    started. When a slot frees, carl's queued job starts before ann's older one, although ann has
    no job running and carl has one (the old rule, fewest running first, would pick ann)."""
    hub = qhub
    ann, carl, dora = hub.new_user("ann"), hub.new_user("carl"), hub.new_user("dora")
    heavy = blocking_job(hub, ann, "ann-heavy", profile="gpu")
    started = hub.wait_job(heavy, ann, until=("running",))["started_at"]
    wait_for(lambda: (datetime.now(timezone.utc) - datetime.fromisoformat(started)).total_seconds() > 5, 60,
             message="ann's GPU job to have run 5 s")
    open(f"{home_of(hub, 'ann')}/ann-heavy{RUN}", "w").close()
    assert hub.wait_job(heavy, ann)["status"] == "succeeded"

    carl_first, dora_first = blocking_job(hub, carl, "carl-first"), blocking_job(hub, dora, "dora-first")
    wait_for(lambda: statuses(hub, carl, [carl_first]) + statuses(hub, dora, [dora_first]) == ["running"] * 2, 120,
             message="carl's and dora's jobs running (both slots)")
    ann_next, carl_next = blocking_job(hub, ann, "ann-next"), blocking_job(hub, carl, "carl-next")
    open(f"{home_of(hub, 'dora')}/dora-first{RUN}", "w").close()
    wait_for(lambda: statuses(hub, carl, [carl_next]) == ["running"], 120, message="carl's second job started")
    assert statuses(hub, ann, [ann_next]) == ["queued"]

    for user, token, gate, job in (("carl", carl, "carl-first", carl_first), ("carl", carl, "carl-next", carl_next),
                                   ("ann", ann, "ann-next", ann_next)):
        open(f"{home_of(hub, user)}/{gate}{RUN}", "w").close()
        assert hub.wait_job(job, token)["status"] == "succeeded"


def test_by_group_a_member_of_a_heavy_group_waits_behind_a_user_of_none(qhub):
    """c.FairShare.by = "group": fay has used nothing herself, but her group holds ann, who has (the
    tests above). When a slot frees, gus (no group, no usage) starts before fay's older job; by user
    the two would tie and fay's, the older, would start first."""
    hub = qhub
    ann, fay, gus, hal = (hub.new_user(n) for n in ("ann", "fay", "gus", "hal"))
    assert hub.api("POST", "/groups/heavy").status_code == 201
    assert hub.api("POST", "/groups/heavy/users", json={"users": ["ann", "fay"]}).status_code == 200
    assert hub.executor("GET", "jobs", ann).status_code == 200  # the executor learns ann's groups from her request
    blockers = [blocking_job(hub, hal, f"hal-{i}") for i in range(2)]
    wait_for(lambda: statuses(hub, hal, blockers) == ["running"] * 2, 120, message="hal's jobs in both slots")
    fay_job, gus_job = blocking_job(hub, fay, "fay-0"), blocking_job(hub, gus, "gus-0")
    open(f"{home_of(hub, 'hal')}/hal-0{RUN}", "w").close()
    wait_for(lambda: statuses(hub, gus, [gus_job]) == ["running"], 120, message="gus's job started")
    assert statuses(hub, fay, [fay_job]) == ["queued"]
    for user, token, gate, job in (("hal", hal, "hal-1", blockers[1]), ("gus", gus, "gus-0", gus_job),
                                   ("fay", fay, "fay-0", fay_job)):
        open(f"{home_of(hub, user)}/{gate}{RUN}", "w").close()
        assert hub.wait_job(job, token)["status"] == "succeeded"
