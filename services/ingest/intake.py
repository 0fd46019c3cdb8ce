"""Record one accepted AlertManager notification: the whole write path of ingest.

One transaction stores the source event, new alert occurrences, the updates to known
ones, a Pending workflow run for each new firing alert and an outbox entry for each
run; only after it commits may the caller answer 2xx and publish. The dedup lookup is
one indexed query per ``_CHUNK`` alerts, and each kind of row is written with one
batched statement. The transaction is a unit of work (``shared.units``): its outbox
entry is published after it commits, never before.

Nothing here may fail on the content of a notification: ``shared.domain.webhooks``
has refused what the database cannot hold (NUL, lone surrogates, values longer than
their column) and the stored body goes through ``webhooks.storable``. A database
error is then an outage, which the API answers with 503 so that AlertManager retries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from shared import outbox, queueing, units
from shared.db.models import (
    Alert,
    AlertSinkState,
    AlertSourceEvent,
    SourceEvent,
    WorkflowRun,
    utcnow,
)
from shared.domain import runs as run_domain
from shared.domain.alerts import AlertStatus, IncomingAlert, Notification, transition
from shared.domain.sources import Source
from shared.domain.webhooks import MAX_REFUSAL_DETAILS, storable

T = TypeVar("T")
_ALERTS = cast(sa.Table, Alert.__table__)
_EVENTS = cast(sa.Table, SourceEvent.__table__)
_LINKS = cast(sa.Table, AlertSourceEvent.__table__)
_RUNS = cast(sa.Table, WorkflowRun.__table__)
_SINK_STATES = cast(sa.Table, AlertSinkState.__table__)

# Statements are built once: constructing them per request cost as much as running them.
_INSERT_EVENT = sa.insert(_EVENTS)
_INSERT_ALERTS = sa.insert(_ALERTS)
_INSERT_LINKS = sa.insert(_LINKS)
_INSERT_RUNS = sa.insert(_RUNS)
_KNOWN = sa.select(
    _ALERTS.c.id, _ALERTS.c.fingerprint, _ALERTS.c.starts_at, _ALERTS.c.status
).where(
    _ALERTS.c.source_name == sa.bindparam("source"),
    _ALERTS.c.fingerprint.in_(sa.bindparam("fingerprints", expanding=True)),
    _ALERTS.c.starts_at.in_(sa.bindparam("starts", expanding=True)),
)
_MARK_SEEN = (
    sa.update(_ALERTS)
    .where(_ALERTS.c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(
        last_seen_at=sa.bindparam("now"),
        updated_at=sa.bindparam("now"),
        times_seen=_ALERTS.c.times_seen + 1,
    )
)
# Resolved alerts that a Sink left something on: a Slack parent (posted, or being
# posted: the notifier waits for it), a silence. Their resolution is the notifier's.
_WITH_SINK_STATE = (
    sa.select(_SINK_STATES.c.alert_id)
    .where(
        _SINK_STATES.c.alert_id.in_(sa.bindparam("ids", expanding=True)),
        _SINK_STATES.c.resolved_at.is_(None),
        sa.or_(
            _SINK_STATES.c.thread_ts.is_not(None),
            _SINK_STATES.c.parent_delivery_id.is_not(None),
            _SINK_STATES.c.silence_id.is_not(None),
        ),
    )
    .distinct()
)
# Alerts per dedup query and ids per update: bounded so that a group of thousands
# stays under SQLite's limit of bound parameters per statement (32766).
_CHUNK = 500
# Held until the transaction ends; hashtext maps the Source to the lock's integer key
# (a collision only makes two Sources wait for each other).
_LOCK_SOURCE_STARTS = sa.text("SELECT pg_advisory_xact_lock(hashtext(:source))")

_RECENT_RUNS = (
    sa.select(sa.func.count())
    .select_from(_RUNS)
    .where(
        _RUNS.c.source_name == sa.bindparam("source"), _RUNS.c.created_at > sa.bindparam("since")
    )
)


@dataclasses.dataclass(frozen=True)
class IntakeResult:
    event_id: uuid.UUID
    received: int
    filtered: int
    deduplicated: int
    new: int
    resolved: int
    workflows_started: int
    rate_limited: int
    refused: int
    run_ids: tuple[uuid.UUID, ...]
    # The alert of each run in run_ids, in the same order (for the log line).
    run_alert_ids: tuple[uuid.UUID, ...]
    alert_ids: tuple[uuid.UUID, ...]
    # Outbox entries published right after commit (the rest wait for the relay).
    published: int

    def as_json(self) -> dict[str, Any]:
        return {
            "event": str(self.event_id),
            "received": self.received,
            "filtered": self.filtered,
            "deduplicated": self.deduplicated,
            "new": self.new,
            "resolved": self.resolved,
            "workflowsStarted": self.workflows_started,
            "rateLimited": self.rate_limited,
            "refused": self.refused,
            "alerts": [str(alert_id) for alert_id in self.alert_ids],
            "runs": [str(run_id) for run_id in self.run_ids],
        }


# Concurrent requests holding the same alerts that one notification may lose to.
MAX_RACE_RETRIES = 8


def record(
    work: units.Units,
    source: Source,
    notification: Notification,
    body: Mapping[str, Any],
    *,
    lease_seconds: float,
) -> IntakeResult:
    """Store the notification; passes again each time a concurrent request stored
    some of its alerts first."""
    # Two AlertManager replicas (HA) send the same group at the same moment: the
    # loser of the unique (source, fingerprint, startsAt) race sees the winner's rows
    # on the next pass and deduplicates against them. Each lost race makes at least
    # one more of the alerts known, so the passes are bounded by the alerts it holds
    # (one retry was not enough: a storm showed a second lost race answered 422,
    # which AlertManager does not retry). Capped, so that a violation that is not a
    # race does not cost a pass per alert of a large group.
    passes = min(len(notification.alerts), MAX_RACE_RETRIES) + 1
    for _ in range(passes - 1):
        try:
            return _record_once(work, source, notification, body, lease_seconds)
        except sa.exc.IntegrityError:
            continue
    return _record_once(work, source, notification, body, lease_seconds)


def _record_once(
    work: units.Units,
    source: Source,
    notification: Notification,
    body: Mapping[str, Any],
    lease_seconds: float,
) -> IntakeResult:
    now = utcnow()
    event_id = uuid.uuid4()
    admitted = _unique_occurrences(
        [alert for alert in notification.alerts if source.alert_filter.admits(alert.labels)]
    )
    filtered = len(notification.alerts) - sum(count for _, count in admitted)
    # Core on a plain connection (a Core unit): the ORM session added a third to each
    # statement.
    with work.begin() as unit:
        connection = unit.connection
        known = _known_occurrences(connection, source.name, [alert for alert, _ in admitted])
        new_rows: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        seen_ids: list[uuid.UUID] = []
        resolve: list[tuple[uuid.UUID, str, IncomingAlert]] = []
        starts: list[tuple[uuid.UUID, IncomingAlert]] = []
        deduplicated = 0
        for alert, _count in admitted:
            existing = known.get((alert.fingerprint, alert.starts_at))
            if existing is None:
                alert_id = uuid.uuid4()
                new_rows.append(_new_alert_row(alert_id, alert, source, now))
                if not alert.is_resolved:
                    starts.append((alert_id, alert))
            else:
                alert_id, status = existing
                deduplicated += 1
                seen_ids.append(alert_id)
                if alert.is_resolved and status != AlertStatus.RESOLVED:
                    resolve.append((alert_id, status, alert))
            links.append(
                {"alert_id": alert_id, "source_event_id": event_id, "status": alert.status}
            )

        allowed = _starts_allowed(connection, source, len(starts), now)
        started, rate_limited = starts[:allowed], len(starts) - allowed
        started_ids = {alert_id for alert_id, _ in started}
        for row in new_rows:
            if row["id"] in started_ids:
                row["workflow_name"] = source.trigger_workflow
        runs = [_run_row(alert_id, alert, source, now) for alert_id, alert in started]

        connection.execute(
            _INSERT_EVENT,
            {
                "id": event_id,
                "source_name": source.name,
                "source_namespace": source.namespace,
                "source_type": source.type,
                "event_data": storable(dict(body)),
                "workflow_triggered": source.trigger_workflow if runs else None,
                "alerts_received": notification.received,
                "alerts_filtered": filtered,
                "alerts_deduplicated": deduplicated,
                "workflows_started": len(runs),
                "workflows_rate_limited": rate_limited,
                "received_at": now,
                "alerts_refused": len(notification.refused),
                "alerts_truncated": notification.truncated_alerts,
                "refusals": [
                    storable(refusal.as_json())
                    for refusal in notification.refused[:MAX_REFUSAL_DETAILS]
                ]
                or None,
            },
        )
        if new_rows:
            connection.execute(_INSERT_ALERTS, new_rows)
        for chunk in _chunks(seen_ids):
            connection.execute(_MARK_SEEN, {"ids": chunk, "now": now})
        for alert_id, status, alert in resolve:
            change = transition(status, AlertStatus.RESOLVED, at=now)
            connection.execute(
                sa.update(_ALERTS)
                .where(_ALERTS.c.id == alert_id)
                .values(
                    status=change.status.value,
                    ends_at=alert.ends_at,
                    auto_resolved=False,
                    **change.timestamps,
                )
            )
        if links:
            connection.execute(_INSERT_LINKS, links)
        messages: list[tuple[str, str, list[Any]]] = []
        if runs:
            connection.execute(_INSERT_RUNS, runs)
            run_ids = [str(run["id"]) for run in runs]
            messages.append((queueing.START_WORKFLOWS, queueing.ENGINE_QUEUE, [run_ids]))
        messages.extend(
            (queueing.ALERT_RESOLVED, queueing.NOTIFIER_QUEUE, [str(alert_id)])
            for alert_id in _told_sinks(connection, [alert_id for alert_id, _, _ in resolve])
        )
        # outbox.add writes nothing for no messages.
        unit.publish_after_commit(outbox.add(connection, messages, lease_seconds))
    return IntakeResult(
        event_id=event_id,
        received=notification.received,
        filtered=filtered,
        deduplicated=deduplicated,
        new=len(new_rows),
        resolved=len(resolve) + sum(1 for row in new_rows if row["status"] == "resolved"),
        workflows_started=len(runs),
        rate_limited=rate_limited,
        refused=len(notification.refused),
        run_ids=tuple(run["id"] for run in runs),
        run_alert_ids=tuple(alert_id for alert_id, _ in started),
        alert_ids=tuple(link["alert_id"] for link in links),
        published=unit.published,
    )


def _unique_occurrences(
    alerts: Sequence[IncomingAlert],
) -> list[tuple[IncomingAlert, int]]:
    """Collapse repeats of one occurrence inside a notification; resolved wins."""
    by_key: dict[tuple[str, dt.datetime], tuple[IncomingAlert, int]] = {}
    for alert in alerts:
        key = (alert.fingerprint, alert.starts_at)
        previous = by_key.get(key)
        if previous is None:
            by_key[key] = (alert, 1)
        else:
            keep = alert if alert.is_resolved else previous[0]
            by_key[key] = (keep, previous[1] + 1)
    return list(by_key.values())


def _known_occurrences(
    connection: sa.Connection, source_name: str, alerts: Sequence[IncomingAlert]
) -> dict[tuple[str, dt.datetime], tuple[uuid.UUID, str]]:
    known: dict[tuple[str, dt.datetime], tuple[uuid.UUID, str]] = {}
    for chunk in _chunks(alerts):
        rows = connection.execute(
            _KNOWN,
            {
                "source": source_name,
                "fingerprints": list({alert.fingerprint for alert in chunk}),
                "starts": list({alert.starts_at for alert in chunk}),
            },
        ).all()
        known.update({(row.fingerprint, row.starts_at): (row.id, row.status) for row in rows})
    return known


def _told_sinks(connection: sa.Connection, alert_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Of the alerts resolved now, those whose Slack thread or silence is to be updated.

    Only alerts that were known before this request can have one: a Sink state is
    written by the notifier after a run, and a run starts from a firing occurrence.
    """
    found: list[uuid.UUID] = []
    for chunk in _chunks(alert_ids):
        found.extend(connection.execute(_WITH_SINK_STATE, {"ids": list(chunk)}).scalars())
    return sorted(found)


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[start : start + _CHUNK] for start in range(0, len(items), _CHUNK)]


