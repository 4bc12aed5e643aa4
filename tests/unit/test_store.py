"""The executor's store (jobs, schedules) and the GPU lease table, on SQLite and on a real PostgreSQL.

Every test runs twice: on a SQLite file, and on a fresh database of one PostgreSQL server started for
this file (tests/support/postgres.py: initdb + pg_ctl in a temp dir, on a free loopback port). The races use one
engine per racer (threads) or one process per racer, as several executors sharing one database would.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.orm import sessionmaker
from traitlets.config import Config

from notebench.executor import db
from notebench.executor.db import Job, Schedule
from notebench.executor.schemas import JobResponse
from notebench.hub.platform.gpus import GPUInventory, NoFreeGPUs
from tests.support.postgres import PostgresServer, PostgresUnavailable

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session (skipped where none is installed, failed on CI)."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def engines():
    """Engines made by a test, disposed of at its end (PostgreSQL keeps no idle connections of ours)."""
    made = []
    yield made
    for engine in made:
        engine.dispose()


def connect(db_url, engines) -> sessionmaker:
    sessions = db.connect(db_url)
    engines.append(sessions.kw["bind"])
    return sessions


def new_sessions(db_url, engines) -> sessionmaker:
    """Another executor's view of the store: its own engine and connections, nothing cached."""
    engine = db.make_engine(db_url)
    engines.append(engine)
    return sessionmaker(engine, expire_on_commit=False)


def processes_context():
    """Processes for the races between executors. Forked, so they start at once (no re-import): each opens
    its own engine and never touches the parent's connections, and multiprocessing ends it with os._exit."""
    return multiprocessing.get_context("fork")


def new_job(**fields) -> Job:
    return Job(**{"name": "nb", "owner": "alice", "profile": "cpu", "kernel": "python3", "timeout_seconds": 60, **fields})


def run_racers(count: int, racer) -> list:
    """Run racer(i, barrier) in ``count`` threads; a failing racer breaks the barrier for the others."""
    barrier = threading.Barrier(count)

    def guarded(i):
        try:
            return racer(i, barrier)
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(count) as pool:
        return [f.result() for f in [pool.submit(guarded, i) for i in range(count)]]


# --- migrations ---------------------------------------------------------------------------------


def test_migrations_build_the_schema_on_an_empty_database_and_are_idempotent(db_url, engines):
    engine = sa.create_engine(db_url)
    engines.append(engine)
    assert sa.inspect(engine).get_table_names() == []
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()

    sessions = connect(db_url, engines)
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version", "jobs", "schedules", "endpoints", "scoring_servers", "endpoint_requests", "audit_log", "quotas", "usage_intervals", "endpoint_predictions", "endpoint_feedback", "endpoint_history", "endpoint_baselines", "endpoint_alerts", "endpoint_alert_firings", "endpoint_shadow_predictions", "promotion_decisions"}
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head]
        # The migrations build exactly what the models describe (no model change without a migration).
        assert compare_metadata(MigrationContext.configure(conn), db.Base.metadata) == []
    with sessions() as s:
        s.add(new_job())
        s.commit()

    again = connect(db_url, engines)  # a restart: nothing to upgrade, nothing lost
    with again() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Job)) == 1
        assert s.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [head]


def _start_executor(db_url, barrier, results):
    try:
        barrier.wait(timeout=30)
        db.connect(db_url)
        results.put("ok")
    except Exception as e:  # reported, not raised: the test shows what each process saw
        results.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


def test_executors_starting_together_on_an_empty_database_all_come_up(db_url, engines):
    """Several executors (or replicas) starting at once all upgrade the same empty database."""
    processes = 3
    ctx = processes_context()
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_start_executor, args=(db_url, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=50) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    assert outcomes == ["ok"] * processes
    with connect(db_url, engines)() as s:
        assert len(s.execute(sa.text("SELECT version_num FROM alembic_version")).all()) == 1


# --- round trips --------------------------------------------------------------------------------


