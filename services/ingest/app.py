"""The ingest API's factory: wiring of settings, store, catalog, secrets and broker.

The state it builds (``services.ingest.state``) is what the views use per request.

``create_app`` takes everything that touches the outside world as arguments with
production defaults, so that tests can hand in a test configuration.
"""

from __future__ import annotations

import logging

from flask import Flask
from prometheus_client import CollectorRegistry
from slack_sdk.signature import SignatureVerifier

from services.ingest import api, approvals, interactions, openapi, state
from services.ingest.catalog import SourceCatalog
from services.ingest.metrics import IngestMetrics
from services.ingest.tokens import load_api_token, load_slack_signing_secret
from shared import queueing, secrets
from shared.db.engines import make_engine, make_session_factory
from shared.settings import Settings

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    secret_reader: secrets.SecretReader | None = None,
    multiprocess_metrics: bool = False,
) -> Flask:
    api_token = load_api_token(settings.ingest.api_token_file)
    signing_secret = load_slack_signing_secret(settings.ingest.slack_signing_secret_file)
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
    app.extensions[state.EXTENSION] = state.IngestState(
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
        slack_verifier=SignatureVerifier(signing_secret) if signing_secret else None,
    )
    app.register_blueprint(api.blueprint)
    app.register_blueprint(approvals.blueprint)
    app.register_blueprint(interactions.blueprint)
    app.register_blueprint(openapi.blueprint)
    return app
