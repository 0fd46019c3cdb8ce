"""The engine's reads and writes: runs, steps, the context, sinks and the alert.

Every write that moves a run forward is a compare-and-set on what the reader saw
(the step's phase and attempt count, and its worker), so that two deliveries of
one message, or a worker that lost its lease, can never both record a result. The
functions take a session and leave committing to the caller (the task base class),
which commits before anything is enqueued.

What this module must not do: run steps or talk to the broker. Tasks to publish
are returned (outbox entries) and published by the caller after commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.core import contexts, limits, outcomes
from services.engine.core.outcomes import Finish
from shared import outbox
from shared.db.models import Alert, Resource, SinkDelivery, StepRun, WorkflowRun
from shared.domain import alerts as alert_domain
from shared.domain import workflows
from shared.domain.runs import RunPhase, StepPhase
from shared.domain.templates import Templates
from shared.queueing import DELIVER, NOTIFIER_QUEUE
from shared.resources.schemas import load_workflow

log = logging.getLogger(__name__)

# Core tables: the engine writes with compare-and-set UPDATEs, not ORM objects.
_RUNS = cast(sa.Table, WorkflowRun.__table__)
_STEPS = cast(sa.Table, StepRun.__table__)
_ALERTS = cast(sa.Table, Alert.__table__)
_DELIVERIES = cast(sa.Table, SinkDelivery.__table__)
_RESOURCES = cast(sa.Table, Resource.__table__)
_STARTED = (RunPhase.RUNNING, RunPhase.SUCCEEDED, RunPhase.FAILED)
# The statements of every step, built once: building a statement and its cache key
# costs more than running it on SQLite (about 150 us each, measured).
_LOAD_RUN = sa.select(
    _RUNS.c.phase,
    # As text: the parsed Workflow is cached by it (no JSON decoding either).
    sa.cast(_RUNS.c.spec, sa.Text).label("spec"),
    _RUNS.c.context,
    _RUNS.c.namespace,
    _RUNS.c.workflow_name,
    _RUNS.c.alert_id,
).where(_RUNS.c.id == sa.bindparam("run_id"))
_LOAD_STEPS = sa.select(
    _STEPS.c.id,
    _STEPS.c.index,
    _STEPS.c.name,
    _STEPS.c.phase,
    _STEPS.c.attempts,
    _STEPS.c.worker,
    _STEPS.c.lease_until,
).where(_STEPS.c.run_id == sa.bindparam("run_id"))


def _bind(column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(f"b_{column.name}", type_=column.type)


# ``claim``: a compare-and-set on the (phase, attempts) the reader saw.
_CLAIMED_AS_SEEN = sa.and_(
    _STEPS.c.id == sa.bindparam("b_id"),
    _STEPS.c.attempts == sa.bindparam("b_seen_attempts"),
    _STEPS.c.phase == sa.bindparam("b_seen_phase"),
)
_CLAIM = (
    sa.update(_STEPS)
    .where(_CLAIMED_AS_SEEN)
    .values(
        phase=StepPhase.RUNNING,
        attempts=_bind(_STEPS.c.attempts),
        worker=_bind(_STEPS.c.worker),
        lease_until=_bind(_STEPS.c.lease_until),
        started_at=sa.func.coalesce(
            _STEPS.c.started_at, sa.bindparam("b_now", type_=_STEPS.c.started_at.type)
        ),
        error=None,
    )
)
# ``record``: an attempt's result, written by its claimant ...
_RESULT = {
    "phase": _bind(_STEPS.c.phase),
    "output": _bind(_STEPS.c.output),
    "error": _bind(_STEPS.c.error),
    "completed_at": _bind(_STEPS.c.completed_at),
    "lease_until": None,
    "worker": sa.bindparam("b_worker_after", type_=_STEPS.c.worker.type),
}
_RECORD_CLAIMED = (
    sa.update(_STEPS)
    .where(
        _STEPS.c.id == sa.bindparam("b_id"),
        _STEPS.c.worker == sa.bindparam("b_worker"),
        _STEPS.c.attempts == sa.bindparam("b_attempts"),
        _STEPS.c.phase == StepPhase.RUNNING,
    )
    .values(**_RESULT)
)
# ... or, for pure executors, written as the claim itself.
_RECORD_UNCLAIMED = (
    sa.update(_STEPS)
    .where(_CLAIMED_AS_SEEN)
    .values(
        **_RESULT,
        attempts=_bind(_STEPS.c.attempts),
        started_at=sa.func.coalesce(
            _STEPS.c.started_at, sa.bindparam("b_now", type_=_STEPS.c.started_at.type)
        ),
    )
)
# Parsed Workflow snapshots kept per process (see ``Store._parse_snapshot``).
_PARSED_WORKFLOWS = 256


@dataclasses.dataclass(frozen=True)
class Started:
    """What ``start`` did: the run's phase afterwards and how many steps to chain."""

    phase: RunPhase
    total_steps: int
    tasks: list[outbox.PendingTask]


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


