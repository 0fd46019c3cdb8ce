"""Transactional outbox: tasks are written with the data they act on, then published.

A writer adds entries in its own transaction (``add``). After commit it may publish
them at once (``publish_now``); the relay (``relay_once``) sends anything that is
still unpublished once its lease has run out. Entries can be published twice (crash
between send and mark), so every task that consumes them is idempotent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import OutboxEntry, utcnow
from shared.errors import TemporaryError
from shared.queueing import Publisher

log = logging.getLogger(__name__)
_OUTBOX = cast(sa.Table, OutboxEntry.__table__)
_INSERT = sa.insert(_OUTBOX)


@dataclasses.dataclass(frozen=True)
class PendingTask:
    id: uuid.UUID
    task_name: str
    queue: str
    args: list[Any]


def add(
    session: Session | sa.Connection,
    tasks: Sequence[tuple[str, str, list[Any]]],
    lease_seconds: float,
) -> list[PendingTask]:
    """Insert (task_name, queue, args) entries in the session's transaction.

    The lease keeps the relay off them while the writer publishes after commit.
    """
    if not tasks:
        return []
    now = utcnow()
    available = now + dt.timedelta(seconds=lease_seconds)
    pending = [PendingTask(uuid.uuid4(), name, queue, args) for name, queue, args in tasks]
    session.execute(
        _INSERT,
        [
            {
                "id": task.id,
                "task_name": task.task_name,
                "queue": task.queue,
                "args": task.args,
                "created_at": now,
                "available_at": available,
                "attempts": 0,
            }
            for task in pending
        ],
    )
    return pending


def _mark_published(session: Session, ids: Sequence[uuid.UUID]) -> None:
    session.execute(sa.update(_OUTBOX).where(_OUTBOX.c.id.in_(ids)).values(published_at=utcnow()))


def _send(publisher: Publisher, tasks: Sequence[PendingTask]) -> tuple[list[uuid.UUID], str | None]:
    try:
        publisher.publish_many(
            [(task.task_name, task.queue, task.args, str(task.id)) for task in tasks]
        )
    except TemporaryError as exc:
        return [], str(exc)
    return [task.id for task in tasks], None


def publish_now(publisher: Publisher, tasks: Sequence[PendingTask]) -> list[uuid.UUID]:
    """Publish freshly committed entries; returns the ids sent, for ``mark_published``.

    What fails stays for the relay. Marking is left to the caller so that it can
    batch the marks of many requests into one write: until marked, an entry is
    protected by its lease, and an entry sent but never marked (a crash) is sent
    again after the lease, which the idempotent consumers absorb.
    """
    if not tasks or not publisher.available:
        return []
    sent, error = _send(publisher, tasks)
    if error:
        log.warning("publish deferred to the outbox relay", extra={"error": error})
    return sent


def mark_published(session_factory: sessionmaker[Session], ids: Sequence[uuid.UUID]) -> None:
    if ids:
        with session_factory.begin() as session:
            _mark_published(session, ids)


class PublishedMarks:
    """Ids published from requests, marked in the store in batches (thread-safe)."""

    def __init__(self) -> None:
        self._ids: list[uuid.UUID] = []
        self._lock = threading.Lock()

    def add(self, ids: Sequence[uuid.UUID]) -> None:
        with self._lock:
            self._ids.extend(ids)

    def flush(self, session_factory: sessionmaker[Session]) -> int:
        with self._lock:
            ids, self._ids = self._ids, []
        try:
            mark_published(session_factory, ids)
        except Exception:
            with self._lock:
                self._ids[:0] = ids
            raise
        return len(ids)


def backlog(session: Session) -> int:
    return session.execute(
        sa.select(sa.func.count()).select_from(_OUTBOX).where(_OUTBOX.c.published_at.is_(None))
    ).scalar_one()


def relay_once(
    session_factory: sessionmaker[Session],
    publisher: Publisher,
    *,
    batch_size: int,
    lease_seconds: float,
) -> int:
    """Claim due entries, publish them, mark them; returns how many were sent."""
    now = utcnow()
    with session_factory() as session:
        due = session.execute(
            sa.select(_OUTBOX.c.id, _OUTBOX.c.available_at)
            .where(_OUTBOX.c.published_at.is_(None), _OUTBOX.c.available_at <= now)
            .order_by(_OUTBOX.c.created_at)
            .limit(batch_size)
        ).all()
    if not due:
        return 0
    lease_until = now + dt.timedelta(seconds=lease_seconds)
    claimed: list[PendingTask] = []
    with session_factory.begin() as session:
        # Claim by compare-and-set on available_at, so that two relays (several
        # ingest workers) never both take an entry: portable, no SKIP LOCKED needed.
        for entry_id, available_at in due:
            row = session.execute(
                sa.update(_OUTBOX)
                .where(
                    _OUTBOX.c.id == entry_id,
                    _OUTBOX.c.available_at == available_at,
                    _OUTBOX.c.published_at.is_(None),
                )
                .values(available_at=lease_until, attempts=_OUTBOX.c.attempts + 1)
                .returning(_OUTBOX.c.task_name, _OUTBOX.c.queue, _OUTBOX.c.args)
            ).first()
            if row is not None:
                claimed.append(PendingTask(entry_id, row.task_name, row.queue, row.args))
    if not claimed:
        return 0
    sent, error = _send(publisher, claimed)
    with session_factory.begin() as session:
        if sent:
            _mark_published(session, sent)
        if error:
            unsent = [task.id for task in claimed if task.id not in set(sent)]
            session.execute(
                sa.update(_OUTBOX).where(_OUTBOX.c.id.in_(unsent)).values(last_error=error[:2000])
            )
    if error:
        log.warning(
            "outbox relay could not publish",
            extra={"error": error, "pending": len(claimed) - len(sent)},
        )
    elif sent:
        log.info("outbox relay published", extra={"count": len(sent)})
    return len(sent)


class BackgroundPublisher(threading.Thread):
    """Publishes committed entries off the request thread, in batches.

    A request hands its entries over and answers at once; this thread sends
    whatever has gathered in one pipelined batch and queues the marks. Entries
    lost with the process (or not sent while the broker is down) stay unpublished
    in the store, and the relay sends them when their lease runs out.
    """

    def __init__(self, publisher: Publisher, marks: PublishedMarks, max_batch: int) -> None:
        super().__init__(name="outbox-publisher", daemon=True)
        self._publisher = publisher
        self._marks = marks
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[PendingTask | None] = queue.SimpleQueue()
        self.published = 0

    def submit(self, tasks: Sequence[PendingTask]) -> None:
        for task in tasks:
            self._queue.put(task)

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                sent = publish_now(self._publisher, batch)
                self._marks.add(sent)
                self.published += len(sent)
            except Exception:  # the publisher thread must outlive any one batch
                log.exception("background publish failed; the relay will retry")
            if stopping:
                return


class Relay(threading.Thread):
    """Runs ``relay_once`` every ``interval`` seconds until stopped; never dies on an error."""

    def __init__(
        self,
        run_once: Callable[[], int],
        interval: float,
        on_pass: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self._run_once = run_once
        self._interval = interval
        self._on_pass = on_pass
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._run_once()
                if self._on_pass is not None:
                    self._on_pass()
            except Exception:  # the relay must outlive a database hiccup
                log.exception("outbox relay pass failed")

    def stop(self) -> None:
        self._stopped.set()
