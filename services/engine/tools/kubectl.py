"""``kubectl``: read the cluster through the Kubernetes API, never through a shell.

The model fills structured arguments (verb, kind, name, namespace, ...); they are
validated against the parameter schema, checked against the namespace allowlist
and sent as URL path segments and query parameters of a read request. There is no
command line to inject into. A 403 comes back as ``denied`` with the API server's
own message, so the model (and the report) says which permission is missing.

Output is reduced, not cut: pods with their container states and last
terminations, failing conditions, warnings before normal events, the error lines and
the tail of a log, usage against limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.engine.core import objects, reduction
from services.engine.tools import registries
from services.engine.tools.kubeapi import KINDS, KubeApi, NoClusterError
from services.engine.tools.registries import Status, ToolContext, ToolResult

VERBS = ("get", "describe", "logs", "events", "top")
READ_KINDS = (
    "pod",
    "deployment",
    "replicaset",
    "statefulset",
    "daemonset",
    "node",
    "service",
    "endpoints",
    "event",
)
MAX_ROWS = 50
MAX_EVENTS = 30


def connect(ctx: ToolContext) -> KubeApi:
    """The step's API client, created on first use; shared with ``remediate``."""
    api: KubeApi = ctx.client(
        "kubernetes", lambda: KubeApi.connect(ctx.settings.kubernetes_api_url)
    )
    return api


def namespace_allowed(ctx: ToolContext, namespace: str) -> None:
    allowed = ctx.settings.kubectl_namespaces
    if allowed and namespace not in allowed:
        raise registries.ToolDeniedError(
            f"namespace {namespace!r} is not one this Workflow may read "
            f"(runtime.tools.kubectl.namespaces: {', '.join(sorted(allowed))})"
        )


