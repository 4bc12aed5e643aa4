"""The GPU lease store is migrated (hub/platform/migrations): fresh stores, stores made before
migrations (by create_all), processes upgrading one file at once, a version table of its own.

SQLite files only, no hub: fast. tests/unit/test_store.py runs the leases on PostgreSQL too.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from contextlib import closing

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from traitlets.config import Config

from notebench.executor import db as executor_db
from notebench.hub.platform import gpus
from notebench.hub.platform.gpus import GPUInventory, NoFreeGPUs

# What GPUInventory made with metadata.create_all before the store was migrated (SQLite's own
# record of it, from a notebench.sqlite of that time).
LEGACY_SCHEMA = """
CREATE TABLE gpu_leases (
\tdevice VARCHAR(64) NOT NULL,
\tholder VARCHAR(255) NOT NULL,
\thost VARCHAR(255) NOT NULL,
\tpid INTEGER,
\tacquired_at DATETIME NOT NULL,
\tPRIMARY KEY (device)
);
CREATE INDEX ix_gpu_leases_holder ON gpu_leases (holder);
"""


def head(migrations=gpus.MIGRATIONS) -> str:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(migrations))
    return ScriptDirectory.from_config(cfg).get_current_head()


def inventory(url: str, devices=("0", "1")) -> GPUInventory:
    c = Config()
    c.GPUInventory.devices = list(devices)
    c.GPUInventory.db_url = url
    return GPUInventory(config=c)


def versions(path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [v for (v,) in conn.execute(f"SELECT version_num FROM {gpus.VERSION_TABLE}")]


def schema(url: str) -> dict:
    """The lease table as the database describes it: columns, primary key, indexes."""
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("gpu_leases")],
            "primary_key": inspector.get_pk_constraint("gpu_leases")["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes("gpu_leases")),
        }
    finally:
        engine.dispose()


@pytest.fixture
def legacy_store(tmp_path):
    """A notebench.sqlite from before migrations, with alice's server holding GPU 0."""
    path = tmp_path / "notebench.sqlite"
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(LEGACY_SCHEMA)
        conn.execute("INSERT INTO gpu_leases VALUES ('0', 'server:alice/', 'host', 4242, '2026-11-01 09:00:00.000000')")
    return path


def test_a_fresh_store_is_at_head_and_hands_each_gpu_out_once(tmp_path):
    path = tmp_path / "notebench.sqlite"
    inv = inventory(f"sqlite:///{path}")
    assert inv.leases() == []
    assert versions(path) == [head()]

    assert inv.acquire("server:a/", 1) == ["0"]
    assert inv.acquire("job:1", 1) == ["1"]
    with pytest.raises(NoFreeGPUs, match="1 GPU\\(s\\) requested but only 0 of 2 are free"):
        inv.acquire("job:2", 1)
    assert inv.release("server:a/") == ["0"]
    assert inv.acquire("job:2", 1) == ["0"]
    assert {(lease["device"], lease["holder"]) for lease in inv.leases()} == {("0", "job:2"), ("1", "job:1")}
    inv.engine.dispose()

    again = inventory(f"sqlite:///{path}")  # a restart: nothing to upgrade, nothing lost
    assert [lease["holder"] for lease in again.leases()] == ["job:2", "job:1"]
    assert versions(path) == [head()]
    again.engine.dispose()


def test_the_migrations_build_the_table_create_all_built(tmp_path, legacy_store):
    fresh = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    gpus.upgrade(fresh)
    assert schema(fresh) == schema(f"sqlite:///{legacy_store}")
    engine = sa.create_engine(fresh)
    with engine.connect() as conn:  # and what the model describes (no model change without a migration)
        assert compare_metadata(MigrationContext.configure(conn, opts={"version_table": gpus.VERSION_TABLE}), gpus.metadata) == []
    engine.dispose()


def test_a_store_made_before_migrations_is_adopted_with_its_leases(legacy_store):
    before = schema(f"sqlite:///{legacy_store}")
    inv = inventory(f"sqlite:///{legacy_store}")
    assert [(lease["device"], lease["holder"], lease["pid"]) for lease in inv.leases()] == [("0", "server:alice/", 4242)]
    assert versions(legacy_store) == ["0001"] == [head()]
    assert schema(f"sqlite:///{legacy_store}") == before  # stamped, not rebuilt
    assert inv.acquire("job:1", 1) == ["1"]  # alice still holds GPU 0
    with pytest.raises(NoFreeGPUs):
        inv.acquire("job:2", 1)
    inv.engine.dispose()

    again = inventory(f"sqlite:///{legacy_store}")  # the next start: at head, adopted once
    assert [lease["holder"] for lease in again.leases()] == ["server:alice/", "job:1"]
    assert versions(legacy_store) == ["0001"]
    again.engine.dispose()


def _open_store(url, barrier, results):
    try:
        barrier.wait(timeout=30)
        inv = inventory(url)
        results.put(inv.leases())
        inv.engine.dispose()
    except Exception as e:  # reported, not raised: the test shows what each process saw
        results.put(f"{type(e).__name__}: {str(e).splitlines()[0]}")


@pytest.mark.parametrize("store", ["fresh", "legacy"])
def test_processes_opening_one_store_at_once_all_come_up(tmp_path, request, store):
    """The hub and the executor open notebench.sqlite as they start, maybe at the same moment."""
    path = request.getfixturevalue("legacy_store") if store == "legacy" else tmp_path / "fresh.sqlite"
    processes = 4
    ctx = multiprocessing.get_context("fork")  # forked: they start at once; none uses the parent's connections
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(f"sqlite:///{path}", barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=10)
    holders = [] if store == "fresh" else ["server:alice/"]
    assert [[lease["holder"] for lease in leases] if isinstance(leases, list) else leases
            for leases in outcomes] == [holders] * processes
    assert versions(path) == [head()]  # one version row: migrated (or stamped) once


def test_the_version_table_is_the_platforms_own_beside_the_executors(tmp_path):
    """One database may hold both histories: each upgrade reads and writes its own version table."""
    path = tmp_path / "shared.sqlite"
    url = f"sqlite:///{path}"
    executor_db.upgrade(url)
    inv = inventory(url)
    assert inv.leases() == []
    executor_db.upgrade(url)  # again: the lease table is no concern of the executor's history
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        assert {"alembic_version", gpus.VERSION_TABLE, "gpu_leases", "jobs"} <= tables
        assert gpus.VERSION_TABLE == "alembic_version_platform"
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version_platform")).scalars().all() == [head()]
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [
            head(executor_db.MIGRATIONS)
        ]
    engine.dispose()
    inv.engine.dispose()

    alone = tmp_path / "alone.sqlite"
    gpus.upgrade(f"sqlite:///{alone}")
    with closing(sqlite3.connect(alone)) as conn:
        names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"gpu_leases", "alembic_version_platform"}

