"""The notifier's reads and writes about approvals: what a message shows of one, the
deliveries that asked for it, and the note that its decision is shown.

Split from ``store`` (deliveries and the alerts' Sink state), which reads these when
it loads a delivery. What this module must not do: decide an approval
(``shared.approvals`` does), call a Sink or the broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.notifier.core import messages
from shared.db.models import Approval, SinkDelivery, StepRun
from shared.domain.notifications import Event

_DELIVERIES = cast(sa.Table, SinkDelivery.__table__)
_APPROVALS = cast(sa.Table, Approval.__table__)
_STEPS = cast(sa.Table, StepRun.__table__)


def pending_approval(session: Session, run_id: uuid.UUID) -> dict[str, Any] | None:
    """The approval a waiting run waits for, as the Slack buttons need it."""
    row = session.execute(
        sa.select(_APPROVALS)
        .where(_APPROVALS.c.run_id == run_id, _APPROVALS.c.status == "pending")
        .order_by(_APPROVALS.c.created_at.desc())
        .limit(1)
    ).first()
    return messages.approval_doc(dict(row._mapping), _step_output(session, row)) if row else None


def approval_facts(session: Session, approval_id: uuid.UUID | None) -> dict[str, Any] | None:
    """One approval, whatever its status, as a message shows it (``messages.approval_doc``)."""
    if approval_id is None:
        return None
    row = session.execute(sa.select(_APPROVALS).where(_APPROVALS.c.id == approval_id)).first()
    return messages.approval_doc(dict(row._mapping), _step_output(session, row)) if row else None


def _step_output(session: Session, approval: Any) -> Mapping[str, Any]:
    """The output of the step that asked (its recommendations say the change's risk)."""
    output = session.execute(
        sa.select(_STEPS.c.output).where(
            _STEPS.c.run_id == approval.run_id, _STEPS.c.index == approval.step_index
        )
    ).scalar_one_or_none()
    return dict(output or {})


def run_approvals(session: Session, run_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every approval the run asked for, oldest first: what became of each change."""
    rows = session.execute(
        sa.select(_APPROVALS).where(_APPROVALS.c.run_id == run_id).order_by(_APPROVALS.c.created_at)
    ).all()
    return [messages.approval_doc(dict(row._mapping), {}) for row in rows]


@dataclasses.dataclass(frozen=True)
class Asked:
    """A delivery that asked for an approval, as the decision's edit sees it."""

    id: uuid.UUID
    sink_name: str
    phase: str
    reference: dict[str, Any]


def approval_requests(session: Session, approval_id: uuid.UUID) -> tuple[str | None, list[Asked]]:
    """The approval's status and the deliveries that asked for it."""
    status = session.execute(
        sa.select(_APPROVALS.c.status).where(_APPROVALS.c.id == approval_id)
    ).scalar_one_or_none()
    rows = session.execute(
        sa.select(
            _DELIVERIES.c.id, _DELIVERIES.c.sink_name, _DELIVERIES.c.phase, _DELIVERIES.c.response
        )
        .where(
            _DELIVERIES.c.event == Event.APPROVAL_REQUESTED,
            _DELIVERIES.c.event_id == str(approval_id),
        )
        .order_by(_DELIVERIES.c.sink_name)
    ).all()
    return status, [
        Asked(row.id, row.sink_name, row.phase, dict(row.response or {})) for row in rows
    ]


def decision_shown(
    session: Session, asked: Asked, status: str, reference: Mapping[str, Any], now: dt.datetime
) -> None:
    """Note on the delivery that its message now shows the decision (``decisionShown``)."""
    session.execute(
        sa.update(_DELIVERIES)
        .where(_DELIVERIES.c.id == asked.id)
        .values(response={**asked.reference, **reference, "decisionShown": status}, updated_at=now)
    )