def _starts_allowed(
    connection: sa.Connection, source: Source, wanted: int, now: dt.datetime
) -> int:
    if wanted == 0 or not source.trigger_workflow:
        return 0
    limit = source.start_limit
    if connection.dialect.name == "postgresql":
        # Two webhooks of one Source counted the same recent runs at once and both
        # started up to the cap (a storm overshot it). The lock queues the writers that
        # start runs for this Source until the holder commits; READ COMMITTED then shows
        # the next one the holder's runs. SQLite needs none: it has one writer at a time.
        connection.execute(_LOCK_SOURCE_STARTS, {"source": f"{source.namespace}/{source.name}"})
    since = now - dt.timedelta(seconds=limit.window_seconds)
    recent = connection.execute(_RECENT_RUNS, {"source": source.name, "since": since}).scalar_one()
    return max(0, min(wanted, limit.max_starts - recent))


def _new_alert_row(
    alert_id: uuid.UUID, alert: IncomingAlert, source: Source, now: dt.datetime
) -> dict[str, Any]:
    resolved = alert.is_resolved
    return {
        "id": alert_id,
        "fingerprint": alert.fingerprint,
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        # An occurrence first seen resolved (ingest was down while it fired) is
        # recorded for the history but starts no workflow.
        "status": (AlertStatus.RESOLVED if resolved else AlertStatus.RECEIVED).value,
        "severity": alert.severity,
        "alert_name": alert.alert_name,
        "summary": alert.annotations.get("summary"),
        "description": alert.annotations.get("description"),
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "generator_url": alert.generator_url,
        "source_name": source.name,
        "workflow_name": None,
        "ai_analysis": None,
        "ai_confidence": None,
        "auto_resolved": False,
        "received_at": now,
        "last_seen_at": now,
        "times_seen": 1,
        "triage_started_at": None,
        "triage_completed_at": None,
        "resolved_at": now if resolved else None,
        "created_at": now,
        "updated_at": now,
    }


def _run_row(
    alert_id: uuid.UUID, alert: IncomingAlert, source: Source, now: dt.datetime
) -> dict[str, Any]:
    assert source.trigger_workflow  # no starts are allowed without one
    return run_domain.new_pending_run(
        workflow=source.trigger_workflow,
        namespace=source.namespace,
        source=source.name,
        source_context=source.context,
        now=now,
        alert=alert,
        alert_id=alert_id,
    ).row()
