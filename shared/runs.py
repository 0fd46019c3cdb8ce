"""Workflow runs as the read API shows them (``/api/v1/runs/<id>``, alert details):
each with its steps and its approvals (``shared.approvals.view``).

Owned by the engine, which defines what a run and its steps mean; served by the
ingest API, which calls these functions. Plain dicts of JSON types come out, so the
API only has to ``jsonify`` them. Reads only: nothing here changes a run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared import approvals
from shared.db.models import Resource, SinkDelivery, StepRun, WorkflowRun

_RUNS = cast(sa.Table, WorkflowRun.__table__)
_STEPS = cast(sa.Table, StepRun.__table__)
_DELIVERIES = cast(sa.Table, SinkDelivery.__table__)
_RESOURCES = cast(sa.Table, Resource.__table__)

_RUN_COLUMNS = (
    _RUNS.c.id,
    _RUNS.c.workflow_name,
    _RUNS.c.namespace,
    _RUNS.c.source_name,
    _RUNS.c.alert_id,
    _RUNS.c.trigger,
    _RUNS.c.phase,
    _RUNS.c.steps_completed,
    _RUNS.c.total_steps,
    _RUNS.c.current_step,
    _RUNS.c.outputs,
    _RUNS.c.error,
    _RUNS.c.message,
    _RUNS.c.created_at,
    _RUNS.c.started_at,
    _RUNS.c.completed_at,
)


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _step(row: Any) -> dict[str, Any]:
    values = row._mapping
    return {
        "index": values["index"],
        "name": values["name"],
        "type": values["type"],
        "phase": values["phase"],
        "attempts": values["attempts"],
        "output": values["output"],
        "error": values["error"],
        "startedAt": iso(values["started_at"]),
        "completedAt": iso(values["completed_at"]),
        "durationSeconds": _seconds(values["started_at"], values["completed_at"]),
    }


def _run(row: Any, steps: Iterable[Any], approvals_of_run: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "workflow": {"name": row.workflow_name, "namespace": row.namespace},
        "source": row.source_name,
        "alertId": str(row.alert_id) if row.alert_id is not None else None,
        "trigger": row.trigger,
        "phase": row.phase,
        "stepsCompleted": row.steps_completed,
        "totalSteps": row.total_steps,
        "currentStep": row.current_step,
        "outputs": row.outputs,
        "error": row.error,
        "message": row.message,
        "createdAt": iso(row.created_at),
        "startedAt": iso(row.started_at),
        "completedAt": iso(row.completed_at),
        "durationSeconds": _seconds(row.started_at, row.completed_at),
        "steps": [_step(step) for step in steps],
        # Changes its agent steps asked a human for, whatever became of them.
        "approvals": approvals_of_run,
    }


def _steps_of(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    by_run: dict[uuid.UUID, list[Any]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        rows = session.execute(
            sa.select(_STEPS)
            .where(_STEPS.c.run_id.in_(run_ids))
            .order_by(_STEPS.c.run_id, _STEPS.c.index)
        ).all()
        for row in rows:
            by_run[row.run_id].append(row)
    return by_run


def run_detail(session: Session, run_id: uuid.UUID | str) -> dict[str, Any] | None:
    """One run with its steps and sink deliveries, or None if there is no such run."""
    try:
        key = run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))
    except ValueError:
        return None
    row = session.execute(sa.select(*_RUN_COLUMNS).where(_RUNS.c.id == key)).first()
    if row is None:
        return None
    detail = _run(row, _steps_of(session, [key])[key], approvals.of_runs(session, [key])[key])
    detail["deliveries"] = _deliveries(session, key, row.namespace)
    return detail


def _deliveries(session: Session, run_id: uuid.UUID, namespace: str) -> list[dict[str, Any]]:
    """The run's deliveries, each with its Sink's type (read from the Sink as it is
    now: ``null`` when the Sink is gone) and what the Sink answered (``reference``:
    Slack ``channel``/``ts``/``threadTs``, ``silenceId``, HTTP ``status``)."""
    sink_type = (
        sa.select(_RESOURCES.c.spec)
        .where(
            _RESOURCES.c.kind == "Sink",
            _RESOURCES.c.namespace == namespace,
            _RESOURCES.c.name == _DELIVERIES.c.sink_name,
        )
        .scalar_subquery()
    )
    rows = session.execute(
        sa.select(_DELIVERIES, sink_type.label("sink_spec"))
        .where(_DELIVERIES.c.run_id == run_id)
        .order_by(_DELIVERIES.c.sink_name)
    ).all()
    return [
        {
            "id": str(delivery.id),
            "sink": delivery.sink_name,
            "type": (delivery.sink_spec or {}).get("type"),
            "phase": delivery.phase,
            "attempts": delivery.attempts,
            "error": delivery.error,
            "reference": delivery.response,
            "createdAt": iso(delivery.created_at),
            "sentAt": iso(delivery.sent_at),
            "nextAttemptAt": iso(delivery.next_attempt_at),
        }
        for delivery in rows
    ]


def runs_for_alert(session: Session, alert_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The runs an alert started, newest first, each with its steps."""
    try:
        key = alert_id if isinstance(alert_id, uuid.UUID) else uuid.UUID(str(alert_id))
    except ValueError:
        return []
    rows = session.execute(
        sa.select(*_RUN_COLUMNS)
        .where(_RUNS.c.alert_id == key)
        .order_by(_RUNS.c.created_at.desc(), _RUNS.c.id)
    ).all()
    ids = [row.id for row in rows]
    steps, asked = _steps_of(session, ids), approvals.of_runs(session, ids)
    return [_run(row, steps[row.id], asked[row.id]) for row in rows]
