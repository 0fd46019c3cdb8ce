"""The engine's reads and writes: runs, steps, the context, sinks and the alert.

Every write that moves a run forward is a compare-and-set on what the reader saw
(the step's phase and attempt count, and its worker), so that two deliveries of
one message, or a worker that lost its lease, can never both record a result. The
functions take a session and leave committing to the caller (the task's unit of
work), which commits before anything is enqueued.

The package splits along the seams of a run's life, one module each: ``starts``
(Pending -> Running, the run limits), ``steps`` (load, claim, heartbeat, record),
``finish`` (outputs, the alert's status, Sink deliveries) and ``recovery`` (lost
workers and messages); ``tables`` names the tables, ``snapshots`` caches parsed
Workflows.

``Store`` stays as the facade the tasks call (``runtime.store.start(...)``): it
holds what is per process (the snapshot cache, the templates and outbox lease a
run's end needs), so the modules stay plain functions over a session, and a test
or the benchmark builds one object instead of wiring four modules.

What this package must not do: run steps or talk to the broker. Tasks to publish
are returned (outbox entries) and published by the caller after commit.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.orm import Session

from services.engine.core import outcomes
from services.engine.store import recovery, starts, steps
from services.engine.store.finish import Finisher
from services.engine.store.snapshots import Snapshots
from services.engine.store.starts import Started
from services.engine.store.steps import Loaded, StepState
from shared import outbox
from shared.domain.templates import Templates

__all__ = ["Loaded", "Started", "StepState", "Store"]


class Store:
    """The engine's persistence, parameterized by what the run needs to know."""

    def __init__(self, templates: Templates, *, outbox_lease_seconds: float) -> None:
        self._snapshots = Snapshots()
        self._finisher = Finisher(templates, outbox_lease_seconds)

    # -- start (``starts``) ------------------------------------------------------

    def start(self, session: Session, run_id: uuid.UUID, now: dt.datetime) -> Started | None:
        """Pending -> Running (or Failed/Skipped). None when there is nothing to do."""
        return starts.start(
            session, run_id, now, snapshots=self._snapshots, finisher=self._finisher
        )

    # -- steps (``steps``) -------------------------------------------------------

    def load(self, session: Session, run_id: uuid.UUID, index: int) -> Loaded | None:
        return steps.load(session, run_id, index, snapshots=self._snapshots)

    claim = staticmethod(steps.claim)
    heartbeat = staticmethod(steps.heartbeat)

    def record(
        self,
        session: Session,
        loaded: Loaded,
        *,
        attempt: int,
        worker: str,
        outcome: outcomes.Outcome,
        decision: outcomes.Next,
        now: dt.datetime,
        claimed: bool = True,
    ) -> list[outbox.PendingTask] | None:
        """Write one attempt's result; None when the step changed under us (``steps.record``)."""
        return steps.record(
            session,
            loaded,
            attempt=attempt,
            worker=worker,
            outcome=outcome,
            decision=decision,
            now=now,
            finisher=self._finisher,
            claimed=claimed,
        )

    # -- recovery (``recovery``) -------------------------------------------------

    release_abandoned = staticmethod(recovery.release_abandoned)
    forgotten_starts = staticmethod(recovery.forgotten_starts)
    stalled = staticmethod(recovery.stalled)
