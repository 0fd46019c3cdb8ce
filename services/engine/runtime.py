"""The engine's per-process runtime: what tasks use, built once per process.

Everything a task needs (database sessions and units of work, step registry,
templates, runners, publisher) lives in a ``Runtime`` built lazily once per process,
because prefork pool processes must not share the parent's database connections.

It is its own module so that the tasks (``services.engine.tasks``) and the app
factory (``services.engine.app``) both import it and not each other: the factory
registers the tasks, the tasks reach the runtime through their app. An
import-linter contract keeps the layers app -> tasks -> runtime.
"""

from __future__ import annotations

import os
import threading

from celery import Celery
from celery.canvas import Signature, chain
from sqlalchemy.orm import Session, sessionmaker

from services.engine import steps as _steps  # registers the step executors
from services.engine.core.outcomes import Backoff
from services.engine.runners import bases
from services.engine.runners.local import DisabledRunner, LocalRunner
from services.engine.steps import registries
from services.engine.store import Store
from shared import kube, queueing, secrets, units
from shared.db.engines import make_autocommit_engine, make_engine, make_session_factory
from shared.domain.templates import Templates
from shared.settings import Settings
from shared.workers import is_dead, worker_id

assert _steps  # imported for its registrations

# worker_id and is_dead (shared.workers) are re-exported for the tasks and the recovery pass.
__all__ = ["Runtime", "is_dead", "runtime_for", "worker_id"]


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
        # The same database in autocommit (PostgreSQL only), for Unit.alone.
        self.db_alone = make_autocommit_engine(settings.database)
        self.session_factory: sessionmaker[Session] = make_session_factory(self.db)
        self.store = Store(self.templates, outbox_lease_seconds=settings.outbox.lease_seconds)
        self.publisher = queueing.Publisher(app, settings.broker.publish_backoff)
        # Every task's transactions: commit, then publish the outbox entries written.
        # A step's reads and its one-statement write skip BEGIN/COMMIT (Unit.alone).
        self.units = units.Units(
            self.session_factory,
            self.publisher,
            alone=make_session_factory(self.db_alone) if self.db_alone else None,
        )
        self.backoff = Backoff(settings.engine.retry_backoff, settings.engine.retry_backoff_max)
        self.runners = runners if runners is not None else self._default_runners(settings)
        # Built on first use: most Workflows name no secret.
        self._secrets: secrets.CachedSecrets | None = None
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

    def secret(self, namespace: str, name: str, key: str) -> str:
        """A secretRef's value (agent steps' API keys), cached briefly (shared.secrets)."""
        if self._secrets is None:
            reader: secrets.SecretReader = (
                secrets.KubernetesSecrets()
                if self.settings.kubernetes_secrets
                else secrets.folder_reader(self.settings.secrets_dir)
            )
            self._secrets = secrets.CachedSecrets(reader)
        return self._secrets.get(namespace, name, key)

    def step_chain(self, run_id: str, first: int, total: int) -> Signature:
        """The chain of ``run_step`` for steps ``first..total-1`` (ids only)."""
        links = [
            self.app.signature(queueing.RUN_STEP, args=(run_id, index), immutable=True)
            for index in range(first, total)
        ]
        return chain(*links, app=self.app) if len(links) > 1 else links[0]

    def close(self) -> None:
        self.db.dispose()
        if self.db_alone is not None:
            self.db_alone.dispose()


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
