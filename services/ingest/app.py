"""The ingest API's factory: wiring of settings, store, catalog, secrets and broker.

``create_app`` takes everything that touches the outside world as arguments with
production defaults, so that tests can hand in a test configuration.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from prometheus_client import CollectorRegistry
from sqlalchemy.orm import Session, sessionmaker

from services.ingest import api
from services.ingest.catalog import SourceCatalog
from services.ingest.metrics import IngestMetrics
from services.ingest.tokens import load_api_token
from shared import outbox, queueing, secrets
from shared.db.engines import checkpoint, make_engine, make_session_factory
from shared.settings import Settings

log = logging.getLogger(__name__)
EXTENSION = "punchingfist.ingest"


@dataclasses.dataclass
class IngestState:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    catalog: SourceCatalog
    secrets: secrets.CachedSecrets
    celery: Any
    publisher: queueing.Publisher
    metrics: IngestMetrics
    # Bearer token of the read API; None: PF_API_TOKEN_FILE is unset, the API is off.
    api_token: str | None = None
    published: outbox.PublishedMarks = dataclasses.field(default_factory=outbox.PublishedMarks)
    background: outbox.BackgroundPublisher | None = None

    def relay_once(self) -> int:
        self.published.flush(self.sessions)
        # Off the request path: see shared.db.engines.checkpoint.
        checkpoint(self.engine)
        sent = outbox.relay_once(
            self.sessions,
            self.publisher,
            batch_size=self.settings.outbox.batch_size,
            lease_seconds=self.settings.outbox.lease_seconds,
        )
        self.update_backlog()
        return sent

    def publish(self, tasks: Sequence[outbox.PendingTask]) -> int:
        """Send committed entries: handed to the background publisher when it runs."""
        if self.background is not None and self.publisher.available:
            self.background.submit(tasks)
            return len(tasks)
        sent = outbox.publish_now(self.publisher, tasks)
        self.published.add(sent)
        return len(sent)

    def update_backlog(self) -> None:
        with self.read_sessions() as session:
            self.metrics.outbox_backlog.set(outbox.backlog(session))

    def start_relay(self) -> outbox.Relay:
        relay = outbox.Relay(self.relay_once, self.settings.outbox.relay_interval)
        relay.start()
        return relay

    def start_background_publisher(self) -> outbox.BackgroundPublisher:
        self.background = outbox.BackgroundPublisher(
            self.publisher, self.published, self.settings.outbox.batch_size
        )
        self.background.start()
        return self.background


def state() -> IngestState:
    ingest_state: IngestState = current_app.extensions[EXTENSION]
    return ingest_state


def create_app(
    settings: Settings,
    *,
    secret_reader: secrets.SecretReader | None = None,
    multiprocess_metrics: bool = False,
) -> Flask:
    api_token = load_api_token(settings.ingest.api_token_file)
    app = Flask("punchingfist.ingest")
    app.config["MAX_CONTENT_LENGTH"] = settings.ingest.max_body_bytes
    engine = make_engine(settings.database)
    read_engine = make_engine(settings.database, for_writes=False)
    sessions = make_session_factory(engine)
    celery = queueing.make_celery(settings, "punchingfist-ingest")
    if secret_reader is None:
        secret_reader = (
            secrets.KubernetesSecrets()
            if settings.kubernetes_secrets
            else secrets.folder_reader(settings.secrets_dir)
        )
    registry = None if multiprocess_metrics else CollectorRegistry()
    if multiprocess_metrics:
        # The Internal variant serves /metrics on the app itself, summed over the
        # workers; the plain one served nothing there (GET /metrics was a 405).
        from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

        GunicornInternalPrometheusMetrics(app, group_by="url_rule")
    else:
        from prometheus_flask_exporter import PrometheusMetrics

        PrometheusMetrics(app, registry=registry, group_by="url_rule")
    app.extensions[EXTENSION] = IngestState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        read_sessions=make_session_factory(read_engine),
        catalog=SourceCatalog(sessions, settings.ingest.resource_refresh_seconds),
        secrets=secrets.CachedSecrets(secret_reader),
        celery=celery,
        publisher=queueing.Publisher(celery, settings.broker.publish_backoff),
        metrics=IngestMetrics(registry),
        api_token=api_token,
    )
    app.register_blueprint(api.blueprint)
    return app
