"""kombu transports of our own: the embedded broker made to stop as fast as Redis
does, and Redis made to survive its own restart during a task.

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

Redis (``redis://``, ``rediss://``). When Redis goes away while a worker runs a task
(acknowledged late, so still unacknowledged), kombu 5.7 closes the channel and tries
to put the message back, or acknowledges it when the task ends, on a connection it
has already dropped: ``_connparams`` reads ``None.hostname`` and the AttributeError,
which is no connection error, escapes Celery's reconnect logic ("Unrecoverable
error") and the worker process exits. A restart of Redis then takes the engine or
the notifier down with it until something restarts them (compose does not). This
channel says what happened instead, a Redis ``ConnectionError``, which Celery
handles as a lost broker: it reconnects. The message stays in Redis's unacked set
and is redelivered after the visibility timeout; the engine's and the notifier's
recovery passes re-drive the work long before that, and their claims keep it from
being done twice (``tests/e2e/test_fault_redis_mid_run.py``).
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from kombu.transport import redis as kombu_redis
from kombu.transport import sqlalchemy as kombu_sqlalchemy

# Longest a worker waits for a message in one turn of its loop, in seconds.
WAIT_SECONDS = 0.25


class EmbeddedSQLTransport(kombu_sqlalchemy.Transport):
    polling_interval = WAIT_SECONDS

    def drain_events(self, connection: Any, timeout: Any = None, **kwargs: Any) -> Any:
        if timeout is not None:  # None blocks until a message: left alone
            timeout = min(timeout, WAIT_SECONDS)
        return super().drain_events(connection, timeout=timeout, **kwargs)  # type: ignore[no-untyped-call]


class _RedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]


class RedisTransport(kombu_redis.Transport):
    Channel = _RedisChannel
