"""Helpers for the engine tests: a store harness that writes runs the way ingest
does, an in-process worker, and a real ``punchingfist engine`` worker process
(``tests.support.workers``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery
from celery.contrib.testing.worker import start_worker
from kombu.transport import memory

from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.db.models import Alert, OutboxEntry, SinkDelivery, StepRun, WorkflowRun, utcnow
from shared.queueing import START_WORKFLOW
from tests.support import workers
from tests.support.waiting import wait_for

# Setting PF_TEST_REDIS_URL to keep one checkout's tests apart from another's on the
# same Redis must cover these too: otherwise a worker process of one checkout (or one
# left behind by a killed run) consumes the other's messages and its runs never end.
ENGINE_REDIS_URL = (
    os.environ.get("PF_TEST_ENGINE_REDIS_URL")
    or os.environ.get("PF_TEST_REDIS_URL")
    or "redis://127.0.0.1:6379/13"
)
FINISHED = ("Succeeded", "Failed", "Skipped")


class Harness:
    """Reads and writes the store like ingest and the API would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine_for(url)
        self.sessions = make_session_factory(self.engine)

    def put_workflow(
        self, spec: dict[str, Any], name: str = "triage", namespace: str = "default"
    ) -> None:
        with self.sessions.begin() as session:
            resources.upsert(session, "Workflow", namespace, name, spec)

    def add_run(
        self,
        workflow: str = "triage",
        *,
        namespace: str = "default",
        labels: dict[str, str] | None = None,
        fingerprint: str | None = None,
        source_context: dict[str, Any] | None = None,
        alert_status: str = "received",
    ) -> uuid.UUID:
        """An alert row and a Pending run, in one transaction, as ingest writes them."""
        labels = labels or {"alertname": "PodCrashLooping", "severity": "critical", "pod": "web-1"}
        fingerprint = fingerprint or uuid.uuid4().hex[:16]
        now = utcnow()
        alert_id, run_id = uuid.uuid4(), uuid.uuid4()
        starts = now - dt.timedelta(minutes=1)
        with self.sessions.begin() as session:
            session.execute(
                sa.insert(Alert.__table__).values(
                    id=alert_id,
                    fingerprint=fingerprint,
                    starts_at=starts,
                    status=alert_status,
                    severity=labels.get("severity", ""),
                    alert_name=labels.get("alertname", ""),
                    labels=labels,
                    annotations={"summary": "it broke"},
                    source_name="alertmanager",
                    workflow_name=workflow,
                )
            )
            session.execute(
                sa.insert(WorkflowRun.__table__).values(
                    id=run_id,
                    workflow_name=workflow,
                    namespace=namespace,
                    source_name="alertmanager",
                    alert_id=alert_id,
                    trigger="alert",
                    phase="Pending",
                    fingerprint=fingerprint,
                    input_context={
                        "alert": {
                            "status": "firing",
                            "labels": labels,
                            "annotations": {"summary": "it broke"},
                            "startsAt": starts.isoformat(),
                            "endsAt": None,
                            "generatorURL": None,
                            "fingerprint": fingerprint,
                            "name": labels.get("alertname", ""),
                            "severity": labels.get("severity", ""),
                        },
                        "source": {
                            "name": "alertmanager",
                            "namespace": namespace,
                            "context": source_context or {"cluster": "test"},
                        },
                    },
                    context={},
                )
            )
        return run_id

    def run(self, run_id: uuid.UUID) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(WorkflowRun.__table__).where(WorkflowRun.__table__.c.id == run_id)
            ).first()

    def steps(self, run_id: uuid.UUID) -> list[Any]:
        table = StepRun.__table__
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(table).where(table.c.run_id == run_id).order_by(table.c.index)
                ).all()
            )

    def alert(self, run_id: uuid.UUID) -> Any:
        run = self.run(run_id)
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(Alert.__table__).where(Alert.__table__.c.id == run.alert_id)
            ).first()

    def deliveries(self, run_id: uuid.UUID) -> list[Any]:
        table = SinkDelivery.__table__
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(table.c.run_id == run_id)).all())

    def outbox(self, task_name: str) -> list[Any]:
        table = OutboxEntry.__table__
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(table).where(table.c.task_name == task_name)).all())

    def wait_finished(self, run_id: uuid.UUID, timeout: float = 20.0) -> Any:
        return wait_for(
            lambda: (row := self.run(run_id)) is not None and row.phase in FINISHED and row,
            timeout,
            f"run {run_id} to finish",
        )

    def close(self) -> None:
        self.engine.dispose()


def make_engine_for(url: str) -> sa.Engine:
    from shared.settings import DatabaseSettings

    return make_engine(DatabaseSettings(url=url))


class PromptMemoryTransport(memory.Transport):  # type: ignore[misc]
    """kombu's in-memory transport, returning from each wait within a tenth of a second.

    Why: Celery's solo-pool loop drains with a fixed 2 s timeout, and when asked to
    stop it checks the flag and then runs *one more* cycle (``try: maybe_shutdown()
    finally: _loop_cycle()`` in ``celery/worker/loops.py``). On a transport that
    waits the full timeout when idle, every in-process worker took up to 4 s to stop:
    the rest of the current cycle plus a whole one. A shorter wait is harmless: the
    loop catches the timeout and polls again. Shares the memory broker's state with
    ``memory://`` (class attribute), so anything sent on the app reaches the worker.
    """

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        slice_ = 0.1 if timeout is None else min(timeout, 0.1)
        return super().drain_events(connection, timeout=slice_)


@contextlib.contextmanager
def inprocess_worker(app: Celery) -> Iterator[Celery]:
    """A solo worker thread consuming the engine queue of ``app`` (a ``memory://`` app)."""
    app.conf.broker_transport = f"{__name__}:PromptMemoryTransport"
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, queues=["engine"]):
        yield app
    app.pf_runtime.close()


def start_run(app: Celery, run_id: uuid.UUID) -> None:
    app.send_task(START_WORKFLOW, args=[str(run_id)], queue="engine")


class WorkerProcess(workers.PunchingFistProcess):
    """``punchingfist engine``; a stop waits 5 s for the running step, then kills."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["engine"], env, log_path, stop_timeout=5)
