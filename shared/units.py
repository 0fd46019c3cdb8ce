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

Ingest, whose write path is the hottest, plugs in its own ``publish`` (a background
publisher with batched marks) and ``lock`` (``shared.db.engines.write_lock``, held
from begin to commit and released before publishing), and writes with Core
statements on ``unit.connection`` without an ORM session (``core``).

What this module must not do: decide what to write or retry (callers and their
task base class do), or publish before commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared import logs, outbox
from shared.queueing import Publisher

# How committed entries are sent, returning how many went: the plain way
# (``Units.publish_now``) or the caller's own (ingest hands them to a background
# publisher and batches the marks).
Publish = Callable[[Sequence[outbox.PendingTask]], int]


class Unit:
    """The open unit: its transaction, and the entries to publish once it commits."""

    def __init__(
        self,
        session: Session | None,
        connection: sa.Connection | None = None,
        alone: sessionmaker[Session] | None = None,
    ) -> None:
        self._session = session
        self._connection = connection
        self._alone_factory = alone
        self._alone: Session | None = None
        self.pending: list[outbox.PendingTask] = []
        # How many entries were published after commit (set when the unit ends).
        self.published = 0

    @property
    def session(self) -> Session:
        if self._session is None:
            raise TypeError("this unit writes with Core (Units(core=...)): use .connection")
        return self._session

    @property
    def alone(self) -> Session:
        """A session whose statements each commit on their own, for a unit whose
        work is reads and then one write that is a single statement (an engine
        step): the statement is atomic by itself, and the BEGIN and COMMIT round
        trips are saved. Nothing written through ``session`` may depend on it.
        Without autocommit sessions (SQLite, whose writers must take the write lock
        at BEGIN) this is ``session`` itself.
        """
        if self._alone_factory is None:
            return self.session
        if self._alone is None:
            self._alone = self._alone_factory()
        return self._alone

    def close(self) -> None:
        if self._alone is not None:
            self._alone.close()

    @property
    def connection(self) -> sa.Connection:
        """The transaction's connection, for Core statements."""
        if self._connection is None:
            self._connection = self.session.connection()
        return self._connection

    def publish_after_commit(self, tasks: Sequence[outbox.PendingTask]) -> None:
        self.pending.extend(tasks)


class Units:
    """Makes units of work over one session factory and one way of publishing.

    ``publisher`` None: nothing is published after commit, the relay sends the
    entries when their lease runs out (a process without a broker connection).
    ``core``: units are transactions on this engine's connections, without an ORM
    session (ingest's write path: a session cost about 60 us more per request).
    ``alone``: sessions whose statements commit on their own (``Unit.alone``;
    sessions of ``shared.db.engines.make_autocommit_engine``).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        publisher: Publisher | None,
        *,
        publish: Publish | None = None,
        lock: Callable[[], contextlib.AbstractContextManager[None]] | None = None,
        core: sa.Engine | None = None,
        alone: sessionmaker[Session] | None = None,
    ) -> None:
        self.sessions = sessions
        self._alone = alone
        self._core = core
        self._publisher = publisher
        self._publish = publish or self.publish_now
        self._lock = lock or contextlib.nullcontext

    @contextlib.contextmanager
    def begin(self, **log_fields: Any) -> Iterator[Unit]:
        """A transaction (committed on exit, rolled back on error), then publish."""
        # No fields, no block of its own: what the caller binds inside (``logs.bind``,
        # once it has loaded the run) then lasts as long as the caller's own block.
        with logs.bound(**log_fields) if log_fields else contextlib.nullcontext():
            with self._lock(), self._transaction() as unit:
                yield unit
            if unit.pending:
                unit.published = self._publish(unit.pending)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Unit]:
        if self._core is not None:
            with self._core.begin() as connection:
                yield Unit(None, connection)
        else:
            with self.sessions.begin() as session:
                unit = Unit(session, alone=self._alone)
                try:
                    yield unit
                finally:
                    unit.close()

    def publish_now(self, tasks: Sequence[outbox.PendingTask]) -> int:
        """Send committed entries and mark them sent; what fails stays for the relay."""
        if not tasks or self._publisher is None:
            return 0
        sent = outbox.publish_now(self._publisher, tasks)
        outbox.mark_published(self.sessions, sent)
        return len(sent)
