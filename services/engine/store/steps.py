"""A step's attempts: load the run and step, claim, heartbeat, record the result.

Every write here is a compare-and-set on what the reader saw (the step's phase and
attempt count, and its worker), so that two deliveries of one message, or a worker
that lost its lease, can never both record a result. These run once or more per
step, so their statements are built once, at import (see ``_LOAD_RUN``).

What this module must not do: run the step, or decide what its result means
(``core.outcomes`` does); a result that ends the run is handed to ``finish``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.core import contexts, outcomes
from services.engine.store.finish import Finisher
from services.engine.store.snapshots import Snapshots
from services.engine.store.tables import RUNS, STEPS, bind
from shared import outbox
from shared.domain import workflows
from shared.domain.runs import RunPhase, StepPhase

# The statements of every step, built once: building a statement and its cache key
# costs more than running it on SQLite (about 150 us each, measured).
_LOAD_RUN = sa.select(
    RUNS.c.phase,
    # As text: the parsed Workflow is cached by it (no JSON decoding either).
    sa.cast(RUNS.c.spec, sa.Text).label("spec"),
    RUNS.c.context,
    RUNS.c.namespace,
    RUNS.c.workflow_name,
    RUNS.c.alert_id,
).where(RUNS.c.id == sa.bindparam("run_id"))
_LOAD_STEPS = sa.select(
    STEPS.c.id,
    STEPS.c.index,
    STEPS.c.name,
    STEPS.c.phase,
    STEPS.c.attempts,
    STEPS.c.worker,
    STEPS.c.lease_until,
).where(STEPS.c.run_id == sa.bindparam("run_id"))
# ``claim``: a compare-and-set on the (phase, attempts) the reader saw.
_CLAIMED_AS_SEEN = sa.and_(
    STEPS.c.id == sa.bindparam("b_id"),
    STEPS.c.attempts == sa.bindparam("b_seen_attempts"),
    STEPS.c.phase == sa.bindparam("b_seen_phase"),
)
_CLAIM = (
    sa.update(STEPS)
    .where(_CLAIMED_AS_SEEN)
    .values(
        phase=StepPhase.RUNNING,
        attempts=bind(STEPS.c.attempts),
        worker=bind(STEPS.c.worker),
        lease_until=bind(STEPS.c.lease_until),
        started_at=sa.func.coalesce(
            STEPS.c.started_at, sa.bindparam("b_now", type_=STEPS.c.started_at.type)
        ),
        error=None,
    )
)
# ``record``: an attempt's result, written by its claimant ...
_RESULT = {
    "phase": bind(STEPS.c.phase),
    "output": bind(STEPS.c.output),
    "error": bind(STEPS.c.error),
    "completed_at": bind(STEPS.c.completed_at),
    "lease_until": None,
    "worker": sa.bindparam("b_worker_after", type_=STEPS.c.worker.type),
}
_RECORD_CLAIMED = (
    sa.update(STEPS)
    .where(
        STEPS.c.id == sa.bindparam("b_id"),
        STEPS.c.worker == sa.bindparam("b_worker"),
        STEPS.c.attempts == sa.bindparam("b_attempts"),
        STEPS.c.phase == StepPhase.RUNNING,
    )
    .values(**_RESULT)
)
# ... or, for pure executors, written as the claim itself.
_RECORD_UNCLAIMED = (
    sa.update(STEPS)
    .where(_CLAIMED_AS_SEEN)
    .values(
        **_RESULT,
        attempts=bind(STEPS.c.attempts),
        started_at=sa.func.coalesce(
            STEPS.c.started_at, sa.bindparam("b_now", type_=STEPS.c.started_at.type)
        ),
    )
)


@dataclasses.dataclass(frozen=True)
class StepState:
    id: uuid.UUID
    index: int
    name: str
    phase: StepPhase
    attempts: int
    worker: str | None
    lease_until: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A run and one of its steps as a step task sees them."""

    run_id: uuid.UUID
    run_phase: RunPhase
    workflow: workflows.Workflow
    context: dict[str, Any]
    alert_id: uuid.UUID | None
    step: workflows.Step
    state: StepState
    phases: dict[str, StepPhase]


