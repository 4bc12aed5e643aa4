"""Alembic environment for the platform's store, the GPU leases (used by notebench.hub.platform.gpus.upgrade)."""

import logging

import sqlalchemy as sa
from alembic import context

from notebench.hub.platform.gpus import VERSION_TABLE, gpu_leases, metadata
from notebench.hub.platform.sqlite import make_engine

# The revision that creates the lease table as GPUInventory made it with create_all, unmigrated.
FIRST_REVISION = "0001"

log = logging.getLogger("notebench.hub.platform.migrations")


def adopt_store_made_before_migrations(connection) -> None:
    """A store with the lease table but no version table was made by create_all: it is at 0001."""
    tables = sa.inspect(connection).get_table_names()
    if gpu_leases.name in tables and VERSION_TABLE not in tables:
        context.get_context().stamp(context.script, FIRST_REVISION)
        log.info("Lease store made before migrations: stamped at revision %s, leases kept", FIRST_REVISION)


url = context.config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
else:
    # Upgraders take turns on a file lock already (gpus.upgrade). On SQLite the transaction below also
    # starts with BEGIN IMMEDIATE: the version is read, the store adopted and migrated under the write
    # lock, in one transaction, so lease transactions of processes already running wait for it.
    assert url is not None  # gpus.upgrade sets it
    engine = make_engine(url, begin_immediate=True)
    with engine.connect() as connection:
        # SQLite's DDL is transactional, though Alembic assumes not and commits after each
        # revision: that would let go of the lock between revisions.
        context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                          render_as_batch=True, transactional_ddl=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":  # the same turns, with a lock of this store's own
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7204641186)"))
            adopt_store_made_before_migrations(connection)
            context.run_migrations()
    engine.dispose()
