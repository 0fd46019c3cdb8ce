"""``Unit.alone``: on PostgreSQL a statement through it is committed when it returns
(it is its own transaction, which is why a step may send its one write that way);
on SQLite it is the unit's own transaction, rolled back with the unit."""

from __future__ import annotations

import uuid
from typing import cast

import pytest
import sqlalchemy as sa

from shared import units
from shared.db.engines import make_autocommit_engine, make_engine, make_session_factory
from shared.db.models import OutboxEntry, utcnow
from shared.settings import DatabaseSettings

_OUTBOX = cast(sa.Table, OutboxEntry.__table__)


class UnitFailedError(Exception):
    pass


def write_then_fail(work: units.Units, entry: uuid.UUID, watcher: sa.Engine | None) -> list[int]:
    """Insert an outbox row through ``unit.alone``, count it from ``watcher``'s own
    connection while the unit is open, then fail the unit."""
    seen: list[int] = []
    with work.begin() as unit:
        now = utcnow()
        unit.alone.execute(
            sa.insert(_OUTBOX).values(
                id=entry,
                task_name="engine.run_step",
                queue="engine",
                args=[],
                created_at=now,
                available_at=now,
                attempts=0,
            )
        )
        if watcher is not None:
            with watcher.connect() as other:
                seen.append(
                    other.execute(
                        sa.select(sa.func.count()).where(_OUTBOX.c.id == entry)
                    ).scalar_one()
                )
        raise UnitFailedError(seen)


def test_a_write_through_alone_commits_on_its_own_only_on_postgres(database_url: str) -> None:
    settings = DatabaseSettings(url=database_url)
    engine = make_engine(settings)
    autocommit = make_autocommit_engine(settings)
    work = units.Units(
        make_session_factory(engine),
        None,
        alone=make_session_factory(autocommit) if autocommit is not None else None,
    )
    entry = uuid.uuid4()
    # On PostgreSQL another connection sees the row before the unit ends.
    with pytest.raises(UnitFailedError) as failed:
        write_then_fail(work, entry, engine if autocommit is not None else None)
    with engine.connect() as conn:
        kept = conn.execute(sa.select(sa.func.count()).where(_OUTBOX.c.id == entry)).scalar_one()
    engine.dispose()
    if autocommit is not None:
        autocommit.dispose()
        assert (failed.value.args[0], kept) == ([1], 1)
    else:
        assert kept == 0
