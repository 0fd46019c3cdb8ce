"""A kombu Redis transport that survives Redis restarting during a task.

Redis (``redis://``, ``rediss://``). When Redis goes away while a worker runs a task
(acknowledged late, so still unacknowledged), kombu 5.7 closes the channel and tries to
put the message back, or acknowledges it when the task ends, on a connection it has
already dropped: ``_connparams`` reads ``None.hostname`` and the AttributeError, which
is no connection error, escapes Celery's reconnect logic ("Unrecoverable error") and the
worker process exits. A restart of Redis then takes the engine or the notifier down with
it until something restarts them. This channel says what happened instead, a Redis
``ConnectionError``, which Celery handles as a lost broker: it reconnects. The message
stays in Redis's unacked set and is redelivered after the visibility timeout; the
engine's and the notifier's recovery passes re-drive the work long before that, and
their claims keep it from being done twice (``tests/e2e/test_fault_redis_mid_run.py``).
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from kombu.transport import redis as kombu_redis


class _RedisChannel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous)  # type: ignore[no-untyped-call]


class RedisTransport(kombu_redis.Transport):
    Channel = _RedisChannel
