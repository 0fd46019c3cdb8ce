"""Kubernetes objects (the API's JSON as dicts) read the way an on-call engineer reads them.

Pure helpers shared by the ``kubectl`` tool (which turns objects into the short text
a model reads) and the rule-based diagnosis (which looks for the same signs): the
container states that matter, failing conditions, replica counts, recent warnings.
An object is whatever the API (or a recording) sent: every field may be missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.engine.core import quantities, reduction

Obj = Mapping[str, Any]


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def name_of(obj: Obj) -> str:
    namespace = _get(obj, "metadata", "namespace")
    name = _get(obj, "metadata", "name") or "?"
    return f"{namespace}/{name}" if namespace else str(name)


@dataclasses.dataclass(frozen=True)
class ContainerState:
    pod: str
    namespace: str
    name: str
    ready: bool
    restarts: int
    # waiting / running / terminated, with reason and message of the current state.
    state: str
    reason: str
    message: str
    exit_code: int | None
    # The last terminated state (why it restarted), if any.
    last_reason: str
    last_exit_code: int | None
    limits: Mapping[str, Any]
    requests: Mapping[str, Any]

    def line(self) -> str:
        parts = [f"container {self.name}: {self.state}"]
        if self.reason:
            parts.append(f"reason={self.reason}")
        if self.exit_code is not None:
            parts.append(f"exitCode={self.exit_code}")
        parts.append(f"ready={str(self.ready).lower()} restarts={self.restarts}")
        if self.last_reason:
            code = f" exitCode={self.last_exit_code}" if self.last_exit_code is not None else ""
            parts.append(f"lastState=terminated reason={self.last_reason}{code}")
        if self.limits:
            parts.append("limits=" + ",".join(f"{k}:{v}" for k, v in sorted(self.limits.items())))
        text = " ".join(parts)
        if self.message:
            text += f"\n    message: {self.message[:300]}"
        return text


def containers(pod: Obj) -> list[ContainerState]:
    """Every container (init containers too) with its state, last state and limits."""
    specs = {
        str(c.get("name")): c
        for c in (_get(pod, "spec", "containers") or [])
        + (_get(pod, "spec", "initContainers") or [])
        if isinstance(c, Mapping)
    }
    statuses = (_get(pod, "status", "initContainerStatuses") or []) + (
        _get(pod, "status", "containerStatuses") or []
    )
    seen: set[str] = set()
    found: list[ContainerState] = []
    for status in statuses:
        if not isinstance(status, Mapping):
            continue
        name = str(status.get("name", "?"))
        seen.add(name)
        state = status.get("state") or {}
        kind = next(iter(state), "unknown") if isinstance(state, Mapping) else "unknown"
        detail = state.get(kind) or {} if isinstance(state, Mapping) else {}
        last = _get(status, "lastState", "terminated") or {}
        spec = specs.get(name, {})
        found.append(
            ContainerState(
                pod=str(_get(pod, "metadata", "name") or "?"),
                namespace=str(_get(pod, "metadata", "namespace") or ""),
                name=name,
                ready=bool(status.get("ready")),
                restarts=int(status.get("restartCount") or 0),
                state=str(kind),
                reason=str(detail.get("reason") or ""),
                message=str(detail.get("message") or ""),
                exit_code=detail.get("exitCode")
                if isinstance(detail.get("exitCode"), int)
                else None,
                last_reason=str(last.get("reason") or ""),
                last_exit_code=last.get("exitCode")
                if isinstance(last.get("exitCode"), int)
                else None,
                limits=dict(_get(spec, "resources", "limits") or {}),
                requests=dict(_get(spec, "resources", "requests") or {}),
            )
        )
    for name, spec in specs.items():
        if name not in seen:
            found.append(
                ContainerState(
                    pod=str(_get(pod, "metadata", "name") or "?"),
                    namespace=str(_get(pod, "metadata", "namespace") or ""),
                    name=name,
                    ready=False,
                    restarts=0,
                    state="unknown",
                    reason="",
                    message="",
                    exit_code=None,
                    last_reason="",
                    last_exit_code=None,
                    limits=dict(_get(spec, "resources", "limits") or {}),
                    requests=dict(_get(spec, "resources", "requests") or {}),
                )
            )
    return found


def pod_is_unhealthy(pod: Obj) -> bool:
    phase = _get(pod, "status", "phase")
    if phase in ("Failed", "Pending", "Unknown") or _get(pod, "status", "reason"):
        return True
    return any(not c.ready or c.restarts or c.state == "waiting" for c in containers(pod))


def pod_summary(pod: Obj) -> str:
    status = _get(pod, "status") or {}
    lines = [f"pod {name_of(pod)}: phase={status.get('phase', '?')}"]
    if status.get("reason"):
        lines[0] += f" reason={status['reason']}"
    if status.get("message"):
        lines.append(f"  message: {str(status['message'])[:300]}")
    node = _get(pod, "spec", "nodeName")
    if node:
        lines[0] += f" node={node}"
    owners = [
        f"{o.get('kind')}/{o.get('name')}"
        for o in _get(pod, "metadata", "ownerReferences") or []
        if isinstance(o, Mapping)
    ]
    if owners:
        lines[0] += f" ownedBy={','.join(owners)}"
    lines.extend("  " + c.line() for c in containers(pod))
    lines.extend(
        "  condition " + c for c in reduction.failing_conditions(status.get("conditions") or [])
    )
    return "\n".join(lines)


def workload_summary(kind: str, obj: Obj) -> str:
    spec = _get(obj, "spec") or {}
    status = _get(obj, "status") or {}
    if kind == "daemonset":
        counts = (
            f"desired={status.get('desiredNumberScheduled', 0)} "
            f"ready={status.get('numberReady', 0)} "
            f"available={status.get('numberAvailable', 0)} "
            f"unavailable={status.get('numberUnavailable', 0)}"
        )
    else:
        counts = (
            f"replicas={spec.get('replicas', '?')} ready={status.get('readyReplicas', 0)} "
            f"available={status.get('availableReplicas', 0)} "
            f"updated={status.get('updatedReplicas', 0)}"
        )
    lines = [f"{kind} {name_of(obj)}: {counts}"]
    selector = _get(spec, "selector", "matchLabels")
    if selector:
        lines.append("  selector: " + selector_of(obj))
    for container in _get(spec, "template", "spec", "containers") or []:
        if isinstance(container, Mapping):
            limits = _get(container, "resources", "limits") or {}
            lines.append(
                f"  container {container.get('name')}: image={container.get('image')}"
                + (
                    " limits=" + ",".join(f"{k}:{v}" for k, v in sorted(limits.items()))
                    if limits
                    else ""
                )
            )
    lines.extend(
        "  condition " + c for c in reduction.failing_conditions(status.get("conditions") or [])
    )
    return "\n".join(lines)


def selector_of(obj: Obj) -> str:
    """A workload's matchLabels as a label selector string ('' when it has none)."""
    labels = _get(obj, "spec", "selector", "matchLabels") or {}
    if not isinstance(labels, Mapping):
        return ""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def node_summary(node: Obj) -> str:
    status = _get(node, "status") or {}
    line = f"node {name_of(node)}"
    if _get(node, "spec", "unschedulable"):
        line += " unschedulable (cordoned)"
    allocatable = status.get("allocatable") or {}
    if allocatable:
        line += f" allocatable cpu={allocatable.get('cpu')} memory={allocatable.get('memory')}"
    bad = reduction.failing_conditions(status.get("conditions") or [])
    return "\n".join(
        [line] + ["  condition " + c for c in bad] + ([] if bad else ["  conditions: all healthy"])
    )


