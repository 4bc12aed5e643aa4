"""The one SQLAlchemy engine set-up for Notebench's stores (the executor's, the GPU leases).

On SQLite, several processes (hub, executor) open the same file: a connection waits up to 30 s
for a lock instead of failing at once, readers do not block the writer (WAL), and foreign keys are
enforced. Other databases (PostgreSQL) get a plain engine.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


def make_engine(url: str, *, begin_immediate: bool = False) -> sa.Engine:
    """An engine for ``url``; ``begin_immediate``: on SQLite every transaction starts with BEGIN IMMEDIATE.

    BEGIN IMMEDIATE takes the write lock up front, so transactions that read and then write (a lease,
    a migration) run one after the other; started deferred, two of them would both read, and the
    second to write would fail with "database is locked" rather than wait.
    """
    engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name != "sqlite":
        return engine

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _):
        if begin_immediate:
            dbapi_conn.isolation_level = None  # the driver begins nothing itself: the "begin" event below does
        dbapi_conn.execute("PRAGMA busy_timeout = 30000")
        dbapi_conn.execute("PRAGMA journal_mode = WAL")
        dbapi_conn.execute("PRAGMA foreign_keys = ON")

    if begin_immediate:

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def file_lock_beside(url: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<SQLite file>.lock`` (processes on this machine take turns); no-op
    for other databases and in-memory SQLite.

    For what SQLite's own locks do not cover: switching a file to WAL, which every new connection
    asks for, fails at once with "database is locked" when two processes switch it together (the busy
    timeout does not apply), e.g. the hub and the executor opening a new or pre-WAL file as they start.
    The lock is the OS's (flock): a process that dies lets go of it.
    """
    database = sa.engine.make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.lock", os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
