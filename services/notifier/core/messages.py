"""What a Sink sees of a finished run: the namespace its template and condition read.

One document per delivery, built from the run row, its context and its alert::

    run      {id, phase, workflow, namespace, error, message, startedAt, completedAt,
              url, escalates}
    outputs  the Workflow's outputs as the engine rendered them
    steps    {<name>: {phase, output}} from the run's context
    alert    the alert as ingest received it (labels, annotations, name, severity,
             fingerprint, generatorURL, startsAt) plus {id, status, autoResolved,
             resolvedAt}; {} for a run without an alert (schedule Sources)
    source   {name, namespace, context}
    sink     {name, type}
    event    what the delivery tells: "run_finished" or "approval_requested"
             (``shared.domain.notifications``); Sink conditions can test it
    approval the approval an ``approval_requested`` delivery asks for (or the
             pending one of a run that waits): {id, status, what, why, rationale,
             risk, request, expiresAt, decidedBy, decidedAt, comment, executed,
             verified, outcome}; {} otherwise
    approvals every approval of the run, oldest first, in the same form: what
             became of each change (the remediation's outcome)

Values from the alert are data: this module only copies them into the namespace,
and the sandbox that reads them cannot execute anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from shared.domain.alerts import AlertStatus
from shared.domain.notifications import Event
from shared.domain.runs import RunPhase

RESOLVED = AlertStatus.RESOLVED
WAITING_APPROVAL = RunPhase.WAITING_APPROVAL


@dataclasses.dataclass(frozen=True)
class RunFacts:
    """The columns of a finished run the notifier reads."""

    id: str
    phase: str
    workflow: str
    namespace: str
    context: Mapping[str, Any]
    outputs: Mapping[str, Any]
    error: str | None = None
    message: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    # The approval the message is about (``approval_doc``): the one an
    # ``approval_requested`` event names, or the pending one of a waiting run.
    approval: Mapping[str, Any] | None = None
    # Every approval the run asked for, oldest first (what became of each change).
    approvals: Sequence[Mapping[str, Any]] = ()
    event: str = Event.RUN_FINISHED


@dataclasses.dataclass(frozen=True)
class AlertFacts:
    """The alert row's lifecycle columns (the context holds what ingest received)."""

    id: str
    status: str
    auto_resolved: bool = False
    resolved_at: dt.datetime | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    generator_url: str | None = None
    starts_at: dt.datetime | None = None
    alert_name: str = ""
    severity: str = ""
    fingerprint: str = ""


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def escalates(run_phase: str, alert: AlertFacts | None) -> bool:
    """Whether the run hands its alert to a human: it ran (Succeeded or Failed) and
    the alert is not resolved (by the workflow or by AlertManager) meanwhile."""
    if run_phase not in (RunPhase.SUCCEEDED, RunPhase.FAILED) or alert is None:
        return False
    return alert.status != RESOLVED


def run_url(public_url: str, run_id: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/runs/{run_id}"


def namespace(
    run: RunFacts,
    alert: AlertFacts | None,
    *,
    sink_name: str,
    sink_type: str,
    public_url: str,
) -> dict[str, Any]:
    context = run.context
    alert_doc: dict[str, Any] = {}
    if alert is not None:
        received = dict(context.get("alert") or {})
        # The context is what the run saw; the row adds what happened since. A run
        # started without a context alert (an API start) still gets the row's facts.
        alert_doc = {
            "name": alert.alert_name,
            "severity": alert.severity,
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "generatorURL": alert.generator_url,
            "fingerprint": alert.fingerprint,
            "startsAt": _iso(alert.starts_at),
            **received,
            "id": alert.id,
            "status": alert.status,
            "autoResolved": alert.auto_resolved,
            "resolvedAt": _iso(alert.resolved_at),
        }
    return {
        "run": {
            "id": run.id,
            "phase": run.phase,
            "workflow": run.workflow,
            "namespace": run.namespace,
            "error": run.error,
            "message": run.message,
            "startedAt": _iso(run.started_at),
            "completedAt": _iso(run.completed_at),
            "url": run_url(public_url, run.id),
            "escalates": escalates(run.phase, alert),
        },
        "outputs": dict(run.outputs),
        "steps": dict(context.get("steps") or {}),
        "alert": alert_doc,
        "source": dict(context.get("source") or {}),
        "sink": {"name": sink_name, "type": sink_type},
        "event": str(run.event),
        "approval": (
            dict(run.approval or {})
            if run.event == Event.APPROVAL_REQUESTED or run.phase == WAITING_APPROVAL
            else {}
        ),
        "approvals": [dict(item) for item in run.approvals],
    }


# An approved change that did not end cleanly leaves a person something to check;
# every Sink says it in these words (the Slack edit of the request, the run-end
# Remediation section, the stdout report). ``failed``: the change was refused or its
# call failed, which after a timeout can mean made in part. ``unknown``
# (``shared.approvals``): the worker making it was lost and it is never tried again.
NEEDS_A_CHECK = {
    "failed": (
        "making the change failed: it may not have been made, or only in part. "
        "A person must check the workload"
    ),
    "unknown": (
        "it is unknown whether the change was made: the worker making it was lost, "
        "and it was not tried again. A person must check the workload"
    ),
}


def needs_a_check(approval: Mapping[str, Any]) -> str | None:
    """What a person must know of the approved change, or None when nothing."""
    return NEEDS_A_CHECK.get(str(approval.get("status") or ""))


_RISKS = ("low", "medium", "high")


def approval_risk(request: Mapping[str, Any], output: Mapping[str, Any]) -> str:
    """The change's risk as the investigation rated it: the recommendation that names
    the object the change touches (else the riskiest that needs approval)."""
    rated = [
        r
        for r in output.get("recommendations") or []
        if isinstance(r, Mapping) and r.get("risk") in _RISKS
    ]
    name = str(request.get("name") or "")
    for recommendation in rated:
        if name and name in str(recommendation.get("action") or ""):
            return str(recommendation["risk"])
    asking = [str(r["risk"]) for r in rated if r.get("requiresApproval", True)]
    return max(asking, key=_RISKS.index) if asking else "not rated"


def approval_doc(row: Mapping[str, Any], step_output: Mapping[str, Any]) -> dict[str, Any]:
    """An ``approvals`` row as messages show it: what, risk, rationale, the decision."""
    request = dict(row.get("request") or {})
    result = dict(row.get("result") or {})
    verification = result.get("verification") or {}
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "what": row["what"],
        # Why the policy wants a human, and why the investigation wants the change.
        "why": row["why"],
        "rationale": str(request.get("reason") or ""),
        "risk": approval_risk(request, step_output),
        "request": request,
        "expiresAt": _iso(row.get("expires_at")),
        "decidedBy": row.get("decided_by"),
        "decidedAt": _iso(row.get("decided_at")),
        "comment": row.get("comment"),
        # Once made: whether it was, and what the verification saw.
        "executed": result.get("executed"),
        "verified": result.get("verified"),
        "outcome": str(verification.get("detail") or result.get("error") or ""),
    }