def service_summary(service: Obj) -> str:
    spec = _get(service, "spec") or {}
    ports = ",".join(
        f"{p.get('port')}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
        if isinstance(p, Mapping)
    )
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    kind = spec.get("type", "ClusterIP")
    return f"service {name_of(service)}: type={kind} ports={ports} selector={selector or '(none)'}"


def endpoint_counts(endpoints: Obj) -> tuple[int, int]:
    """(ready addresses, not-ready addresses)."""
    ready = not_ready = 0
    for subset in _get(endpoints, "subsets") or []:
        if isinstance(subset, Mapping):
            ready += len(subset.get("addresses") or [])
            not_ready += len(subset.get("notReadyAddresses") or [])
    return ready, not_ready


def endpoints_summary(endpoints: Obj) -> str:
    ready, not_ready = endpoint_counts(endpoints)
    return f"endpoints {name_of(endpoints)}: ready={ready} notReady={not_ready}"


def event_time(event: Obj) -> str:
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or _get(event, "metadata", "creationTimestamp")
        or ""
    )


def sorted_events(events: Iterable[Obj]) -> list[Obj]:
    """Warnings first, then newest first."""
    listed = [e for e in events if isinstance(e, Mapping)]
    listed.sort(key=event_time, reverse=True)
    listed.sort(key=lambda e: e.get("type") != "Warning")
    return listed


