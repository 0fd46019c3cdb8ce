"""Engines and sessions for the configured database, with SQLite tuned for concurrency.

SQLite is the embedded default: WAL lets readers run beside the single writer, and a
busy timeout makes concurrent writers (several gunicorn workers, the engine) wait for
the lock instead of failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from shared.settings import DatabaseSettings


def make_engine(settings: DatabaseSettings, *, for_writes: bool = True) -> sa.Engine:
    """An engine for ``settings``; ``for_writes=False`` gives SQLite readers that never lock."""
    url = sa.make_url(settings.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings, for_writes=for_writes)
    return _server_engine(url, settings)


def make_autocommit_engine(settings: DatabaseSettings) -> sa.Engine | None:
    """An engine whose statements each commit on their own, for work that is one
    statement (``shared.units.Unit.alone``); None where that saves nothing.

    On PostgreSQL (psycopg2) a transaction costs a BEGIN and a COMMIT round trip
    around its statements; a lone statement in autocommit is as atomic and as
    durable, in one. It is an engine (a pool) of its own: switching a pooled
    connection to autocommit and back costs a ``SET`` round trip at every checkin.
    On SQLite a statement costs no round trip, and a writer must take the write
    lock at BEGIN (``BEGIN IMMEDIATE`` below).
    """
    url = sa.make_url(settings.url)
    if url.get_backend_name() != "postgresql":
        return None
    return _server_engine(url, settings, isolation_level="AUTOCOMMIT")


def _server_engine(url: sa.URL, settings: DatabaseSettings, **options: Any) -> sa.Engine:
    if url.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; we ship psycopg2.
        url = url.set(drivername="postgresql+psycopg2")
    engine = sa.create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        # Survive PostgreSQL restarts without a stale pool: see _ping_if_the_server_spoke,
        # which does what pool_pre_ping would without its round trip per checkout.
        pool_recycle=1800,
        **options,
    )
    if url.get_backend_name() == "postgresql":
        event.listen(engine, "checkout", _ping_if_the_server_spoke(engine.dialect))
    return engine


def _ping_if_the_server_spoke(dialect: sa.Dialect) -> Any:
    """A pool checkout handler: ping a pooled connection only if the server has
    sent something on it since it was last used, or closed it.

    A server that restarts, fails over or drops a connection (an administrator, an
    idle timeout) tells the client: it sends a FATAL message and closes the socket,
    which becomes readable. An idle connection the server has nothing to say on is
    not, so checking that locally replaces ``pool_pre_ping``'s ``SELECT 1``, which
    was a round trip per transaction: one in five of an engine step's (each waits
    for the server process to be scheduled on a busy machine). When something did
    arrive, the real ping decides; a dead connection invalidates the pool as
    ``pool_pre_ping`` does, so the checkout gets a fresh one. A peer gone without a
    word (no FIN) is found by neither: the ping would hang as the statement does.
    """

    def checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        if not dbapi_connection.closed:
            readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)
            if not readable:
                return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                raise sa.exc.InvalidatePoolError() from exc
            raise

    return checkout


def _sqlite_engine(url: sa.URL, settings: DatabaseSettings, *, for_writes: bool) -> sa.Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"timeout": settings.sqlite_busy_timeout, "check_same_thread": False},
    )
    busy_ms = int(settings.sqlite_busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN instead of pysqlite's
        # lazy implicit transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash
        # can lose the last transactions.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # The commit that crosses the threshold copies the WAL back into the database
        # and fsyncs it, inside some request. 10,000 pages (40 MB) instead of 1,000
        # makes that rare; ``checkpoint`` below lets a background thread do it.
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    # A deferred transaction that reads and then writes fails with SQLITE_BUSY at once
    # when another writer got there first (the busy timeout does not apply to lock
    # upgrades). IMMEDIATE takes the write lock at BEGIN, so writers queue instead.
    begin = "BEGIN IMMEDIATE" if for_writes else "BEGIN"

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql(begin)

    return engine


WAL_AUTOCHECKPOINT_PAGES = 10_000


def checkpoint(engine: sa.Engine) -> tuple[int, int]:
    """Copy SQLite's WAL into the database without blocking anyone (no-op elsewhere).

    Returns (frames in the WAL, frames copied).
    """
    if engine.dialect.name != "sqlite":
        return (0, 0)
    # Outside any transaction: a checkpoint cannot run inside one.
    raw = engine.raw_connection()
    try:
        _busy, frames, copied = raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        raw.close()
    return int(frames), int(copied)


def make_session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def _flocked(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_lock(engine: sa.Engine) -> contextlib.AbstractContextManager[None]:
    """Hold around a write transaction on a hot path; a no-op except on SQLite.

    SQLite's busy handler sleeps 1, 2, 5, 10... ms between retries of a locked
    database, so writers from several processes form a convoy: each waits far longer
    than the ~1 ms a write holds the lock. An flock queues them instead and wakes the
    next one the moment the lock is released.
    """
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return contextlib.nullcontext()
    if engine.url.database == ":memory:":
        return contextlib.nullcontext()
    return _flocked(engine.url.database + ".writelock")


# Errors that say the database cannot be reached now (down, restarting, a dropped
# connection), not that it refuses what was asked: the same statement may succeed
# once it is back.
UNREACHABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
)


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means "try again when the database is back"."""
    invalidated = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    return invalidated or isinstance(exc, UNREACHABLE)
