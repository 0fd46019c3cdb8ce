"""A step's attempts: load the run and step, claim, heartbeat, record the result.

Every write here is a compare-and-set on what the reader saw (the step's phase and
attempt count, and its worker), so that two deliveries of one message, or a worker
that lost its lease, can never both record a result. These run once or more per
step, so their statements are built once, at import (see ``_LOAD``).

What this module must not do: run the step, or decide what its result means
(``core.outcomes`` does); a result that ends the run is handed to ``finish``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.core import contexts, outcomes
from services.engine.store import roundtrips
from services.engine.store.finish import Finisher
from services.engine.store.snapshots import Snapshots
from services.engine.store.tables import RUNS, STEPS, bind
from shared import outbox
from shared.domain import workflows
from shared.domain.runs import RunPhase, StepPhase

# The statements of every step, built once: building a statement and its cache key
# costs more than running it on SQLite (about 150 us each, measured).
#
# ``load``: the run and all its steps in one round trip (a row per step). The run's
# heavy columns (spec, context) come only with the row of the step asked for, not
# once per step.
_ASKED = STEPS.c.index == sa.bindparam("index")
_LOAD = (
    sa.select(
        RUNS.c.phase.label("run_phase"),
        # As text: the parsed Workflow is cached by it (no JSON decoding either).
        sa.case((_ASKED, sa.cast(RUNS.c.spec, sa.Text))).label("spec"),
        sa.case((_ASKED, RUNS.c.context)).label("context"),
        RUNS.c.namespace,
        RUNS.c.workflow_name,
        RUNS.c.alert_id,
        STEPS.c.id,
        STEPS.c.index,
        STEPS.c.name,
        STEPS.c.phase,
        STEPS.c.attempts,
        STEPS.c.worker,
        STEPS.c.lease_until,
    )
    .select_from(RUNS.outerjoin(STEPS, STEPS.c.run_id == RUNS.c.id))
    .where(RUNS.c.id == sa.bindparam("run_id"))
)
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
# Later steps that the result skips, once the result's write matched.
_SKIP = (
    sa.update(STEPS)
    .where(
        STEPS.c.run_id == sa.bindparam("b_run_id"),
        STEPS.c.name.in_(sa.bindparam("b_skip_names", expanding=True)),
        STEPS.c.phase == StepPhase.PENDING,
    )
    .values(
        phase=StepPhase.SKIPPED,
        completed_at=sa.bindparam("b_skip_completed_at", type_=STEPS.c.completed_at.type),
    )
)


@functools.lru_cache(maxsize=16)
def _run_write(columns: tuple[str, ...], counted: bool) -> sa.Update:
    """The run's UPDATE after a claim or a result, by the columns it writes (a few
    shapes: claim, result, last result), each column from ``b_run_<column>``."""
    values: dict[str, Any] = {
        name: sa.bindparam(f"b_run_{name}", type_=RUNS.c[name].type) for name in columns
    }
    if counted:
        values["steps_completed"] = RUNS.c.steps_completed + 1
    return sa.update(RUNS).where(RUNS.c.id == sa.bindparam("b_run_id")).values(values)


def _run_params(run_id: uuid.UUID, values: dict[str, Any]) -> dict[str, Any]:
    return {"b_run_id": run_id} | {f"b_run_{name}": value for name, value in values.items()}


# ``claim``: the run says which step it is on, once the claim matched.
_CLAIMED_RUN = _run_write(("current_step", "updated_at"), counted=False)


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
    rows = session.execute(_LOAD, {"run_id": run_id, "index": index}).all()
    states = {}
    asked = None
    for row in rows:
        if row.id is None:  # a run without steps (the outer join's one row)
            continue
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
        if values["index"] == index:
            asked = row
    if asked is None or asked.spec is None:
        return None
    workflow = snapshots.parse(asked.namespace, asked.workflow_name, asked.spec)
    if workflow is None:
        return None
    return Loaded(
        run_id=run_id,
        run_phase=RunPhase(asked.run_phase),
        workflow=workflow,
        context=dict(asked.context or {}),
        alert_id=asked.alert_id,
        step=workflow.steps[index],
        state=states[index],
        phases={state.name: state.phase for state in states.values()},
    )


def claim(session: Session, loaded: Loaded, worker: str, now: dt.datetime, lease: float) -> bool:
    """Take the step for one attempt; False when someone else changed it first."""
    state = loaded.state
    params = {
        "b_id": state.id,
        "b_seen_attempts": state.attempts,
        "b_seen_phase": state.phase,
        "b_attempts": state.attempts + 1,
        "b_worker": worker,
        "b_lease_until": now + dt.timedelta(seconds=lease),
        "b_now": now,
    } | _run_params(loaded.run_id, {"current_step": loaded.step.name, "updated_at": now})
    return roundtrips.guarded(session, _CLAIM, [_CLAIMED_RUN], params)


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


def single_write(loaded: Loaded, decision: outcomes.Next) -> bool:
    """Whether ``record`` of ``decision`` is one statement where the database
    allows (``roundtrips``): yes unless it ends the run with Sinks to notify or an
    alert that may move (deliveries and the move are statements of their own).
    Such a write may commit on its own (``shared.units.Unit.alone``)."""
    finish = decision.finish
    return finish is None or (
        not loaded.workflow.sinks and outcomes.alert_status_after(finish) is None
    )


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
    records (one commit instead of two per step).

    The step's write, the later steps it skips and the run's UPDATE (context,
    and the run's end when it ends) depend on the compare-and-set matching:
    ``roundtrips.guarded`` sends them as one statement on PostgreSQL.
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
    context = loaded.context
    if finished:
        context = contexts.with_step(context, step.name, phase, outcome.output)
    then = []
    if decision.skip:
        then.append(_SKIP)
        params.update(b_skip_names=sorted(decision.skip), b_skip_completed_at=now)
        for name in decision.skip:
            context = contexts.with_step(context, name, StepPhase.SKIPPED, {})
    run_values: dict[str, Any] = {"context": context, "updated_at": now}
    if not claimed:
        run_values["current_step"] = step.name
    ending = None
    if decision.finish is not None:
        # The run's end rides on the same UPDATE (rendered before we know whether
        # the write wins: rendering is pure, and what follows the end comes after).
        ending = finisher.ending(loaded.workflow, context, decision.finish, now)
        run_values.update(ending.values)
    then.append(_run_write(tuple(run_values), counted=finished))
    params.update(_run_params(loaded.run_id, run_values))
    if not roundtrips.guarded(session, statement, then, params):
        return None
    if ending is None:
        return []
    return finisher.ended(
        session, loaded.run_id, ending, workflow=loaded.workflow, alert_id=loaded.alert_id, now=now
    )
