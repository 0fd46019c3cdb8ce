"""The start of a run: Pending -> Running, or refused (Failed, Skipped).

A start locks the run (two deliveries of one start must not both start it), loads
the Workflow's current spec, checks the run limits, snapshots the spec onto the run
and inserts its steps, all in the caller's transaction. The run limits need their
own care (the advisory lock on PostgreSQL, see ``_over_limit``); that is why starts
are a seam of their own.

What this module must not do: send the step chain or publish; ``start`` returns
what the caller sends after commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.core import contexts, limits
from services.engine.core.outcomes import Finish
from services.engine.store.finish import Finisher, move_alert
from services.engine.store.snapshots import Snapshots
from services.engine.store.tables import RESOURCES, RUNS, STEPS
from shared import outbox
from shared.domain import alerts as alert_domain
from shared.domain import workflows
from shared.domain.runs import RunPhase, StepPhase

log = logging.getLogger(__name__)

_STARTED = (RunPhase.RUNNING, RunPhase.SUCCEEDED, RunPhase.FAILED)


@dataclasses.dataclass(frozen=True)
class Started:
    """What ``start`` did: the run's phase afterwards and how many steps to chain."""

    phase: RunPhase
    total_steps: int
    tasks: list[outbox.PendingTask]
    # The alert the run is for (None for schedule runs), for the task's log lines.
    alert_id: uuid.UUID | None = None


def start(
    session: Session,
    run_id: uuid.UUID,
    now: dt.datetime,
    *,
    snapshots: Snapshots,
    finisher: Finisher,
) -> Started | None:
    """Pending -> Running (or Failed/Skipped). None when there is nothing to do."""
    # The run (locked: two deliveries of one start must not both start it) and
    # its Workflow's current spec, in one round trip.
    run = session.execute(
        sa.select(
            RUNS.c.id,
            RUNS.c.phase,
            RUNS.c.namespace,
            RUNS.c.workflow_name,
            RUNS.c.alert_id,
            RUNS.c.input_context,
            RUNS.c.fingerprint,
            # As text: the loaded Workflow is cached by it, as for snapshots.
            sa.cast(RESOURCES.c.spec, sa.Text).label("workflow_spec"),
        )
        .select_from(
            RUNS.outerjoin(
                RESOURCES,
                sa.and_(
                    RESOURCES.c.kind == "Workflow",
                    RESOURCES.c.namespace == RUNS.c.namespace,
                    RESOURCES.c.name == RUNS.c.workflow_name,
                ),
            )
        )
        .where(RUNS.c.id == run_id)
        .with_for_update(of=RUNS)
    ).first()
    if run is None:
        log.warning("start: no such run", extra={"run_id": str(run_id)})
        return None
    if run.phase != RunPhase.PENDING:
        return None
    try:
        workflow = snapshots.stored(run.namespace, run.workflow_name, run.workflow_spec)
    except workflows.WorkflowError as exc:
        return _refuse(session, run, phase=RunPhase.FAILED, error=str(exc), now=now)
    # Written by whoever created the run (``shared.domain.runs.new_pending_run``).
    fingerprint = run.fingerprint
    reason = _over_limit(session, run, workflow, fingerprint, now)
    if reason is not None:
        return _refuse(session, run, phase=RunPhase.SKIPPED, error=reason, now=now)
    context = contexts.initial(dict(run.input_context or {}), workflow, str(run_id))
    if workflow.steps:
        session.execute(
            sa.insert(STEPS),
            [
                {
                    "id": uuid.uuid4(),
                    "run_id": run_id,
                    "index": step.index,
                    "name": step.name,
                    "type": step.type,
                    "phase": StepPhase.PENDING,
                    "attempts": 0,
                }
                for step in workflow.steps
            ],
        )
    session.execute(
        sa.update(RUNS)
        .where(RUNS.c.id == run_id)
        .values(
            phase=RunPhase.RUNNING,
            spec=json.loads(run.workflow_spec),
            total_steps=len(workflow.steps),
            current_step=workflow.steps[0].name if workflow.steps else None,
            context=context,
            started_at=now,
            updated_at=now,
        )
    )
    if run.alert_id is not None:
        move_alert(session, run.alert_id, alert_domain.AlertStatus.TRIAGING, now)
    if not workflow.steps:
        tasks = finisher.finish(
            session,
            run_id,
            workflow=workflow,
            context=context,
            alert_id=run.alert_id,
            finish=Finish(RunPhase.SUCCEEDED),
            now=now,
        )
        return Started(RunPhase.SUCCEEDED, 0, tasks, run.alert_id)
    return Started(RunPhase.RUNNING, len(workflow.steps), [], run.alert_id)


def _over_limit(
    session: Session,
    run: Any,
    workflow: workflows.Workflow,
    fingerprint: str | None,
    now: dt.datetime,
) -> str | None:
    caps = workflow.limits
    if not caps.max_concurrent_runs and not caps.max_runs_per_fingerprint:
        return None
    if (
        fingerprint
        and caps.max_runs_per_fingerprint
        and session.get_bind().dialect.name == "postgresql"
    ):
        # Serialize starts for one (Workflow, fingerprint) so that two cannot both
        # see room under the per-fingerprint cap; SQLite serializes writers
        # anyway. The concurrency cap is not serialized: locking the whole
        # Workflow made every start wait for the previous one's commit (measured
        # as the bottleneck at 100 alerts/s), so simultaneous starts may exceed
        # maxConcurrentRuns by at most the number of engine pool processes.
        key = f"{run.namespace}/{run.workflow_name}/{fingerprint}"
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))
    same_workflow = sa.and_(
        RUNS.c.workflow_name == run.workflow_name,
        RUNS.c.namespace == run.namespace,
        RUNS.c.id != run.id,
    )
    # Both counts in one round trip, each a scalar subquery on its own index.
    # (Not in the statement that takes the advisory lock above: a statement's
    # snapshot is taken before it waits for the lock, so it could miss the run
    # that the previous holder just committed.)
    counts: list[sa.ScalarSelect[int] | sa.Null] = [sa.null(), sa.null()]
    if caps.max_concurrent_runs:
        counts[0] = (
            sa.select(sa.func.count())
            .select_from(RUNS)
            .where(same_workflow, RUNS.c.phase == RunPhase.RUNNING)
            .scalar_subquery()
        )
    if fingerprint and caps.max_runs_per_fingerprint:
        since = now - dt.timedelta(seconds=caps.fingerprint_window_seconds)
        counts[1] = (
            sa.select(sa.func.count())
            .select_from(RUNS)
            .where(
                same_workflow,
                RUNS.c.fingerprint == fingerprint,
                RUNS.c.started_at >= since,
                RUNS.c.phase.in_(list(_STARTED)),
            )
            .scalar_subquery()
        )
    row = session.execute(sa.select(*counts)).one()
    return limits.refusal(caps, row[0] or 0, row[1] or 0, fingerprint)


def _refuse(
    session: Session,
    run: Any,
    *,
    phase: RunPhase,
    error: str,
    now: dt.datetime,
) -> Started:
    log.warning(
        "run not started",
        extra={
            "run_id": str(run.id),
            "alert_id": str(run.alert_id) if run.alert_id else None,
            "phase": phase,
            "error": error,
        },
    )
    session.execute(
        sa.update(RUNS)
        .where(RUNS.c.id == run.id)
        .values(
            phase=phase,
            error=error,
            completed_at=now,
            updated_at=now,
        )
    )
    return Started(phase, 0, [], run.alert_id)
