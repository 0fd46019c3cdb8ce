"""The notifier's reads and writes about an alert's resolution: for each Sink that
left something on the alert (a Slack thread, a silence), the claim and the record of
updating or undoing it (``notifier.alert_resolved``), and the recovery of resolutions
whose worker was lost.

A resolution lives on the alert's Sink state row (``alert_sink_states``), whose other
columns ``store`` writes when a delivery posts a thread or creates a silence; such a
record reopens a resolution that ran before the thread or silence existed
(``store.record``), and a delivered message that finds its alert resolved queues this
work again (``store.follow_ups``). As in ``store``, every write is a compare-and-set
on what the reader saw, and the functions leave committing to the caller.

What this module must not do: call a Sink or the broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.notifier import store
from services.notifier.core import messages
from services.notifier.sinks.registries import AlertState
from shared.db.models import Alert, AlertSinkState

_ALERTS = cast(sa.Table, Alert.__table__)
_STATES = cast(sa.Table, AlertSinkState.__table__)


@dataclasses.dataclass(frozen=True)
class Resolution:
    """One (alert, Sink) state to update or undo because the alert resolved."""

    alert_id: uuid.UUID
    sink_name: str
    sink_namespace: str
    state: AlertState
    # A delivery holds the parent claim but has not recorded the parent yet.
    parent_in_flight: bool
    worker: str | None
    lease_until: dt.datetime | None
    attempts: int
    progress: dict[str, Any]


def unfinished(
    session: Session, alert_id: uuid.UUID
) -> tuple[messages.AlertFacts | None, list[Resolution]]:
    """The alert and its Sink states that still have something to resolve."""
    alert_row = session.execute(sa.select(_ALERTS).where(_ALERTS.c.id == alert_id)).first()
    if alert_row is None:
        return None, []
    rows = session.execute(
        sa.select(_STATES)
        .where(_STATES.c.alert_id == alert_id, _STATES.c.resolved_at.is_(None))
        .order_by(_STATES.c.sink_name)
    ).all()
    found = [
        Resolution(
            alert_id=alert_id,
            sink_name=row.sink_name,
            sink_namespace=row.sink_namespace,
            state=AlertState(
                channel=row.channel, thread_ts=row.thread_ts, silence_id=row.silence_id
            ),
            parent_in_flight=row.parent_delivery_id is not None and row.thread_ts is None,
            worker=row.worker,
            lease_until=row.lease_until,
            attempts=row.resolution_attempts,
            progress=dict(row.resolution or {}),
        )
        for row in rows
    ]
    return store.alert_facts(alert_row), found


def _as_seen(item: Resolution) -> sa.ColumnElement[bool]:
    return sa.and_(
        store.state_key(item.alert_id, item.sink_name),
        _STATES.c.resolved_at.is_(None),
        _STATES.c.resolution_attempts == item.attempts,
        store.claimant_is(_STATES, item.worker),
    )


def claim(session: Session, item: Resolution, worker: str, now: dt.datetime, lease: float) -> bool:
    return store.take_lease(
        session,
        _STATES,
        _as_seen(item),
        attempts=("resolution_attempts", item.attempts),
        worker=worker,
        now=now,
        lease=lease,
    )


def record(
    session: Session,
    item: Resolution,
    *,
    worker: str,
    attempt: int,
    progress: Mapping[str, Any],
    error: str | None,
    done: bool,
    now: dt.datetime,
) -> bool:
    """Progress of one attempt; ``done`` ends the resolution (finished or given up)."""
    result = session.execute(
        sa.update(_STATES)
        .where(
            store.state_key(item.alert_id, item.sink_name),
            _STATES.c.worker == worker,
            _STATES.c.resolution_attempts == attempt,
            _STATES.c.resolved_at.is_(None),
        )
        .values(
            worker=None,
            lease_until=None,
            resolution={**item.progress, **progress},
            resolution_error=error,
            resolved_at=now if done else None,
            updated_at=now,
        )
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def abandoned(
    session: Session, now: dt.datetime, is_dead: Callable[[str], bool]
) -> list[uuid.UUID]:
    """Alerts whose resolution was claimed by a worker that died or ran out of lease;
    the claims are released (compare-and-set) and the alerts returned to re-send."""
    rows = session.execute(
        sa.select(
            _STATES.c.alert_id,
            _STATES.c.sink_name,
            _STATES.c.worker,
            _STATES.c.lease_until,
            _STATES.c.resolution_attempts,
        ).where(_STATES.c.resolved_at.is_(None), _STATES.c.worker.is_not(None))
    ).all()
    found: list[uuid.UUID] = []
    for row in rows:
        expired = row.lease_until is None or row.lease_until <= now
        if not (expired or is_dead(row.worker)):
            continue
        result = session.execute(
            sa.update(_STATES)
            .where(
                store.state_key(row.alert_id, row.sink_name),
                _STATES.c.worker == row.worker,
                _STATES.c.resolution_attempts == row.resolution_attempts,
            )
            .values(worker=None, lease_until=None, updated_at=now)
        )
        if result.rowcount == 1 and row.alert_id not in found:  # type: ignore[attr-defined]
            found.append(row.alert_id)
    return found
