"""One circuit breaker per Sink, shared by every notifier process through Redis.

pybreaker counts consecutive temporary failures of a Sink; at
``PF_NOTIFIER_BREAKER_FAIL_MAX`` it opens, and for
``PF_NOTIFIER_BREAKER_RESET_SECONDS`` no process calls that Sink: its deliveries
stay Pending and are retried when the breaker lets a trial call through (without
using up their attempts). Permanent failures (a bad token, a missing channel) do
not count: the endpoint answered, so it is alive.

The state lives in Redis (``CircuitRedisStorage``) at
``PF_NOTIFIER_BREAKER_REDIS_URL``, else the broker when it is Redis, so that every
pool process and every notifier replica sees one breaker per Sink. On the embedded
default (no Redis) each process keeps its own breaker in memory. If Redis is down,
pybreaker falls back to a closed breaker: deliveries go on, unprotected.

pybreaker holds a per-breaker lock around each call, which is why the notifier
runs a prefork pool (one call at a time per process anyway), not threads.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pybreaker

from shared.errors import PermanentError
from shared.settings import Settings

_KEY_PREFIX = "punchingfist:breaker"


def redis_url_for(settings: Settings) -> str | None:
    if settings.notifier.breaker_redis_url:
        return settings.notifier.breaker_redis_url
    if settings.broker.url.startswith(("redis://", "rediss://")):
        return settings.broker.url
    return None


class Breakers:
    """The breakers of one process, created on first use per Sink."""

    def __init__(self, settings: Settings, redis_client: Any | None = None) -> None:
        self._fail_max = settings.notifier.breaker_fail_max
        self._reset = settings.notifier.breaker_reset_seconds
        self._redis = redis_client
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Breakers:
        url = redis_url_for(settings)
        if url is None:
            return cls(settings)
        import redis

        return cls(settings, redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    def get(self, key: str) -> pybreaker.CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                storage: pybreaker.CircuitBreakerStorage
                if self._redis is not None:
                    storage = pybreaker.CircuitRedisStorage(
                        pybreaker.STATE_CLOSED, self._redis, namespace=f"{_KEY_PREFIX}:{key}"
                    )
                else:
                    storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
                breaker = pybreaker.CircuitBreaker(
                    fail_max=self._fail_max,
                    reset_timeout=self._reset,
                    exclude=[PermanentError],
                    state_storage=storage,
                    name=key,
                    # Raise the Sink's own error on the failure that opens the breaker,
                    # so that the attempt is recorded with what actually went wrong.
                    throw_new_error_on_trip=False,
                )
                self._breakers[key] = breaker
            return breaker

    def hold(self, key: str) -> float | None:
        """Seconds until an open breaker lets a trial call through; None when closed."""
        breaker = self.get(key)
        if breaker.current_state != pybreaker.STATE_OPEN:
            return None
        opened_at = breaker._state_storage.opened_at  # no public reader in pybreaker
        if opened_at is None:
            return None
        remaining = (
            opened_at + dt.timedelta(seconds=self._reset) - dt.datetime.now(dt.UTC)
        ).total_seconds()
        return remaining if remaining > 0 else None

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
