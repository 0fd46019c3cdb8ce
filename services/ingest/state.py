"""The ingest API's per-process state: store, catalog, secrets, broker, metrics.

``create_app`` (``services.ingest.app``) builds one ``IngestState`` per app and keeps
it in ``app.extensions[EXTENSION]``; the views (``services.ingest.api``) reach it
through ``current()``. It is its own module so that the views and the factory both
import it and not each other (the factory registers the views' blueprint); an
import-linter contract keeps the layers app -> api -> state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from flask import current_app
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.orm import Session, sessionmaker

from services.ingest.catalog import SourceCatalog
from services.ingest.metrics import IngestMetrics
from shared import outbox, queueing, secrets
from shared.db.engines import checkpoint, write_lock
from shared.settings import Settings
from shared.units import Units

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
    # Checks Slack's signature on /slack/interactions; None: the endpoint is off.
    slack_verifier: SignatureVerifier | None = None
    published: outbox.PublishedMarks = dataclasses.field(default_factory=outbox.PublishedMarks)
    background: outbox.BackgroundPublisher | None = None
    # The write path's transactions: SQLite's writers queue on a file lock, and the
    # entries go to ``publish`` (the background publisher) after commit.
    units: Units = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.units = Units(
            self.sessions,
            self.publisher,
            publish=self.publish,
            lock=functools.partial(write_lock, self.engine),
            core=self.engine,
        )

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


def current() -> IngestState:
    """The state of the app handling the current request."""
    ingest_state: IngestState = current_app.extensions[EXTENSION]
    return ingest_state
