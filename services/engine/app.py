"""The engine's Celery app and its per-process runtime.

``create_app(settings)`` builds the app from the shared factory (JSON only, stable
names, one queue per deployable) and registers the engine's tasks. Everything a task
needs (database sessions, step registry, templates, runners, publisher) lives in a
``Runtime`` built lazily once per process, because prefork pool processes must not
share the parent's database connections.

The worker's main process also runs two housekeeping threads (``worker_ready``):
the recovery pass, which re-drives steps whose worker died and runs whose chain
message was lost, and the outbox relay, which publishes sink deliveries that could
not be published right after commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from celery import Celery, signals
from celery.canvas import Signature, chain
from sqlalchemy.orm import Session, sessionmaker

from services.engine import steps as _steps  # registers the step executors
from services.engine.core.outcomes import Backoff
from services.engine.runners import bases
from services.engine.runners.local import DisabledRunner, LocalRunner
from services.engine.steps import registries
from services.engine.store import Store
from shared import kube, outbox, queueing
from shared.db.engines import make_engine, make_session_factory
from shared.db.models import utcnow
from shared.domain.templates import Templates
from shared.settings import Settings

log = logging.getLogger(__name__)
_HOSTNAME = socket.gethostname()

assert _steps  # imported for its registrations


def worker_id() -> str:
    """``host:pid`` of this process; stored on the steps it claims."""
    return f"{_HOSTNAME}:{os.getpid()}"


def is_dead(worker: str | None) -> bool:
    """True when ``worker`` was a process on this host that no longer exists.

    Only decidable on the same host; elsewhere the lease decides.
    """
    if not worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != _HOSTNAME or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Runtime:
    """What tasks use, built once per process from the settings."""

    def __init__(
        self,
        settings: Settings,
        app: Celery,
        registry: registries.StepRegistry | None = None,
        runners: dict[str, bases.Runner] | None = None,
    ) -> None:
        self.settings = settings
        self.app = app
        self.registry = registry or registries.default_registry
        self.templates = Templates()
        self.db = make_engine(settings.database)
        self.session_factory: sessionmaker[Session] = make_session_factory(self.db)
        self.store = Store(self.templates, outbox_lease_seconds=settings.outbox.lease_seconds)
        self.publisher = queueing.Publisher(app, settings.broker.publish_backoff)
        self.backoff = Backoff(settings.engine.retry_backoff, settings.engine.retry_backoff_max)
        self.runners = runners if runners is not None else self._default_runners(settings)
        self.pid = os.getpid()

    @staticmethod
    def _default_runners(settings: Settings) -> dict[str, bases.Runner]:
        engine = settings.engine
        runners: dict[str, bases.Runner] = {
            "local": LocalRunner()
            if engine.local_runner
            else DisabledRunner(
                "runner 'local' is turned off in this engine (PF_ENGINE_LOCAL_RUNNER=false): "
                "it would run the command inside the engine worker; use runner: kubernetes"
            )
        }
        if not kube.may_be_configured(engine.kubernetes_api_url):
            return runners
        # Imported only now: the kubernetes client is about a third of the worker's
        # import time, which every worker start (and pool process) would pay.
        from services.engine.runners import kube as job_client
        from services.engine.runners.kubernetes import JobRunner

        # PF_ENGINE_KUBERNETES_API_URL, else in-cluster config, else kubeconfig; with
        # none of them, steps asking for runner: kubernetes fail as not configured.
        api_client = job_client.api_client_for(settings.engine.kubernetes_api_url)
        if api_client is not None:
            runners["kubernetes"] = JobRunner(
                job_client.KubeClient(api_client),
                namespace=engine.kubernetes_namespace,
                ttl_seconds=engine.job_ttl_seconds,
                resources={
                    "requests": dict(engine.job_requests),
                    "limits": dict(engine.job_limits),
                },
                run_as_user=engine.job_run_as_user,
            )
        return runners

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.session_factory.begin() as session:
            yield session

    def publish(self, tasks: Sequence[outbox.PendingTask]) -> None:
        """Publish outbox entries committed by the caller; the relay covers failures."""
        if tasks:
            outbox.mark_published(self.session_factory, outbox.publish_now(self.publisher, tasks))

    def step_chain(self, run_id: str, first: int, total: int) -> Signature:
        """The chain of ``run_step`` for steps ``first..total-1`` (ids only)."""
        links = [
            self.app.signature(queueing.RUN_STEP, args=(run_id, index), immutable=True)
            for index in range(first, total)
        ]
        return chain(*links, app=self.app) if len(links) > 1 else links[0]

    def close(self) -> None:
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
            settings: Settings = app.pf_settings
            current = Runtime(settings, app)
            app.pf_runtime = current
    return current


def create_app(settings: Settings, runtime: Runtime | None = None) -> Celery:
    """The engine's Celery app; ``runtime`` lets tests inject registries and runners."""
    app = queueing.make_celery(settings, name="punchingfist-engine")
    app.pf_settings = settings
    if runtime is not None:
        app.pf_runtime = runtime
    if settings.broker.url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands every transport option to
        # create_engine(), so the Redis socket options of the shared factory must
        # not reach it, and its polling interval cannot be set as an option. Its
        # default 1 s poll would add up to a second per step; 50 ms costs one
        # indexed query per idle worker and queue. Set on the class, in the engine
        # process only (the embedded default of `make run`).
        from kombu.transport import sqlalchemy as kombu_sqla

        app.conf.broker_transport_options = {}
        kombu_sqla.Transport.polling_interval = 0.05
    elif settings.broker.url.startswith("memory:"):
        # Same 1 s default poll on the in-memory transport (tests).
        app.conf.broker_transport_options = {"polling_interval": 0.05}
    from services.engine import tasks

    tasks.register(app)
    signals.worker_ready.connect(_housekeeping_starter(app), weak=False)
    return app


