"""A unit of work publishes its outbox entries only after its transaction commits.

The publisher here is our own wrapper with the broker replaced: at the moment it is
asked to send, it looks in the database through a connection of its own, which
sees only committed rows. The log fields a unit is given are on every record logged
inside it, and gone after.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared import logs, outbox, queueing, units
from shared.db.engines import make_engine, make_session_factory
from shared.db.models import OutboxEntry
from shared.settings import DatabaseSettings

_OUTBOX = cast(sa.Table, OutboxEntry.__table__)


class SeeingPublisher(queueing.Publisher):
    """Records, per send, whether each entry was already committed."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(cast(Any, None), backoff=1.0)
        self._engine = engine
        self.sent: list[tuple[str, bool]] = []

    def publish_many(self, messages: Sequence[tuple[str, str, Sequence[Any], str]]) -> None:
        with self._engine.connect() as conn:
            committed = {str(row.id) for row in conn.execute(sa.select(_OUTBOX.c.id)).all()}
        self.sent += [(task_id, task_id in committed) for _, _, _, task_id in messages]


@pytest.fixture
def sessions(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(DatabaseSettings(url=sqlite_url))
    yield make_session_factory(engine)
    engine.dispose()


def add_entry(unit: units.Unit) -> outbox.PendingTask:
    (task,) = outbox.add(unit.session, [("engine.start_workflow", "engine", ["r"])], 30.0)
    unit.publish_after_commit([task])
    return task


def published_at(sessions: sessionmaker[Session], task_id: uuid.UUID) -> Any:
    with sessions() as session:
        return session.execute(
            sa.select(_OUTBOX.c.published_at).where(_OUTBOX.c.id == task_id)
        ).scalar_one()


def test_entries_are_published_after_commit_and_marked(
    sessions: sessionmaker[Session],
) -> None:
    publisher = SeeingPublisher(sessions.kw["bind"])
    with units.Units(sessions, publisher).begin() as unit:
        task = add_entry(unit)
        assert publisher.sent == []
    assert publisher.sent == [(str(task.id), True)]
    assert published_at(sessions, task.id) is not None


def test_a_unit_that_raises_rolls_back_and_publishes_nothing(
    sessions: sessionmaker[Session],
) -> None:
    publisher = SeeingPublisher(sessions.kw["bind"])

    def fail_after_adding() -> None:
        with units.Units(sessions, publisher).begin() as unit:
            add_entry(unit)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fail_after_adding()
    assert publisher.sent == []
    with sessions() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(_OUTBOX)).scalar() == 0


def test_without_a_publisher_entries_stay_for_the_relay(
    sessions: sessionmaker[Session],
) -> None:
    with units.Units(sessions, None).begin() as unit:
        task = add_entry(unit)
    assert published_at(sessions, task.id) is None


def test_log_fields_are_bound_inside_the_unit_only(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(logs.BoundFields())
    log = logging.getLogger("punchingfist.test")
    with caplog.at_level(logging.INFO, "punchingfist.test"):
        with units.Units(sessions, None).begin(run_id="r1", task_id="t1"):
            log.info("inside")
            log.info("own value wins", extra={"run_id": "mine"})
        log.info("after")
    inside, own, after = caplog.records
    assert (inside.run_id, inside.task_id) == ("r1", "t1")  # type: ignore[attr-defined]
    assert own.run_id == "mine"  # type: ignore[attr-defined]
    assert not hasattr(after, "run_id")


def test_a_core_unit_writes_on_a_connection_and_publishes_through_its_own_publish(
    sessions: sessionmaker[Session],
) -> None:
    # Ingest's shape: no ORM session, a lock held only until commit, its own publish.
    engine = sessions.kw["bind"]
    publisher = SeeingPublisher(engine)
    events: list[str] = []

    @contextlib.contextmanager
    def lock() -> Iterator[None]:
        events.append("locked")
        yield
        events.append("unlocked")

    def publish(tasks: Sequence[outbox.PendingTask]) -> int:
        events.append("publish")
        publisher.publish_many([(t.task_name, t.queue, t.args, str(t.id)) for t in tasks])
        return len(tasks)

    work = units.Units(sessions, publisher, publish=publish, lock=lock, core=engine)
    with work.begin() as unit:
        (task,) = outbox.add(unit.connection, [("engine.start_workflows", "engine", [[]])], 30)
        unit.publish_after_commit([task])
        with pytest.raises(TypeError, match="Core"):
            _ = unit.session
    assert events == ["locked", "unlocked", "publish"]
    assert publisher.sent == [(str(task.id), True)]
    assert unit.published == 1
