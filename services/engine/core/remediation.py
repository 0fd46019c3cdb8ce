"""The remediation policy: may this change to the cluster happen, need a human, or never?

Pure: a request and a policy in, a :class:`Decision` out. The ``remediate`` tool asks
this before it touches anything, and records every answer (who, when, what, why).

The requested ``action`` is a free string on purpose: a model (or text a model read
in an alert) may ask for ``delete-namespace``; an enum in the tool's parameters would
reject that before the policy saw it, and the attempt would leave no record. Here it
is refused, and the refusal is the record.

Refused always, whatever the Workflow says: deleting a namespace or a node, anything
in ``kube-system`` (and the other protected namespaces), and any action that is not
one of :data:`ACTIONS`. The actions the Workflow lists need approval while the step
has ``approvalRequired: true`` (the default), and are allowed otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

# What remediation can ever do, and the kinds each action applies to.
ACTIONS: Mapping[str, frozenset[str]] = {
    "restart-rollout": frozenset({"deployment", "statefulset", "daemonset"}),
    "delete-pod": frozenset({"pod"}),
    "scale": frozenset({"deployment", "statefulset"}),
    "cordon": frozenset({"node"}),
}
# How much a change hurts if it is the wrong one, as whoever approves it weighs it: a
# pod its controller recreates, then every pod of one workload (a rolling restart, a
# new replica count), then every workload on a node (cordon). Unknown actions are
# refused anyway; they count as high.
RISKS: Mapping[str, str] = {
    "delete-pod": "low",
    "restart-rollout": "medium",
    "scale": "medium",
    "cordon": "high",
}
# Namespaces no policy can open: the cluster's own machinery.
ALWAYS_PROTECTED = frozenset({"kube-system"})
_NEVER = ("namespace", "node")


class Verdict(enum.StrEnum):
    REFUSED = "refused"
    APPROVAL_REQUIRED = "approval_required"
    ALLOWED = "allowed"


@dataclasses.dataclass(frozen=True)
class RemediationPolicy:
    """The Workflow's ``runtime.tools.remediation``, normalized."""

    actions: frozenset[str] = frozenset(ACTIONS)
    # Namespaces remediation may touch; empty means any but the protected ones.
    namespaces: frozenset[str] = frozenset()
    protected_namespaces: frozenset[str] = ALWAYS_PROTECTED
    max_replicas: int = 20


@dataclasses.dataclass(frozen=True)
class Request:
    action: str
    kind: str
    name: str
    namespace: str = ""
    replicas: int | None = None
    reason: str = ""

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        extra = f" to {self.replicas} replicas" if self.replicas is not None else ""
        return f"{self.action} {self.kind} {where}{self.name}{extra}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: Verdict
    why: str


def risk(action: str) -> str:
    """``low``, ``medium`` or ``high``: what the change can break if it is wrong."""
    return RISKS.get(action.strip().lower(), "high")


def decide(request: Request, policy: RemediationPolicy, *, approval_required: bool) -> Decision:
    """The policy's answer to ``request``; refusals name the rule that refused."""
    action = request.action.strip().lower()
    kind = request.kind.strip().lower()
    if action.startswith("delete") and (kind in _NEVER or any(w in action for w in _NEVER)):
        return Decision(Verdict.REFUSED, "deleting a namespace or a node is never allowed")
    if action not in ACTIONS:
        return Decision(
            Verdict.REFUSED,
            f"{request.action!r} is not a remediation action; known: {', '.join(sorted(ACTIONS))}",
        )
    if action not in policy.actions:
        return Decision(Verdict.REFUSED, f"the Workflow's policy does not list {action!r}")
    if kind not in ACTIONS[action]:
        return Decision(
            Verdict.REFUSED,
            f"{action} applies to {', '.join(sorted(ACTIONS[action]))}, not {kind or 'nothing'}",
        )
    if kind != "node":
        namespace = request.namespace
        if not namespace:
            return Decision(Verdict.REFUSED, f"{action} needs a namespace")
        if namespace in ALWAYS_PROTECTED | policy.protected_namespaces:
            return Decision(Verdict.REFUSED, f"namespace {namespace!r} is protected")
        if policy.namespaces and namespace not in policy.namespaces:
            return Decision(
                Verdict.REFUSED, f"the Workflow's policy does not cover namespace {namespace!r}"
            )
    if action == "scale":
        replicas = request.replicas
        if replicas is None or not 1 <= replicas <= policy.max_replicas:
            return Decision(
                Verdict.REFUSED,
                f"scale needs replicas between 1 and {policy.max_replicas}, got {replicas}",
            )
    if approval_required:
        return Decision(Verdict.APPROVAL_REQUIRED, "the step requires approval for changes")
    return Decision(Verdict.ALLOWED, "listed in the Workflow's policy and no approval required")


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def traces(request: Request, obj: Mapping[str, Any] | None, since: dt.datetime) -> str:
    """What the object a change targets shows of it, read after its worker was lost.

    ``obj``: the object as the API returns it now (for ``scale``, the workload), None
    when it is not found; ``since``: when the change was approved (it cannot have
    been made before). One sentence for a person, who decides: the same state can
    come from this change or from someone else's (a pod deleted by its controller, a
    node cordoned by hand), and the sentence says which reading is certain.
    """
    metadata: Mapping[str, Any] = (obj or {}).get("metadata") or {}
    spec: Mapping[str, Any] = (obj or {}).get("spec") or {}
    what = f"{request.kind} {request.namespace + '/' if request.namespace else ''}{request.name}"
    if obj is None:
        if request.action == "delete-pod":
            return f"{what} is gone: deleted, by this change or by its controller"
        return f"{what} is not found"
    if request.action == "restart-rollout":
        annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations")
        stamp = _instant((annotations or {}).get(RESTARTED_AT))
        # restartedAt has whole seconds; the approval, microseconds.
        if stamp is not None and stamp >= since.replace(microsecond=0):
            return f"{what} was restarted at {stamp:%Y-%m-%dT%H:%M:%SZ}, after the approval"
        return f"{what} shows no restart since the approval"
    if request.action == "delete-pod":
        created = _instant(metadata.get("creationTimestamp"))
        if created is not None and created < since.replace(microsecond=0):
            return f"{what} still exists, created before the approval: it was not deleted"
        return f"{what} exists, created after the approval (a replacement, or never deleted)"
    if request.action == "scale":
        replicas = spec.get("replicas")
        if replicas == request.replicas:
            return f"{what} asks for {replicas} replicas, the count approved"
        return f"{what} asks for {replicas} replicas, not the {request.replicas} approved"
    if request.action == "cordon":
        if spec.get("unschedulable"):
            return f"{what} is cordoned (by this change, or it already was)"
        return f"{what} is not cordoned"
    return f"{what}: nothing to read for {request.action!r}"


def _instant(value: Any) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
