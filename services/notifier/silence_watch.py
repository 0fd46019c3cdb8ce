"""The silence watch: find the alerts that resolved while our silence muted them.

An ``alertmanager`` Sink silences an alert while a person decides on an approval, or
at the run's end, and the silence is expired when the alert resolves
(``notifier.alert_resolved``, queued by ingest on AlertManager's ``resolved``
webhook). But a silence mutes that webhook too: AlertManager's MuteStage drops
resolved alerts that an active silence matches. An alert that ends by itself during
the silence would be reported only once the silence ends, or never if AlertManager
forgets the resolved alert first.

So every ``PF_NOTIFIER_SILENCE_WATCH_INTERVAL`` each notifier worker's main process
runs ``watch_once``: it claims up to ``PF_NOTIFIER_SILENCE_WATCH_BATCH`` Sink states
that hold a silence of an alert not resolved in our database (least recently checked
first; the claim is a lease of one interval on the row, so several workers share the
work instead of repeating it), asks each Sink's AlertManager for the alert
(``sinks.alertmanager.alerts_matching``), and judges the answers
(``core.silences``). An alert AlertManager answered for and no longer holds, from an
AlertManager up for longer than ``PF_NOTIFIER_SILENCE_WATCH_GRACE``, is recorded
resolved as ingest records it (``shared.domain.alerts.transition``, ``ends_at`` now,
not auto-resolved) with a ``notifier.alert_resolved`` outbox entry in the same
transaction: the existing resolution expires the silence, edits the Slack parent and
replies once in its thread. An unreachable or young AlertManager, or an answer that is
not clear, changes nothing and is logged.

What this module must not do: resolve anything on an unclear answer, or undo what
Sinks left itself (that is ``notifier.alert_resolved``'s, once).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.notifier import metrics, store
from services.notifier.core import silences
from services.notifier.sinks import alertmanager, registries
from shared import outbox, workers
from shared.db.models import Alert, AlertSinkState, utcnow
from shared.domain import alerts as alert_domain
from shared.errors import TemporaryError
from shared.queueing import ALERT_RESOLVED, NOTIFIER_QUEUE

if TYPE_CHECKING:
    from services.notifier.app import Runtime

log = logging.getLogger(__name__)

_ALERTS = cast(sa.Table, Alert.__table__)
_STATES = cast(sa.Table, AlertSinkState.__table__)
_RESOLVED = alert_domain.AlertStatus.RESOLVED.value


@dataclasses.dataclass(frozen=True)
class Watched:
    """One silence to look behind: the alert, and the Sink that made the silence."""

    alert_id: uuid.UUID
    sink_name: str
    sink_namespace: str
    fingerprint: str
    labels: dict[str, str]
    checks: int


def due(session: Session, now: dt.datetime, limit: int) -> list[Watched]:
    """Sink states with a silence of an alert that is not resolved, whose last check's
    lease has run out; the least recently checked first."""
    rows = session.execute(
        sa.select(
            _STATES.c.alert_id,
            _STATES.c.sink_name,
            _STATES.c.sink_namespace,
            _STATES.c.watch_checks,
            _ALERTS.c.fingerprint,
            _ALERTS.c.labels,
        )
        .join(_ALERTS, _ALERTS.c.id == _STATES.c.alert_id)
        .where(
            _STATES.c.silence_id.is_not(None),
            _STATES.c.resolved_at.is_(None),
            _ALERTS.c.status != _RESOLVED,
            sa.or_(_STATES.c.watch_until.is_(None), _STATES.c.watch_until <= now),
        )
        .order_by(sa.nulls_first(_STATES.c.watch_until.asc()), _STATES.c.alert_id)
        .limit(limit)
    ).all()
    return [
        Watched(
            alert_id=row.alert_id,
            sink_name=row.sink_name,
            sink_namespace=row.sink_namespace,
            fingerprint=row.fingerprint or "",
            labels=dict(row.labels or {}),
            checks=row.watch_checks,
        )
        for row in rows
    ]


def claim(session: Session, item: Watched, worker: str, now: dt.datetime, lease: float) -> bool:
    """Take ``item`` for one check; False when another worker checked it first."""
    return store.take_lease(
        session,
        _STATES,
        sa.and_(
            store.state_key(item.alert_id, item.sink_name),
            _STATES.c.watch_checks == item.checks,
            _STATES.c.silence_id.is_not(None),
            _STATES.c.resolved_at.is_(None),
        ),
        attempts=("watch_checks", item.checks),
        worker=worker,
        now=now,
        lease=lease,
        claimant=("watch_worker", "watch_until"),
    )


def resolve(session: Session, alert_id: uuid.UUID, now: dt.datetime) -> bool:
    """Record the alert resolved, as ingest does for AlertManager's ``resolved``
    notification, and queue its resolution through the outbox (the caller publishes
    after commit). A compare-and-set on the status read: False when ingest or the
    engine resolved it meanwhile (they queued the resolution themselves)."""
    status = session.execute(
        sa.select(_ALERTS.c.status).where(_ALERTS.c.id == alert_id)
    ).scalar_one_or_none()
    if status is None or status == _RESOLVED:
        return False
    change = alert_domain.transition(status, alert_domain.AlertStatus.RESOLVED, at=now)
    result = session.execute(
        sa.update(_ALERTS)
        .where(_ALERTS.c.id == alert_id, _ALERTS.c.status == status)
        .values(
            status=change.status.value,
            ends_at=now,
            auto_resolved=False,
            updated_at=now,
            **change.timestamps,
        )
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def watch_once(runtime: Runtime, now: dt.datetime | None = None) -> int:
    """One pass of the silence watch; returns how many alerts it found resolved."""
    settings = runtime.settings.notifier
    now = now or utcnow()
    me = workers.worker_id()
    by_url: dict[str, list[Watched]] = {}
    with runtime.units.begin() as unit:
        session = unit.session
        targets: dict[tuple[str, str], registries.Target | None] = {}
        for item in due(session, now, settings.silence_watch_batch):
            if not claim(session, item, me, now, settings.silence_watch_interval):
                continue
            key = (item.sink_namespace, item.sink_name)
            if key not in targets:
                targets[key] = store.target_of(session, *key)
            target = targets[key]
            # A Sink deleted or changed to another type since it made the silence:
            # nothing to ask (the claim still spaces out the next look).
            if target is not None and target.type == alertmanager.AlertManagerSink.type:
                by_url.setdefault(str(target.config["url"]), []).append(item)
    found = 0
    for url, items in by_url.items():
        for item in _resolved_in(runtime, url, items):
            found += _record(runtime, item)
    return found


def _resolved_in(runtime: Runtime, url: str, items: list[Watched]) -> list[Watched]:
    """Of ``items`` (alerts silenced in the AlertManager at ``url``), those it answered
    for and no longer holds, once its uptime says the absence is to be believed."""
    extra: dict[str, Any] = {"alertmanager": url}
    asked_at = utcnow()
    absent: list[Watched] = []
    asked = 0
    try:
        for item in items:
            verdict = silences.held(
                alertmanager.alerts_matching(runtime.http, url, item.labels),
                item.fingerprint,
                item.labels,
            )
            asked += 1
            if verdict.finding is silences.Finding.ABSENT:
                absent.append(item)
                continue
            metrics.silence_checked(verdict.finding.value)
            if verdict.finding is silences.Finding.UNKNOWN:
                log.warning(
                    "silence watch: no clear answer",
                    extra={**extra, "alert_id": str(item.alert_id), "reason": verdict.reason},
                )
        if not absent:
            return []
        # Asked after the alerts: the process that answered them (see absence_trusted).
        distrust = silences.absence_trusted(
            alertmanager.status(runtime.http, url),
            asked_at,
            runtime.settings.notifier.silence_watch_grace,
        )
    except TemporaryError as exc:
        # One unreachable AlertManager costs one timeout per pass, not one per alert.
        log.warning("silence watch: AlertManager unreachable", extra={**extra, "error": str(exc)})
        # The alerts not yet asked about, and those found gone whose trust was not
        # settled: none of them was answered for.
        metrics.silence_checked("unreachable", len(items) - asked + len(absent))
        return []
    if distrust is not None:
        log.info(
            "silence watch: absence not trusted yet",
            extra={**extra, "alerts": len(absent), "reason": distrust},
        )
        metrics.silence_checked("untrusted", len(absent))
        return []
    return absent


def _record(runtime: Runtime, item: Watched) -> int:
    extra = {"alert_id": str(item.alert_id), "sink": item.sink_name}
    with runtime.units.begin(alert_id=str(item.alert_id)) as unit:
        session = unit.session
        if not resolve(session, item.alert_id, utcnow()):
            return 0
        unit.publish_after_commit(
            outbox.add(
                session,
                [(ALERT_RESOLVED, NOTIFIER_QUEUE, [str(item.alert_id)])],
                runtime.settings.outbox.lease_seconds,
            )
        )
    metrics.silence_checked("resolved")
    log.info("silence watch: the alert resolved during its silence", extra=extra)
    return 1
