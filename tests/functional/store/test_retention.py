"""Retention deletes finished records past PF_RETENTION_DAYS, and nothing in flight.

Seeded on both databases with, for each kind, an old finished row (deleted), an old
row still in flight (kept) and a recent finished row (kept); then run once directly
in small batches, and once as `punchingfist scheduler` runs it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared import retention
from shared.db import models
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=40)
RECENT = NOW - dt.timedelta(days=5)


def _alert(name: str, status: str, at: dt.datetime, resolved: bool) -> models.Alert:
    return models.Alert(
        fingerprint=uuid.uuid4().hex[:16],
        starts_at=at,
        status=status,
        alert_name=name,
        labels={"alertname": name},
        annotations={},
        source_name="am",
        received_at=at,
        last_seen_at=at,
        resolved_at=at if resolved else None,
        created_at=at,
        updated_at=at,
    )


def _run(name: str, alert: models.Alert | None, phase: str, ended: dt.datetime | None) -> Any:
    return models.WorkflowRun(
        workflow_name=name,
        alert_id=alert.id if alert else None,
        phase=phase,
        input_context={},
        context={},
        created_at=OLD,
        completed_at=ended,
    )


def _seed(session: Session) -> None:
    old_resolved = _alert("old-resolved", "resolved", OLD, resolved=True)
    old_resolved_with_live_run = _alert("old-resolved-live-run", "resolved", OLD, resolved=True)
    old_firing = _alert("old-firing", "received", OLD, resolved=False)
    recent_resolved = _alert("recent-resolved", "resolved", RECENT, resolved=True)
    alerts = [old_resolved, old_resolved_with_live_run, old_firing, recent_resolved]
    for alert in alerts:
        alert.id = uuid.uuid4()
    session.add_all(alerts)
    session.flush()
    old_event = models.SourceEvent(
        source_name="am", source_type="webhook", event_data={"old": True}, received_at=OLD
    )
    recent_event = models.SourceEvent(
        source_name="am", source_type="webhook", event_data={"old": False}, received_at=RECENT
    )
    session.add_all([old_event, recent_event])
    session.flush()
    for alert in alerts:
        session.add(
            models.AlertSourceEvent(
                alert_id=alert.id, source_event_id=old_event.id, status="firing"
            )
        )
    session.add(
        models.AlertSourceEvent(
            alert_id=old_firing.id, source_event_id=recent_event.id, status="firing"
        )
    )
    old_ended = _run("old-ended", old_resolved, "Succeeded", OLD)
    old_ended.id = uuid.uuid4()
    runs = [
        old_ended,
        _run("old-running", old_resolved_with_live_run, "Running", None),
        _run("old-pending", None, "Pending", None),
        _run("recent-ended", recent_resolved, "Failed", RECENT),
        _run("old-skipped", None, "Skipped", OLD),
    ]
    session.add_all(runs)
    session.flush()
    session.add(
        models.StepRun(run_id=old_ended.id, index=0, name="s", type="cli", phase="Succeeded")
    )
    session.add(models.SinkDelivery(run_id=old_ended.id, sink_name="slack", phase="Sent"))
    session.add_all(
        [
            models.OutboxEntry(
                task_name="old-published",
                queue="q",
                args=[],
                created_at=OLD,
                available_at=OLD,
                published_at=OLD,
            ),
            models.OutboxEntry(
                task_name="old-unpublished", queue="q", args=[], created_at=OLD, available_at=OLD
            ),
            models.OutboxEntry(
                task_name="recent-published",
                queue="q",
                args=[],
                created_at=RECENT,
                available_at=RECENT,
                published_at=RECENT,
            ),
            models.ScheduleTick(
                source_namespace="d", source_name="old", tick_at=OLD, created_at=OLD
            ),
            models.ScheduleTick(
                source_namespace="d", source_name="recent", tick_at=RECENT, created_at=RECENT
            ),
        ]
    )


def _names(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "alerts": sorted(conn.execute(sa.select(models.Alert.alert_name)).scalars()),
            "runs": sorted(conn.execute(sa.select(models.WorkflowRun.workflow_name)).scalars()),
            "steps": conn.execute(sa.select(sa.func.count()).select_from(models.StepRun)).scalar(),
            "deliveries": conn.execute(
                sa.select(sa.func.count()).select_from(models.SinkDelivery)
            ).scalar(),
            "events": sorted(
                str(data)
                for data in conn.execute(sa.select(models.SourceEvent.event_data)).scalars()
            ),
            "links": conn.execute(
                sa.select(sa.func.count()).select_from(models.AlertSourceEvent)
            ).scalar(),
            "outbox": sorted(conn.execute(sa.select(models.OutboxEntry.task_name)).scalars()),
            "ticks": sorted(conn.execute(sa.select(models.ScheduleTick.source_name)).scalars()),
        }


KEPT = {
    "alerts": ["old-firing", "old-resolved-live-run", "recent-resolved"],
    "runs": ["old-pending", "old-running", "recent-ended"],
    "steps": 0,
    "deliveries": 0,
    "events": ["{'old': False}"],
    # Only the recent request's link survives: old requests go with their links.
    "links": 1,
    "outbox": ["old-unpublished", "recent-published"],
    "ticks": ["recent"],
}


@pytest.fixture
def seeded(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(DatabaseSettings(url=database_url))
    with make_session_factory(engine).begin() as session:
        _seed(session)
    yield engine
    engine.dispose()


def test_purge_deletes_old_finished_records_in_batches(seeded: sa.Engine) -> None:
    purged = retention.purge(seeded, 30, batch_size=1, now=NOW)
    assert purged == retention.Purged(runs=2, alerts=1, source_events=1, outbox=1, schedule_ticks=1)
    assert _names(seeded) == KEPT
    # A second pass finds nothing more.
    assert retention.purge(seeded, 30, batch_size=1, now=NOW) == retention.Purged()


def test_zero_days_keeps_everything(seeded: sa.Engine) -> None:
    before = _names(seeded)
    assert retention.purge(seeded, 0, now=NOW) == retention.Purged()
    assert _names(seeded) == before


def test_the_scheduler_runs_retention(seeded: sa.Engine, database_url: str, tmp_path: Path) -> None:
    # The seeded instants are relative to NOW; the process uses the real clock, so
    # pick the days that put NOW's cutoff between OLD and RECENT.
    days = (dt.datetime.now(dt.UTC) - NOW).days + 30
    env = {
        **os.environ,
        "PF_DATABASE_URL": database_url,
        "PF_BROKER_URL": "memory://",
        "PF_VAR_DIR": str(tmp_path / "var"),
        "PF_RETENTION_DAYS": str(days),
        "PF_RETENTION_BATCH_SIZE": "2",
        "PF_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "scheduler.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "scheduler"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while _names(seeded) != KEPT and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=20)
    log = log_path.read_text()
    assert _names(seeded) == KEPT, log
    assert '"msg": "retention pass"' in log
    assert '"runs": 2' in log
