"""Rules that turn evidence into a diagnosis, without a model. Pure.

The rule-based investigator collects evidence with the tools (pods and their
container states, previous logs, events, usage against limits, PromQL signals, HTTP
checks) and asks :func:`diagnose` what it means. Each rule looks for a sign an
on-call engineer would trust, in priority order, and names its evidence:

1. a container whose last state is ``OOMKilled``                → ``oom``
2. ``ImagePullBackOff`` / ``ErrImagePull`` / bad image name      → ``image``
3. ``CreateContainerConfigError`` (missing Secret/ConfigMap key) → ``config``
4. a pod evicted for node memory, a node under MemoryPressure    → ``memory``
5. ``CrashLoopBackOff`` (or repeated error exits); with an error
   in the previous container's log it is an application error   → ``crashloop``
6. CPU at its limit (metrics API or a PromQL CPU signal)         → ``cpu``
7. memory near its limit (metrics API or a PromQL memory signal) → ``memory``
8. connections refused or timing out, a Service with no ready
   endpoints, pod network events                                → ``network``
9. error ratio or latency over threshold, HTTP 5xx, fewer
   available replicas than desired                               → ``degradation``
10. nothing conclusive                                           → ``unknown`` (escalate)

The alert's name is not evidence: the same alert covers different causes, so it
only chooses which evidence to collect (the investigation template), never the
category. Signs found by lower rules are kept as findings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from services.engine.core import objects, reduction

IMAGE_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
)
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
NETWORK_EVENTS = frozenset({"FailedCreatePodSandBox", "NetworkNotReady", "DNSConfigForming"})
_NETWORK_TEXT = re.compile(
    r"connection refused|i/o timeout|no such host|network is unreachable|"
    r"connection reset|timed out|name resolution|no route to host",
    re.IGNORECASE,
)
# Usage at or above this share of the limit counts as "at the limit".
AT_LIMIT = 0.9


@dataclasses.dataclass
class Evidence:
    pods: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    # {"pod", "namespace", "container", "previous", "text"}
    logs: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    events: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    # objects.usage_rows
    usage: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    nodes: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    # (kind, object)
    workloads: list[tuple[str, Mapping[str, Any]]] = dataclasses.field(default_factory=list)
    endpoints: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    # {"signal": cpu|memory|errors|latency, "query", "value", "threshold", "labels"}
    signals: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    # {"url", "status_code"} or {"url", "error"}
    http: list[Mapping[str, Any]] = dataclasses.field(default_factory=list)
    # What could not be checked, and why.
    unchecked: list[str] = dataclasses.field(default_factory=list)

    def empty(self) -> bool:
        return not any(
            (
                self.pods,
                self.logs,
                self.events,
                self.usage,
                self.nodes,
                self.workloads,
                self.endpoints,
                self.signals,
                self.http,
            )
        )


@dataclasses.dataclass(frozen=True)
class Sign:
    category: str
    confidence: float
    title: str
    detail: str
    evidence: str
    root_cause: str
    recommendations: tuple[Mapping[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    category: str
    confidence: float
    summary: str
    root_cause: str
    findings: list[dict[str, str]]
    recommendations: list[dict[str, Any]]
    escalate: bool
    escalation_notes: str


def _rec(action: str, rationale: str, risk: str = "low", approval: bool = True) -> dict[str, Any]:
    return {"action": action, "rationale": rationale, "risk": risk, "requiresApproval": approval}


def _containers(evidence: Evidence) -> list[objects.ContainerState]:
    return [c for pod in evidence.pods for c in objects.containers(pod)]


def _oom(evidence: Evidence) -> list[Sign]:
    signs = []
    for c in _containers(evidence):
        if "OOMKilled" in (c.last_reason, c.reason):
            limit = c.limits.get("memory", "no limit")
            signs.append(
                Sign(
                    "oom",
                    0.9,
                    f"container {c.name} of pod {c.namespace}/{c.pod} was OOMKilled",
                    f"restarted {c.restarts} times; memory limit {limit}",
                    c.line(),
                    f"container {c.name} exceeds its memory limit ({limit}) and is killed "
                    "by the kernel",
                    (
                        _rec(
                            f"raise the memory limit of {c.name} (now {limit}) or find what grows",
                            "the container is killed for exceeding its limit",
                            "medium",
                        ),
                    ),
                )
            )
    return signs


def _waiting(evidence: Evidence, reasons: frozenset[str], category: str) -> list[Sign]:
    signs = []
    for c in _containers(evidence):
        if c.state == "waiting" and c.reason in reasons:
            if category == "image":
                cause = f"the image of container {c.name} cannot be pulled ({c.reason})"
                rec = _rec(
                    "check the image name and tag, and the registry credentials", cause, "low"
                )
            else:
                cause = f"container {c.name} cannot be created from its configuration ({c.reason})"
                rec = _rec(
                    "create the missing Secret/ConfigMap (or key) it references", cause, "low"
                )
            signs.append(
                Sign(
                    category,
                    0.9 if category == "image" else 0.85,
                    f"pod {c.namespace}/{c.pod}: {c.reason}",
                    c.message,
                    c.line(),
                    cause,
                    (rec,),
                )
            )
    return signs


def _evicted_for_memory(evidence: Evidence) -> list[Sign]:
    signs = []
    for pod in evidence.pods:
        status = pod.get("status") or {}
        message = str(status.get("message") or "")
        if status.get("reason") == "Evicted" and "memory" in message.lower():
            signs.append(
                Sign(
                    "memory",
                    0.8,
                    f"pod {objects.name_of(pod)} was evicted for node memory",
                    message[:300],
                    objects.pod_summary(pod),
                    "the node ran low on memory and evicted the pod",
                    (
                        _rec(
                            "look at what else uses memory on the node; set requests that "
                            "match usage",
                            "evictions follow node memory pressure",
                            "low",
                        ),
                    ),
                )
            )
    for node in evidence.nodes:
        for condition in (node.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "MemoryPressure" and condition.get("status") == "True":
                signs.append(
                    Sign(
                        "memory",
                        0.7,
                        f"node {objects.name_of(node)} is under memory pressure",
                        str(condition.get("message") or ""),
                        objects.node_summary(node),
                        "the node is under memory pressure",
                        (),
                    )
                )
    return signs


def _crashloop(evidence: Evidence) -> list[Sign]:
    signs = []
    for c in _containers(evidence):
        looping = (c.state == "waiting" and c.reason == "CrashLoopBackOff") or (
            c.restarts >= 3 and c.last_reason in ("Error", "Completed", "StartError")
        )
        if not looping:
            continue
        errors: list[str] = []
        for log in evidence.logs:
            if (
                log.get("pod") == c.pod
                and log.get("previous")
                and log.get("container") in ("", c.name, None)
            ):
                errors.extend(reduction.error_lines(str(log.get("text") or ""), limit=5))
        exit_code = c.last_exit_code
        if errors:
            signs.append(
                Sign(
                    "crashloop",
                    0.85,
                    f"container {c.name} of pod {c.namespace}/{c.pod} crashes with an "
                    "application error",
                    f"exit code {exit_code}; last error: {errors[-1]}",
                    "\n".join([c.line(), *errors]),
                    f"application error in {c.name}: {errors[-1]}",
                    (
                        _rec(
                            f"fix the error in {c.name} or roll back to the last working version",
                            "the previous container logged this error before exiting",
                            "medium",
                        ),
                    ),
                )
            )
        else:
            signs.append(
                Sign(
                    "crashloop",
                    0.6,
                    f"container {c.name} of pod {c.namespace}/{c.pod} is in a crash loop",
                    f"exit code {exit_code}; the previous log shows no error line",
                    c.line(),
                    f"{c.name} exits repeatedly (exit code {exit_code})",
                    (
                        _rec(
                            "read the full previous log and the container's command/probes",
                            "the cause is not in the log lines read",
                            "low",
                        ),
                    ),
                )
            )
    return signs


def _signal(evidence: Evidence, name: str) -> list[Mapping[str, Any]]:
    return [
        s
        for s in evidence.signals
        if s.get("signal") == name
        and isinstance(s.get("value"), int | float)
        and s["value"] == s["value"]
        and s["value"] >= float(s.get("threshold", 0))
    ]


def _usage(evidence: Evidence, resource: str) -> list[Sign]:
    signs = []
    used_key, limit_key = (
        ("cpu_m", "cpu_limit_m") if resource == "cpu" else ("memory", "memory_limit")
    )
    for row in evidence.usage:
        used, limit = row.get(used_key), row.get(limit_key)
        if (
            isinstance(used, int | float)
            and isinstance(limit, int | float)
            and limit > 0
            and used >= AT_LIMIT * limit
        ):
            shown = objects.usage_line(row)
            signs.append(
                Sign(
                    resource,
                    0.8 if resource == "cpu" else 0.75,
                    f"container {row.get('container')} of pod "
                    f"{row.get('namespace')}/{row.get('pod')} "
                    f"uses {100 * used / limit:.0f}% of its {resource} limit",
                    shown,
                    shown,
                    f"{resource} at its limit in {row.get('container')}",
                    (
                        _rec(
                            f"raise the {resource} limit or scale out",
                            f"usage is at the {resource} limit",
                            "medium",
                        ),
                    ),
                )
            )
    for s in _signal(evidence, resource):
        signs.append(
            Sign(
                resource,
                0.75,
                f"PromQL {resource} signal over threshold",
                f"{s.get('value'):.3g} >= {s.get('threshold')}",
                f"{s.get('query')} {s.get('labels', {})}",
                f"{resource} saturation measured by Prometheus",
                (
                    _rec(
                        f"raise the {resource} limit or scale out",
                        "Prometheus shows saturation",
                        "medium",
                    ),
                ),
            )
        )
    return signs


def _network(evidence: Evidence) -> list[Sign]:
    signs = []
    for check in evidence.http:
        error = str(check.get("error") or "")
        if error and _NETWORK_TEXT.search(error):
            signs.append(
                Sign(
                    "network",
                    0.8,
                    f"cannot connect to {check.get('url')}",
                    error[:300],
                    error[:300],
                    f"connections to {check.get('url')} fail: {error[:120]}",
                    (
                        _rec(
                            "check the Service, its endpoints and NetworkPolicies on the path",
                            "the endpoint does not accept connections",
                            "low",
                        ),
                    ),
                )
            )
    for endpoints in evidence.endpoints:
        ready, not_ready = objects.endpoint_counts(endpoints)
        if ready == 0:
            signs.append(
                Sign(
                    "network",
                    0.7,
                    f"service {objects.name_of(endpoints)} has no ready endpoints",
                    f"{not_ready} not ready",
                    objects.endpoints_summary(endpoints),
                    "the Service has no ready backends to send traffic to",
                    (
                        _rec(
                            "check why the selected pods are not ready (readiness probes, "
                            "selector)",
                            "traffic has nowhere to go",
                            "low",
                        ),
                    ),
                )
            )
    for event in evidence.events:
        if event.get("reason") in NETWORK_EVENTS:
            signs.append(
                Sign(
                    "network",
                    0.7,
                    f"pod network event {event.get('reason')}",
                    str(event.get("message") or "")[:300],
                    objects.event_line(event),
                    "the pod network is failing on the node",
                    (),
                )
            )
    for log in evidence.logs:
        if not log.get("previous"):
            lines = [
                line
                for line in reduction.error_lines(str(log.get("text") or ""), 20)
                if _NETWORK_TEXT.search(line)
            ]
            if lines:
                signs.append(
                    Sign(
                        "network",
                        0.65,
                        f"pod {log.get('pod')} logs connection failures",
                        lines[-1],
                        "\n".join(lines[-5:]),
                        f"{log.get('pod')} cannot reach a dependency: {lines[-1][:120]}",
                        (
                            _rec(
                                "check the dependency it calls and the network path to it",
                                "the application logs failed connections",
                                "low",
                            ),
                        ),
                    )
                )
    return signs


def _degradation(evidence: Evidence) -> list[Sign]:
    signs = []
    for name in ("errors", "latency"):
        for s in _signal(evidence, name):
            signs.append(
                Sign(
                    "degradation",
                    0.75,
                    f"{name} over threshold",
                    f"{s.get('value'):.3g} >= {s.get('threshold')}",
                    f"{s.get('query')} {s.get('labels', {})}",
                    f"the service's {name} are above threshold",
                    (
                        _rec(
                            "look at recent deploys and dependencies; roll back if one coincides",
                            f"{name} degraded",
                            "medium",
                        ),
                    ),
                )
            )
    for check in evidence.http:
        code = check.get("status_code")
        if isinstance(code, int) and code >= 500:
            signs.append(
                Sign(
                    "degradation",
                    0.7,
                    f"{check.get('url')} answers HTTP {code}",
                    "",
                    f"HTTP {code}",
                    f"the service answers {code}",
                    (),
                )
            )
    for kind, workload in evidence.workloads:
        spec, status = workload.get("spec") or {}, workload.get("status") or {}
        desired = spec.get("replicas")
        available = status.get("availableReplicas") or 0
        if isinstance(desired, int) and available < desired:
            signs.append(
                Sign(
                    "degradation",
                    0.55,
                    f"{kind} {objects.name_of(workload)} has {available}/{desired} available",
                    "",
                    objects.workload_summary(kind, workload),
                    f"{kind} runs below its desired replicas",
                    (),
                )
            )
    return signs


RULES = (
    _oom,
    lambda e: _waiting(e, IMAGE_REASONS, "image"),
    lambda e: _waiting(e, CONFIG_REASONS, "config"),
    _evicted_for_memory,
    _crashloop,
    lambda e: _usage(e, "cpu"),
    lambda e: _usage(e, "memory"),
    _network,
    _degradation,
)


def diagnose(evidence: Evidence) -> Diagnosis:
    signs: list[Sign] = []
    for rule in RULES:
        signs.extend(rule(evidence))
    unchecked = list(evidence.unchecked)
    if not signs:
        if evidence.empty():
            summary = "Nothing could be checked: " + (
                "; ".join(unchecked) if unchecked else "no evidence collected."
            )
            notes = "No evidence was collected; a human has to look. " + "; ".join(unchecked)
        else:
            summary = "The evidence collected shows no known cause."
            notes = "No rule matched the evidence; a human has to look."
            if unchecked:
                summary += " Not checked: " + "; ".join(unchecked)
        return Diagnosis("unknown", 0.2, summary, "", [], [], True, notes.strip())
    first = signs[0]
    confidence = first.confidence
    if unchecked:
        confidence = max(0.3, confidence - 0.1)
    findings = [
        {"title": s.title, "detail": s.detail, "evidence": s.evidence[:4000]}
        for s in _unique(signs)
    ]
    recommendations: list[dict[str, Any]] = []
    for s in signs:
        for rec in s.recommendations:
            if rec not in recommendations:
                recommendations.append(dict(rec))
    summary = f"{first.category}: {first.root_cause}."
    if len(findings) > 1:
        summary += f" {len(findings) - 1} other sign(s) found."
    if unchecked:
        summary += " Not checked: " + "; ".join(unchecked)
    escalate = confidence < 0.6
    notes = "Low confidence: check the findings." if escalate else ""
    return Diagnosis(
        first.category,
        round(confidence, 2),
        summary,
        first.root_cause,
        findings,
        recommendations[:20],
        escalate,
        notes,
    )


def _unique(signs: Sequence[Sign]) -> list[Sign]:
    seen: set[str] = set()
    kept = []
    for sign in signs:
        if sign.title not in seen:
            seen.add(sign.title)
            kept.append(sign)
    return kept[:30]
