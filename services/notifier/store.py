"""The notifier's reads and writes: deliveries, their claims, and the alerts' Sink state.

Every write that moves a delivery is a compare-and-set on what the reader saw (its
phase, attempt count and claimant), so that two messages for one delivery, or a
worker that lost its claim to a recovery pass, can never both send or both record.
The functions take a session and leave committing to the caller. Undoing what
the Sinks left when an alert resolves is in ``resolutions``.

What this module must not do: call a Sink or the broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.notifier import approvals
from services.notifier.core import deliveries, messages
from services.notifier.core.deliveries import Phase
from services.notifier.sinks.registries import AlertState, Target
from shared.db.models import (
    Alert,
    AlertSinkState,
    Approval,
    Resource,
    SinkDelivery,
    StepRun,
    WorkflowRun,
)
from shared.domain import alerts as alert_domain
from shared.domain.notifications import Event
from shared.queueing import ALERT_RESOLVED, APPROVAL_DECIDED, NOTIFIER_QUEUE

log = logging.getLogger(__name__)

_DELIVERIES = cast(sa.Table, SinkDelivery.__table__)
_RUNS = cast(sa.Table, WorkflowRun.__table__)
_ALERTS = cast(sa.Table, Alert.__table__)
_STATES = cast(sa.Table, AlertSinkState.__table__)
_RESOURCES = cast(sa.Table, Resource.__table__)
_APPROVALS = cast(sa.Table, Approval.__table__)
_STEPS = cast(sa.Table, StepRun.__table__)


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A delivery with its run, alert and Sink, as the deliver task sees them."""

    id: uuid.UUID
    run_id: uuid.UUID
    sink_name: str
    # What the Sink is told (``shared.domain.notifications.Event``) and about what.
    event: str
    event_id: str
    phase: str
    attempts: int
    worker: str | None
    lease_until: dt.datetime | None
    next_attempt_at: dt.datetime | None
    created_at: dt.datetime
    run: messages.RunFacts
    alert: messages.AlertFacts | None
    # None when no Sink of that name exists in the run's namespace.
    target: Target | None


def alert_facts(row: Any) -> messages.AlertFacts:
    return messages.AlertFacts(
        id=str(row.id),
        status=row.status,
        auto_resolved=bool(row.auto_resolved),
        resolved_at=row.resolved_at,
        labels=dict(row.labels or {}),
        annotations=dict(row.annotations or {}),
        generator_url=row.generator_url,
        starts_at=row.starts_at,
        alert_name=row.alert_name or "",
        severity=row.severity or "",
        fingerprint=row.fingerprint or "",
    )


def target_of(session: Session, namespace: str, name: str) -> Target | None:
    spec = session.execute(
        sa.select(_RESOURCES.c.spec).where(
            _RESOURCES.c.kind == "Sink",
            _RESOURCES.c.namespace == namespace,
            _RESOURCES.c.name == name,
        )
    ).scalar_one_or_none()
    if spec is None:
        return None
    return Target(
        name=name,
        namespace=namespace,
        type=str(spec.get("type")),
        config=dict(spec.get("config") or {}),
        condition=spec.get("condition"),
    )


