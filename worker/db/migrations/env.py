"""Alembic environment: the URL comes from the caller (`sigingest migrate`), never from a file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from worker.db.models import metadata

url = context.config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("run migrations through `sigingest migrate`, which passes DATABASE_URL")

engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        # Two processes migrating at once (two `make run`s, compose replicas) wait for each other.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(764201)")
        context.run_migrations()
engine.dispose()