def test_jobs_and_schedules_round_trip_json_and_utc_datetimes(db_url, engines):
    sessions = connect(db_url, engines)
    parameters = {
        "alpha": 0.125,
        "epochs": 3,
        "big": 2**53 + 1,
        "names": ["a", "ü", "日本", 'say "hi"', "it's"],
        "nested": {"none": None, "yes": True, "no": False, "empty": {}, "list": []},
    }
    india = timezone(timedelta(hours=5, minutes=30))
    started = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=timezone.utc)
    before = db.utcnow()
    with sessions() as s:
        job = new_job(parameters=parameters, started_at=started.astimezone(india), error={"ename": "E", "cell_index": 2})
        s.add(job)
        schedule = Schedule(owner="alice", name="nightly", cron="0 2 * * *", timezone="Europe/Paris",
                            job_template={"notebook": {"cells": []}, "parameters": parameters},
                            next_run_at=started + timedelta(days=1))
        s.add(schedule)
        s.commit()
    after = db.utcnow()

    with new_sessions(db_url, engines)() as s:
        got = s.get(Job, job.id)
        sched = s.get(Schedule, schedule.id)
        assert got.parameters == parameters and sched.job_template["parameters"] == parameters
        assert got.error == {"ename": "E", "cell_index": 2}
        assert got.finished_at is None and got.worker_profile is None
        for value in (got.created_at, got.started_at, sched.created_at, sched.next_run_at):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0), f"{value!r} is not UTC"
        assert got.started_at == started and sched.next_run_at == started + timedelta(days=1)
        assert before <= got.created_at <= after
        as_json = JobResponse.of(got).model_dump(mode="json")
        assert as_json["started_at"] == "2026-03-29T01:30:15.123456Z"
        assert as_json["created_at"].endswith("Z") and as_json["finished_at"] is None
        # Comparisons are on instants, whatever zone the bound value is in.
        assert s.scalars(sa.select(Job.id).where(Job.started_at >= started.astimezone(india))).all() == [job.id]
        assert s.scalars(sa.select(Job.id).where(Job.started_at > started)).all() == []


# --- compare-and-set: claiming jobs ----------------------------------------------------------------


def claim(sessions: sessionmaker, job_id: int, executor_id: str) -> int:
    """The claim of notebench.executor.jobs.dispatcher.Dispatcher._start, statement for statement."""
    with sessions() as s:
        claimed = s.execute(
            sa.update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=db.utcnow(), executor_id=executor_id)
        ).rowcount
        s.commit()
    return claimed


def test_racing_claims_of_one_queued_job_have_one_winner(db_url, engines):
    racers, rounds = 8, 10
    sessions = connect(db_url, engines)
    with sessions() as s:
        jobs = [new_job() for _ in range(rounds)]
        s.add_all(jobs)
        s.commit()
    ids = [j.id for j in jobs]
    makers = [new_sessions(db_url, engines) for _ in range(racers)]

    def racer(i, barrier):
        with makers[i]() as s:
            s.execute(sa.select(1))  # connected before the start line
        won = []
        for job_id in ids:
            barrier.wait(timeout=30)
            if claim(makers[i], job_id, f"executor-{i}"):
                won.append(job_id)
        return won

    won = run_racers(racers, racer)
    winners = {job_id: [i for i in range(racers) if job_id in won[i]] for job_id in ids}
    assert all(len(w) == 1 for w in winners.values()), winners
    with sessions() as s:
        for job_id, (i,) in winners.items():
            job = s.get(Job, job_id)
            assert (job.status, job.executor_id) == ("running", f"executor-{i}")


def _executor_process(db_url, name, job_ids, barrier, results):
    """One executor process: claims every job it is given, in its own order."""
    try:
        sessions = sessionmaker(db.make_engine(db_url))
        with sessions() as s:
            s.execute(sa.select(1))
        random.Random(name).shuffle(job_ids)
        barrier.wait(timeout=30)
        results.put((name, [j for j in job_ids if claim(sessions, j, name)]))
    except BaseException as e:
        barrier.abort()
        results.put((name, f"{type(e).__name__}: {e}"))


def test_executor_processes_claiming_all_queued_jobs_run_each_once(db_url, engines):
    processes, count = 3, 100
    sessions = connect(db_url, engines)
    with sessions() as s:
        jobs = [new_job() for _ in range(count)]
        s.add_all(jobs)
        s.commit()
    ids = [j.id for j in jobs]
    ctx = processes_context()
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_executor_process, args=(db_url, f"executor-{i}", ids, barrier, results)) for i in range(processes)]
    for p in procs:
        p.start()
    won = dict(results.get(timeout=50) for _ in procs)
    for p in procs:
        p.join(timeout=10)
    assert not [w for w in won.values() if isinstance(w, str)], won
    claimed = sorted(j for w in won.values() for j in w)
    assert claimed == sorted(ids)  # every job claimed, none twice
    with sessions() as s:
        by = dict(s.execute(sa.select(Job.id, Job.executor_id)).all())
    assert all(by[j] == name for name, w in won.items() for j in w)


# --- compare-and-set: schedules ------------------------------------------------------------------