def load(session: Session, delivery_id: uuid.UUID) -> Loaded | None:
    row = session.execute(
        sa.select(
            _DELIVERIES,
            _RUNS.c.phase.label("run_phase"),
            _RUNS.c.workflow_name,
            _RUNS.c.namespace,
            _RUNS.c.context,
            _RUNS.c.outputs,
            _RUNS.c.error.label("run_error"),
            _RUNS.c.message.label("run_message"),
            _RUNS.c.started_at,
            _RUNS.c.completed_at,
            _RUNS.c.alert_id,
        )
        .join(_RUNS, _RUNS.c.id == _DELIVERIES.c.run_id)
        .where(_DELIVERIES.c.id == delivery_id)
    ).first()
    if row is None:
        return None
    alert = None
    if row.alert_id is not None:
        alert_row = session.execute(sa.select(_ALERTS).where(_ALERTS.c.id == row.alert_id)).first()
        alert = alert_facts(alert_row) if alert_row is not None else None
    approval = None
    if row.event == Event.APPROVAL_REQUESTED:
        approval = approvals.approval_facts(session, _uuid(row.event_id))
    elif row.run_phase == messages.WAITING_APPROVAL:
        approval = approvals.pending_approval(session, row.run_id)
    run = messages.RunFacts(
        id=str(row.run_id),
        phase=row.run_phase,
        workflow=row.workflow_name,
        namespace=row.namespace,
        context=dict(row.context or {}),
        outputs=dict(row.outputs or {}),
        error=row.run_error,
        message=row.run_message,
        started_at=row.started_at,
        completed_at=row.completed_at,
        approval=approval,
        approvals=approvals.run_approvals(session, row.run_id),
        event=row.event,
    )
    return Loaded(
        id=row.id,
        run_id=row.run_id,
        sink_name=row.sink_name,
        event=row.event,
        event_id=row.event_id,
        phase=row.phase,
        attempts=row.attempts,
        worker=row.worker,
        lease_until=row.lease_until,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        run=run,
        alert=alert,
        target=target_of(session, row.namespace, row.sink_name),
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _as_seen(loaded: Loaded) -> sa.ColumnElement[bool]:
    """The delivery is still as ``load`` saw it: Pending, same attempts, same claimant."""
    return sa.and_(
        _DELIVERIES.c.id == loaded.id,
        _DELIVERIES.c.phase == Phase.PENDING,
        _DELIVERIES.c.attempts == loaded.attempts,
        claimant_is(_DELIVERIES, loaded.worker),
    )


def claimant_is(table: sa.Table, worker: str | None) -> sa.ColumnElement[bool]:
    """The row's ``worker`` column is still the claimant that was read (or still none)."""
    return table.c.worker.is_(None) if worker is None else table.c.worker == worker


def take_lease(
    session: Session,
    table: sa.Table,
    as_seen: sa.ColumnElement[bool],
    *,
    attempts: tuple[str, int],
    worker: str,
    now: dt.datetime,
    lease: float,
    claimant: tuple[str, str] = ("worker", "lease_until"),
) -> bool:
    """Lease the row matched by ``as_seen`` to ``worker`` for one more attempt
    (``attempts``: the counter column and the value read). False when someone else
    changed the row first: the compare-and-set that lets two workers race safely.
    ``claimant`` names the worker and lease columns, for a row that carries two
    claims (a Sink state's resolution and its silence watch)."""
    column, seen = attempts
    worker_column, lease_column = claimant
    result = session.execute(
        sa.update(table)
        .where(as_seen)
        .values(
            {
                worker_column: worker,
                lease_column: now + dt.timedelta(seconds=lease),
                column: seen + 1,
                "updated_at": now,
            }
        )
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def claim(session: Session, loaded: Loaded, worker: str, now: dt.datetime, lease: float) -> bool:
    """Take the delivery for one attempt; False when someone else changed it first."""
    return take_lease(
        session,
        _DELIVERIES,
        _as_seen(loaded),
        attempts=("attempts", loaded.attempts),
        worker=worker,
        now=now,
        lease=lease,
    )


def finish_unsent(
    session: Session, loaded: Loaded, phase: Phase, error: str | None, now: dt.datetime
) -> bool:
    """Skipped (condition false) or Failed before any send (no Sink, bad template)."""
    result = session.execute(
        sa.update(_DELIVERIES)
        .where(_as_seen(loaded))
        .values(phase=phase, error=error, next_attempt_at=None, updated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def hold(
    session: Session, loaded: Loaded, reason: str, until: dt.datetime, now: dt.datetime
) -> bool:
    """Leave the delivery Pending until ``until`` without using an attempt."""
    result = session.execute(
        sa.update(_DELIVERIES)
        .where(_as_seen(loaded))
        .values(error=reason, next_attempt_at=until, updated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# -- the alert's Sink state ------------------------------------------------------


def _insert_ignore(session: Session, values: Mapping[str, Any]) -> None:
    dialect = session.get_bind().dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_STATES)
    session.execute(insert.values(**values).on_conflict_do_nothing())


def state_key(alert_id: uuid.UUID, sink_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(_STATES.c.alert_id == alert_id, _STATES.c.sink_name == sink_name)


def alert_state(session: Session, alert_id: uuid.UUID, sink_name: str) -> AlertState | None:
    row = session.execute(sa.select(_STATES).where(state_key(alert_id, sink_name))).first()
    if row is None:
        return None
    return AlertState(channel=row.channel, thread_ts=row.thread_ts, silence_id=row.silence_id)


def claim_thread(
    session: Session,
    alert_id: uuid.UUID,
    target: Target,
    delivery_id: uuid.UUID,
    now: dt.datetime,
) -> AlertState | None:
    """The alert's thread for a threaded Sink, claiming its parent if nobody has.

    Returns the thread to reply in, or a state with ``owns_parent`` when this
    delivery is to post the parent, or None when another delivery holds that claim
    (wait for it). On PostgreSQL the insert of a concurrent claimant waits for the
    first one's commit and then does nothing; SQLite serialises writers anyway.
    """
    sink_name = target.name
    _insert_ignore(
        session,
        {
            "alert_id": alert_id,
            "sink_name": sink_name,
            "sink_namespace": target.namespace,
            "parent_delivery_id": delivery_id,
            "resolution_attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    # A claim released by a delivery that failed for good is free to take.
    session.execute(
        sa.update(_STATES)
        .where(
            state_key(alert_id, sink_name),
            _STATES.c.thread_ts.is_(None),
            _STATES.c.parent_delivery_id.is_(None),
        )
        .values(parent_delivery_id=delivery_id, updated_at=now)
    )
    row = session.execute(sa.select(_STATES).where(state_key(alert_id, sink_name))).one()
    if row.thread_ts:
        return AlertState(channel=row.channel, thread_ts=row.thread_ts, silence_id=row.silence_id)
    if row.parent_delivery_id == delivery_id:
        return AlertState(channel=row.channel, silence_id=row.silence_id, owns_parent=True)
    return None


def _save_state(
    session: Session,
    alert_id: uuid.UUID,
    target: Target,
    values: Mapping[str, Any],
    now: dt.datetime,
) -> None:
    sink_name = target.name
    _insert_ignore(
        session,
        {
            "alert_id": alert_id,
            "sink_name": sink_name,
            "sink_namespace": target.namespace,
            "resolution_attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    session.execute(
        sa.update(_STATES).where(state_key(alert_id, sink_name)).values(**values, updated_at=now)
    )


# -- records ---------------------------------------------------------------------


def record(
    session: Session,
    loaded: Loaded,
    *,
    worker: str,
    attempt: int,
    decision: deliveries.Record,
    reference: Mapping[str, Any] | None,
    state: Mapping[str, Any],
    threaded: bool,
    tells_humans: bool,
    now: dt.datetime,
) -> bool:
    """Write one attempt's result; False when the claim was lost (nothing written)."""
    values: dict[str, Any] = {
        "phase": decision.phase,
        "error": decision.error,
        "worker": None,
        "lease_until": None,
        "updated_at": now,
    }
    if decision.phase is Phase.DELIVERED:
        values.update(response=dict(reference or {}), sent_at=now, next_attempt_at=None)
    elif decision.retry_in is not None:
        values["next_attempt_at"] = now + dt.timedelta(seconds=decision.retry_in)
        if not decision.counts:
            values["attempts"] = attempt - 1
    result = session.execute(
        sa.update(_DELIVERIES)
        .where(
            _DELIVERIES.c.id == loaded.id,
            _DELIVERIES.c.phase == Phase.PENDING,
            _DELIVERIES.c.worker == worker,
            _DELIVERIES.c.attempts == attempt,
        )
        .values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    alert = loaded.alert
    if alert is None:
        return True
    alert_id = uuid.UUID(alert.id)
    if state and loaded.target is not None:
        values = dict(state)
        if state.get("thread_ts") or state.get("silence_id"):
            # A new thread or silence: a resolution handled before it existed found
            # nothing to edit or expire and is done again for it (an in-flight one
            # loses its claim).
            values.update(
                resolved_at=None,
                resolution_error=None,
                worker=None,
                lease_until=None,
                resolution_attempts=_STATES.c.resolution_attempts + 1,
            )
        _save_state(session, alert_id, loaded.target, values, now)
    if decision.phase is Phase.FAILED and threaded:
        # Give the parent claim back, so that the alert's next delivery can post it.
        session.execute(
            sa.update(_STATES)
            .where(
                state_key(alert_id, loaded.sink_name),
                _STATES.c.parent_delivery_id == loaded.id,
                _STATES.c.thread_ts.is_(None),
            )
            .values(parent_delivery_id=None, updated_at=now)
        )
    if (
        decision.phase is Phase.DELIVERED
        and tells_humans
        and loaded.event == Event.RUN_FINISHED
        and messages.escalates(loaded.run.phase, alert)
    ):
        escalate(session, alert_id, now)
    return True


def lock_for_follow_ups(session: Session, loaded: Loaded) -> None:
    """Lock the rows whose change the delivery's record must not miss (PostgreSQL).

    A decision (``shared.approvals``) or a resolution (ingest, the engine) commits
    beside this record: each writer locks the row it changes, then reads what was
    sent; this record locks the same rows first, then reads their status. Whichever
    commits second sees the other, so the message that edits the Slack message is
    sent at least once (``follow_ups``); both are idempotent. Approval before alert,
    as the engine's resume takes them. SQLite serialises writers (BEGIN IMMEDIATE).
    """
    approval_id = _uuid(loaded.event_id) if loaded.event == Event.APPROVAL_REQUESTED else None
    if approval_id is not None:
        session.execute(
            sa.select(_APPROVALS.c.id).where(_APPROVALS.c.id == approval_id).with_for_update()
        ).first()
    if loaded.alert is not None:
        session.execute(
            sa.select(_ALERTS.c.id)
            .where(_ALERTS.c.id == uuid.UUID(loaded.alert.id))
            .with_for_update()
        ).first()


def follow_ups(session: Session, loaded: Loaded) -> list[tuple[str, str, list[Any]]]:
    """What a delivered message leaves to do, read after ``lock_for_follow_ups``.

    - The alert resolved while the message was queued or on its way: its resolution
      (parent edit, thread reply, silence expiry) may have found no thread yet.
    - The approval the message asks for was decided meanwhile: the message still
      shows the buttons.
    """
    found: list[tuple[str, str, list[Any]]] = []
    if loaded.alert is not None:
        alert_id = uuid.UUID(loaded.alert.id)
        resolved = session.execute(
            sa.select(_ALERTS.c.status).where(_ALERTS.c.id == alert_id)
        ).scalar_one_or_none() == str(messages.RESOLVED)
        unresolved = session.execute(
            sa.select(_STATES.c.sink_name).where(
                _STATES.c.alert_id == alert_id,
                _STATES.c.resolved_at.is_(None),
                sa.or_(_STATES.c.thread_ts.is_not(None), _STATES.c.silence_id.is_not(None)),
            )
        ).first()
        if resolved and unresolved is not None:
            found.append((ALERT_RESOLVED, NOTIFIER_QUEUE, [str(alert_id)]))
    approval_id = _uuid(loaded.event_id) if loaded.event == Event.APPROVAL_REQUESTED else None
    if approval_id is not None:
        status = session.execute(
            sa.select(_APPROVALS.c.status).where(_APPROVALS.c.id == approval_id)
        ).scalar_one_or_none()
        if status is not None and status != "pending":
            found.append((APPROVAL_DECIDED, NOTIFIER_QUEUE, [str(approval_id)]))
    return found


def escalate(session: Session, alert_id: uuid.UUID, now: dt.datetime) -> bool:
    """triaging -> escalated: a person was told about the alert (compare-and-set)."""
    change = alert_domain.transition(
        alert_domain.AlertStatus.TRIAGING, alert_domain.AlertStatus.ESCALATED, at=now
    )
    result = session.execute(
        sa.update(_ALERTS)
        .where(_ALERTS.c.id == alert_id, _ALERTS.c.status == alert_domain.AlertStatus.TRIAGING)
        .values(status=str(change.status), updated_at=now, **change.timestamps)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


# -- recovery --------------------------------------------------------------------


def due_again(
    session: Session, now: dt.datetime, stall_seconds: float, is_dead: Callable[[str], bool]
) -> list[uuid.UUID]:
    """Pending deliveries whose message is lost or whose sender died; each is touched
    (compare-and-set) so that one recovery pass among several re-sends it."""
    stalled_before = now - dt.timedelta(seconds=stall_seconds)
    due_at = sa.func.coalesce(_DELIVERIES.c.next_attempt_at, _DELIVERIES.c.created_at)
    rows = session.execute(
        sa.select(
            _DELIVERIES.c.id,
            _DELIVERIES.c.worker,
            _DELIVERIES.c.lease_until,
            _DELIVERIES.c.attempts,
            _DELIVERIES.c.next_attempt_at,
        ).where(
            _DELIVERIES.c.phase == Phase.PENDING,
            sa.or_(_DELIVERIES.c.worker.is_not(None), due_at < stalled_before),
        )
    ).all()
    found = []
    for row in rows:
        if row.worker is not None:
            expired = row.lease_until is None or row.lease_until <= now
            if not (expired or is_dead(row.worker)):
                continue
            same = sa.and_(
                _DELIVERIES.c.worker == row.worker, _DELIVERIES.c.attempts == row.attempts
            )
            values: dict[str, Any] = {
                "worker": None,
                "lease_until": None,
                "error": f"worker {row.worker} was lost during attempt {row.attempts}",
            }
        else:
            same = sa.and_(
                _DELIVERIES.c.worker.is_(None),
                _DELIVERIES.c.next_attempt_at.is_(None)
                if row.next_attempt_at is None
                else _DELIVERIES.c.next_attempt_at == row.next_attempt_at,
            )
            values = {}
        result = session.execute(
            sa.update(_DELIVERIES)
            .where(_DELIVERIES.c.id == row.id, _DELIVERIES.c.phase == Phase.PENDING, same)
            .values(**values, next_attempt_at=now, updated_at=now)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            found.append(row.id)
    return found
