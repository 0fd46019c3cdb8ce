"""Helpers for the notifier tests: a store harness that writes finished runs and
their deliveries the way the engine does, a real ``punchingfist notifier`` worker
process (``tests.support.workers``), and the pipeline of real processes (ingest under
gunicorn, engine and notifier workers) that the end-to-end notifier tests run."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.db.models import Alert, AlertSinkState, Approval, SinkDelivery, WorkflowRun, utcnow
from shared.resources import schemas
from shared.settings import DatabaseSettings
from tests.functional.engine.enginekit import WorkerProcess
from tests.functional.ingest.conftest import source_spec
from tests.functional.ingest.ingestserver import Ingest, ingest_env, running_ingest
from tests.support import workers
from tests.support.workers import REPO

SLACK_TOKEN = "xoxb-test-token"


def slack_sink(api_url: str, **config: Any) -> dict[str, Any]:
    return {
        "type": "slack",
        "config": {
            "channel": "#incidents",
            "tokenSecretRef": {"name": "slack-bot", "key": "token"},
            "threadUpdates": True,
            "mentions": [],
            "apiUrl": api_url,
            **config,
        },
    }


class Harness:
    """Reads and writes the store like the engine and the controller would."""

    def __init__(self, url: str, secrets_dir: Path) -> None:
        self.url = url
        self.engine = make_engine(DatabaseSettings(url=url))
        self.sessions = make_session_factory(self.engine)
        self.secrets_dir = secrets_dir

    def put_secret(self, name: str, key: str, value: str) -> None:
        folder = self.secrets_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(value + "\n")

    def put_sink(self, name: str, spec: dict[str, Any], namespace: str = "default") -> None:
        from shared.resources import schemas

        normalized = schemas.normalize("Sink", name, spec)
        with self.sessions.begin() as session:
            resources.upsert(session, "Sink", namespace, name, normalized)

    def add_alert(
        self,
        labels: dict[str, str] | None = None,
        status: str = "triaging",
        generator_url: str | None = "http://prometheus:9090/graph?g0.expr=up",
        annotations: dict[str, str] | None = None,
        starts_at: dt.datetime | None = None,
        *,
        fingerprint: str | None = None,
    ) -> uuid.UUID:
        labels = labels or {
            "alertname": "PodCrashLooping",
            "severity": "critical",
            "namespace": "prod",
            "pod": "web-1",
        }
        annotations = (
            annotations
            if annotations is not None
            else {"summary": "web-1 restarts", "runbook_url": "https://runbooks/crash"}
        )
        alert_id = uuid.uuid4()
        with self.sessions.begin() as session:
            session.execute(
                sa.insert(Alert.__table__).values(
                    id=alert_id,
                    fingerprint=fingerprint or uuid.uuid4().hex[:16],
                    starts_at=starts_at or utcnow() - dt.timedelta(minutes=2),
                    status=status,
                    severity=labels.get("severity", ""),
                    alert_name=labels.get("alertname", ""),
                    labels=labels,
                    annotations=annotations,
                    generator_url=generator_url,
                    source_name="alertmanager",
                    workflow_name="triage",
                )
            )
        return alert_id

    def add_finished_run(
        self,
        sinks: Sequence[str],
        alert_id: uuid.UUID | None = None,
        *,
        phase: str = "Succeeded",
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        namespace: str = "default",
    ) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
        """A finished run and one Pending delivery per Sink, in one transaction, as the
        engine's last step writes them. Returns (run id, {sink: delivery id})."""
        run_id = uuid.uuid4()
        now = utcnow()
        alert_context: dict[str, Any] = {}
        if alert_id is not None:
            alert = self.alert(alert_id)
            alert_context = {
                "status": "firing",
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": alert.starts_at.isoformat(),
                "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
                "name": alert.alert_name,
                "severity": alert.severity,
            }
        delivery_ids = {name: uuid.uuid4() for name in sinks}
        with self.sessions.begin() as session:
            session.execute(
                sa.insert(WorkflowRun.__table__).values(
                    id=run_id,
                    workflow_name="triage",
                    namespace=namespace,
                    source_name="alertmanager",
                    alert_id=alert_id,
                    trigger="alert",
                    phase=phase,
                    input_context={"alert": alert_context},
                    context={
                        "alert": alert_context,
                        "source": {"name": "alertmanager", "namespace": namespace, "context": {}},
                        "steps": {
                            "look": {"phase": "Succeeded", "output": {"stdout": "restarts: 7"}},
                        },
                        "run": {"id": str(run_id), "workflow": "triage", "namespace": namespace},
                    },
                    outputs=outputs
                    if outputs is not None
                    else {
                        "summary": "web-1 is OOMKilled",
                        "rootCause": "memory limit 128Mi is too low",
                        "confidence": "0.9",
                    },
                    error=error,
                    started_at=now - dt.timedelta(seconds=5),
                    completed_at=now,
                    updated_at=now,
                )
            )
            for name, delivery_id in delivery_ids.items():
                session.execute(
                    sa.insert(SinkDelivery.__table__).values(
                        id=delivery_id,
                        run_id=run_id,
                        sink_name=name,
                        phase="Pending",
                        attempts=0,
                        created_at=now,
                    )
                )
        return run_id, delivery_ids

    def add_approval(self, run_id: uuid.UUID, what: str = "delete-pod pod prod/web-1") -> uuid.UUID:
        """A pending approval of ``run_id``, as the engine writes it when a step pauses."""
        approval_id, now = uuid.uuid4(), utcnow()
        with self.sessions.begin() as session:
            session.execute(
                sa.insert(Approval.__table__).values(
                    id=approval_id,
                    run_id=run_id,
                    step_index=0,
                    step_name="look",
                    status="pending",
                    request={
                        "action": "delete-pod",
                        "kind": "pod",
                        "name": "web-1",
                        "namespace": "prod",
                        "reason": "it is stuck",
                    },
                    what=what,
                    requested_by="agent",
                    why="the policy wants a human for delete-pod",
                    created_at=now,
                    expires_at=now + dt.timedelta(minutes=30),
                )
            )
        return approval_id

    def add_delivery(self, run_id: uuid.UUID, sink: str, event: str, event_id: str) -> uuid.UUID:
        """A Pending delivery of ``event``, as the engine writes one when a run pauses."""
        delivery_id = uuid.uuid4()
        with self.sessions.begin() as session:
            session.execute(
                sa.insert(SinkDelivery.__table__).values(
                    id=delivery_id,
                    run_id=run_id,
                    sink_name=sink,
                    event=event,
                    event_id=event_id,
                    phase="Pending",
                    attempts=0,
                    created_at=utcnow(),
                )
            )
        return delivery_id

    def resolve(self, alert_id: uuid.UUID, *, auto: bool = False) -> None:
        with self.sessions.begin() as session:
            session.execute(
                sa.update(Alert.__table__)
                .where(Alert.__table__.c.id == alert_id)
                .values(status="resolved", resolved_at=utcnow(), auto_resolved=auto)
            )

    def alert(self, alert_id: uuid.UUID) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(Alert.__table__).where(Alert.__table__.c.id == alert_id)
            ).one()

    def delivery(self, delivery_id: uuid.UUID) -> Any:
        table = SinkDelivery.__table__
        with self.engine.connect() as conn:
            return conn.execute(sa.select(table).where(table.c.id == delivery_id)).one()

    def state(self, alert_id: uuid.UUID, sink: str) -> Any:
        table = AlertSinkState.__table__
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(table).where(table.c.alert_id == alert_id, table.c.sink_name == sink)
            ).first()

    def close(self) -> None:
        self.engine.dispose()


