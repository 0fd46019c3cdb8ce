"""Recovery: find the steps and runs whose message or worker was lost.

Run by the worker's housekeeping thread (``recover_once``), never by a task. Each
finder touches what it returns with a compare-and-set (the step's attempt, the
run's ``updated_at``), so that of several workers recovering at once only one
re-drives a given step or run.

What this module must not do: send anything; it returns ids for the caller to
re-drive after commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.store.tables import APPROVALS, RUNS, STEPS
from shared.approvals import Status as ApprovalStatus
from shared.domain.runs import RunPhase, StepPhase

# The step is making an approved change (``engine.resume_step`` claimed it).
_MAKING_A_CHANGE = (
    sa.select(APPROVALS.c.id)
    .where(
        APPROVALS.c.run_id == STEPS.c.run_id,
        APPROVALS.c.step_index == STEPS.c.index,
        APPROVALS.c.status == ApprovalStatus.EXECUTING,
    )
    .correlate(STEPS)
)


def _lost(
    row: Any, now: dt.datetime, is_dead: Callable[[str | None], bool], trust_leases: bool
) -> bool:
    expired = row.lease_until is None or (trust_leases and row.lease_until <= now)
    return expired or is_dead(row.worker)


def release_abandoned(
    session: Session,
    now: dt.datetime,
    is_dead: Callable[[str | None], bool],
    *,
    trust_leases: bool = True,
) -> list[tuple[uuid.UUID, int]]:
    """Steps Running past their lease or with a dead owner, put back to Pending.

    Returns (run_id, index) to re-drive. The compare-and-set on the worker and
    attempt keeps two recovering workers from both re-driving one step. A step lost
    while making an approved change is not among them: see ``interrupted_changes``.
    ``trust_leases=False`` (just after a database outage, when no owner could
    renew its lease) releases only steps whose owner is known to be dead.
    """
    rows = session.execute(
        sa.select(
            STEPS.c.id,
            STEPS.c.run_id,
            STEPS.c.index,
            STEPS.c.worker,
            STEPS.c.attempts,
            STEPS.c.lease_until,
        )
        .join(RUNS, RUNS.c.id == STEPS.c.run_id)
        .where(
            STEPS.c.phase == StepPhase.RUNNING,
            RUNS.c.phase == RunPhase.RUNNING,
            ~_MAKING_A_CHANGE.exists(),
        )
    ).all()
    released = []
    for row in rows:
        if not _lost(row, now, is_dead, trust_leases):
            continue
        result = session.execute(
            sa.update(STEPS)
            .where(
                STEPS.c.id == row.id,
                STEPS.c.attempts == row.attempts,
                STEPS.c.phase == StepPhase.RUNNING,
            )
            .values(
                phase=StepPhase.PENDING,
                lease_until=None,
                worker=None,
                error=f"worker {row.worker} was lost during attempt {row.attempts}",
            )
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            released.append((row.run_id, int(row._mapping["index"])))
    return released


def interrupted_changes(
    session: Session,
    now: dt.datetime,
    is_dead: Callable[[str | None], bool],
    *,
    trust_leases: bool = True,
) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """Approved changes whose worker was lost while making them: (approval, run, index).

    The step is Running past its lease (or its owner died) and its approval is
    ``executing``: the change may have been made, half made or not made. Releasing
    the step would run the investigation again (and maybe ask for the change again)
    or, worse, repeat a destructive action on an approval given for one attempt, so
    the caller resolves each one honestly instead (``approvals.interrupted``: the
    approval ``unknown``, the step failed with what to check).
    """
    rows = session.execute(
        sa.select(
            APPROVALS.c.id, STEPS.c.run_id, STEPS.c.index, STEPS.c.worker, STEPS.c.lease_until
        )
        .join(
            STEPS,
            sa.and_(STEPS.c.run_id == APPROVALS.c.run_id, STEPS.c.index == APPROVALS.c.step_index),
        )
        .join(RUNS, RUNS.c.id == STEPS.c.run_id)
        .where(
            APPROVALS.c.status == ApprovalStatus.EXECUTING,
            STEPS.c.phase == StepPhase.RUNNING,
            RUNS.c.phase == RunPhase.RUNNING,
        )
    ).all()
    return [
        (row.id, row.run_id, int(row._mapping["index"]))
        for row in rows
        if _lost(row, now, is_dead, trust_leases)
    ]


def forgotten_starts(session: Session, now: dt.datetime, stall_seconds: float) -> list[uuid.UUID]:
    """Runs still Pending ``stall_seconds`` after their last touch: their start
    message was lost (a broker that restarted without persistence, say).

    Each one is touched (compare-and-set on updated_at), so one recovery pass among
    several workers re-sends it, and not again before another ``stall_seconds``.
    """
    before = now - dt.timedelta(seconds=stall_seconds)
    runs = session.execute(
        sa.select(RUNS.c.id, RUNS.c.updated_at).where(
            RUNS.c.phase == RunPhase.PENDING,
            # Ingest writes runs without updated_at: their age is created_at.
            sa.func.coalesce(RUNS.c.updated_at, RUNS.c.created_at) < before,
        )
    ).all()
    found = []
    for run in runs:
        unchanged = (
            RUNS.c.updated_at.is_(None)
            if run.updated_at is None
            else RUNS.c.updated_at == run.updated_at
        )
        bumped = session.execute(
            sa.update(RUNS).where(RUNS.c.id == run.id, unchanged).values(updated_at=now)
        )
        if bumped.rowcount == 1:  # type: ignore[attr-defined]
            found.append(run.id)
    return found


def stalled(
    session: Session, now: dt.datetime, stall_seconds: float
) -> list[tuple[uuid.UUID, int]]:
    """Running runs idle for ``stall_seconds`` with no step Running: (run, next index)."""
    before = now - dt.timedelta(seconds=stall_seconds)
    busy = sa.select(STEPS.c.run_id).where(STEPS.c.phase == StepPhase.RUNNING)
    runs = session.execute(
        sa.select(RUNS.c.id, RUNS.c.updated_at).where(
            RUNS.c.phase == RunPhase.RUNNING,
            RUNS.c.updated_at < before,
            RUNS.c.id.not_in(busy),
        )
    ).all()
    found = []
    for run in runs:
        index = session.execute(
            sa.select(sa.func.min(STEPS.c.index)).where(
                STEPS.c.run_id == run.id, STEPS.c.phase == StepPhase.PENDING
            )
        ).scalar_one_or_none()
        if index is None:
            continue
        bumped = session.execute(
            sa.update(RUNS)
            .where(RUNS.c.id == run.id, RUNS.c.updated_at == run.updated_at)
            .values(updated_at=now)
        )
        if bumped.rowcount == 1:  # type: ignore[attr-defined]
            found.append((run.id, int(index)))
    return found
