"""A kombu transport of our own: the embedded broker made to stop as fast as Redis does.

The embedded broker (``sqla+sqlite://``).

Celery's worker runs its blocking loop (``celery.worker.loops.synloop``) for a
transport without an event loop, as kombu's SQLAlchemy one: each turn waits for a
message for up to 2 s (hard-coded), polling the table every ``polling_interval``
(1 s), and a shutdown is noticed only between turns, after one more whole turn. A
Ctrl-C of ``punchingfist run`` waited 3 to 4 s for the engine and the notifier; a
message queued while the loop slept waited up to a second to be seen.

This transport caps each wait at ``WAIT_SECONDS`` and polls at that rate, so a stop
is noticed within about half a second and a message is seen within a quarter. The
cost is a few small queries a second per idle worker on a local SQLite file, the
embedded default only.

The Redis transport is in ``shared.redis_transport``: importing redis here would make
every process import it, the embedded default's included.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import sqlalchemy as kombu_sqlalchemy

# Longest a worker waits for a message in one turn of its loop, in seconds.
WAIT_SECONDS = 0.25


class EmbeddedSQLTransport(kombu_sqlalchemy.Transport):
    polling_interval = WAIT_SECONDS

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        if timeout is not None:  # None blocks until a message: left alone
            timeout = min(timeout, WAIT_SECONDS)
        return super().drain_events(connection, timeout=timeout, **kwargs)  # type: ignore[no-untyped-call]
