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
import functools
import json
import logging
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from services.engine.core import contexts, limits
from services.engine.core.outcomes import Finish
from services.engine.store import roundtrips
from services.engine.store.finish import Finisher, alert_move
from services.engine.store.snapshots import Snapshots
from services.engine.store.tables import RESOURCES, RUNS, STEPS, bind
from shared import outbox
from shared.domain import alerts as alert_domain
from shared.domain import workflows
from shared.domain.runs import RunPhase, StepPhase

log = logging.getLogger(__name__)

_STARTED = (RunPhase.RUNNING, RunPhase.SUCCEEDED, RunPhase.FAILED)

# A start's statements, built once: building one and its cache key costs more
# client time than the round trip. The run (locked: two deliveries of one start
# must not both start it) and its Workflow's current spec, in one round trip ...
_LOAD_FOR_START = (
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
    .where(RUNS.c.id == sa.bindparam("run_id"))
    .with_for_update(of=RUNS)
)
# ... starts for one (Workflow, fingerprint) one at a time (PostgreSQL) ...
_LOCK_FINGERPRINT = sa.select(
    sa.func.pg_advisory_xact_lock(sa.func.hashtext(sa.bindparam("key", type_=sa.Text)))
)

# ... and its writes (see ``roundtrips``): the run becomes Running ...
_START_RUN = (
    sa.update(RUNS)
    .where(RUNS.c.id == sa.bindparam("b_run_id"))
    .values(
        phase=RunPhase.RUNNING,
        spec=bind(RUNS.c.spec),
        total_steps=bind(RUNS.c.total_steps),
        current_step=bind(RUNS.c.current_step),
        context=bind(RUNS.c.context),
        started_at=sa.bindparam("b_now", type_=RUNS.c.started_at.type),
        updated_at=sa.bindparam("b_now", type_=RUNS.c.updated_at.type),
    )
)
# ... its alert moves to triaging (a compare-and-set on its status) ...
_triaging = alert_move(alert_domain.AlertStatus.TRIAGING)
if _triaging is None:  # only ``received`` moves to triaging
    raise AssertionError("the move to triaging must be one UPDATE")
_ALERT_TRIAGING: sa.Update = _triaging


# ... and its steps are inserted, Pending. On PostgreSQL as arrays unnested into
# rows, one statement whatever their number, so that it rides with the others (a
# multi-row VALUES is a new statement to compile for each number of steps).
_NEW_STEPS = (
    sa.func.unnest(
        sa.bindparam("b_step_ids", type_=postgresql.ARRAY(STEPS.c.id.type)),
        sa.bindparam("b_step_indexes", type_=postgresql.ARRAY(STEPS.c.index.type)),
        sa.bindparam("b_step_names", type_=postgresql.ARRAY(STEPS.c.name.type)),
        sa.bindparam("b_step_types", type_=postgresql.ARRAY(STEPS.c.type.type)),
    )
    .table_valued("id", "index", "name", "type")
    .render_derived(name="new_steps")
)
_INSERT_STEPS_AS_ARRAYS = sa.insert(STEPS).from_select(
    ["id", "run_id", "index", "name", "type", "phase", "attempts"],
    sa.select(
        _NEW_STEPS.c.id,
        sa.bindparam("b_run_id", type_=STEPS.c.run_id.type),
        _NEW_STEPS.c.index,
        _NEW_STEPS.c.name,
        _NEW_STEPS.c.type,
        sa.literal(StepPhase.PENDING.value),
        sa.literal(0),
    ),
)


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
    run = session.execute(_LOAD_FOR_START, {"run_id": run_id}).first()
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
    # The steps, the run and its alert in one round trip where the database allows
    # (``roundtrips``): the run is locked, so nothing here depends on anyone else.
    writes: list[sa.Insert | sa.Update] = []
    params: dict[str, Any] = {
        "b_run_id": run_id,
        "b_total_steps": len(workflow.steps),
        "b_current_step": workflow.steps[0].name if workflow.steps else None,
        "b_context": context,
        "b_spec": json.loads(run.workflow_spec),
        "b_now": now,
    }
    if workflow.steps and roundtrips.one_statement(session):
        writes.append(_INSERT_STEPS_AS_ARRAYS)
        params.update(
            b_step_ids=[uuid.uuid4() for _ in workflow.steps],
            b_step_indexes=[step.index for step in workflow.steps],
            b_step_names=[step.name for step in workflow.steps],
            b_step_types=[step.type for step in workflow.steps],
        )
    elif workflow.steps:
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
    writes.append(_START_RUN)
    if run.alert_id is not None:
        writes.append(_ALERT_TRIAGING)
        params.update(b_alert_id=run.alert_id, b_alert_at=now)
    roundtrips.together(session, writes, params)
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
        session.execute(_LOCK_FINGERPRINT, {"key": key})
    # Both counts in one round trip, each a scalar subquery on its own index.
    # (Not in the statement that takes the advisory lock above: a statement's
    # snapshot is taken before it waits for the lock, so it could miss the run
    # that the previous holder just committed.)
    per_fingerprint = bool(fingerprint and caps.max_runs_per_fingerprint)
    row = session.execute(
        _counts(bool(caps.max_concurrent_runs), per_fingerprint),
        {
            "workflow_name": run.workflow_name,
            "namespace": run.namespace,
            "run_id": run.id,
            "fingerprint": fingerprint,
            "since": now - dt.timedelta(seconds=caps.fingerprint_window_seconds),
        },
    ).one()
    return limits.refusal(caps, row[0] or 0, row[1] or 0, fingerprint)


@functools.lru_cache(maxsize=4)
def _counts(concurrent: bool, per_fingerprint: bool) -> sa.Executable:
    """The runs that count against the caps asked for (NULL for the others), built
    once per combination."""
    same_workflow = sa.and_(
        RUNS.c.workflow_name == sa.bindparam("workflow_name"),
        RUNS.c.namespace == sa.bindparam("namespace"),
        RUNS.c.id != sa.bindparam("run_id"),
    )
    counts: list[sa.ScalarSelect[int] | sa.Null] = [sa.null(), sa.null()]
    if concurrent:
        counts[0] = (
            sa.select(sa.func.count())
            .select_from(RUNS)
            .where(same_workflow, RUNS.c.phase == RunPhase.RUNNING)
            .scalar_subquery()
        )
    if per_fingerprint:
        counts[1] = (
            sa.select(sa.func.count())
            .select_from(RUNS)
            .where(
                same_workflow,
                RUNS.c.fingerprint == sa.bindparam("fingerprint"),
                RUNS.c.started_at >= sa.bindparam("since", type_=RUNS.c.started_at.type),
                RUNS.c.phase.in_(list(_STARTED)),
            )
            .scalar_subquery()
        )
    return sa.select(*counts)


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