class ScheduleChecker:
    """What schedules.due.submit_due uses of an executor: its sessions and its dispatcher's submit."""

    def __init__(self, sessions: sessionmaker, name: str):
        self.sessions = sessions
        self.dispatcher = self
        self.log = logging.getLogger(f"test_store.{name}")
        self.name = name
        self.submitted: list[int] = []

    async def submit(self, owner, request, schedule_id=None):
        with self.sessions() as s:
            s.add(new_job(owner=owner, name=request.name, parameters=request.parameters, schedule_id=schedule_id,
                          executor_id=self.name))
            s.commit()
        self.submitted.append(schedule_id)


NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_executors_checking_a_due_schedule_submit_its_job_once(db_url, engines):
    from notebench.executor.schedules.due import submit_due

    executors, rounds = 4, 6
    sessions = connect(db_url, engines)
    with sessions() as s:  # yearly: no new tick falls inside the test (it would rightly fire again)
        schedules = [
            Schedule(owner="alice", name=f"s{n}", cron="0 0 1 1 *", timezone="UTC",
                     job_template={"notebook": NOTEBOOK, "name": f"s{n}", "parameters": {"n": n}})
            for n in range(3)
        ]
        s.add_all(schedules)
        s.commit()
    ids = [x.id for x in schedules]
    checkers = [ScheduleChecker(new_sessions(db_url, engines), f"executor-{i}") for i in range(executors)]

    for r in range(rounds):
        with sessions() as s:  # every schedule is due (missed ticks included)
            s.execute(sa.update(Schedule).values(next_run_at=db.utcnow() - timedelta(minutes=r + 1)))
            s.commit()

        def racer(i, barrier):
            barrier.wait(timeout=30)
            asyncio.run(submit_due(checkers[i].sessions, checkers[i]))

        run_racers(executors, racer)
        now = db.utcnow()
        with sessions() as s:
            counts = dict(s.execute(sa.select(Job.schedule_id, sa.func.count()).group_by(Job.schedule_id)).all())
            assert counts == {x: r + 1 for x in ids}, f"round {r}: jobs per schedule {counts}"
            assert all(next_run > now for next_run in s.scalars(sa.select(Schedule.next_run_at)))
    assert sum(len(c.submitted) for c in checkers) == rounds * len(ids)


# --- the GPU lease table -----------------------------------------------------------------------


def inventory(db_url, devices=("0", "1", "2", "3")) -> GPUInventory:
    c = Config()
    c.GPUInventory.devices = list(devices)
    c.GPUInventory.db_url = db_url
    return GPUInventory(config=c)


def test_racing_acquires_never_hand_one_gpu_to_two_holders(db_url):
    racers = 12
    admin = inventory(db_url)
    assert admin.leases() == []  # the table exists before the races
    inventories = [inventory(db_url) for _ in range(racers)]  # one engine each, as separate processes
    try:
        for count, rounds in ((1, 6), (2, 4)):
            for r in range(rounds):

                def racer(i, barrier):
                    inventories[i].leases()  # connected before the start line
                    barrier.wait(timeout=30)
                    try:
                        return inventories[i].acquire(f"job:{r}-{i}", count, pid=os.getpid())
                    except NoFreeGPUs:
                        return []

                got = run_racers(racers, racer)
                handed_out = sorted(d for devices in got for d in devices)
                assert handed_out == ["0", "1", "2", "3"], f"{count} per holder, round {r}: {got}"
                assert all(len(devices) in (0, count) for devices in got)
                leases = admin.leases()
                assert sorted(lease["device"] for lease in leases) == handed_out
                assert {lease["holder"] for lease in leases} == {f"job:{r}-{i}" for i, d in enumerate(got) if d}
                for i, devices in enumerate(got):
                    if devices:
                        assert admin.release(f"job:{r}-{i}") == sorted(devices)
    finally:
        for inv in [admin, *inventories]:
            inv.engine.dispose()


def test_audit_retention_drops_only_entries_older_than_it(db_url, engines):
    from notebench.executor.audit import purge

    sessions = connect(db_url, engines)
    now = db.utcnow()
    with sessions() as s:
        for days in (0, 29, 31, 400):
            s.add(db.AuditEntry(at=now - timedelta(days=days), actor="ada", action="job.submit", target=f"job {days}",
                                owner="ada", detail={}))
        s.commit()
    assert purge(sessions, 30) == 2
    with sessions() as s:
        assert sorted(e.target for e in s.scalars(sa.select(db.AuditEntry))) == ["job 0", "job 29"]