def load(session: Session, run_id: uuid.UUID, index: int, *, snapshots: Snapshots) -> Loaded | None:
    run = session.execute(_LOAD_RUN, {"run_id": run_id}).first()
    if run is None or run.spec is None:
        return None
    rows = session.execute(_LOAD_STEPS, {"run_id": run_id}).all()
    states = {}
    for row in rows:
        values = row._mapping
        states[int(values["index"])] = StepState(
            values["id"],
            int(values["index"]),
            values["name"],
            StepPhase(values["phase"]),
            values["attempts"],
            values["worker"],
            values["lease_until"],
        )
    if index not in states:
        return None
    workflow = snapshots.parse(run.namespace, run.workflow_name, run.spec)
    if workflow is None:
        return None
    return Loaded(
        run_id=run_id,
        run_phase=RunPhase(run.phase),
        workflow=workflow,
        context=dict(run.context or {}),
        alert_id=run.alert_id,
        step=workflow.steps[index],
        state=states[index],
        phases={state.name: state.phase for state in states.values()},
    )


def claim(session: Session, loaded: Loaded, worker: str, now: dt.datetime, lease: float) -> bool:
    """Take the step for one attempt; False when someone else changed it first."""
    state = loaded.state
    result = session.execute(
        _CLAIM,
        {
            "b_id": state.id,
            "b_seen_attempts": state.attempts,
            "b_seen_phase": state.phase,
            "b_attempts": state.attempts + 1,
            "b_worker": worker,
            "b_lease_until": now + dt.timedelta(seconds=lease),
            "b_now": now,
        },
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.execute(
        sa.update(RUNS)
        .where(RUNS.c.id == loaded.run_id)
        .values(current_step=loaded.step.name, updated_at=now)
    )
    return True


def heartbeat(
    session: Session, step_id: uuid.UUID, worker: str, attempt: int, until: dt.datetime
) -> bool:
    result = session.execute(
        sa.update(STEPS)
        .where(
            STEPS.c.id == step_id,
            STEPS.c.worker == worker,
            STEPS.c.attempts == attempt,
            STEPS.c.phase == StepPhase.RUNNING,
        )
        .values(lease_until=until)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def record(
    session: Session,
    loaded: Loaded,
    *,
    attempt: int,
    worker: str,
    outcome: outcomes.Outcome,
    decision: outcomes.Next,
    now: dt.datetime,
    finisher: Finisher,
    claimed: bool = True,
) -> list[outbox.PendingTask] | None:
    """Write one attempt's result; None when the step changed under us.

    ``claimed``: the attempt was claimed (``claim``) and committed before it ran;
    the write is a compare-and-set on (worker, attempt, Running), so a worker that
    lost its lease cannot overwrite a newer attempt. ``claimed=False`` is for
    pure executors, run inside this transaction without a claim of their own:
    then this write is the claim, a compare-and-set on the (phase, attempts)
    that ``load`` saw, exactly as ``claim`` does, so of two deliveries only one
    records (two statements instead of four per step).
    """
    step = loaded.step
    phase = decision.step_phase or StepPhase.PENDING
    finished = decision.step_phase is not None
    params: dict[str, Any] = {
        "b_id": loaded.state.id,
        "b_phase": phase,
        "b_output": dict(outcome.output) if outcome.output or outcome.ok else None,
        "b_error": outcome.error,
        "b_completed_at": now if finished else None,
        "b_worker_after": worker if finished else None,
    }
    if claimed:
        params.update(b_worker=worker, b_attempts=attempt)
        statement = _RECORD_CLAIMED
    else:
        params.update(
            b_seen_attempts=loaded.state.attempts,
            b_seen_phase=loaded.state.phase,
            b_attempts=attempt,
            b_now=now,
        )
        statement = _RECORD_UNCLAIMED
    result = session.execute(statement, params)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    context = loaded.context
    if finished:
        context = contexts.with_step(context, step.name, phase, outcome.output)
    if decision.skip:
        session.execute(
            sa.update(STEPS)
            .where(
                STEPS.c.run_id == loaded.run_id,
                STEPS.c.name.in_(sorted(decision.skip)),
                STEPS.c.phase == StepPhase.PENDING,
            )
            .values(phase=StepPhase.SKIPPED, completed_at=now)
        )
        for name in decision.skip:
            context = contexts.with_step(context, name, StepPhase.SKIPPED, {})
    run_values: dict[str, Any] = {"context": context, "updated_at": now}
    if not claimed:
        run_values["current_step"] = step.name
    if finished:
        run_values["steps_completed"] = RUNS.c.steps_completed + 1
    if decision.finish is None:
        session.execute(sa.update(RUNS).where(RUNS.c.id == loaded.run_id).values(**run_values))
        return []
    return finisher.finish(
        session,
        loaded.run_id,
        workflow=loaded.workflow,
        context=context,
        alert_id=loaded.alert_id,
        finish=decision.finish,
        now=now,
        also=run_values,
    )
