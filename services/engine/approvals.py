"""The engine's side of the approval gate: pause a run, then resume it once decided.

An agent step whose result holds a ``pendingApproval`` (a change the policy leaves
to a human) does not finish: :func:`pause` writes its result, the step and the run
go to ``WaitingApproval`` and an ``approvals`` row is added, all as one
compare-and-set on the attempt that produced it. The chain stops; no worker waits.

``shared.approvals`` decides (or expires) and sends ``engine.resume_step``. Then
:func:`begin` claims the step again (``WaitingApproval -> Running``, with a lease,
as a step claim) and, for an approved change, the approval (``approved ->
executing``), in one transaction committed before anything touches the cluster: a
redelivered or duplicated resume finds nothing to claim, so the change is made at
most once. :func:`apply_and_verify` makes the change through the remediate tool's own
code and re-reads the workload that owns the object until it is healthy or
``verifyTimeout`` passes. :func:`result_after` folds what happened into the step's
result; the task records it with the store, as for any attempt. A worker lost while
making the change leaves the approval ``executing``; the recovery pass calls
:func:`interrupted`, which never makes the change again.

What this module must not do: decide whether a change may be made (the policy and a
human do), or publish (the task publishes after commit).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.engine.core import outcomes, remediation
from services.engine.store import Loaded, StepState, Store
from shared.approvals import Status
from shared.db.models import Approval, StepRun, WorkflowRun
from shared.domain.runs import RunPhase, StepPhase

log = logging.getLogger(__name__)

_APPROVALS = cast(sa.Table, Approval.__table__)
_RUNS = cast(sa.Table, WorkflowRun.__table__)
_STEPS = cast(sa.Table, StepRun.__table__)
# Seconds between reads of the workload while verifying a change.
VERIFY_INTERVAL = 1.0


def pause(
    session: Session,
    loaded: Loaded,
    *,
    attempt: int,
    worker: str,
    output: Mapping[str, Any],
    now: dt.datetime,
) -> uuid.UUID | None:
    """Record the step's result and the approval it waits for; None if the step moved on."""
    pending = output["pendingApproval"]
    changed = session.execute(
        sa.update(_STEPS)
        .where(
            _STEPS.c.id == loaded.state.id,
            _STEPS.c.worker == worker,
            _STEPS.c.attempts == attempt,
            _STEPS.c.phase == StepPhase.RUNNING,
        )
        .values(phase=StepPhase.WAITING_APPROVAL, output=dict(output), lease_until=None)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    approval_id = uuid.uuid4()
    session.execute(
        sa.insert(_APPROVALS).values(
            id=approval_id,
            run_id=loaded.run_id,
            step_index=loaded.step.index,
            step_name=loaded.step.name,
            status=Status.PENDING,
            # The policy's risk travels with the request (no column of its own).
            request={**pending["request"], "risk": pending.get("risk")},
            what=pending["what"],
            requested_by=pending["by"],
            why=pending["why"],
            verify_timeout_seconds=float(pending["verifyTimeoutSeconds"]),
            created_at=now,
            expires_at=now + dt.timedelta(seconds=float(pending["approvalTimeoutSeconds"])),
        )
    )
    session.execute(
        sa.update(_RUNS)
        .where(_RUNS.c.id == loaded.run_id)
        .values(phase=RunPhase.WAITING_APPROVAL, updated_at=now)
    )
    log.info(
        "run waits for approval",
        extra={
            "run_id": str(loaded.run_id),
            "approval_id": str(approval_id),
            "what": pending["what"],
        },
    )
    return approval_id


class ResumeConflictError(Exception):
    """Another delivery claimed the step between our reads; roll back, do nothing."""


@dataclasses.dataclass(frozen=True)
class Resumption:
    """A claimed resume: the step (now Running, ours) and the decided approval."""

    loaded: Loaded
    approval: Mapping[str, Any]
    output: Mapping[str, Any]

    @property
    def approved(self) -> bool:
        return bool(self.approval["status"] == Status.EXECUTING)


def begin(
    session: Session,
    store: Store,
    approval_id: uuid.UUID,
    *,
    worker: str,
    now: dt.datetime,
    lease: float,
) -> Resumption | None:
    """Claim the paused step (and an approved change) for this worker; None: nothing to do."""
    row = session.execute(sa.select(_APPROVALS).where(_APPROVALS.c.id == approval_id)).first()
    if row is None:
        log.warning("resume: no such approval", extra={"approval_id": str(approval_id)})
        return None
    approval = dict(row._mapping)
    if approval["status"] not in (Status.APPROVED, Status.DENIED, Status.EXPIRED):
        log.info(
            "resume: nothing to do",
            extra={"approval_id": str(approval_id), "status": approval["status"]},
        )
        return None
    loaded = store.load(session, approval["run_id"], approval["step_index"])
    if (
        loaded is None
        or loaded.run_phase is not RunPhase.WAITING_APPROVAL
        or loaded.state.phase is not StepPhase.WAITING_APPROVAL
    ):
        return None
    if approval["status"] == Status.APPROVED:
        taken = session.execute(
            sa.update(_APPROVALS)
            .where(_APPROVALS.c.id == approval_id, _APPROVALS.c.status == Status.APPROVED)
            .values(status=Status.EXECUTING)
        )
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return None  # another delivery took it first; nothing written
        approval["status"] = Status.EXECUTING
    claimed = session.execute(
        sa.update(_STEPS)
        .where(_STEPS.c.id == loaded.state.id, _STEPS.c.phase == StepPhase.WAITING_APPROVAL)
        .values(
            phase=StepPhase.RUNNING,
            worker=worker,
            lease_until=now + dt.timedelta(seconds=lease),
        )
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        # The approval row may have been taken above: undo it with the transaction.
        raise ResumeConflictError(f"step of approval {approval_id} was claimed meanwhile")
    session.execute(
        sa.update(_RUNS)
        .where(_RUNS.c.id == loaded.run_id)
        .values(phase=RunPhase.RUNNING, current_step=loaded.step.name, updated_at=now)
    )
    output = session.execute(
        sa.select(_STEPS.c.output).where(_STEPS.c.id == loaded.state.id)
    ).scalar_one()
    running = dataclasses.replace(
        loaded,
        run_phase=RunPhase.RUNNING,
        state=StepState(
            loaded.state.id,
            loaded.state.index,
            loaded.state.name,
            StepPhase.RUNNING,
            loaded.state.attempts,
            worker,
            now + dt.timedelta(seconds=lease),
        ),
    )
    return Resumption(running, approval, dict(output or {}))


def finish_approval(
    session: Session,
    approval_id: uuid.UUID,
    status: Status,
    result: Mapping[str, Any],
    now: dt.datetime,
) -> None:
    session.execute(
        sa.update(_APPROVALS)
        .where(_APPROVALS.c.id == approval_id)
        .values(status=status, result=dict(result), completed_at=now)
    )


def interrupted(
    session: Session,
    store: Store,
    found: tuple[uuid.UUID, uuid.UUID, int],
    *,
    now: dt.datetime,
    backoff: outcomes.Backoff,
    traces: str | None = None,
) -> tuple[outcomes.Next, list[Any]] | None:
    """Resolve an approved change whose worker was lost while making it (recovery).

    ``found``: (approval, run, step index) from ``store.interrupted_changes``. Nobody
    knows whether the change was made, so it is neither made again (the approval was
    for one attempt, and a second delete or restart is a new decision) nor reported as
    done: the approval becomes ``unknown``, and the step fails with what happened and
    what to check, its result kept with the approval's end and ``escalate``. The run
    then ends as any failed step ends it (or goes on with ``continueOnError``).
    ``traces``: what the cluster shows of the change now (``lost_change_traces``),
    added to what the person is told. Returns the decision and the entries to
    publish; None when the step moved on.
    """
    approval_id, run_id, index = found
    loaded = store.load(session, run_id, index)
    row = session.execute(sa.select(_APPROVALS).where(_APPROVALS.c.id == approval_id)).first()
    if loaded is None or row is None or loaded.state.phase is not StepPhase.RUNNING:
        return None
    approval = dict(row._mapping)
    why = (
        f"the engine worker {loaded.state.worker} was lost while making the approved change "
        f"{approval['what']} (approved by {approval['decided_by']}): whether it was made is "
        "unknown, and it was not tried again; check the workload before deciding anything else"
    )
    if traces:
        why += f" (the cluster shows: {traces})"
    output = dict(
        session.execute(
            sa.select(_STEPS.c.output).where(_STEPS.c.id == loaded.state.id)
        ).scalar_one()
        or {}
    )
    pending = {
        k: v
        for k, v in (output.pop("pendingApproval", None) or {}).items()
        if k not in ("approvalTimeoutSeconds", "verifyTimeoutSeconds")
    }
    output["actionsTaken"] = [
        *(output.get("actionsTaken") or []),
        {**pending, "at": now.isoformat(), "decision": "unknown", "why": why},
    ]
    output["approval"] = {
        "id": str(approval_id),
        "status": Status.UNKNOWN.value,
        "decidedBy": approval["decided_by"],
        "comment": approval["comment"],
        "what": approval["what"],
        "traces": traces,
    }
    output.update(canAutoFix=False, escalate=True, escalationNotes=why)
    outcome = outcomes.Outcome(ok=False, output=output, error=why)
    decision = outcomes.after_attempt(
        loaded.workflow,
        loaded.step,
        attempts=loaded.state.attempts,
        outcome=outcome,
        phases=loaded.phases,
        backoff=backoff,
    )
    # The step first (a compare-and-set on the lost worker's attempt): if it moved on,
    # nothing is written at all.
    tasks = store.record(
        session,
        loaded,
        attempt=loaded.state.attempts,
        worker=loaded.state.worker or "",
        outcome=outcome,
        decision=decision,
        now=now,
    )
    if tasks is None:
        return None
    session.execute(
        sa.update(_APPROVALS)
        .where(_APPROVALS.c.id == approval_id, _APPROVALS.c.status == Status.EXECUTING)
        .values(
            status=Status.UNKNOWN,
            result={"executed": None, "verified": False, "error": why, "traces": traces},
            completed_at=now,
        )
    )
    log.error(
        "approved change interrupted: its worker was lost",
        extra={
            "approval_id": str(approval_id),
            "run_id": str(run_id),
            "what": approval["what"],
            "worker": loaded.state.worker,
        },
    )
    return decision, tasks


def lost_changes(
    session: Session, approval_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, remediation.Request, dt.datetime]]:
    """The approved changes ``approval_ids`` as ``lost_change_traces`` reads them:
    (approval, the request, when it was approved)."""
    if not approval_ids:
        return []
    rows = session.execute(
        sa.select(
            _APPROVALS.c.id,
            _APPROVALS.c.request,
            _APPROVALS.c.created_at,
            _APPROVALS.c.decided_at,
        ).where(_APPROVALS.c.id.in_(approval_ids))
    ).all()
    return [
        (
            row.id,
            remediation.Request(**{k: row.request.get(k) for k in _REQUEST_FIELDS}),
            row.decided_at or row.created_at,
        )
        for row in rows
    ]


def lost_change_traces(
    changes: list[tuple[uuid.UUID, remediation.Request, dt.datetime]], api_url: str
) -> dict[uuid.UUID, str]:
    """For approved changes whose worker was lost (``lost_changes``): what the cluster
    shows of each now, by approval id.

    Called before ``interrupted`` records them, outside any transaction (API calls,
    each bounded by the client's timeout). Only reads: nothing is made again here.
    """
    from services.engine.tools import remediate
    from services.engine.tools.kubeapi import KubeApi, NoClusterError

    if not changes:
        return {}
    try:
        api = KubeApi.connect(api_url)
    except NoClusterError as exc:
        return {approval_id: f"the cluster could not be read: {exc}" for approval_id, *_ in changes}
    try:
        return {
            approval_id: remediate.traces_in(api, request, since)
            for approval_id, request, since in changes
        }
    finally:
        api.close()


# -- the change and its verification ------------------------------------------------------


def apply_and_verify(
    request: Mapping[str, Any],
    tools: Any,
    *,
    actor: str,
    approved_by: str,
    verify_timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Make the approved change and watch its workload; returns what happened.

    ``tools``: the step's ``ToolSettings``. The policy is asked again (approval now
    given): the Workflow's snapshot is the one that asked, so only a bug would make it
    refuse, and then nothing is done.
    """
    from services.engine.tools import kubectl, remediate
    from services.engine.tools.kubeapi import NoClusterError
    from services.engine.tools.registries import ToolContext
    from shared import kube

    wanted = remediation.Request(**{k: request.get(k) for k in _REQUEST_FIELDS})  # type: ignore[arg-type]
    ctx = ToolContext(settings=tools, actor=actor, requester=approved_by)
    decision = remediation.decide(wanted, tools.remediation, approval_required=False)
    if decision.verdict is not remediation.Verdict.ALLOWED:
        entry = remediate.record(ctx, wanted, "refused", decision.why)
        return {"executed": False, "verified": False, "error": decision.why, "entry": entry}
    try:
        api = kubectl.connect(ctx)
        owner = _owner(api, wanted)
        done = remediate.apply(api, wanted, remediate._now(ctx))
    except (NoClusterError, kube.KubeError) as exc:
        entry = remediate.record(ctx, wanted, "failed", str(exc))
        ctx.close()
        return {"executed": False, "verified": False, "error": str(exc), "entry": entry}
    entry = remediate.record(ctx, wanted, "executed", f"approved by {approved_by}")
    try:
        verification = _verify(api, owner, verify_timeout, sleep)
    finally:
        ctx.close()
    return {
        "executed": True,
        "done": done,
        "verified": verification["healthy"],
        "verification": verification,
        "entry": entry,
    }


_REQUEST_FIELDS = ("action", "kind", "name", "namespace", "replicas", "reason")


def _owner(api: Any, request: remediation.Request) -> tuple[str, str | None, str]:
    """The object whose health says whether the change worked (read before a delete)."""
    if request.kind == "node":
        return ("node", None, request.name)
    if request.kind != "pod":
        return (request.kind, request.namespace, request.name)
    pod = api.get("pod", request.namespace, request.name)
    kind, name = "pod", request.name
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        kind, name = str(ref.get("kind", "")).lower(), str(ref.get("name", ""))
        break
    if kind == "replicaset":
        rs = api.get("replicaset", request.namespace, name)
        for ref in (rs.get("metadata") or {}).get("ownerReferences") or []:
            if str(ref.get("kind", "")).lower() == "deployment":
                return ("deployment", request.namespace, str(ref.get("name")))
    return (kind, request.namespace, name)


def healthy(kind: str, obj: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether a workload (or node) shows the change settled and working, and why not."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False, f"the controller has not seen generation {generation} yet"
    if kind == "node":
        return bool(spec.get("unschedulable")), "cordoned" if spec.get(
            "unschedulable"
        ) else "schedulable"
    if kind == "daemonset":
        want = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        return ready == want and updated == want, f"{ready}/{want} ready, {updated} updated"
    if kind == "pod":
        ok = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        return ok, "ready" if ok else "not ready"
    want = int(spec.get("replicas", 1) or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas", ready) or 0)
    updated = int(status.get("updatedReplicas", ready) or 0)
    ok = ready >= want and available >= want and updated >= want
    return ok, f"{ready}/{want} ready, {available} available, {updated} updated"


def _verify(
    api: Any, owner: tuple[str, str | None, str], timeout: float, sleep: Callable[[float], None]
) -> dict[str, Any]:
    kind, namespace, name = owner
    where = f"{kind} {namespace + '/' if namespace else ''}{name}"
    deadline = time.monotonic() + timeout
    reads, why = 0, ""
    while True:
        reads += 1
        try:
            ok, why = healthy(kind, api.get(kind, namespace, name))
        except Exception as exc:  # an API hiccup while waiting is not the change failing
            ok, why = False, f"could not read it: {exc}"
        if ok:
            return {"object": where, "healthy": True, "detail": why, "reads": reads}
        if time.monotonic() + VERIFY_INTERVAL > deadline:
            return {
                "object": where,
                "healthy": False,
                "detail": f"not healthy after {timeout:g}s: {why}",
                "reads": reads,
            }
        sleep(VERIFY_INTERVAL)


def result_after(resumption: Resumption, happened: Mapping[str, Any] | None) -> dict[str, Any]:
    """The step's result with the approval's outcome (and the change's) folded in."""
    approval = resumption.approval
    result = {k: v for k, v in resumption.output.items() if k != "pendingApproval"}
    decided = {
        "id": str(approval["id"]),
        "status": str(approval["status"]) if happened is None else "",
        "decidedBy": approval["decided_by"],
        "comment": approval["comment"],
        "what": approval["what"],
    }
    actions = list(result.get("actionsTaken") or [])
    if happened is None:
        verdict = "denied" if approval["status"] == Status.DENIED else "expired"
        decided["status"] = verdict
        actions.append(
            {
                **(resumption.output.get("pendingApproval") or {}),
                "decision": verdict,
                "why": (
                    f"denied by {approval['decided_by']}"
                    + (f": {approval['comment']}" if approval["comment"] else "")
                    if verdict == "denied"
                    else "nobody decided before the approval timed out"
                ),
            }
        )
    else:
        decided["status"] = "executed" if happened["executed"] else "failed"
        actions.append(happened["entry"])
        result["verification"] = happened.get("verification")
        result["canAutoFix"] = bool(happened.get("verified"))
    for key in ("approvalTimeoutSeconds", "verifyTimeoutSeconds"):
        decided.pop(key, None)
    result["actionsTaken"] = actions
    result["approval"] = decided
    return result
