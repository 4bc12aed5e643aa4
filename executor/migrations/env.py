"""Alembic environment for the executor's store (used by notebench.executor.db.upgrade)."""

from alembic import context
from sqlalchemy import text

from notebench.executor.db import Base, make_engine

url = context.config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    assert url is not None  # db.upgrade sets it
    engine = make_engine(url)
    with engine.connect() as connection:
        # SQLite's DDL is transactional, though Alembic assumes not and commits after each
        # revision: that would let go of the lock below between revisions.
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                          transactional_ddl=True)
        with context.begin_transaction():
            # Executors starting together on an empty database migrate one after the other.
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(7204641185)"))
            elif connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            context.run_migrations()
    engine.dispose()
