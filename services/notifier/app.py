"""The notifier's Celery app and its per-process runtime.

``create_app(settings)`` builds the app from the shared factory (JSON only, stable
names, the ``notifier`` queue) and registers the notifier's tasks. What tasks use
(database sessions, the Sink registry, secrets, an HTTP client, circuit breakers)
lives in a ``Runtime`` built lazily once per process, because prefork pool
processes must not share the parent's database connections or sockets.

The worker's main process runs two housekeeping threads (``worker_ready``): the
recovery pass, which re-sends deliveries whose worker died or whose message was
lost, and resolutions whose worker died; and the silence watch
(``silence_watch``), which asks AlertManager about the alerts we silenced, whose
resolved notification the silence mutes. Apart, because the watch waits on
AlertManager over HTTP and must not hold recovery up.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable

import httpx
from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from services.notifier import breakers, resolutions, silence_watch, store
from services.notifier import sinks as _sinks  # registers the Sink types
from services.notifier.core.deliveries import Backoff
from services.notifier.sinks import registries
from shared import metrics, queueing, secrets, units, workers
from shared.db.engines import make_engine, make_session_factory
from shared.db.models import utcnow
from shared.settings import Settings

log = logging.getLogger(__name__)

assert _sinks  # imported for its registrations


class Runtime:
    """What tasks use, built once per process from the settings."""

    def __init__(
        self,
        settings: Settings,
        app: Celery,
        registry: registries.SinkRegistry | None = None,
        secret_reader: secrets.SecretReader | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.registry = registry or registries.default_registry
        self.db = make_engine(settings.database)
        self.session_factory: sessionmaker[Session] = make_session_factory(self.db)
        if secret_reader is None:
            secret_reader = (
                secrets.KubernetesSecrets()
                if settings.kubernetes_secrets
                else secrets.folder_reader(settings.secrets_dir)
            )
        self.secrets = secrets.CachedSecrets(secret_reader)
        self.http = http or httpx.Client(timeout=settings.notifier.http_timeout)
        self.breakers = breakers.Breakers.from_settings(settings)
        notifier = settings.notifier
        self.backoff = Backoff(notifier.retry_backoff, notifier.retry_backoff_max)
        self.public_url = notifier.public_url or f"http://{settings.ingest.bind}"
        self.publisher = queueing.Publisher(app, settings.broker.publish_backoff)
        # Transactions, with the messages they write (``follow_ups``) published after
        # commit, as in the engine, the scheduler and ingest.
        self.units = units.Units(self.session_factory, self.publisher)
        self.pid = os.getpid()

    def close(self) -> None:
        self.http.close()
        self.breakers.close()
        self.db.dispose()


_runtime_lock = threading.Lock()


def runtime_for(app: Celery) -> Runtime:
    """The process's Runtime for ``app``, rebuilt after a fork."""
    current: Runtime | None = getattr(app, "pf_runtime", None)
    if current is not None and current.pid == os.getpid():
        return current
    with _runtime_lock:
        current = getattr(app, "pf_runtime", None)
        if current is None or current.pid != os.getpid():
            current = Runtime(app.pf_settings, app)
            app.pf_runtime = current
    return current


def create_app(settings: Settings, runtime: Runtime | None = None) -> Celery:
    """The notifier's Celery app; ``runtime`` lets tests inject registries and clients."""
    app = queueing.make_worker_celery(settings, name="punchingfist-notifier")
    app.pf_settings = settings
    if runtime is not None:
        app.pf_runtime = runtime
    # The stdout Sink writes reports to the real standard output; Celery would
    # otherwise turn them into WARNING log lines.
    app.conf.worker_redirect_stdouts = False
    from services.notifier import tasks

    tasks.register(app)
    metrics.instrument_tasks()
    queueing.on_worker_ready(app, lambda: _start_housekeeping(runtime_for(app)))
    return app


def _start_housekeeping(runtime: Runtime) -> None:
    settings = runtime.settings.notifier
    Housekeeping(runtime, recover_once, "notifier-recovery", settings.recovery_interval).start()
    if settings.silence_watch_interval > 0:
        Housekeeping(
            runtime,
            silence_watch.watch_once,
            "notifier-silence-watch",
            settings.silence_watch_interval,
        ).start()


class Housekeeping(threading.Thread):
    """Runs one pass (``work``) at start and then every ``interval`` seconds."""

    def __init__(
        self,
        runtime: Runtime,
        work: Callable[[Runtime], int],
        name: str,
        interval: float,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._runtime = runtime
        self._work = work
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self._work(self._runtime)
            except Exception:  # the thread must outlive a database, broker or HTTP hiccup
                log.exception("notifier housekeeping pass failed", extra={"thread": self.name})
            if self._stopped.wait(self._interval):
                return

    def stop(self) -> None:
        self._stopped.set()


def recover_once(runtime: Runtime, now: dt.datetime | None = None) -> int:
    """One recovery pass; returns how many messages were sent again."""
    now = now or utcnow()
    with runtime.units.begin() as unit:
        deliveries = store.due_again(
            unit.session, now, runtime.settings.notifier.stall_seconds, workers.is_dead
        )
        alerts = resolutions.abandoned(unit.session, now, workers.is_dead)
    for delivery_id in deliveries:
        log.warning("re-sending a delivery", extra={"delivery_id": str(delivery_id)})
        runtime.app.send_task(
            queueing.DELIVER, args=[str(delivery_id)], queue=queueing.NOTIFIER_QUEUE
        )
    for alert_id in alerts:
        log.warning("re-sending an alert resolution", extra={"alert_id": str(alert_id)})
        runtime.app.send_task(
            queueing.ALERT_RESOLVED, args=[str(alert_id)], queue=queueing.NOTIFIER_QUEUE
        )
    return len(deliveries) + len(alerts)
