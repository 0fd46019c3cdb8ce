"""Alembic environment: runs against the connection handed over by shared.db.migrate."""

from __future__ import annotations

from alembic import context

from shared.db.models import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    raise RuntimeError("run migrations through `punchingfist migrate` (shared.db.migrate)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