@registries.register()
class Kubectl(registries.Tool):
    name = "kubectl"
    description = (
        "Read Kubernetes objects through the API (no shell). verb: get (one object or a "
        "list, optionally by labelSelector), describe (object, its failing conditions and "
        "events; for workloads also their pods), logs (a pod's container log; previous=true "
        "for the container that last terminated), events (recent events in a namespace, "
        "warnings first; name narrows to one object), top (CPU/memory usage against limits "
        "for pods or nodes)."
    )
    parameters = registries.parameters(
        {
            "verb": {"type": "string", "enum": list(VERBS)},
            "kind": {"type": "string", "enum": list(READ_KINDS)},
            "name": {"type": "string", "maxLength": 253},
            "namespace": {"type": "string", "maxLength": 63},
            "labelSelector": {"type": "string", "maxLength": 1024},
            "previous": {"type": "boolean"},
            "tailLines": {"type": "integer", "minimum": 1, "maximum": 5000},
            "container": {"type": "string", "maxLength": 253},
        },
        required=["verb"],
    )

    def _invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        verb = str(arguments["verb"])
        kind = str(arguments.get("kind") or ("event" if verb == "events" else "pod"))
        name = str(arguments.get("name") or "")
        namespace = str(arguments.get("namespace") or "")
        if KINDS[kind].namespaced:
            namespace = namespace or "default"
            namespace_allowed(ctx, namespace)
        else:
            namespace = ""
        timeout = registries.require_deadline(ctx, f"kubectl {verb}")
        from shared import kube  # imports the kubernetes client: only when used

        try:
            api = connect(ctx)
            if verb == "get":
                return self._get(api, kind, namespace, name, arguments=arguments, timeout=timeout)
            if verb == "describe":
                return self._describe(api, kind, namespace, name, timeout)
            if verb == "logs":
                return self._logs(api, kind, namespace, name, arguments=arguments, timeout=timeout)
            if verb == "events":
                return self._events(api, namespace, name, timeout)
            return self._top(api, kind, namespace, name, arguments=arguments, timeout=timeout)
        except NoClusterError as exc:
            raise registries.ToolUnavailableError(str(exc)) from exc
        except kube.NotFoundError as exc:
            return ToolResult(Status.EMPTY, f"not found: {exc}")
        except kube.ApiPermanentError as exc:
            if exc.status in (401, 403):
                raise registries.ToolDeniedError(f"the Kubernetes API refused: {exc}") from exc
            raise registries.ToolError(str(exc)) from exc
        except kube.ApiTemporaryError as exc:
            raise registries.ToolUnavailableError(str(exc)) from exc

    def _get(
        self,
        api: KubeApi,
        kind: str,
        namespace: str,
        name: str,
        *,
        arguments: Mapping[str, Any],
        timeout: float,
    ) -> ToolResult:
        if name:
            obj = api.get(kind, namespace, name, timeout=timeout)
            return ToolResult(Status.OK, objects.summary(kind, obj), {"objects": [obj]})
        items = api.list_of(
            kind,
            namespace or None,
            label_selector=str(arguments.get("labelSelector") or ""),
            timeout=timeout,
        )
        if not items:
            where = f" in {namespace}" if namespace else ""
            return ToolResult(Status.EMPTY, f"no {kind} objects{where}", {"objects": []})
        if kind == "pod":
            items.sort(key=lambda pod: not objects.pod_is_unhealthy(pod))
        if kind == "event":
            items = [dict(e) for e in objects.sorted_events(items)]
        shown = items[:MAX_ROWS]
        text = "\n".join(objects.summary(kind, obj) for obj in shown)
        if len(items) > len(shown):
            text += f"\n[{len(items) - len(shown)} more {kind} objects not shown]"
        return ToolResult(Status.OK, text, {"objects": items})

    def _describe(
        self, api: KubeApi, kind: str, namespace: str, name: str, timeout: float
    ) -> ToolResult:
        if not name:
            raise registries.ToolError("describe needs a name")
        obj = api.get(kind, namespace, name, timeout=timeout)
        parts = [objects.summary(kind, obj)]
        data: dict[str, Any] = {"object": obj, "pods": [], "events": []}
        selector = (
            objects.selector_of(obj)
            if kind in ("deployment", "replicaset", "statefulset", "daemonset")
            else ""
        )
        if selector:
            pods = api.list_of("pod", namespace, label_selector=selector, timeout=timeout)
            pods.sort(key=lambda pod: not objects.pod_is_unhealthy(pod))
            data["pods"] = pods
            parts.append(f"pods ({len(pods)}):")
            parts.extend(objects.pod_summary(pod) for pod in pods[:10])
        field = f"involvedObject.name={name}"
        events = objects.sorted_events(
            api.list_of("event", namespace or None, field_selector=field, timeout=timeout)
        )
        data["events"] = events
        parts.append("events:" if events else "events: none")
        parts.extend("  " + objects.event_line(e) for e in events[:MAX_EVENTS])
        return ToolResult(Status.OK, "\n".join(parts), data)

    def _logs(
        self,
        api: KubeApi,
        kind: str,
        namespace: str,
        name: str,
        *,
        arguments: Mapping[str, Any],
        timeout: float,
    ) -> ToolResult:
        if kind != "pod" or not name:
            raise registries.ToolError("logs needs kind pod and a pod name")
        previous = bool(arguments.get("previous"))
        container = str(arguments.get("container") or "")
        text = api.pod_log(
            namespace,
            name,
            container=container,
            previous=previous,
            tail_lines=int(arguments.get("tailLines") or 500),
            timeout=timeout,
        )
        data = {
            "pod": name,
            "namespace": namespace,
            "container": container,
            "previous": previous,
            "text": text,
        }
        if not text.strip():
            return ToolResult(Status.EMPTY, "the log is empty", data)
        which = "previous container's log" if previous else "log"
        return ToolResult(
            Status.OK, f"{which} of pod {namespace}/{name}:\n" + reduction.reduce_log(text), data
        )

    def _events(self, api: KubeApi, namespace: str, name: str, timeout: float) -> ToolResult:
        field = f"involvedObject.name={name}" if name else ""
        events = objects.sorted_events(
            api.list_of("event", namespace or None, field_selector=field, timeout=timeout)
        )
        if not events:
            return ToolResult(
                Status.EMPTY,
                f"no events in {namespace}" + (f" for {name}" if name else ""),
                {"events": []},
            )
        lines = [objects.event_line(e) for e in events[:MAX_EVENTS]]
        if len(events) > MAX_EVENTS:
            lines.append(f"[{len(events) - MAX_EVENTS} older or normal events not shown]")
        return ToolResult(Status.OK, "\n".join(lines), {"events": events})

    def _top(
        self,
        api: KubeApi,
        kind: str,
        namespace: str,
        name: str,
        *,
        arguments: Mapping[str, Any],
        timeout: float,
    ) -> ToolResult:
        if kind not in ("pod", "node"):
            raise registries.ToolError("top reads pods or nodes")
        from shared import kube

        try:
            metrics = api.metrics(kind, namespace or None, name, timeout=timeout)
        except kube.NotFoundError as exc:
            raise registries.ToolError(f"no metrics (is metrics-server installed?): {exc}") from exc
        if kind == "node":
            lines = [
                f"node {m.get('metadata', {}).get('name')}: cpu={m.get('usage', {}).get('cpu')} "
                f"memory={m.get('usage', {}).get('memory')}"
                for m in metrics
            ]
            return ToolResult(
                Status.OK if lines else Status.EMPTY,
                "\n".join(lines) or "no node metrics",
                {"nodes": metrics},
            )
        if name:
            pods = {name: api.get("pod", namespace, name, timeout=timeout)}
        else:
            selector = str(arguments.get("labelSelector") or "")
            listed = api.list_of("pod", namespace, label_selector=selector, timeout=timeout)
            pods = {str(p.get("metadata", {}).get("name")): p for p in listed}
            metrics = [m for m in metrics if m.get("metadata", {}).get("name") in pods]
        rows = objects.usage_rows(metrics, pods)
        if not rows:
            return ToolResult(Status.EMPTY, "no pod metrics", {"usage": []})
        return ToolResult(
            Status.OK, "\n".join(objects.usage_line(r) for r in rows[:MAX_ROWS]), {"usage": rows}
        )
