"""One unit of work: a transaction, the log fields it is about, publish after commit.

Every writer that enqueues follows the same order: write the data and its outbox
entries in one transaction, commit, and only then publish the entries (a consumer
must never receive an id whose row is not committed yet). What fails to publish
stays in the outbox for the relay. The engine's tasks and the scheduler each had
their own copy of that order; this module is the one copy:

    with units.begin(run_id=run_id) as unit:
        tasks = store.start(unit.session, ...)
        unit.publish_after_commit(tasks)
    # committed; the entries have been handed to the publisher

The fields given to ``begin`` are bound to the log context for the unit's duration
(``shared.logs.bound``), so every line logged inside names the task and run it was
for. A unit that raises rolls back and publishes nothing.

What this module must not do: decide what to write or retry (callers and their
task base class do), or publish before commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from shared import logs, outbox
from shared.queueing import Publisher

# How committed entries are sent: the plain way (``Units.publish_now``) or the
# caller's own (ingest hands them to a background publisher and batches the marks).
Publish = Callable[[Sequence[outbox.PendingTask]], object]


class Unit:
    """The open unit: its session, and the entries to publish once it commits."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.pending: list[outbox.PendingTask] = []

    def publish_after_commit(self, tasks: Sequence[outbox.PendingTask]) -> None:
        self.pending.extend(tasks)


class Units:
    """Makes units of work over one session factory and one way of publishing.

    ``publisher`` None: nothing is published after commit, the relay sends the
    entries when their lease runs out (a process without a broker connection).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publisher: Publisher | None,
        *,
        publish: Publish | None = None,
    ) -> None:
        self.sessions = sessions
        self._publisher = publisher
        self._publish = publish or self.publish_now

    @contextlib.contextmanager
    def begin(self, **log_fields: Any) -> Iterator[Unit]:
        """A transaction (committed on exit, rolled back on error), then publish."""
        with logs.bound(**log_fields):
            with self.sessions.begin() as session:
                unit = Unit(session)
                yield unit
            if unit.pending:
                self._publish(unit.pending)

    def publish_now(self, tasks: Sequence[outbox.PendingTask]) -> None:
        """Send committed entries and mark them sent; what fails stays for the relay."""
        if tasks and self._publisher is not None:
            outbox.mark_published(self.sessions, outbox.publish_now(self._publisher, tasks))