def event_line(event: Obj) -> str:
    involved = event.get("involvedObject") or {}
    count = event.get("count")
    return (
        f"{event_time(event) or '-'} {event.get('type', '?')} {event.get('reason', '?')} "
        f"{str(involved.get('kind', '?')).lower()}/{involved.get('name', '?')}"
        + (f" (x{count})" if count and count != 1 else "")
        + f": {str(event.get('message', ''))[:300]}"
    )


def summary(kind: str, obj: Obj) -> str:
    if kind == "pod":
        return pod_summary(obj)
    if kind in ("deployment", "replicaset", "statefulset", "daemonset"):
        return workload_summary(kind, obj)
    if kind == "node":
        return node_summary(obj)
    if kind == "service":
        return service_summary(obj)
    if kind == "endpoints":
        return endpoints_summary(obj)
    if kind == "event":
        return event_line(obj)
    return f"{kind} {name_of(obj)}"


def usage_rows(metrics: Sequence[Obj], pods: Mapping[str, Obj]) -> list[dict[str, Any]]:
    """metrics.k8s.io pod usage joined with each container's limits (from ``pods`` by name)."""
    rows: list[dict[str, Any]] = []
    for item in metrics:
        pod_name = str(_get(item, "metadata", "name") or "?")
        limits = {c.name: c.limits for c in containers(pods.get(pod_name, {}))}
        for container in item.get("containers") or []:
            if not isinstance(container, Mapping):
                continue
            usage = container.get("usage") or {}
            limit = limits.get(str(container.get("name")), {})
            rows.append(
                {
                    "pod": pod_name,
                    "namespace": _get(item, "metadata", "namespace") or "",
                    "container": container.get("name"),
                    "cpu_m": quantities.millicores(usage.get("cpu")),
                    "memory": quantities.parse(usage.get("memory")),
                    "cpu_limit_m": quantities.millicores(limit.get("cpu")),
                    "memory_limit": quantities.parse(limit.get("memory")),
                }
            )
    return rows


def usage_line(row: Mapping[str, Any]) -> str:
    def percent(used: float | None, limit: float | None) -> str:
        return f" ({100 * used / limit:.0f}% of limit)" if used is not None and limit else ""

    cpu = row.get("cpu_m")
    return (
        f"pod {row.get('namespace')}/{row.get('pod')} container {row.get('container')}: "
        f"cpu={'?' if cpu is None else f'{cpu:.0f}m'}{percent(cpu, row.get('cpu_limit_m'))} "
        f"memory={quantities.human_bytes(row.get('memory'))}"
        f"{percent(row.get('memory'), row.get('memory_limit'))}"
    )
