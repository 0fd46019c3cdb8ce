"""The rule-based investigator, and the evidence ledger both investigators share.

Without a model (no ``llmConfig``: the embedded default, ``make run``) the step
still investigates: it makes the template's first calls, follows what they show the
way a person would (no pod label: the workload's pods, else the namespace's
unhealthy pods; a restarted container: its previous log; a pod: its usage), and
lets ``core.diagnosis`` derive the result from the evidence. When a tool cannot
reach what it talks to (no cluster configured), it is not called again, and the
result says what could not be checked instead of failing.

:class:`Ledger` records every call (tool, arguments, status, seconds) for the
result's ``toolCalls`` and turns tool data into :class:`diagnosis.Evidence`; the LLM
loop uses the same ledger, so a model that stops early still leaves evidence the
rules can read.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from services.engine.agent import results
from services.engine.agent.templates import Template
from services.engine.core import diagnosis, objects
from services.engine.tools.registries import Status, Tool, ToolContext, ToolRegistry, ToolResult

log = logging.getLogger(__name__)

MAX_FOLLOWED_PODS = 3
WORKLOAD_LABELS = (
    ("deployment", "deployment"),
    ("statefulset", "statefulset"),
    ("daemonset", "daemonset"),
)


class Ledger:
    """Tool calls made for one step, their records and the evidence they produced."""

    def __init__(
        self,
        tools: Sequence[Tool],
        left_out: Mapping[str, str],
        ctx: ToolContext,
        registry: ToolRegistry | None = None,
    ) -> None:
        self.tools = {tool.name: tool for tool in tools}
        self.registry = registry
        self.left_out = dict(left_out)
        self.ctx = ctx
        self.calls: list[dict[str, Any]] = []
        self.evidence = diagnosis.Evidence()
        self._done: dict[str, ToolResult] = {}
        self._unreachable: dict[str, str] = {}
        self._signals: dict[str, tuple[str, float]] = {}

    def call(self, tool_name: str, arguments: Mapping[str, Any]) -> ToolResult:
        key = tool_name + json.dumps(dict(arguments), sort_keys=True, default=str)
        if key in self._done:
            return self._done[key]
        tool = self.tools.get(tool_name)
        if tool is None and self._mutating(tool_name):
            # Asked for a change it was not offered (text in an alert can ask for
            # anything): the tool itself refuses and records the attempt.
            tool = self.registry.get(tool_name) if self.registry else None
        if tool is None:
            reason = self.left_out.get(tool_name, "not offered to this step")
            result = ToolResult(Status.DENIED, f"tool {tool_name!r} is not available: {reason}")
            self._note_unchecked(f"{tool_name}: {reason}")
        elif tool_name in self._unreachable:
            result = ToolResult(Status.ERROR, self._unreachable[tool_name], unreachable=True)
        else:
            result = tool.invoke(arguments, self.ctx)
            if result.unreachable:
                self._unreachable[tool_name] = result.text
                self._note_unchecked(f"{tool_name}: {result.text}")
            elif result.status in (Status.ERROR, Status.DENIED) and not (
                tool_name == "curl" and result.status is Status.ERROR
            ):
                # A failed HTTP check is evidence (the service is unreachable), not a gap.
                self._note_unchecked(f"{tool_name} {_brief(arguments)}: {result.text[:200]}")
            self.calls.append(
                {
                    "tool": tool_name,
                    "arguments": dict(arguments),
                    "status": result.status.value,
                    "seconds": result.seconds,
                }
            )
            self._collect(tool_name, arguments, result)
        self._done[key] = result
        return result

    def _mutating(self, tool_name: str) -> bool:
        if self.registry is None or tool_name not in self.registry.names():
            return False
        return self.registry.get(tool_name).mutating

    def can_call(self, tool_name: str) -> bool:
        return tool_name in self.tools and tool_name not in self._unreachable

    def note_signal(self, key: str, signal: str, threshold: float) -> None:
        self._signals[key] = (signal, threshold)

    def _note_unchecked(self, text: str) -> None:
        if text not in self.evidence.unchecked:
            self.evidence.unchecked.append(text)

    def _collect(self, tool: str, arguments: Mapping[str, Any], result: ToolResult) -> None:
        data = result.data if isinstance(result.data, Mapping) else {}
        e = self.evidence
        if tool == "kubectl" and result.status is Status.OK:
            kind = str(arguments.get("kind") or "pod")
            found = list(data.get("objects") or []) + (
                [data["object"]] if data.get("object") else []
            )
            for obj in found:
                self._add_object(kind, obj)
            for pod in data.get("pods") or []:
                self._add_object("pod", pod)
            _extend_unique(e.events, data.get("events") or [])
            if "text" in data:
                e.logs.append(data)
            e.usage.extend(data.get("usage") or [])
            e.nodes.extend(n for n in data.get("nodes") or [] if n not in e.nodes)
        elif tool == "promql" and result.status is Status.OK:
            signal = self._signals.get(str(arguments.get("query")))
            if signal:
                for row in data.get("series") or []:
                    value = row.get("peak")
                    if isinstance(value, float) and not math.isfinite(value):
                        continue
                    e.signals.append(
                        {
                            "signal": signal[0],
                            "threshold": signal[1],
                            "query": arguments.get("query"),
                            "value": value,
                            "labels": row.get("metric"),
                        }
                    )
        elif tool == "curl":
            if result.status is Status.OK:
                e.http.append(data)
            elif result.status is Status.ERROR and not result.unreachable:
                e.http.append({"url": arguments.get("url"), "error": result.text})

    def _add_object(self, kind: str, obj: Mapping[str, Any]) -> None:
        e = self.evidence
        uid = (obj.get("metadata") or {}).get("uid") or objects.name_of(obj)

        def known(items: Sequence[Mapping[str, Any]]) -> bool:
            return any(
                ((i.get("metadata") or {}).get("uid") or objects.name_of(i)) == uid for i in items
            )

        if kind == "pod" and not known(e.pods):
            e.pods.append(obj)
        elif kind == "node" and not known(e.nodes):
            e.nodes.append(obj)
        elif kind == "endpoints" and not known(e.endpoints):
            e.endpoints.append(obj)
        elif kind == "event":
            _extend_unique(e.events, [obj])
        elif kind in ("deployment", "statefulset", "daemonset", "replicaset") and not known(
            [w for _, w in e.workloads]
        ):
            e.workloads.append((kind, obj))


def _extend_unique(target: list[Mapping[str, Any]], items: Sequence[Mapping[str, Any]]) -> None:
    for item in items:
        if item not in target:
            target.append(item)


def _brief(arguments: Mapping[str, Any]) -> str:
    return " ".join(
        str(v)
        for k, v in arguments.items()
        if k in ("verb", "kind", "name", "namespace", "url", "query")
    )[:120]


def gather(ledger: Ledger, template: Template, alert: Mapping[str, Any]) -> None:
    """The template's calls, its signals, then the follow-ups the evidence asks for."""
    for call in template.first_calls(alert):
        ledger.call(call.tool, call.arguments)
    for signal in template.signal_queries(alert):
        if ledger.can_call("promql"):
            ledger.note_signal(signal.query, signal.signal, signal.threshold)
            arguments: dict[str, Any] = {"query": signal.query}
            if signal.range:
                arguments["range"] = signal.range
            ledger.call("promql", arguments)
    follow(ledger, alert)


