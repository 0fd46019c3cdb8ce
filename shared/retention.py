"""Retention: delete finished records older than ``PF_RETENTION_DAYS``.

Without it every webhook body, alert, run, step output and outbox row is kept
forever. A pass deletes, oldest kind of dependency first:

1. ended runs (``completed_at`` before the cutoff) with their steps and sink
   deliveries (a delivery still Pending a retention period after its run ended is
   not going to be useful);
2. resolved alerts (``resolved_at`` before the cutoff) that no remaining run refers
   to, with their request links;
3. source events (the raw bodies) received before the cutoff, with their links: an
   alert that fires for longer keeps only the history of the retention period;
4. published outbox rows and schedule ticks older than the cutoff.

It must never touch what is still in flight: Pending or Running runs, alerts that
are not resolved, unpublished outbox rows. Each batch of ``batch_size`` ids is its
own short transaction, so a large backlog never holds SQLite's write lock (or many
PostgreSQL row locks) for long, and an interrupted pass loses nothing but time.
Several schedulers may run passes at once: deleting what is gone is a no-op.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import sqlalchemy as sa

from shared.db.engines import write_lock
from shared.db.models import (
    Alert,
    AlertSourceEvent,
    OutboxEntry,
    ScheduleTick,
    SinkDelivery,
    SourceEvent,
    StepRun,
    WorkflowRun,
    utcnow,
)
from shared.settings import RetentionSettings

log = logging.getLogger(__name__)

_RUNS = cast(sa.Table, WorkflowRun.__table__)
_STEPS = cast(sa.Table, StepRun.__table__)
_DELIVERIES = cast(sa.Table, SinkDelivery.__table__)
_ALERTS = cast(sa.Table, Alert.__table__)
_LINKS = cast(sa.Table, AlertSourceEvent.__table__)
_EVENTS = cast(sa.Table, SourceEvent.__table__)
_OUTBOX = cast(sa.Table, OutboxEntry.__table__)
_TICKS = cast(sa.Table, ScheduleTick.__table__)
# A run has ended once it has a completion time; the phase check guards against a
# row that somehow has both (never delete what the engine may still drive).
_IN_FLIGHT = ("Pending", "Running")


@dataclasses.dataclass(frozen=True)
class Purged:
    """Rows deleted by one pass, per table."""

    runs: int = 0
    alerts: int = 0
    source_events: int = 0
    outbox: int = 0
    schedule_ticks: int = 0

    def as_log(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _expired_runs(cutoff: dt.datetime, size: int) -> sa.Select[Any]:
    return (
        sa.select(_RUNS.c.id)
        .where(_RUNS.c.completed_at < cutoff, _RUNS.c.phase.not_in(_IN_FLIGHT))
        .limit(size)
    )


def _expired_alerts(cutoff: dt.datetime, size: int) -> sa.Select[Any]:
    referenced = sa.select(_RUNS.c.id).where(_RUNS.c.alert_id == _ALERTS.c.id).exists()
    return (
        sa.select(_ALERTS.c.id)
        .where(_ALERTS.c.status == "resolved", _ALERTS.c.resolved_at < cutoff, ~referenced)
        .limit(size)
    )


def _expired_events(cutoff: dt.datetime, size: int) -> sa.Select[Any]:
    return sa.select(_EVENTS.c.id).where(_EVENTS.c.received_at < cutoff).limit(size)


def _expired_outbox(cutoff: dt.datetime, size: int) -> sa.Select[Any]:
    return sa.select(_OUTBOX.c.id).where(_OUTBOX.c.published_at < cutoff).limit(size)


def _expired_ticks(cutoff: dt.datetime, size: int) -> sa.Select[Any]:
    return sa.select(_TICKS.c.id).where(_TICKS.c.tick_at < cutoff).limit(size)


# (what to find, children to delete first as (table, column), the table itself)
_KINDS: tuple[
    tuple[
        str,
        Callable[[dt.datetime, int], sa.Select[Any]],
        tuple[tuple[sa.Table, sa.Column[Any]], ...],
        sa.Table,
    ],
    ...,
] = (
    (
        "runs",
        _expired_runs,
        ((_STEPS, _STEPS.c.run_id), (_DELIVERIES, _DELIVERIES.c.run_id)),
        _RUNS,
    ),
    ("alerts", _expired_alerts, ((_LINKS, _LINKS.c.alert_id),), _ALERTS),
    ("source_events", _expired_events, ((_LINKS, _LINKS.c.source_event_id),), _EVENTS),
    ("outbox", _expired_outbox, (), _OUTBOX),
    ("schedule_ticks", _expired_ticks, (), _TICKS),
)


def purge(
    engine: sa.Engine, days: int, *, batch_size: int = 500, now: dt.datetime | None = None
) -> Purged:
    """Delete finished records older than ``days`` days; ``days == 0`` deletes nothing."""
    if days <= 0:
        return Purged()
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    counts: dict[str, int] = {}
    for name, expired, children, table in _KINDS:
        total = 0
        while True:
            with write_lock(engine), engine.begin() as connection:
                ids = connection.execute(expired(cutoff, batch_size)).scalars().all()
                if not ids:
                    break
                for child, column in children:
                    connection.execute(sa.delete(child).where(column.in_(ids)))
                connection.execute(sa.delete(table).where(table.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < batch_size:
                break
        counts[name] = total
    purged = Purged(**counts)
    log.info(
        "retention pass",
        extra={"retention_days": days, "cutoff": cutoff.isoformat(), **purged.as_log()},
    )
    return purged


def start(
    engine: sa.Engine, settings: RetentionSettings, stopped: threading.Event
) -> threading.Thread | None:
    """Run a pass now and then every ``settings.interval`` seconds until ``stopped``.

    A thread of its own, so that a long first pass over a large backlog does not
    delay the scheduler's cron ticks. None when retention is off (``days == 0``).
    """
    if settings.days <= 0:
        log.info("retention off: PF_RETENTION_DAYS=0 keeps every record")
        return None

    def loop() -> None:
        while not stopped.is_set():
            try:
                purge(engine, settings.days, batch_size=settings.batch_size)
            except Exception:  # a database hiccup must not end retention for good
                log.exception("retention pass failed")
            stopped.wait(settings.interval)

    thread = threading.Thread(target=loop, name="retention", daemon=True)
    thread.start()
    return thread
