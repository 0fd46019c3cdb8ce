"""``remediate``: the only tool that changes the cluster, and only through the policy.

Offered only to a step that names it in ``tools``. Every request is judged by
``core.remediation.decide`` first; the decision (who, when, what, why, and the
verdict) is appended to ``ctx.decisions`` whatever it is, so the step's result shows
refused attempts as clearly as executed ones. A refused or approval-requiring
request changes nothing and says so (``denied`` / ``approval_required``).

The changes themselves are the smallest the API offers: a merge patch of the pod
template's ``restartedAt`` annotation (what ``kubectl rollout restart`` does), a
pod delete, a patch of the ``scale`` subresource, ``spec.unschedulable`` on a node.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from services.engine.core import remediation
from services.engine.tools import kubectl, registries
from services.engine.tools.kubeapi import KubeApi, NoClusterError
from services.engine.tools.registries import Status, ToolContext, ToolResult


def _now(ctx: ToolContext) -> str:
    return dt.datetime.fromtimestamp(ctx.clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(
    ctx: ToolContext, request: remediation.Request, verdict: str, why: str
) -> dict[str, Any]:
    entry = {
        "at": _now(ctx),
        "by": ctx.actor,
        "requestedBy": ctx.requester,
        "what": request.describe(),
        "request": request.as_dict(),
        "decision": verdict,
        "why": why,
        "risk": remediation.risk(request.action),
    }
    ctx.decisions.append(entry)
    return entry


def apply(api: KubeApi, request: remediation.Request, at: str) -> str:
    """Make the change; returns what was done. Raises ``kube`` errors."""
    kind, name, namespace = request.kind.lower(), request.name, request.namespace
    if request.action == "restart-rollout":
        patch = {
            "spec": {
                "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}
            }
        }
        api.patch(kind, namespace, name, patch)
        return f"restarted the rollout of {kind} {namespace}/{name}"
    if request.action == "delete-pod":
        api.delete("pod", namespace, name)
        return f"deleted pod {namespace}/{name} (its controller recreates it)"
    if request.action == "scale":
        api.patch(
            kind, namespace, name, {"spec": {"replicas": request.replicas}}, subresource="scale"
        )
        return f"scaled {kind} {namespace}/{name} to {request.replicas} replicas"
    if request.action == "cordon":
        api.patch("node", None, name, {"spec": {"unschedulable": True}})
        return f"cordoned node {name}"
    raise registries.ToolError(f"no way to apply {request.action!r}")  # decide() refuses these


def traces_in(api: KubeApi, request: remediation.Request, since: dt.datetime) -> str:
    """What the cluster shows now of a change approved at ``since`` whose worker was
    lost while making it (``remediation.traces``); a sentence saying why when the
    object cannot be read."""
    from shared import kube  # imports the kubernetes client: only when used

    namespace = None if request.kind == "node" else request.namespace
    try:
        found: Mapping[str, Any] | None = api.get(request.kind, namespace, request.name)
    except kube.ApiPermanentError as exc:
        if exc.status != 404:
            return f"the cluster could not be read: {exc}"
        found = None
    except kube.KubeError as exc:
        return f"the cluster could not be read: {exc}"
    return remediation.traces(request, found, since)


@registries.register()
class Remediate(registries.Tool):
    name = "remediate"
    mutating = True
    description = (
        "Propose a change to the cluster. action is one of restart-rollout (deployment, "
        "statefulset, daemonset), delete-pod, scale (deployment, statefulset; replicas), "
        "cordon (node). A policy decides: the change is refused, waits for a human's "
        "approval, or is made. Say why in reason."
    )
    # action is a free string on purpose: the policy must see (and record) requests
    # outside its list instead of the argument parser dropping them unrecorded.
    parameters = registries.parameters(
        {
            "action": {"type": "string", "minLength": 1, "maxLength": 63},
            "kind": {"type": "string", "maxLength": 63},
            "name": {"type": "string", "maxLength": 253},
            "namespace": {"type": "string", "maxLength": 63},
            "replicas": {"type": "integer"},
            "reason": {"type": "string", "maxLength": 2000},
        },
        required=["action", "name"],
    )

    def _invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        request = remediation.Request(
            action=str(arguments["action"]).strip().lower(),
            kind=str(arguments.get("kind") or _default_kind(str(arguments["action"])))
            .strip()
            .lower(),
            name=str(arguments["name"]),
            namespace=str(arguments.get("namespace") or ""),
            replicas=arguments.get("replicas"),
            reason=str(arguments.get("reason") or ""),
        )
        if not ctx.remediation_allowed:
            entry = record(ctx, request, "refused", "this step does not allow changes")
            return ToolResult(Status.DENIED, f"refused: {entry['why']}", entry)
        decision = remediation.decide(
            request, ctx.settings.remediation, approval_required=ctx.approval_required
        )
        if decision.verdict is remediation.Verdict.REFUSED:
            entry = record(ctx, request, "refused", decision.why)
            return ToolResult(
                Status.DENIED, f"refused: {request.describe()}: {decision.why}", entry
            )
        if decision.verdict is remediation.Verdict.APPROVAL_REQUIRED:
            entry = record(ctx, request, "approval_required", decision.why)
            return ToolResult(
                Status.APPROVAL_REQUIRED,
                f"{request.describe()} needs a human's approval; it was recorded and not made. "
                "Put it in your recommendations with requiresApproval true.",
                entry,
            )
        from shared import kube  # imports the kubernetes client: only when used

        try:
            done = apply(kubectl.connect(ctx), request, _now(ctx))
        except NoClusterError as exc:
            entry = record(ctx, request, "failed", str(exc))
            raise registries.ToolUnavailableError(str(exc)) from exc
        except kube.ApiPermanentError as exc:
            entry = record(ctx, request, "failed", str(exc))
            if exc.status in (401, 403):
                raise registries.ToolDeniedError(f"the Kubernetes API refused: {exc}") from exc
            raise registries.ToolError(str(exc)) from exc
        except kube.ApiTemporaryError as exc:
            record(ctx, request, "failed", str(exc))
            raise registries.ToolUnavailableError(str(exc)) from exc
        entry = record(ctx, request, "executed", decision.why)
        return ToolResult(Status.OK, done, entry)


def _default_kind(action: str) -> str:
    return {"delete-pod": "pod", "cordon": "node"}.get(action.strip().lower(), "deployment")
