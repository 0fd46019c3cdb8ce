"""The one Celery app factory, and the publisher that ingest and the relay use.

Every deployable that sends or runs tasks builds its Celery app here, so that all of
them agree on serializer, task names and queues. Messages carry ids only; the task
loads rows itself (a message outlives the transaction that produced it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from celery import Celery

from shared.errors import TemporaryError
from shared.settings import Settings

ENGINE_QUEUE = "engine"
NOTIFIER_QUEUE = "notifier"

# Stable task names: renaming one strands the messages already queued under it.
START_WORKFLOW = "engine.start_workflow"
# Ingest queues one message per webhook for all the runs it created: per-message
# cost (about 0.15 ms of Celery plus a Redis round trip) would otherwise dominate
# a 50-alert webhook. Args: [[run_id, ...]].
START_WORKFLOWS = "engine.start_workflows"
RUN_STEP = "engine.run_step"
# An approval was decided or expired: make (or not) the change, finish the step and
# go on with the run. Args: [approval_id]. Sent through the outbox by whoever decided.
RESUME_STEP = "engine.resume_step"
DELIVER = "notifier.deliver"
# An alert with a Slack thread or a silence was resolved: edit the thread's parent,
# reply when and how, expire the silence. Args: [alert_id]. Sent by ingest (through
# the outbox, in the transaction that records the resolution).
ALERT_RESOLVED = "notifier.alert_resolved"

TASK_ROUTES = {
    "engine.*": {"queue": ENGINE_QUEUE},
    "notifier.*": {"queue": NOTIFIER_QUEUE},
}


def make_celery(settings: Settings, name: str = "punchingfist") -> Celery:
    broker: str = settings.broker.url
    transport: type | None = None
    if broker.startswith("sqla+"):
        # The embedded broker, with waits short enough to stop promptly.
        from shared.transports import EmbeddedSQLTransport

        broker, transport = broker.removeprefix("sqla+"), EmbeddedSQLTransport
    elif broker.startswith(("redis://", "rediss://")):
        # Survives Redis restarting during a task (see shared.transports).
        from shared.transports import RedisTransport

        transport = RedisTransport
    app = Celery(name, broker=broker, set_as_current=False)
    app.conf.update(
        broker_transport=transport,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes=TASK_ROUTES,
        task_default_queue=ENGINE_QUEUE,
        # No result backend: results live in the database, where the API reads them.
        task_ignore_result=True,
        # A step that dies with its worker is redelivered, not lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.broker.publish_timeout,
        broker_transport_options=_transport_options(settings),
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


def _transport_options(settings: Settings) -> dict[str, Any]:
    # Only Redis understands these; kombu's SQLAlchemy transport hands every option
    # to create_engine, which refuses unknown ones.
    if not settings.broker.url.startswith(("redis://", "rediss://")):
        return {}
    return {
        "socket_connect_timeout": settings.broker.publish_timeout,
        "socket_timeout": max(settings.broker.publish_timeout, 5.0),
        # Redis redelivers an unacked message after this many seconds; longer than
        # the longest step timeout so that a slow step is not run twice.
        "visibility_timeout": 3600 * 2,
    }


def _batch(producer: Any, size: int) -> contextlib.AbstractContextManager[Any]:
    # A pipeline pays for itself from two messages; for one it costs more than it saves.
    return producer.batch() if size > 1 else contextlib.nullcontext()


class Publisher:
    """Sends tasks by name without blocking a request on a down broker.

    After a failure it stops trying for ``backoff`` seconds: the outbox relay
    delivers what was not published. The pause matters because redis-py (6 and
    later) retries a refused connection with backoff inside the client, about 2 s
    that kombu gives no way to turn off; without it every request during a Redis
    outage would wait that long.
    """

    def __init__(self, app: Celery, backoff: float) -> None:
        self._app = app
        self._backoff = backoff
        self._paused_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._paused_until

    def publish(self, task_name: str, queue: str, args: Sequence[Any], task_id: str) -> None:
        self.publish_many([(task_name, queue, args, task_id)])

    def publish_many(self, messages: Sequence[tuple[str, str, Sequence[Any], str]]) -> None:
        """Send (task name, queue, args, task id) messages in one batch.

        On Redis the batch is one pipelined round trip. All or nothing as far as the
        caller knows: after a failure some may have gone out, which the idempotent
        consumers absorb when the relay sends them again.
        """
        try:
            with self._app.producer_or_acquire() as producer, _batch(producer, len(messages)):
                for task_name, queue, args, task_id in messages:
                    self._app.send_task(
                        task_name,
                        args=list(args),
                        queue=queue,
                        task_id=task_id,
                        retry=False,
                        producer=producer,
                    )
        except Exception as exc:  # kombu raises many types for one cause: broker unreachable
            self._paused_until = time.monotonic() + self._backoff
            raise TemporaryError(f"broker unavailable: {exc}", delay=self._backoff) from exc
        self._paused_until = 0.0
