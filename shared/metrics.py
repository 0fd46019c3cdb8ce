"""Prometheus metrics of the Celery workers (engine, notifier) and the endpoint that serves them.

Every task counts itself through Celery's task signals, which fire in the process
that runs the task: with the prefork pool, a pool process. Those processes write to
the multiprocess folder (``shared.multiprocess``), and the worker's main process
serves ``/metrics`` with a ``MultiProcessCollector`` that sums the files. A collector
in the main process fed by signals would see nothing: the main process receives
messages but runs no task, and ``task_postrun`` never reaches it. (Flower's task
events would, but only while Flower runs; these counts must not depend on it.)

Queue depth is not a counter a process can keep: it is read from the broker when
Prometheus scrapes (:class:`BrokerCollector`, in the main process only).

Names follow Prometheus' conventions: the ``punchingfist_`` prefix, ``_total`` on
counters (added by the client library), base units (``_seconds``). The task name
label is the stable Celery name (``engine.run_step``), so there is one label value
per task type, never per run.

What this module must not do: import a service, or be imported before
``shared.multiprocess.use_folder`` in a worker process (see that module).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from celery import Celery, signals
from kombu.exceptions import ChannelError
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.errors import ConfigError
from shared.settings import split_host_port

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds. Tasks range from a few ms (a conditional step, a stdout delivery) to the
# ten-minute default step timeout.
TASK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# Celery's final task states (task_postrun's ``state``) -> the ``outcome`` label.
OUTCOMES = {
    "SUCCESS": "succeeded",
    "FAILURE": "failed",
    # The task raised Retry: it runs again later (a step's or a delivery's retry).
    "RETRY": "retried",
    "REJECTED": "rejected",
    "IGNORED": "ignored",
}


class TaskMetrics:
    """Task counts by name and outcome, durations, failures by exception type."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.tasks = Counter(
            "punchingfist_tasks",
            "Celery tasks run by this worker, by task name and outcome "
            "(succeeded, failed, retried, rejected, ignored).",
            ["task", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "punchingfist_task_duration_seconds",
            "Seconds a Celery task ran, from task_prerun to task_postrun (retries each count).",
            ["task"],
            buckets=TASK_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "punchingfist_task_failures",
            "Celery tasks that raised (outcome failed), by task name and exception type.",
            ["task", "exception"],
            registry=registry,
        )


class Lazy(Generic[T]):
    """One object per process, made on first use: metrics are declared when a task
    first counts, long after the worker has set the multiprocess folder."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()

    def __call__(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value


# The process's TaskMetrics on the default registry.
task_metrics = Lazy(TaskMetrics)


class _TaskSignals:
    """Celery signal receivers feeding :class:`TaskMetrics`."""

    def __init__(self, metrics: TaskMetrics) -> None:
        self.metrics = metrics
        # Start times by task id: prerun and postrun run in the same process.
        self._started: dict[str, float] = {}

    def prerun(self, task_id: str | None = None, **_: Any) -> None:
        if task_id is not None:
            self._started[task_id] = time.perf_counter()

    def postrun(
        self, task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
    ) -> None:
        name = getattr(task, "name", None) or "unknown"
        started = self._started.pop(task_id, None) if task_id is not None else None
        if started is not None:
            self.metrics.duration.labels(name).observe(time.perf_counter() - started)
        outcome = OUTCOMES.get(state or "", (state or "unknown").lower())
        self.metrics.tasks.labels(name, outcome).inc()

    def failure(self, sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        name = getattr(sender, "name", None) or "unknown"
        self.metrics.failures.labels(name, type(exception).__name__).inc()


def _connected() -> _TaskSignals:
    receivers = _TaskSignals(task_metrics())
    signals.task_prerun.connect(receivers.prerun, weak=False, dispatch_uid="pf-metrics-pre")
    signals.task_postrun.connect(receivers.postrun, weak=False, dispatch_uid="pf-metrics-post")
    signals.task_failure.connect(receivers.failure, weak=False, dispatch_uid="pf-metrics-fail")
    return receivers


_receivers = Lazy(_connected)


def instrument_tasks() -> None:
    """Count every task this process runs (idempotent: one set of receivers per process).

    The receivers are global, not per app: tests and ``make run`` build several apps
    in one process and each task must be counted once.
    """
    _receivers()


class BrokerCollector(Collector):
    """Queue depth read from the broker at each scrape (the serving process only).

    One short connection per scrape: a scrape every 15-60 s costs the broker nothing,
    and a kept connection would need its own health checks. When the broker does not
    answer, ``punchingfist_broker_up`` is 0 and no queue length is reported (an
    absent series, not a false zero).
    """

    def __init__(self, app: Celery | None, queues: Sequence[str]) -> None:
        self._app = app
        self._queues = tuple(queues)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "punchingfist_queue_length",
            "Messages waiting on a Celery queue, not yet taken by a worker process, "
            "read from the broker at scrape time.",
            labels=["queue"],
        )
        up = GaugeMetricFamily(
            "punchingfist_broker_up",
            "1 when the broker answered this scrape's queue-length read, else 0.",
        )
        return length, up

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        length, up = self._families()
        try:
            lengths = self.read()
        except Exception as exc:  # whatever kombu raises: the broker did not answer
            log.warning("cannot read queue lengths from the broker", extra={"error": str(exc)})
            up.add_metric([], 0)
        else:
            for queue, count in lengths.items():
                length.add_metric([queue], count)
            up.add_metric([], 1)
        yield length
        yield up

    def read(self) -> dict[str, int]:
        assert self._app is not None, "a BrokerCollector without an app only describes"
        lengths: dict[str, int] = {}
        with self._app.connection_for_read() as connection:
            connection.connect()  # one attempt, not Celery's retry loop
            for queue in self._queues:
                # A channel per queue: on AMQP a failed passive declare closes it.
                channel = connection.channel()
                try:
                    declared = channel.queue_declare(queue=queue, passive=True)
                    lengths[queue] = int(declared.message_count)
                except (ChannelError, *connection.channel_errors):
                    # Redis deletes an empty list: the queue has nothing waiting.
                    lengths[queue] = 0
                finally:
                    channel.close()
        return lengths


def worker_registry(app: Celery | None, queues: Sequence[str]) -> CollectorRegistry:
    """What a worker's main process serves: every pool process's samples and queue depth."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(BrokerCollector(app, queues))
    return registry


def serve(bind: str, registry: CollectorRegistry, setting: str) -> Any:
    """Serve ``registry`` on ``bind`` (HOST:PORT) from a daemon thread; the server.

    A port that cannot be bound stops the process at start (ConfigError naming
    ``setting``) rather than running a worker nobody can see.
    """
    from prometheus_client import start_http_server

    host, port = split_host_port(bind)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"{setting}={bind}: cannot listen for metrics: {exc}") from exc
    log.info("metrics served", extra={"bind": bind, "path": "/metrics"})
    return server
