"""The migrations build the models' schema from empty on both backends, and undo it."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared.db import migrate
from shared.db.engines import make_engine
from shared.db.models import Base
from shared.settings import DatabaseSettings


def test_one_head() -> None:
    assert migrate.head_revision()


def test_head_matches_the_models(database_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=database_url))
    assert migrate.is_current(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations disagree: {diff}"


def test_down_to_empty_and_up_again(database_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=database_url))
    migrate.downgrade(engine, "base")
    tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    assert tables == set()
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    tables = set(sa.inspect(engine).get_table_names())
    assert {table.name for table in Base.metadata.sorted_tables} <= tables
    engine.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_jsonb_on_postgresql(database_url: str) -> None:
    engine = make_engine(DatabaseSettings(url=database_url))
    if engine.dialect.name != "postgresql":
        engine.dispose()
        return
    with engine.connect() as conn:
        kind = conn.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'alerts' AND column_name = 'labels'"
            )
        ).scalar_one()
    engine.dispose()
    assert kind == "jsonb"


def test_checkpoint_moves_the_wal_into_the_database(sqlite_url: str) -> None:
    from shared.db.engines import checkpoint

    engine = make_engine(DatabaseSettings(url=sqlite_url))
    with engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
        conn.exec_driver_sql(
            "INSERT INTO resources (kind, namespace, name, spec, generation, origin, updated_at)"
            " VALUES ('Source', 'default', 'x', '{}', 1, '', '2026-01-01 00:00:00')"
        )
    frames, copied = checkpoint(engine)
    assert frames > 0
    assert copied == frames
    # Nothing new was written: a second pass finds every frame already copied.
    again_frames, again_copied = checkpoint(engine)
    assert again_copied == again_frames
    engine.dispose()
