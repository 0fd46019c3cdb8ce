"""Bring a database to the newest schema with Alembic (one head), on SQLite or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.errors import ConfigError
from shared.settings import DatabaseSettings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def head_revision() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have one head, found {heads}")
    return heads[0]


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: sa.Engine) -> bool:
    return current_revision(engine) == head_revision()


def require_current(database: DatabaseSettings) -> None:
    """Raise ``ConfigError`` unless ``database`` is at the newest schema.

    What a worker checks before it takes work: tasks on an old schema would fail
    one by one, each with a less helpful error than this.
    """
    from shared.db.engines import make_engine

    engine = make_engine(database)
    try:
        if not is_current(engine):
            raise ConfigError(
                f"the database is at revision {current_revision(engine)}, not "
                f"{head_revision()}: run `punchingfist migrate` first"
            )
    finally:
        engine.dispose()


def autogenerate(engine: sa.Engine, message: str) -> None:
    """Write a new revision comparing the models with ``engine``'s schema (a dev tool)."""
    with engine.begin() as connection:
        command.revision(alembic_config(connection), message=message, autogenerate=True)