def _housekeeping_starter(app: Celery) -> Any:
    def start(sender: Any = None, **_: Any) -> None:
        if sender is not None and getattr(sender, "app", app) is not app:
            return
        runtime = runtime_for(app)
        Housekeeping(runtime).start()
        settings = runtime.settings
        outbox.Relay(
            lambda: outbox.relay_once(
                runtime.session_factory,
                runtime.publisher,
                batch_size=settings.outbox.batch_size,
                lease_seconds=settings.outbox.lease_seconds,
            ),
            settings.outbox.relay_interval,
        ).start()

    return start


class Housekeeping(threading.Thread):
    """Re-drives abandoned steps and stalled runs, once at start and then periodically."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(name="engine-recovery", daemon=True)
        self._runtime = runtime
        self._stopped = threading.Event()

    def run(self) -> None:
        interval = self._runtime.settings.engine.recovery_interval
        while True:
            try:
                recover_once(self._runtime)
            except Exception:  # the thread must outlive a database hiccup
                log.exception("engine recovery pass failed")
            if self._stopped.wait(interval):
                return

    def stop(self) -> None:
        self._stopped.set()


def recover_once(runtime: Runtime, now: dt.datetime | None = None) -> int:
    """One recovery pass; returns how many chains were re-driven."""
    now = now or utcnow()
    engine_settings = runtime.settings.engine
    with runtime.transaction() as session:
        todo = runtime.store.release_abandoned(session, now, is_dead)
        todo += runtime.store.stalled(session, now, engine_settings.stall_seconds)
        starts = runtime.store.forgotten_starts(session, now, engine_settings.stall_seconds)
    for run_id, index in todo:
        total = _total_steps(runtime, run_id)
        log.warning("re-driving run from step", extra={"run_id": str(run_id), "index": index})
        runtime.step_chain(str(run_id), index, total).apply_async()
    for run_id in starts:
        # start_workflow acts only on a Pending run, so a start that was merely slow
        # and arrives as well does nothing twice.
        log.warning("re-sending the start of a forgotten run", extra={"run_id": str(run_id)})
        runtime.app.send_task(queueing.START_WORKFLOW, args=[str(run_id)])
    return len(todo) + len(starts)


def _total_steps(runtime: Runtime, run_id: uuid.UUID) -> int:
    from shared.db.models import WorkflowRun

    with runtime.session_factory() as session:
        run = session.get(WorkflowRun, run_id)
        return run.total_steps if run is not None else 0
