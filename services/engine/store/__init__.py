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
and the tests build one object instead of wiring four modules.

What this package must not do: run steps or talk to the broker. Tasks to publish
are returned (outbox entries) and published by the caller after commit.
"""

from __future__ import annotations

import functools

from services.engine.store import finish, recovery, starts, steps
from services.engine.store.finish import Finisher
from services.engine.store.snapshots import Snapshots
from services.engine.store.starts import Started
from services.engine.store.steps import Loaded, StepState
from shared.domain.templates import Templates

__all__ = ["Loaded", "Started", "StepState", "Store"]


class Store:
    """The store modules' functions, bound to this process's snapshot cache and finisher.

    ``start``, ``load`` and ``record`` are the module functions with the per-process
    parts filled in (``functools.partial``, so their signatures stay in one place);
    the others need nothing per process.
    """

    def __init__(self, templates: Templates, *, outbox_lease_seconds: float) -> None:
        snapshots = Snapshots()
        finisher = Finisher(templates, outbox_lease_seconds)
        # start: Pending -> Running (or Failed/Skipped); None when there is nothing to do.
        self.start = functools.partial(starts.start, snapshots=snapshots, finisher=finisher)
        # A run and one of its steps as a step task sees them, and its result's write.
        self.load = functools.partial(steps.load, snapshots=snapshots)
        self.record = functools.partial(steps.record, finisher=finisher)
        # One delivery per Sink of an event that is not the run's end (a paused run).
        self.notify = functools.partial(finish.notify, outbox_lease_seconds=outbox_lease_seconds)

    claim = staticmethod(steps.claim)
    single_write = staticmethod(steps.single_write)
    heartbeat = staticmethod(steps.heartbeat)
    release_abandoned = staticmethod(recovery.release_abandoned)
    interrupted_changes = staticmethod(recovery.interrupted_changes)
    forgotten_starts = staticmethod(recovery.forgotten_starts)
    stalled = staticmethod(recovery.stalled)
    # The workflow moves the alert (a verified fix resolves it: ``auto_resolved``).
    move_alert = staticmethod(functools.partial(finish.move_alert, by_workflow=True))
