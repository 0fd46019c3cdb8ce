"""The one Celery app factory, the worker command, and the publisher ingest and the relay use.

Every deployable that sends or runs tasks builds its Celery app here, so that all of
them agree on serializer, task names and queues; the engine and the notifier start
their workers through ``serve_worker`` and answer liveness checks through
``ping_worker``, so that both name their nodes alike (``<queue>@<host>``). Messages
carry ids only; the task loads rows itself (a message outlives the transaction that
produced it).

What this module must not do: know any task's body (the services register those).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from celery import Celery, signals

from shared import multiprocess
from shared.errors import TemporaryError, WorkerNotAliveError
from shared.settings import Settings

log = logging.getLogger(__name__)

ENGINE_QUEUE = "engine"
NOTIFIER_QUEUE = "notifier"

# Stable task names: renaming one strands the messages already queued under it.
# Every task that belongs to a run carries the run id in its args, even where the
# task does not need it to load its rows: Flower lists tasks by their args, and the
# task binds it to its log lines from the first one. A new trailing argument is
# optional in the task, so messages queued before it still run.
START_WORKFLOW = "engine.start_workflow"
# Ingest queues one message per webhook for all the runs it created: per-message
# cost (about 0.15 ms of Celery plus a Redis round trip) would otherwise dominate
# a 50-alert webhook. Args: [[run_id, ...]].
START_WORKFLOWS = "engine.start_workflows"
RUN_STEP = "engine.run_step"
# An approval was decided or expired: make (or not) the change, finish the step and
# go on with the run. Args: [approval_id, run_id]. Sent through the outbox by whoever decided.
RESUME_STEP = "engine.resume_step"
# One run's result to one Sink. Args: [delivery_id, run_id].
DELIVER = "notifier.deliver"
# An alert with a Slack thread or a silence was resolved: edit the thread's parent,
# reply when and how, expire the silence. Args: [alert_id]. Sent by ingest (through
# the outbox, in the transaction that records the resolution).
ALERT_RESOLVED = "notifier.alert_resolved"
# An approval was decided or expired: edit the messages that asked for it (the Slack
# buttons give way to who decided and when). Args: [approval_id]. Sent through the
# outbox by whoever decided (``shared.approvals``), beside ``engine.resume_step``.
APPROVAL_DECIDED = "notifier.approval_decided"

TASK_ROUTES = {
    "engine.*": {"queue": ENGINE_QUEUE},
    "notifier.*": {"queue": NOTIFIER_QUEUE},
}


def make_celery(settings: Settings, name: str = "punchingfist") -> Celery:
    broker: str = settings.broker.url
    embedded = _is_embedded(settings)
    transport: type | None = None
    if broker.startswith("sqla+"):
        # The embedded broker, with waits short enough to stop promptly.
        from shared.transports import EmbeddedSQLTransport

        broker, transport = broker.removeprefix("sqla+"), EmbeddedSQLTransport
    elif broker.startswith(("redis://", "rediss://")):
        # Survives Redis restarting during a task (see shared.redis_transport).
        from shared.redis_transport import RedisTransport

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
        # Task events for Flower: the workers report received/started/succeeded,
        # and every sender reports the sent (with the args, which name the run).
        # Not on the embedded broker: kombu's SQLAlchemy transport has no fanout,
        # so the events would pile up in its dead-letter queue, and nothing could
        # watch them anyway.
        worker_send_task_events=not embedded,
        task_send_sent_event=not embedded,
    )
    return app


def _is_embedded(settings: Settings) -> bool:
    return settings.broker.url.startswith(("sqla+", "memory:"))


def make_worker_celery(settings: Settings, name: str) -> Celery:
    """``make_celery`` for a process that consumes: short polls on the local brokers."""
    app = make_celery(settings, name=name)
    if settings.broker.url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands every transport option to
        # create_engine(), so the Redis socket options of the shared factory must
        # not reach it, and its polling interval cannot be set as an option. Its
        # default 1 s poll would add up to a second per step or delivery; 50 ms
        # costs one indexed query per idle worker and queue. Set on the class, in
        # worker processes only (the embedded default of `make run`).
        from kombu.transport import sqlalchemy as kombu_sqla

        app.conf.broker_transport_options = {}
        kombu_sqla.Transport.polling_interval = 0.05
    elif settings.broker.url.startswith("memory:"):
        # Same 1 s default poll on the in-memory transport (tests).
        app.conf.broker_transport_options = {"polling_interval": 0.05}
    return app


def on_worker_ready(app: Celery, start: Callable[[], None]) -> None:
    """Run ``start`` in the worker's main process once ``app``'s worker is ready
    (housekeeping threads); a worker of another app in the same process (tests)
    does not trigger it."""

    def ready(sender: Any = None, **_: Any) -> None:
        if sender is not None and getattr(sender, "app", app) is not app:
            return
        start()

    signals.worker_ready.connect(ready, weak=False)


def node_name(queue: str, host: str | None = None) -> str:
    """The Celery node name of ``queue``'s worker on ``host`` (this host by default).

    Celery expands the ``%h`` that ``serve_worker`` passes to ``socket.gethostname()``,
    as this does: a liveness check in the same pod or machine names the same node.
    """
    return f"{queue}@{host or socket.gethostname()}"


def serve_worker(
    create_app: Callable[[], Celery],
    *,
    queue: str,
    concurrency: int,
    pool: str,
    log_level: str,
    var_dir: Path,
    metrics_bind: str,
    metrics_setting: str,
) -> int:
    """Run a Celery worker of ``app`` on ``queue`` until it is told to stop.

    Mingle and gossip are off: they make a starting worker wait about a second for
    its peers, and the workers need nothing from them (the database holds all
    state). The node is ``<queue>@<host>`` (``node_name``).

    With ``metrics_bind`` (the ``metrics_setting`` variable), the metrics that the
    pool processes count are gathered in a folder that must be set before
    ``create_app`` imports prometheus_client (``shared.multiprocess``), and served
    from this main process.
    """
    folder = multiprocess.use_folder(var_dir, queue) if metrics_bind else None
    try:
        app = create_app()
        if metrics_bind:
            from shared import metrics

            metrics.serve(metrics_bind, metrics.worker_registry(app, [queue]), metrics_setting)
        return _run_worker(
            app, queue=queue, concurrency=concurrency, pool=pool, log_level=log_level
        )
    finally:
        if folder is not None:
            multiprocess.remove_folder(folder)


def _run_worker(app: Celery, *, queue: str, concurrency: int, pool: str, log_level: str) -> int:
    argv = [
        "worker",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
        "--concurrency",
        str(concurrency),
        "--pool",
        pool,
        "--loglevel",
        log_level,
        "--without-mingle",
        "--without-gossip",
    ]
    log.info(f"{queue} worker starting", extra={"argv": argv})
    _freeze_imported_objects()
    app.worker_main(argv)
    return 0


def _freeze_imported_objects() -> None:
    """Move what the imports built out of the garbage collector's sight before forking.

    Celery's prefork pool runs a full ``gc.collect()`` before forking each pool
    process (celery issue #2927); over the ~100,000 objects that Celery,
    SQLAlchemy and the engine leave behind that is 65-130 ms per process, so
    several hundred ms of every worker start with 4 processes. Frozen objects are
    skipped by every later collection (here and in the forked children, which
    also copy fewer pages because collections no longer write to them); the
    ``collect`` first means nothing collectable is frozen, so nothing is leaked.
    This is what the ``gc.freeze`` documentation recommends before fork.
    """
    gc.collect()
    gc.freeze()


def ping_worker(settings: Settings, node: str, timeout: float) -> None:
    """Ask ``node`` over the broker whether it is alive; raise ``WorkerNotAliveError`` if not.

    The answer comes from the worker's consumer loop, so a worker whose loop is
    stuck, or which lost its broker connection, fails this as surely as a dead one.
    """
    if _is_embedded(settings):
        raise WorkerNotAliveError(
            f"the broker {settings.broker.url.split(':', 1)[0]}: cannot carry a ping "
            "(no broadcast); a liveness check needs Redis"
        )
    app = make_celery(settings, name="punchingfist-healthcheck")
    try:
        replies = app.control.ping(destination=[node], timeout=timeout)
    except Exception as exc:  # kombu raises many types for one cause: broker unreachable
        raise WorkerNotAliveError(f"broker unreachable: {exc}") from exc
    finally:
        app.close()
    for reply in replies:
        if reply.get(node, {}).get("ok") == "pong":
            return
    raise WorkerNotAliveError(f"worker {node} did not answer a ping within {timeout:g}s")


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
