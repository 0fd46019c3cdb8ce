"""Workflow runs as every deployable names them: phases, and how a run begins.

A run is ``Pending -> Running -> Succeeded | Failed`` (or ``Skipped`` when a limit
refused to start it); each step is ``Pending -> Running -> Succeeded | Failed |
Skipped``. A step that wants a change to the cluster a human must allow first is
``WaitingApproval``, and so is its run, until the approval is decided or expires
(then ``Running`` again; no worker waits meanwhile). Ingest and the scheduler create
Pending runs, the engine moves them on, the API and the controller report them: the
words live here so that none of them spells a phase its own way.

``new_pending_run`` is the one way a run comes into being, whoever starts it (an
alert through ingest, a cron tick through the scheduler). It returns plain values;
the caller writes them (this package does no I/O).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from typing import Any

from shared.domain.alerts import IncomingAlert


class RunPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    # Paused until a human approves or denies a step's change (shared.approvals).
    WAITING_APPROVAL = "WaitingApproval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    # Refused at start by a Workflow limit (or an unusable Workflow); never ran a step.
    SKIPPED = "Skipped"


class StepPhase(enum.StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING_APPROVAL = "WaitingApproval"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


FINISHED_RUN = frozenset({RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.SKIPPED})
FINISHED_STEP = frozenset({StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED})


class Trigger(enum.StrEnum):
    """What started a run."""

    ALERT = "alert"
    SCHEDULE = "schedule"


@dataclasses.dataclass(frozen=True)
class PendingRun:
    """A run that is to start: its identity, what started it and what it will read."""

    id: uuid.UUID
    workflow_name: str
    namespace: str
    source_name: str
    trigger: Trigger
    # What the run's templates will see besides env, steps and run (alert, source,
    # schedule); the engine builds the full context from it when the run starts.
    input_context: Mapping[str, Any]
    created_at: dt.datetime
    alert_id: uuid.UUID | None = None
    # The alert's fingerprint, for the Workflow's per-fingerprint cap.
    fingerprint: str | None = None

    def row(self) -> dict[str, Any]:
        """The values of its ``workflow_runs`` row (column names, plain values)."""
        return {
            "id": self.id,
            "workflow_name": self.workflow_name,
            "namespace": self.namespace,
            "source_name": self.source_name,
            "alert_id": self.alert_id,
            "trigger": self.trigger.value,
            "phase": RunPhase.PENDING.value,
            "fingerprint": self.fingerprint,
            "steps_completed": 0,
            "total_steps": 0,
            "current_step": None,
            "input_context": dict(self.input_context),
            "context": {},
            "outputs": None,
            "error": None,
            "created_at": self.created_at,
            "started_at": None,
            "completed_at": None,
        }


def new_pending_run(
    *,
    workflow: str,
    namespace: str,
    source: str,
    source_context: Mapping[str, Any],
    now: dt.datetime,
    alert: IncomingAlert | None = None,
    alert_id: uuid.UUID | None = None,
    schedule: Mapping[str, Any] | None = None,
    run_id: uuid.UUID | None = None,
) -> PendingRun:
    """A Pending run of ``workflow`` started by an alert or by a schedule tick.

    Exactly one of ``alert`` (with the ``alert_id`` of its stored row) and
    ``schedule`` (``{tick, cron, timezone}``) says what started it.
    """
    if (alert is None) == (schedule is None):
        raise ValueError("a run is started by an alert or by a schedule tick: give one")
    input_context: dict[str, Any] = {
        "source": {"name": source, "namespace": namespace, "context": dict(source_context)}
    }
    if alert is not None:
        input_context["alert"] = alert.to_context()
    if schedule is not None:
        input_context["schedule"] = dict(schedule)
    return PendingRun(
        id=run_id or uuid.uuid4(),
        workflow_name=workflow,
        namespace=namespace,
        source_name=source,
        trigger=Trigger.ALERT if alert is not None else Trigger.SCHEDULE,
        input_context=input_context,
        created_at=now,
        alert_id=alert_id,
        fingerprint=alert.fingerprint if alert is not None else None,
    )
