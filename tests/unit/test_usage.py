"""The usage meter and its reports (executor/usage.py) on a real store (SQLite and PostgreSQL),
without a hub: splitting at UTC midnight, what a job, its Dask workers and a server accrue, a hub that cannot be asked, prices."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from traitlets.config import Config

from notebench.executor import db
from notebench.executor.db import Job, UsageInterval
from notebench.executor.services import HubTokens
from notebench.executor.usage import GiB, Live, Usage, split_days
from notebench.hub.platform.profiles import Profiles
from tests.unit import test_store

pytestmark = pytest.mark.timeout(60)
# test_store.py's store fixtures: each test on SQLite and on PostgreSQL.
postgres, db_url, engines = test_store.postgres, test_store.db_url, test_store.engines

UTC = timezone.utc
PROFILES = [
    {"name": "small", "cpu_limit": 2, "mem_limit": "4G", "default": True},
    {"name": "gpu", "cpu_limit": 8, "cpu_request": 4, "mem_limit": "32G", "mem_request": "16G", "gpus": 2},
]


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_an_interval_over_midnight_is_split_at_it():
    assert split_days(at(4, 23, 30), at(5, 0, 45)) == [(date(2026, 12, 4), 1800.0), (date(2026, 12, 5), 2700.0)]
    assert split_days(at(4, 10), at(6, 10)) == [(date(2026, 12, 4), 50400.0), (date(2026, 12, 5), 86400.0),
                                                (date(2026, 12, 6), 36000.0)]
    assert split_days(at(4, 10), at(4, 10)) == [] and split_days(at(4, 11), at(4, 10)) == []
    # Other zones are UTC days too.
    plus2 = timezone(timedelta(hours=2))
    assert split_days(datetime(2026, 12, 5, 1, tzinfo=plus2), datetime(2026, 12, 5, 3, tzinfo=plus2)) == [
        (date(2026, 12, 4), 3600.0), (date(2026, 12, 5), 3600.0)]


@pytest.fixture
def usage(db_url, engines):
    """The meter on an empty store: SQLite, and PostgreSQL (test_store.py's server) where there is one."""
    config = Config()
    config.Profiles.profiles = PROFILES
    config.Usage.prices = {"gpu": 3.0}
    app = SimpleNamespace(sessions=test_store.connect(db_url, engines),
                          profiles=Profiles(config=config),
                          tokens=HubTokens("http://127.0.0.1:1/hub/api", "nothing"))  # a hub that never answers
    return Usage(app, config=config)


def add_job(usage, **fields) -> int:
    with usage.sessions() as s:
        job = Job(name="j", owner="ada", profile="small", kernel="python3", timeout_seconds=60, **fields)
        s.add(job)
        s.commit()
        return job.id


def intervals(usage) -> list[UsageInterval]:
    with usage.sessions() as s:
        return s.scalars(sa.select(UsageInterval).order_by(UsageInterval.id)).all()


def test_a_job_over_midnight_and_its_dask_workers(usage):
    job = add_job(usage, status="succeeded", started_at=at(4, 23, 30), finished_at=at(5, 0, 30),
                  workers=3, worker_profile="gpu")
    asyncio.run(usage.tick())  # the hub is down: jobs are counted all the same
    asyncio.run(usage.tick())  # and once only
    rows = intervals(usage)
    with usage.sessions() as s:  # groups not known yet (the hub is down): NULL, so asked for again
        assert s.scalar(sa.select(sa.func.count()).where(UsageInterval.groups.is_(None))) == 2
    assert [(r.kind, r.ref, r.profile, r.count, r.cpu, r.memory_bytes, r.gpus, r.ended, r.groups) for r in rows] == [
        ("job", f"job {job}", "small", 1, 2.0, 4 * GiB, 0, True, None),
        ("dask_worker", f"job {job}", "gpu", 3, 12.0, 48 * GiB, 6, True, None),  # requests, not limits
    ]
    assert all((r.started_at, r.last_seen_at) == (at(4, 23, 30), at(5, 0, 30)) for r in rows)
    report = usage.report(at(1, 0), at(10, 0))
    by_key = {(r["day"], r["profile"]): r for r in report["rows"]}
    assert set(by_key) == {("2026-12-04", "small"), ("2026-12-04", "gpu"), ("2026-12-05", "small"), ("2026-12-05", "gpu")}
    small, gpu = by_key[("2026-12-04", "small")], by_key[("2026-12-05", "gpu")]
    assert (small["user"], small["groups"], small["profile_hours"], small["cpu_seconds_requested"]) == ("ada", [], 0.5, 3600.0)
    assert (small["memory_gb_hours"], small["gpu_hours"], small["cost"], small["cpu_seconds_used"]) == (2.0, 0.0, None, None)
    assert (gpu["profile_hours"], gpu["cpu_seconds_requested"], gpu["memory_gb_hours"], gpu["gpu_hours"], gpu["cost"]) == (
        1.5, 12 * 1800.0, 24.0, 3.0, 4.5)
    assert report["totals"] == {"profile_hours": 4.0, "cpu_seconds_requested": 2 * 3600.0 + 12 * 3600.0,
                                "cpu_seconds_used": None, "memory_gb_hours": 4.0 + 48.0, "gpu_hours": 6.0, "cost": 9.0}
    # A window cuts the intervals at its edges.
    part = usage.report(at(5, 0, 15), at(5, 0, 30))
    assert part["totals"]["gpu_hours"] == 1.5 and {r["day"] for r in part["rows"]} == {"2026-12-05"}
    assert usage.report(at(6, 0), at(7, 0))["rows"] == []


def test_a_running_job_accrues_until_it_ends_at_its_finish(usage):
    start = db.utcnow() - timedelta(minutes=10)
    job = add_job(usage, status="running", started_at=start, executor_id="e1")
    asyncio.run(usage.tick())
    (row,) = intervals(usage)
    assert not row.ended and row.last_seen_at >= start + timedelta(minutes=10)
    with usage.sessions() as s:
        s.execute(sa.update(Job).where(Job.id == job).values(status="failed", finished_at=start + timedelta(minutes=5)))
        s.commit()
    asyncio.run(usage.tick())
    (row,) = intervals(usage)
    assert row.ended and row.last_seen_at == start + timedelta(minutes=5)  # its real end, not when it was seen


def test_servers_continue_end_when_gone_and_wait_for_the_hub(usage):
    start = db.utcnow() - timedelta(hours=1)
    server = Live("server", "server ada/", "ada", "", start, groups=("team",))
    usage._record([server], servers_known=True)
    (row,) = intervals(usage)
    assert (row.profile, row.started_at, row.groups, row.ended) == ("small", start, ["team"], False)  # "": the default
    seen = row.last_seen_at
    usage._record([], servers_known=False)  # the hub cannot be asked: nothing changes
    (row,) = intervals(usage)
    assert (row.last_seen_at, row.ended) == (seen, False)
    usage._record([server], servers_known=True)  # still there: the gap is counted
    (row,) = intervals(usage)
    assert row.last_seen_at > seen and not row.ended
    seen = row.last_seen_at
    restarted = Live("server", "server ada/", "ada", "gpu", db.utcnow())  # stopped and started again
    usage._record([restarted], servers_known=True)
    old, new = intervals(usage)
    assert (old.ended, old.last_seen_at) == (True, seen)
    assert (new.profile, new.gpus, new.ended) == ("gpu", 2, False)
    usage._record([], servers_known=True)  # stopped, or culled
    assert all(r.ended for r in intervals(usage))
    report = usage.report(start - timedelta(days=1), db.utcnow() + timedelta(minutes=1), group="team", by="group")
    assert {(r["group"], tuple(r["users"]), r["profile"]) for r in report["rows"]} == {("team", ("ada",), "small")}
    assert usage.report(start, db.utcnow(), group="other")["rows"] == []
    assert usage.report(start, db.utcnow(), owners={"bob"})["rows"] == []


def test_prices_must_be_numbers():
    config = Config()
    config.Usage.prices = {"gpu": "2"}
    with pytest.raises(Exception, match="must be a number"):
        Usage(SimpleNamespace(sessions=None), config=config)