class NotifierProcess(workers.PunchingFistProcess):
    """``punchingfist notifier``; a stop waits 10 s for the delivery in flight, then kills."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["notifier"], env, log_path, stop_timeout=10)


def put_resources(
    database_url: str, workflow: dict[str, Any], sinks: Mapping[str, dict[str, Any]]
) -> None:
    """Store the Workflow ``triage`` and the Sinks as the controller would."""
    engine = make_engine(DatabaseSettings(url=database_url))
    with make_session_factory(engine).begin() as session:
        resources.upsert(
            session,
            "Workflow",
            "default",
            "triage",
            schemas.normalize("Workflow", "triage", workflow),
        )
        for name, spec in sinks.items():
            resources.upsert(
                session, "Sink", "default", name, schemas.normalize("Sink", name, spec)
            )
    engine.dispose()


# Short intervals, so that relays, retries and recoveries happen within a test's time.
PIPELINE_ENV = {
    "PF_OUTBOX_RELAY_INTERVAL": "0.5",
    "PF_NOTIFIER_CONCURRENCY": "2",
    "PF_NOTIFIER_RETRY_BACKOFF": "0.1",
    "PF_NOTIFIER_RECOVERY_INTERVAL": "0.5",
    "PF_ENGINE_CONCURRENCY": "1",
    "PYTHONPATH": str(REPO),
}


@dataclasses.dataclass
class Pipeline:
    ingest: Ingest
    engine: WorkerProcess
    notifier: NotifierProcess


@contextlib.contextmanager
def running_pipeline(
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    *,
    start_notifier: bool = True,
    **env: str,
) -> Iterator[Pipeline]:
    """``punchingfist ingest`` (one gunicorn worker, the ``alertmanager`` Source), an
    engine worker and a notifier worker (started unless ``start_notifier`` is false),
    on one database, broker and secrets folder (with the Slack bot token)."""
    (tmp_path / "secrets" / "slack-bot").mkdir(parents=True)
    (tmp_path / "secrets" / "slack-bot" / "token").write_text(SLACK_TOKEN)
    env = {**PIPELINE_ENV, **env}
    with running_ingest(
        database_url, tmp_path, redis_url, {"alertmanager": source_spec()}, workers=1, **env
    ) as ingest:
        worker_env = ingest_env(database_url, tmp_path, redis_url, **env)
        engine = WorkerProcess(worker_env, tmp_path / "engine.log")
        notifier = NotifierProcess(worker_env, tmp_path / "notifier.log")
        engine.start()
        if start_notifier:
            notifier.start()
        try:
            yield Pipeline(ingest, engine, notifier)
        finally:
            notifier.stop()
            engine.stop()