class Store:
    """The engine's persistence, parameterized by what the run needs to know."""

    def __init__(self, templates: Templates, *, outbox_lease_seconds: float) -> None:
        self._templates = templates
        self._outbox_lease = outbox_lease_seconds
        # A run's spec snapshot never changes, and all runs of one Workflow version
        # share the same text: validate and build it once per process, not once per
        # step (the schema compiles every template: about 15 ms for the triage example).
        # lru_cache is thread-safe (the threads pool) and bounded.
        self._parse_snapshot = functools.lru_cache(maxsize=_PARSED_WORKFLOWS)(
            self._parse_snapshot_text
        )

    # -- start -------------------------------------------------------------------

    def start(self, session: Session, run_id: uuid.UUID, now: dt.datetime) -> Started | None:
        """Pending -> Running (or Failed/Skipped). None when there is nothing to do."""
        # The run (locked: two deliveries of one start must not both start it) and
        # its Workflow's current spec, in one round trip.
        run = session.execute(
            sa.select(
                _RUNS.c.id,
                _RUNS.c.phase,
                _RUNS.c.namespace,
                _RUNS.c.workflow_name,
                _RUNS.c.alert_id,
                _RUNS.c.input_context,
                _RUNS.c.fingerprint,
                # As text: the loaded Workflow is cached by it, as for snapshots.
                sa.cast(_RESOURCES.c.spec, sa.Text).label("workflow_spec"),
            )
            .select_from(
                _RUNS.outerjoin(
                    _RESOURCES,
                    sa.and_(
                        _RESOURCES.c.kind == "Workflow",
                        _RESOURCES.c.namespace == _RUNS.c.namespace,
                        _RESOURCES.c.name == _RUNS.c.workflow_name,
                    ),
                )
            )
            .where(_RUNS.c.id == run_id)
            .with_for_update(of=_RUNS)
        ).first()
        if run is None:
            log.warning("start: no such run", extra={"run_id": str(run_id)})
            return None
        if run.phase != RunPhase.PENDING:
            return None
        try:
            workflow = self._load_stored(run.namespace, run.workflow_name, run.workflow_spec)
        except workflows.WorkflowError as exc:
            return self._refuse(session, run, phase=RunPhase.FAILED, error=str(exc), now=now)
        # Written by whoever created the run (``shared.domain.runs.new_pending_run``).
        fingerprint = run.fingerprint
        reason = self._over_limit(session, run, workflow, fingerprint, now)
        if reason is not None:
            return self._refuse(session, run, phase=RunPhase.SKIPPED, error=reason, now=now)
        context = contexts.initial(dict(run.input_context or {}), workflow, str(run_id))
        if workflow.steps:
            session.execute(
                sa.insert(_STEPS),
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
            sa.update(_RUNS)
            .where(_RUNS.c.id == run_id)
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
            self._move_alert(session, run.alert_id, alert_domain.AlertStatus.TRIAGING, now)
        if not workflow.steps:
            tasks = self._finish(
                session,
                run_id,
                workflow=workflow,
                context=context,
                alert_id=run.alert_id,
                finish=Finish(RunPhase.SUCCEEDED),
                now=now,
            )
            return Started(RunPhase.SUCCEEDED, 0, tasks)
        return Started(RunPhase.RUNNING, len(workflow.steps), [])

    def _load_stored(self, namespace: str, name: str, spec_text: str | None) -> workflows.Workflow:
        workflow = self._parse_snapshot(namespace, name, spec_text) if spec_text else None
        if workflow is None:
            raise workflows.WorkflowError(
                f"Workflow {namespace}/{name} does not exist (it was never loaded or was deleted)"
            )
        return workflow

    def _over_limit(
        self,
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
            _RUNS.c.workflow_name == run.workflow_name,
            _RUNS.c.namespace == run.namespace,
            _RUNS.c.id != run.id,
        )
        # Both counts in one round trip, each a scalar subquery on its own index.
        # (Not in the statement that takes the advisory lock above: a statement's
        # snapshot is taken before it waits for the lock, so it could miss the run
        # that the previous holder just committed.)
        counts: list[sa.ScalarSelect[int] | sa.Null] = [sa.null(), sa.null()]
        if caps.max_concurrent_runs:
            counts[0] = (
                sa.select(sa.func.count())
                .select_from(_RUNS)
                .where(same_workflow, _RUNS.c.phase == RunPhase.RUNNING)
                .scalar_subquery()
            )
        if fingerprint and caps.max_runs_per_fingerprint:
            since = now - dt.timedelta(seconds=caps.fingerprint_window_seconds)
            counts[1] = (
                sa.select(sa.func.count())
                .select_from(_RUNS)
                .where(
                    same_workflow,
                    _RUNS.c.fingerprint == fingerprint,
                    _RUNS.c.started_at >= since,
                    _RUNS.c.phase.in_(list(_STARTED)),
                )
                .scalar_subquery()
            )
        row = session.execute(sa.select(*counts)).one()
        return limits.refusal(caps, row[0] or 0, row[1] or 0, fingerprint)

    def _refuse(
        self,
        session: Session,
        run: Any,
        *,
        phase: RunPhase,
        error: str,
        now: dt.datetime,
    ) -> Started:
        log.warning(
            "run not started", extra={"run_id": str(run.id), "phase": phase, "error": error}
        )
        session.execute(
            sa.update(_RUNS)
            .where(_RUNS.c.id == run.id)
            .values(
                phase=phase,
                error=error,
                completed_at=now,
                updated_at=now,
            )
        )
        return Started(phase, 0, [])

    # -- steps -------------------------------------------------------------------

    def load(self, session: Session, run_id: uuid.UUID, index: int) -> Loaded | None:
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
        workflow = self._parse_snapshot(run.namespace, run.workflow_name, run.spec)
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

    def _parse_snapshot_text(
        self, namespace: str, name: str, spec_text: str
    ) -> workflows.Workflow | None:
        """The Workflow of a spec (a run's snapshot, or the stored Workflow at start).

        Validated by the Workflow schema, as ``validate`` and the controller do:
        ``WorkflowError`` names the field when it no longer validates. Cached (see
        ``__init__``): the result is shared by every run with the same spec, so it
        must be treated as read-only (it is: executors and ``core`` only read it).
        """
        spec = json.loads(spec_text)
        if spec is None:  # a JSON null: the run was never started
            return None
        return load_workflow(namespace, name, spec)

    def claim(
        self, session: Session, loaded: Loaded, worker: str, now: dt.datetime, lease: float
    ) -> bool:
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
            sa.update(_RUNS)
            .where(_RUNS.c.id == loaded.run_id)
            .values(current_step=loaded.step.name, updated_at=now)
        )
        return True

    def heartbeat(
        self, session: Session, step_id: uuid.UUID, worker: str, attempt: int, until: dt.datetime
    ) -> bool:
        result = session.execute(
            sa.update(_STEPS)
            .where(
                _STEPS.c.id == step_id,
                _STEPS.c.worker == worker,
                _STEPS.c.attempts == attempt,
                _STEPS.c.phase == StepPhase.RUNNING,
            )
            .values(lease_until=until)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

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
                sa.update(_STEPS)
                .where(
                    _STEPS.c.run_id == loaded.run_id,
                    _STEPS.c.name.in_(sorted(decision.skip)),
                    _STEPS.c.phase == StepPhase.PENDING,
                )
                .values(phase=StepPhase.SKIPPED, completed_at=now)
            )
            for name in decision.skip:
                context = contexts.with_step(context, name, StepPhase.SKIPPED, {})
        run_values: dict[str, Any] = {"context": context, "updated_at": now}
        if not claimed:
            run_values["current_step"] = step.name
        if finished:
            run_values["steps_completed"] = _RUNS.c.steps_completed + 1
        if decision.finish is None:
            session.execute(
                sa.update(_RUNS).where(_RUNS.c.id == loaded.run_id).values(**run_values)
            )
            return []
        return self._finish(
            session,
            loaded.run_id,
            workflow=loaded.workflow,
            context=context,
            alert_id=loaded.alert_id,
            finish=decision.finish,
            now=now,
            also=run_values,
        )

    # -- finish ------------------------------------------------------------------

    def _finish(
        self,
        session: Session,
        run_id: uuid.UUID,
        *,
        workflow: workflows.Workflow,
        context: Mapping[str, Any],
        alert_id: uuid.UUID | None,
        finish: Finish,
        now: dt.datetime,
        also: Mapping[str, Any] | None = None,
    ) -> list[outbox.PendingTask]:
        """End the run; ``also``: more columns for the same UPDATE (the last step's)."""
        values, output_error = contexts.render_outputs(self._templates, workflow, context)
        error = finish.error
        phase = finish.phase
        if output_error is not None:
            # A run whose outputs cannot be computed did not do what it promised.
            phase = RunPhase.FAILED
            error = f"{error}; {output_error}" if error else output_error
        session.execute(
            sa.update(_RUNS)
            .where(_RUNS.c.id == run_id)
            .values(
                {
                    **(also or {}),
                    "phase": phase,
                    "outputs": values,
                    "error": error,
                    "message": finish.message,
                    "current_step": None,
                    "completed_at": now,
                    "updated_at": now,
                }
            )
        )
        target = outcomes.alert_status_after(dataclasses.replace(finish, phase=phase, error=error))
        if alert_id is not None and target is not None:
            self._move_alert(session, alert_id, target, now, by_workflow=True)
        log.info(
            "run finished",
            extra={"run_id": str(run_id), "phase": phase, "error": error, "alert": target},
        )
        if not workflow.sinks:
            return []
        deliveries = [(uuid.uuid4(), name) for name in workflow.sinks]
        session.execute(
            sa.insert(_DELIVERIES),
            [
                {
                    "id": delivery_id,
                    "run_id": run_id,
                    "sink_name": name,
                    "phase": "Pending",  # a Sink delivery's phase: the notifier's word
                    "attempts": 0,
                    "created_at": now,
                }
                for delivery_id, name in deliveries
            ],
        )
        return outbox.add(
            session,
            [(DELIVER, NOTIFIER_QUEUE, [str(delivery_id)]) for delivery_id, _ in deliveries],
            self._outbox_lease,
        )

    def move_alert(
        self,
        session: Session,
        alert_id: uuid.UUID,
        target: alert_domain.AlertStatus,
        now: dt.datetime,
    ) -> None:
        """The workflow moves the alert (a verified fix resolves it: ``auto_resolved``)."""
        self._move_alert(session, alert_id, target, now, by_workflow=True)

    @staticmethod
    def _move_alert(
        session: Session,
        alert_id: uuid.UUID,
        target: alert_domain.AlertStatus,
        now: dt.datetime,
        *,
        by_workflow: bool = False,
    ) -> None:
        """Move the alert to ``target`` if its current status allows it.

        A compare-and-set on the status instead of read-then-write: one UPDATE per
        distinct change the lifecycle allows (one for triaging and escalated, two for
        resolved, tried from triaging first). An alert already resolved by
        AlertManager, or never triaged, matches none: the run's end does not
        override what happened to the alert meanwhile.
        """
        for values, sources in _alert_moves(target, now, by_workflow):
            result = session.execute(
                sa.update(_ALERTS)
                .where(_ALERTS.c.id == alert_id, _ALERTS.c.status.in_(sources))
                .values(**values)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return

    # -- recovery ----------------------------------------------------------------

    def release_abandoned(
        self, session: Session, now: dt.datetime, is_dead: Any
    ) -> list[tuple[uuid.UUID, int]]:
        """Steps Running past their lease or with a dead owner, put back to Pending.

        Returns (run_id, index) to re-drive. The compare-and-set on the worker and
        attempt keeps two recovering workers from both re-driving one step.
        """
        rows = session.execute(
            sa.select(
                _STEPS.c.id,
                _STEPS.c.run_id,
                _STEPS.c.index,
                _STEPS.c.worker,
                _STEPS.c.attempts,
                _STEPS.c.lease_until,
            )
            .join(_RUNS, _RUNS.c.id == _STEPS.c.run_id)
            .where(_STEPS.c.phase == StepPhase.RUNNING, _RUNS.c.phase == RunPhase.RUNNING)
        ).all()
        released = []
        for row in rows:
            expired = row.lease_until is None or row.lease_until <= now
            if not (expired or is_dead(row.worker)):
                continue
            result = session.execute(
                sa.update(_STEPS)
                .where(
                    _STEPS.c.id == row.id,
                    _STEPS.c.attempts == row.attempts,
                    _STEPS.c.phase == StepPhase.RUNNING,
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

    def forgotten_starts(
        self, session: Session, now: dt.datetime, stall_seconds: float
    ) -> list[uuid.UUID]:
        """Runs still Pending ``stall_seconds`` after their last touch: their start
        message was lost (a broker that restarted without persistence, say).

        Each one is touched (compare-and-set on updated_at), so one recovery pass among
        several workers re-sends it, and not again before another ``stall_seconds``.
        """
        before = now - dt.timedelta(seconds=stall_seconds)
        runs = session.execute(
            sa.select(_RUNS.c.id, _RUNS.c.updated_at).where(
                _RUNS.c.phase == RunPhase.PENDING,
                # Ingest writes runs without updated_at: their age is created_at.
                sa.func.coalesce(_RUNS.c.updated_at, _RUNS.c.created_at) < before,
            )
        ).all()
        found = []
        for run in runs:
            unchanged = (
                _RUNS.c.updated_at.is_(None)
                if run.updated_at is None
                else _RUNS.c.updated_at == run.updated_at
            )
            bumped = session.execute(
                sa.update(_RUNS).where(_RUNS.c.id == run.id, unchanged).values(updated_at=now)
            )
            if bumped.rowcount == 1:  # type: ignore[attr-defined]
                found.append(run.id)
        return found

    def stalled(
        self, session: Session, now: dt.datetime, stall_seconds: float
    ) -> list[tuple[uuid.UUID, int]]:
        """Running runs idle for ``stall_seconds`` with no step Running: (run, next index)."""
        before = now - dt.timedelta(seconds=stall_seconds)
        busy = sa.select(_STEPS.c.run_id).where(_STEPS.c.phase == StepPhase.RUNNING)
        runs = session.execute(
            sa.select(_RUNS.c.id, _RUNS.c.updated_at).where(
                _RUNS.c.phase == RunPhase.RUNNING,
                _RUNS.c.updated_at < before,
                _RUNS.c.id.not_in(busy),
            )
        ).all()
        found = []
        for run in runs:
            index = session.execute(
                sa.select(sa.func.min(_STEPS.c.index)).where(
                    _STEPS.c.run_id == run.id, _STEPS.c.phase == StepPhase.PENDING
                )
            ).scalar_one_or_none()
            if index is None:
                continue
            bumped = session.execute(
                sa.update(_RUNS)
                .where(_RUNS.c.id == run.id, _RUNS.c.updated_at == run.updated_at)
                .values(updated_at=now)
            )
            if bumped.rowcount == 1:  # type: ignore[attr-defined]
                found.append((run.id, int(index)))
        return found


# The engine's alerts are normally triaging when a run ends: try that source first.
_MOVE_SOURCES = (
    alert_domain.AlertStatus.TRIAGING,
    alert_domain.AlertStatus.RECEIVED,
    alert_domain.AlertStatus.ESCALATED,
    alert_domain.AlertStatus.RESOLVED,
)


def _alert_moves(
    target: alert_domain.AlertStatus, now: dt.datetime, by_workflow: bool
) -> list[tuple[dict[str, Any], list[str]]]:
    """(values to write, statuses they apply to) for every allowed move to ``target``.

    Built from ``shared.domain.alerts`` (which stays the one place that knows the
    lifecycle), grouping the source statuses that lead to the same write.
    """
    moves: dict[tuple[tuple[str, Any], ...], list[str]] = {}
    for current in _MOVE_SOURCES:
        if not alert_domain.can_transition(current, target):
            continue
        change = alert_domain.transition(current, target, at=now, by_workflow=by_workflow)
        values: dict[str, Any] = {"status": str(change.status), "updated_at": now}
        values.update(change.timestamps)
        if change.auto_resolved is not None:
            values["auto_resolved"] = change.auto_resolved
        moves.setdefault(tuple(values.items()), []).append(str(current))
    return [(dict(key), sources) for key, sources in moves.items()]
