"""A database outage must not make the engine run a finished step again.

While the database cannot be reached, a worker keeps a finished step's result and
writes it when the database is back (``tasks._when_reachable``); no owner can renew
its lease meanwhile, so right after an outage the recovery pass takes only steps
whose owner is dead, not those whose lease merely ran out (``trust_leases=False``).
The end-to-end proof is ``tests/e2e/test_fault_postgres_restart.py``.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa
from enginekit import Harness

from services.engine import tasks
from services.engine.store import recovery
from shared.db.models import StepRun, WorkflowRun, utcnow


def _running_step(harness: Harness, worker: str, lease_until: dt.datetime) -> uuid.UUID:
    harness.put_workflow({"steps": [{"name": "say", "type": "cli", "command": ["true"]}]})
    run_id = harness.add_run()
    with harness.sessions.begin() as session:
        session.execute(
            sa.update(WorkflowRun.__table__)
            .where(WorkflowRun.__table__.c.id == run_id)
            .values(phase="Running", total_steps=1)
        )
        session.execute(
            sa.insert(StepRun.__table__).values(
                id=uuid.uuid4(),
                run_id=run_id,
                index=0,
                name="say",
                type="cli",
                phase="Running",
                attempts=1,
                worker=worker,
                lease_until=lease_until,
            )
        )
    return run_id


def test_expired_leases_are_not_taken_right_after_an_outage_dead_owners_are(
    harness: Harness,
) -> None:
    now = utcnow()
    expired = now - dt.timedelta(seconds=30)
    alive = _running_step(harness, "host-a:101", expired)
    dead = _running_step(harness, "host-a:102", expired)

    def is_dead(worker: str | None) -> bool:
        return worker == "host-a:102"

    with harness.sessions.begin() as session:
        released = recovery.release_abandoned(session, now, is_dead, trust_leases=False)
    assert released == [(dead, 0)]
    [step] = harness.steps(alive)
    assert (step.phase, step.worker) == ("Running", "host-a:101")

    # A lease later the leases are trusted again: the silent owner loses its step.
    with harness.sessions.begin() as session:
        released = recovery.release_abandoned(session, now, is_dead)
    assert released == [(alive, 0)]


def test_a_result_is_written_once_the_database_answers_again() -> None:
    tries: list[int] = []

    def write() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise sa.exc.OperationalError("UPDATE step_runs", {}, Exception("connection refused"))
        return "written"

    assert tasks._when_reachable(write) == "written"
    assert len(tries) == 3


def test_a_refused_write_is_not_retried() -> None:
    tries: list[int] = []

    def write() -> str:
        tries.append(1)
        raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sa.exc.IntegrityError):
        tasks._when_reachable(write)
    assert len(tries) == 1