def follow(ledger: Ledger, alert: Mapping[str, Any]) -> None:
    labels = alert.get("labels") or {}
    namespace = str(labels.get("namespace") or "")
    if not ledger.can_call("kubectl"):
        return
    e = ledger.evidence
    if not e.pods and namespace:
        _discover_pods(ledger, labels, namespace)
    unhealthy = [pod for pod in e.pods if objects.pod_is_unhealthy(pod)][:MAX_FOLLOWED_PODS]
    for pod in unhealthy:
        if not ledger.can_call("kubectl"):
            return
        _follow_pod(ledger, pod, namespace)


def _discover_pods(ledger: Ledger, labels: Mapping[str, Any], namespace: str) -> None:
    """No pod label: the pods of the workload the alert names, else the namespace's."""
    for label, kind in WORKLOAD_LABELS:
        if labels.get(label):
            arguments = {"verb": "describe", "kind": kind, "name": str(labels[label])}
            ledger.call("kubectl", {**arguments, "namespace": namespace})
    if not ledger.evidence.pods and ledger.can_call("kubectl"):
        ledger.call("kubectl", {"verb": "get", "kind": "pod", "namespace": namespace})


def _follow_pod(ledger: Ledger, pod: Mapping[str, Any], namespace: str) -> None:
    """An unhealthy pod: its events, the log of what restarted, its usage, its node."""
    meta = pod.get("metadata") or {}
    name, ns = str(meta.get("name") or ""), str(meta.get("namespace") or namespace or "default")
    if not name:
        return
    ledger.call("kubectl", {"verb": "describe", "kind": "pod", "name": name, "namespace": ns})
    where = {"kind": "pod", "name": name, "namespace": ns}
    for container in objects.containers(pod):
        logs = {"verb": "logs", **where, "container": container.name, "tailLines": 300}
        if container.restarts or container.last_reason:
            ledger.call("kubectl", {**logs, "previous": True})
        elif container.state == "running" and not container.ready:
            ledger.call("kubectl", logs)
    status = pod.get("status") or {}
    if status.get("phase") == "Running":
        ledger.call("kubectl", {"verb": "top", **where})
    node = (pod.get("spec") or {}).get("nodeName")
    if status.get("reason") == "Evicted" and node:
        ledger.call("kubectl", {"verb": "describe", "kind": "node", "name": str(node)})


def result_from(
    found: diagnosis.Diagnosis,
    ledger: Ledger,
    template: Template,
    *,
    mode: str,
    iterations: int,
    summary_prefix: str = "",
) -> dict[str, Any]:
    answer = {
        "summary": (summary_prefix + found.summary)[:4000],
        "findings": found.findings,
        "rootCause": found.root_cause,
        "category": found.category,
        "confidence": found.confidence,
        "recommendations": found.recommendations,
        "canAutoFix": False,
        "escalate": found.escalate,
        "escalationNotes": found.escalation_notes,
    }
    return results.finish(
        answer,
        mode=mode,
        actionsTaken=list(ledger.ctx.decisions),
        toolCalls=ledger.calls,
        unchecked=ledger.evidence.unchecked,
        template=template.name,
        iterations=iterations,
    )


def investigate_by_rules(
    ledger: Ledger, template: Template, alert: Mapping[str, Any]
) -> dict[str, Any]:
    """Gather evidence and diagnose it by rules: the ``mode: rules`` result."""
    ledger.ctx.requester = "rules"
    gather(ledger, template, alert)
    found = diagnosis.diagnose(ledger.evidence)
    log.info(
        "rules investigation finished",
        extra={"template": template.name, "category": found.category, "calls": len(ledger.calls)},
    )
    return result_from(found, ledger, template, mode="rules", iterations=len(ledger.calls))
