"""Fair share's recent usage (executor/jobs/fair_share.py) and the quota arithmetic (executor/quotas.py),
on a real store."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest

from notebench.executor import db
from notebench.executor.db import Job, utcnow
from notebench.executor.jobs.fair_share import FairShare
from notebench.executor.quotas import Quotas, holds
from notebench.hub.platform.profiles import Profiles


@pytest.fixture
def sessions(tmp_path):
    return db.connect(f"sqlite:///{tmp_path / 'executor.sqlite'}")


def add_job(sessions, owner, profile, started, finished, workers=0, worker_profile=None):
    with sessions() as s:
        s.add(Job(name="j", owner=owner, status="succeeded" if finished else "running", profile=profile, kernel="python3",
                  timeout_seconds=60, started_at=started, finished_at=finished, workers=workers,
                  worker_profile=worker_profile, executor_id=None if finished else "x"))
        s.commit()


def test_recent_usage_decays_by_half_life_and_weighs_gpus(sessions):
    fair = FairShare(sessions, Profiles(), half_life_hours=1.0, gpu_weight=10.0)
    now = utcnow()
    # ann: a 2-core job that ran one hour, ending one hour ago; bob: a GPU job (4 cores + 1 GPU) running 60 s.
    add_job(sessions, "ann", "cpu", now - timedelta(hours=2), now - timedelta(hours=1))
    add_job(sessions, "bob", "gpu", now - timedelta(seconds=60), None)
    usage = fair.recent_usage(now)
    h = 3600 / math.log(2)
    assert usage["ann"] == pytest.approx(2 * h * (0.5 - 0.25))
    assert usage["bob"] == pytest.approx(14 * h * (1 - 2 ** (-60 / 3600)))
    assert usage["nobody"] == 0


def test_a_job_holds_its_kernel_and_workers_and_blocking_names_the_first_full_quota(sessions):
    profiles = Profiles()
    assert holds(profiles, "cpu", "gpu", 2) == Counter({"running_jobs": 1, "cpu": 2 + 2 * 4, "memory": 4 + 2 * 16, "gpus": 2})
    quotas = Quotas(sessions, profiles)
    limits = dict.fromkeys(("running_jobs", "gpus", "cpu", "memory"), None)
    held = Counter({"running_jobs": 1, "cpu": 2.0, "memory": 4.0})
    assert quotas.blocking({**limits, "cpu": 4}, held, holds(profiles, "cpu", None, 0)) is None  # 2 + 2 fits 4
    assert quotas.blocking({**limits, "cpu": 3.5}, held, holds(profiles, "cpu", None, 0)) == "cpu"
    assert quotas.blocking({**limits, "running_jobs": 1, "cpu": 0}, held, holds(profiles, "cpu", None, 0)) == "running_jobs"
    assert quotas.blocking({**limits, "gpus": 0}, held, holds(profiles, "cpu", None, 0)) is None  # needs no GPU


def test_gpu_hours_of_the_last_day_count_open_intervals_to_now_and_cut_old_ones(sessions):
    now = utcnow()

    def interval(ref, gpus, started, last, ended):
        return db.UsageInterval(kind="job", ref=ref, owner="ann", groups=[], profile="gpu", count=1, cpu=4,
                                memory_bytes=0, gpus=gpus, started_at=started, last_seen_at=last, ended=ended)

    with sessions() as s:
        s.add_all([interval("job 1", 2, now - timedelta(hours=30), now - timedelta(hours=23), True),  # 1 h in the day
                   interval("job 2", 1, now - timedelta(hours=2), now - timedelta(hours=1), False),  # open: 2 h
                   interval("job 3", 1, now - timedelta(hours=50), now - timedelta(hours=40), True)])  # too old
        s.commit()
    assert Quotas(sessions, Profiles()).gpu_hours_last_day("ann") == pytest.approx(2 * 1 + 2, abs=1e-3)


def test_by_group_a_user_counts_under_their_least_used_group_or_their_own():
    usage = Counter({"ann": 100.0, "bob": 10.0, "cid": 1.0, "dee": 5.0})
    groups = {"ann": ["heavy"], "bob": ["heavy", "light"], "cid": ["light"], "dee": [], "eve": ["light"]}
    scores = FairShare.by_group(usage, groups)
    # heavy: ann + bob = 110; light: bob + cid = 11 (eve has used nothing)
    assert scores == Counter({"ann": 110.0, "bob": 11.0, "cid": 11.0, "dee": 5.0, "eve": 11.0})
    # Who starts first: dee (5), then the light group's users, then ann.
    assert sorted(groups, key=lambda o: scores[o])[0] == "dee" and sorted(groups, key=lambda o: scores[o])[-1] == "ann"
