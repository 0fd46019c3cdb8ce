"""The controller's reads and writes of the database.

Writes go through ``shared.db.resources`` (the table's one writer API); the status
counters are read from the tables the services fill (source events, workflow runs,
sink deliveries), so no schema is added for status.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.db import models
from shared.resources import status
from shared.resources.schemas import SINK, SOURCE, WORKFLOW, Resource

# Value of ``resources.origin`` for what came from the Kubernetes API; anything else
# is the file a resource was loaded from.
KUBERNETES = "kubernetes"


def stored(session: Session, kind: str | None = None) -> list[Resource]:
    """Stored resources, oldest write first (the order that decides path holders)."""
    table = models.Resource
    query = sa.select(table).order_by(table.updated_at, table.id)
    if kind is not None:
        query = query.where(table.kind == kind)
    return [
        Resource(row.kind, row.namespace, row.name, row.spec, row.generation, row.origin)
        for row in session.scalars(query)
    ]


def _source_counters(session: Session, namespace: str, name: str) -> dict[str, Any]:
    events = models.SourceEvent
    count, last = session.execute(
        sa.select(sa.func.count(), sa.func.max(events.received_at)).where(
            events.source_name == name, events.source_namespace == namespace
        )
    ).one()
    return {"eventsProcessed": int(count), "lastEventTime": status.timestamp(last)}


def _workflow_counters(session: Session, namespace: str, name: str) -> dict[str, Any]:
    runs = models.WorkflowRun
    where = (runs.workflow_name == name, runs.namespace == namespace)
    total = session.scalar(sa.select(sa.func.count()).select_from(runs).where(*where))
    last = session.execute(
        sa.select(runs.created_at, runs.phase)
        .where(*where)
        .order_by(runs.created_at.desc())
        .limit(1)
    ).one_or_none()
    return {
        "runsTotal": int(total or 0),
        "lastRunTime": status.timestamp(last.created_at) if last else None,
        "lastRunPhase": last.phase if last else None,
    }


def _sink_counters(session: Session, namespace: str, name: str) -> dict[str, Any]:
    deliveries, runs = models.SinkDelivery, models.WorkflowRun
    # Deliveries name their Sink; the notifier finds it in the run's namespace.
    ours = (
        deliveries.sink_name == name,
        deliveries.run_id == runs.id,
        runs.namespace == namespace,
    )
    sent, last_sent = session.execute(
        sa.select(sa.func.count(deliveries.sent_at), sa.func.max(deliveries.sent_at)).where(*ours)
    ).one()
    # The latest attempt that told something about the endpoint: delivered, failed
    # for good, or failed for now and waiting for its retry. Skipped deliveries
    # (a false condition) and ones never tried say nothing about it.
    latest = session.execute(
        sa.select(deliveries.phase, deliveries.error)
        .where(
            *ours,
            sa.or_(
                deliveries.phase.in_(["Delivered", "Failed"]),
                sa.and_(
                    deliveries.phase == "Pending",
                    deliveries.attempts > 0,
                    deliveries.error.is_not(None),
                ),
            ),
        )
        .order_by(sa.func.coalesce(deliveries.updated_at, deliveries.created_at).desc())
        .limit(1)
    ).one_or_none()
    return {
        "messagesSent": int(sent),
        "lastSentTime": status.timestamp(last_sent),
        "lastError": latest.error if latest is not None and latest.phase != "Delivered" else None,
    }


def counters(session: Session, resource: Resource) -> dict[str, Any]:
    """Status fields read from the services' tables, named as in the status schema."""
    if resource.kind == SOURCE.name:
        return _source_counters(session, resource.namespace, resource.name)
    if resource.kind == WORKFLOW.name:
        found = _workflow_counters(session, resource.namespace, resource.name)
        return {"steps": len(resource.spec.get("steps") or []), **found}
    if resource.kind == SINK.name:
        return _sink_counters(session, resource.namespace, resource.name)
    return {}
