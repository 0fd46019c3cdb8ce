"""Approvals: deciding whether a change an agent step wants may be made.

An agent step whose change needs a human pauses its run (``WaitingApproval``) and
leaves a pending row in ``approvals`` (written by the engine). Whoever decides, the
ingest API and the Slack buttons (ingest's ``/slack/interactions``), calls :func:`decide`; the
engine's recovery pass calls :func:`expire` for the ones nobody decided in time.
Each of them writes, in the caller's transaction, the decision and the outbox entries
``engine.resume_step(approval_id)`` and ``notifier.approval_decided(approval_id)``;
the engine then makes the change (approved) or ends the run without it (denied,
expired), and the notifier edits the messages that asked (the Slack buttons give way
to who decided and when). The caller publishes the returned entries
after commit.

Deciding is a compare-and-set on ``pending`` (and not yet expired): of two clicks,
two API calls or a click racing the expiry, exactly one decides; the others get
:class:`AlreadyDecidedError` saying who decided what. What this module must not do:
touch the cluster or the run; the engine owns both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared import outbox
from shared.db.models import Approval, WorkflowRun
from shared.errors import PunchingFistError
from shared.queueing import APPROVAL_DECIDED, ENGINE_QUEUE, NOTIFIER_QUEUE, RESUME_STEP

_APPROVALS = cast(sa.Table, Approval.__table__)
_RUNS = cast(sa.Table, WorkflowRun.__table__)
MAX_BY = 253
MAX_COMMENT = 4000


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    # Claimed by one engine worker; then executed or failed.
    EXECUTING = "executing"
    EXECUTED = "executed"
    FAILED = "failed"
    # The worker making the change was lost: it may have been made, half made or not
    # at all. Never retried by itself (recovery fails the step); a person checks.
    UNKNOWN = "unknown"


class Decision(enum.StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class ApprovalError(PunchingFistError):
    """Base of what :func:`decide` refuses."""


class ApprovalNotFoundError(ApprovalError):
    pass


class AlreadyDecidedError(ApprovalError):
    """Someone decided first, or the approval expired."""


@dataclasses.dataclass(frozen=True)
class Decided:
    approval: dict[str, Any]
    tasks: list[outbox.PendingTask]


def view(row: Any) -> dict[str, Any]:
    """An approval as the API shows it (the approvals list and each run's detail).

    ``reason`` is why the agent asked for the change, ``why`` why the policy wants a
    human, ``comment`` what the person who decided said; ``result`` what happened
    once decided (the change and its verification, or why it was not made).
    """
    values = row._mapping
    request = values["request"] or {}
    return {
        "id": str(values["id"]),
        "runId": str(values["run_id"]),
        "step": values["step_name"],
        "status": values["status"],
        "action": request.get("action"),
        "risk": request.get("risk"),
        "what": values["what"],
        "reason": request.get("reason") or None,
        "request": request,
        "requestedBy": values["requested_by"],
        "why": values["why"],
        "createdAt": _iso(values["created_at"]),
        "expiresAt": _iso(values["expires_at"]),
        "decidedAt": _iso(values["decided_at"]),
        "decidedBy": values["decided_by"],
        "comment": values["comment"],
        "completedAt": _iso(values["completed_at"]),
        "result": values["result"],
    }


def of_runs(session: Session, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Every approval of each run (any status), oldest first, as :func:`view` shows them."""
    by_run: dict[uuid.UUID, list[dict[str, Any]]] = {run_id: [] for run_id in run_ids}
    if run_ids:
        rows = session.execute(
            sa.select(_APPROVALS)
            .where(_APPROVALS.c.run_id.in_(run_ids))
            .order_by(_APPROVALS.c.run_id, _APPROVALS.c.created_at, _APPROVALS.c.id)
        ).all()
        for row in rows:
            by_run[row.run_id].append(view(row))
    return by_run


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def pending(session: Session, now: dt.datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Approvals waiting for a decision, oldest first."""
    rows = session.execute(
        sa.select(_APPROVALS)
        .where(_APPROVALS.c.status == Status.PENDING, _APPROVALS.c.expires_at > now)
        .order_by(_APPROVALS.c.created_at)
        .limit(limit)
    ).all()
    return [view(row) for row in rows]


def decide(  # noqa: PLR0917  one signature for the API and the Slack buttons
    session: Session,
    approval_id: uuid.UUID,
    decision: Decision,
    by: str,
    comment: str,
    now: dt.datetime,
    *,
    outbox_lease_seconds: float = 10.0,
) -> Decided:
    """Approve or deny a pending approval; raises ApprovalError when it is not pending."""
    status = Status.APPROVED if decision is Decision.APPROVE else Status.DENIED
    changed = session.execute(
        sa.update(_APPROVALS)
        .where(
            _APPROVALS.c.id == approval_id,
            _APPROVALS.c.status == Status.PENDING,
            _APPROVALS.c.expires_at > now,
        )
        .values(
            status=status,
            decided_at=now,
            decided_by=by[:MAX_BY],
            comment=comment[:MAX_COMMENT] or None,
        )
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        row = session.execute(sa.select(_APPROVALS).where(_APPROVALS.c.id == approval_id)).first()
        if row is None:
            raise ApprovalNotFoundError(f"no approval {approval_id}")
        if row.status == Status.PENDING:  # past its deadline; the engine's pass expires it
            raise AlreadyDecidedError(f"approval {approval_id} expired at {_iso(row.expires_at)}")
        who = f" by {row.decided_by}" if row.decided_by else ""
        raise AlreadyDecidedError(
            f"approval {approval_id} is already {row.status}{who} at {_iso(row.decided_at)}"
        )
    row = session.execute(sa.select(_APPROVALS).where(_APPROVALS.c.id == approval_id)).one()
    tasks = outbox.add(session, _after_decision([(approval_id, row.run_id)]), outbox_lease_seconds)
    return Decided(view(row), tasks)


def expire(
    session: Session, now: dt.datetime, *, outbox_lease_seconds: float = 10.0
) -> list[outbox.PendingTask]:
    """Pending approvals past ``expires_at`` become expired (a denial nobody made)."""
    due = session.execute(
        sa.select(_APPROVALS.c.id, _APPROVALS.c.run_id).where(
            _APPROVALS.c.status == Status.PENDING, _APPROVALS.c.expires_at <= now
        )
    ).all()
    expired = []
    for approval_id, run_id in due:
        changed = session.execute(
            sa.update(_APPROVALS)
            .where(_APPROVALS.c.id == approval_id, _APPROVALS.c.status == Status.PENDING)
            .values(status=Status.EXPIRED, decided_at=now, decided_by="expiry")
        )
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            expired.append((approval_id, run_id))
    return outbox.add(session, _after_decision(expired), outbox_lease_seconds)


def change_ended(
    session: Session, approval_id: uuid.UUID, status: Status, outbox_lease_seconds: float
) -> list[outbox.PendingTask]:
    """After the approved change: a ``failed`` or ``unknown`` one leaves a person
    something to check, so the notifier edits the messages that asked once more to
    say so (they showed the approval since the decision). A made change edits
    nothing: the run's end reports it."""
    if status not in (Status.FAILED, Status.UNKNOWN):
        return []
    return outbox.add(
        session, [(APPROVAL_DECIDED, NOTIFIER_QUEUE, [str(approval_id)])], outbox_lease_seconds
    )


def _after_decision(
    decided: list[tuple[uuid.UUID, uuid.UUID]],
) -> list[tuple[str, str, list[Any]]]:
    """The engine carries the run on; the notifier edits the messages that asked.

    The run id rides along with the resume for Flower and the logs.
    """
    messages: list[tuple[str, str, list[Any]]] = []
    for approval_id, run_id in decided:
        messages.append((RESUME_STEP, ENGINE_QUEUE, [str(approval_id), str(run_id)]))
        messages.append((APPROVAL_DECIDED, NOTIFIER_QUEUE, [str(approval_id)]))
    return messages
