"""The end of a run: its outputs, its alert's status and its Sink deliveries.

Reached from two places, the start of a Workflow without steps and the record of a
run's last step, so it is its own seam. The run's final UPDATE, the alert's move
and the deliveries (rows and their outbox entries) are written in the caller's
transaction; the entries are returned for the caller to publish after commit. The
last step writes the run's end in its own UPDATE (``ending``, then ``ended`` for
what follows once that write won).

What this module must not do: publish, or decide how a run ends (``core.outcomes``
does); it writes what it is told, except that outputs that cannot be rendered fail
the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.core import contexts, outcomes
from services.engine.core.outcomes import Finish
from services.engine.store.tables import ALERTS, DELIVERIES, RUNS
from shared import outbox
from shared.db.models import utcnow
from shared.domain import alerts as alert_domain
from shared.domain import workflows
from shared.domain.notifications import NO_ID, Event
from shared.domain.runs import RunPhase
from shared.domain.templates import Templates
from shared.queueing import DELIVER, NOTIFIER_QUEUE

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Ending:
    """How a run ends, computed before it is written: the columns of its UPDATE,
    and where that leaves its alert."""

    values: dict[str, Any]
    phase: RunPhase
    error: str | None
    alert_target: alert_domain.AlertStatus | None


@dataclasses.dataclass(frozen=True)
class Finisher:
    """Ends runs with the process's templates and outbox lease."""

    templates: Templates
    outbox_lease_seconds: float

    def finish(
        self,
        session: Session,
        run_id: uuid.UUID,
        *,
        workflow: workflows.Workflow,
        context: Mapping[str, Any],
        alert_id: uuid.UUID | None,
        finish: Finish,
        now: dt.datetime,
    ) -> list[outbox.PendingTask]:
        """End the run: its UPDATE (``ending``), then what follows (``ended``)."""
        ending = self.ending(workflow, context, finish, now)
        session.execute(sa.update(RUNS).where(RUNS.c.id == run_id).values(ending.values))
        return self.ended(session, run_id, ending, workflow=workflow, alert_id=alert_id, now=now)

    def ending(
        self,
        workflow: workflows.Workflow,
        context: Mapping[str, Any],
        finish: Finish,
        now: dt.datetime,
    ) -> Ending:
        """The run's end as columns to write (pure: the caller writes them, maybe in
        a statement of its own such as the last step's)."""
        values, output_error = contexts.render_outputs(self.templates, workflow, context)
        error = finish.error
        phase = finish.phase
        if output_error is not None:
            # A run whose outputs cannot be computed did not do what it promised.
            phase = RunPhase.FAILED
            error = f"{error}; {output_error}" if error else output_error
        target = outcomes.alert_status_after(dataclasses.replace(finish, phase=phase, error=error))
        return Ending(
            {
                "phase": phase,
                "outputs": values,
                "error": error,
                "message": finish.message,
                "current_step": None,
                "completed_at": now,
                "updated_at": now,
            },
            phase,
            error,
            target,
        )

    def ended(
        self,
        session: Session,
        run_id: uuid.UUID,
        ending: Ending,
        *,
        workflow: workflows.Workflow,
        alert_id: uuid.UUID | None,
        now: dt.datetime,
    ) -> list[outbox.PendingTask]:
        """What follows a run's end once it is written: its alert moves, its Sinks
        get their deliveries (entries returned for the caller to publish)."""
        target = ending.alert_target
        if alert_id is not None and target is not None:
            move_alert(session, alert_id, target, now, by_workflow=True)
        log.info(
            "run finished",
            extra={
                "run_id": str(run_id),
                "phase": ending.phase,
                "error": ending.error,
                "alert": target,
            },
        )
        return notify(
            session,
            run_id,
            workflow.sinks,
            event=Event.RUN_FINISHED,
            event_id=NO_ID,
            now=now,
            outbox_lease_seconds=self.outbox_lease_seconds,
        )


def notify(
    session: Session,
    run_id: uuid.UUID,
    sinks: Sequence[str],
    *,
    event: Event,
    event_id: str,
    now: dt.datetime,
    outbox_lease_seconds: float,
) -> list[outbox.PendingTask]:
    """One Pending delivery of ``event`` per Sink, and its ``notifier.deliver`` entry.

    The notifier decides the rest (the Sink's condition, its type's answer).
    """
    if not sinks:
        return []
    deliveries = [(uuid.uuid4(), name) for name in sinks]
    session.execute(
        sa.insert(DELIVERIES),
        [
            {
                "id": delivery_id,
                "run_id": run_id,
                "sink_name": name,
                "event": event,
                "event_id": event_id,
                "phase": "Pending",  # a Sink delivery's phase: the notifier's word
                "attempts": 0,
                "created_at": now,
            }
            for delivery_id, name in deliveries
        ],
    )
    return outbox.add(
        session,
        # The run id rides along for Flower and the logs (the task loads by delivery).
        [
            (DELIVER, NOTIFIER_QUEUE, [str(delivery_id), str(run_id)])
            for delivery_id, _ in deliveries
        ],
        outbox_lease_seconds,
    )


def move_alert(
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
            sa.update(ALERTS)
            .where(ALERTS.c.id == alert_id, ALERTS.c.status.in_(sources))
            .values(**values)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return


@functools.lru_cache(maxsize=8)
def alert_move(target: alert_domain.AlertStatus) -> sa.Update | None:
    """``move_alert`` as one UPDATE, built once, to send with others where one does
    (the move to triaging); None where it takes several tries (to resolved). Binds
    ``b_alert_id`` and ``b_alert_at`` (the time of the move)."""
    moves = _alert_moves(target, utcnow(), by_workflow=False)
    if len(moves) != 1:
        return None
    values, sources = moves[0]
    at = sa.bindparam("b_alert_at", type_=ALERTS.c.updated_at.type)
    return (
        sa.update(ALERTS)
        .where(ALERTS.c.id == sa.bindparam("b_alert_id"), ALERTS.c.status.in_(sources))
        .values(
            {
                name: at if isinstance(value, dt.datetime) else value
                for name, value in values.items()
            }
        )
    )


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
