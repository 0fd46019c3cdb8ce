"""An HTTP double of the Kubernetes API, shared by the controller's and the Job runner's tests.

Why one: kopf (the controller) and the ``kubernetes`` client (the Job runner, Secrets)
depend most on the same mechanics: list, then watch from a resourceVersion, BOOKMARKs
while quiet, 410 Gone once that version is compacted away, patches, deletion with
finalizers and propagation. Two doubles had two copies of them that drifted.

It serves discovery (core ``v1``, ``apps/v1``, ``batch/v1``, ``metrics.k8s.io``, our
CRDs, kopf's peering resources), get, list (label and field selectors, across
namespaces), watch, create, merge and JSON patches of objects, of ``/status`` and of
``/scale``, delete, pod logs (``container``, ``previous``, ``tailLines``), the metrics
API (pods and nodes usage, what ``kubectl top`` reads) and RBAC denials (403) in
forbidden namespaces. A fake Job controller and kubelet (``tests.support.kubelet``)
play each Job's life. Tests act as kubectl through ``Cluster`` (``put``, ``load``,
``set_log``, ``set_metrics``, ``set_status``, ``create``, ``update_spec``, ``delete``,
``get``), read what clients sent (``requests`` with their bearer token, ``created``
bodies, ``patched``, ``deleted``, ``status_patches``) and inject faults (``fail``,
``forbidden``, ``expire_watches``, ``compact``).

    with KubeApiDouble() as api:            # a free port on 127.0.0.1: api.url
        api.state.load(scenario["cluster"]) # or api.state.put({"kind": "Pod", ...})

It must not decide anything a client under test should decide (retries, backoff): it
answers as an API server would, and records.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.kube_cluster import (
    CORE,
    CUSTOM,
    GROUP_VERSIONS,
    METRICS,
    RESOURCES,
    SCALE_SUBRESOURCE,
    STATUS_SUBRESOURCE,
    Call,
    Cluster,
    Obj,
    PatchConflictError,
    Script,
    status,
)
from tests.support.kubelet import Kubelet

__all__ = ["Call", "Cluster", "KubeApiDouble", "Script"]

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<sub>status|log|scale))?$"
)
# Any path under a namespace: the namespace RBAC is checked against.
_NAMESPACED = re.compile(r"/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?")


def _discovery(group_version: str) -> Obj:
    resources: list[Obj] = []
    if group_version == METRICS:
        resources = [
            {
                "name": plural,
                "singularName": "",
                "namespaced": plural == "pods",
                "kind": kind,
                "verbs": ["get", "list"],
            }
            for plural, kind in (("pods", "PodMetrics"), ("nodes", "NodeMetrics"))
        ]
    for plural, (api_version, kind, namespaced) in RESOURCES.items():
        if api_version != group_version:
            continue
        resources.append(
            {
                "name": plural,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                **({"categories": ["punchingfist"]} if api_version == CUSTOM else {}),
            }
        )
        subresources = ["status"] if plural in STATUS_SUBRESOURCE else []
        subresources += ["log"] if plural == "pods" else []
        subresources += ["scale"] if plural in SCALE_SUBRESOURCE else []
        for sub in subresources:
            resources.append(
                {
                    "name": f"{plural}/{sub}",
                    "singularName": "",
                    "namespaced": True,
                    "kind": "Scale" if sub == "scale" else kind,
                    "verbs": ["get"] if sub == "log" else ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _discovered(path: str) -> Obj | None:
    """The answer to a discovery request, None for any other path."""
    path = path.rstrip("/") or "/"  # the API server answers /apis/ as /apis
    if path == "/version":
        return {"major": "1", "minor": "31", "gitVersion": "v1.31.0"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"]}
    if path == "/apis":
        groups = []
        for group_version in GROUP_VERSIONS:
            group_name, version_name = group_version.split("/")
            entry = {"groupVersion": group_version, "version": version_name}
            groups.append({"name": group_name, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    if path == "/api/v1":
        return _discovery(CORE)
    if path.removeprefix("/apis/") in GROUP_VERSIONS:
        return _discovery(path.removeprefix("/apis/"))
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and delayed
    # ACKs add 40 ms to every request (the agent benchmark measures tools over it).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> Cluster:
        return self.server.state

    def _send(self, code: int, body: Obj | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _begin(self) -> tuple[str, dict[str, list[str]]] | None:
        """Read and record the request and answer an injected failure (then None)."""
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        self.caller = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        with self.state.lock:
            self.state.requests.append(Call(self.caller, self.command, parsed.path, query))
            for failure in self.state.failures:
                if (
                    failure.times
                    and failure.method == self.command
                    and failure.path.search(parsed.path)
                ):
                    failure.times -= 1
                    self._send(failure.code, status(failure.code, failure.reason, failure.message))
                    return None
            denied = _NAMESPACED.search(parsed.path)
            if denied and urllib.parse.unquote(denied["namespace"]) in self.state.forbidden:
                self._forbid(denied["namespace"], denied["plural"], bool(denied["name"]))
                return None
        return parsed.path, query

    def _forbid(self, namespace: str, plural: str, named: bool) -> None:
        verb = {
            "GET": "get" if named else "list",
            "POST": "create",
            "PATCH": "patch",
            "DELETE": "delete",
        }[self.command]
        user = self.caller or "system:anonymous"
        message = (
            f'{plural} is forbidden: User "{user}" cannot {verb} resource "{plural}" '
            f'in API group "" in the namespace "{urllib.parse.unquote(namespace)}"'
        )
        self._send(403, status(403, "Forbidden", message))

    def _route(self, path: str) -> tuple[str, str, str, str] | None:
        """(plural, namespace, name, subresource) of a resource path of a known type."""
        match = _PATH.match(path)
        if match is None or match["plural"] not in RESOURCES:
            return None
        group_version = f"{match['group']}/{match['version']}" if match["group"] else CORE
        if RESOURCES[match["plural"]][0] != group_version:
            return None
        return match["plural"], match["namespace"] or "", match["name"] or "", match["sub"] or ""

    def _not_found(self, what: str) -> None:
        self._send(404, status(404, "NotFound", f"{what} not found"))

    def do_GET(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        path, query = begun
        if (discovered := _discovered(path)) is not None:
            return self._send(200, discovered)
        if path.startswith(f"/apis/{METRICS}/"):
            return self._metrics(path)
        route = self._route(path)
        if route is None:
            return self._not_found(path)
        plural, namespace, name, sub = route
        if name and sub == "log":
            return self._log(namespace, name, query)
        if name:
            obj = self.state.get(plural, namespace, name)
            if obj is None:
                return self._not_found(f'{plural} "{name}"')
            return self._send(200, _scale(obj) if sub == "scale" else obj)
        fields = query.get("fieldSelector", [""])[0]
        only = None
        if re.fullmatch(r"metadata\.name=[^,]*", fields):
            only, fields = fields.removeprefix("metadata.name="), ""
        if query.get("watch", [""])[0] in ("true", "1"):
            return self._watch(plural, namespace or None, only, query)
        labels = query.get("labelSelector", [""])[0]
        items, version = self.state.listing(
            plural, namespace or None, name=only, labels=labels, fields=fields
        )
        api_version, kind, _ = RESOURCES[plural]
        return self._send(
            200,
            {
                "apiVersion": api_version,
                "kind": f"{kind}List",
                "metadata": {"resourceVersion": str(version)},
                "items": items,
            },
        )

    def _log(self, namespace: str, name: str, query: dict[str, list[str]]) -> None:
        if self.state.get("pods", namespace, name) is None:
            return self._not_found(f'pods "{name}"')
        container = query.get("container", [""])[0]
        previous = query.get("previous", [""])[0] == "true"
        text = self.state.log_of(namespace, name, container, previous)
        if text is None:
            which = "previous terminated container" if previous else "container"
            message = f'{which} "{container or name}" in pod "{name}" not found'
            return self._send(400, status(400, "BadRequest", message))
        if tail := query.get("tailLines", [""])[0]:
            text = "".join(text.splitlines(keepends=True)[-int(tail) :])
        data = text.encode()
        if limit := query.get("limitBytes", [""])[0]:
            data = data[: int(limit)]
        return self._send(200, data, "text/plain")

    def _metrics(self, path: str) -> None:
        match = re.match(
            rf"^/apis/{re.escape(METRICS)}(?:/namespaces/(?P<namespace>[^/]+))?"
            r"/(?P<plural>pods|nodes)(?:/(?P<name>[^/]+))?$",
            path,
        )
        if match is None:
            return self._not_found(path)
        plural, name = match["plural"], match["name"] or ""
        items = self.state.usage(plural, match["namespace"], name)
        if name:
            if not items:
                return self._not_found(f'{plural}.metrics.k8s.io "{name}"')
            return self._send(200, items[0])
        kind = "PodMetricsList" if plural == "pods" else "NodeMetricsList"
        return self._send(200, {"kind": kind, "apiVersion": METRICS, "items": items})

    def _watch(
        self, plural: str, namespace: str | None, name: str | None, query: dict[str, list[str]]
    ) -> None:
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        seconds = float(query.get("timeoutSeconds", ["30"])[0])
        bookmarks = query.get("allowWatchBookmarks", [""])[0] in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        watch = (self.caller, plural)
        with self.state.lock:
            self.state.open_watches[watch] = self.state.open_watches.get(watch, 0) + 1
        try:
            events = self.state.watch(
                plural, namespace, since, seconds, name=name, bookmarks=bookmarks
            )
            for event in events:
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self.state.lock:
                self.state.open_watches[watch] -= 1
        self.close_connection = True

    def do_POST(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        route = self._route(begun[0])
        if route is None or route[2]:
            return self._not_found(begun[0])
        code, obj = self.state.post(route[0], route[1], self.body)
        self._send(code, obj)
        return None

    def do_PATCH(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        route = self._route(begun[0])
        if route is None or not route[2]:
            return self._not_found(begun[0])
        plural, namespace, name, sub = route
        content_type = self.headers.get("Content-Type", "")
        if "merge-patch" not in content_type and "json-patch" not in content_type:
            return self._send(415, status(415, "UnsupportedMediaType", content_type))
        if sub == "status" and plural not in STATUS_SUBRESOURCE:
            return self._not_found(f"status subresource {begun[0]}")
        if sub == "scale" and plural not in SCALE_SUBRESOURCE:
            return self._not_found(f"scale subresource {begun[0]}")
        body = self.body
        if sub == "scale":
            # A Scale's spec.replicas is the object's; nothing else of it is writable.
            body = {"spec": {"replicas": (self.body.get("spec") or {}).get("replicas")}}
        if sub != "status":
            with self.state.lock:
                where = f"{namespace}/{name}" if namespace else name
                self.state.patched.append((plural, where, body))
        try:
            updated = self.state.patch(
                (plural, namespace, name),
                body,
                status=sub == "status",
                json_ops="json-patch" in content_type,
            )
        except PatchConflictError as exc:
            return self._send(422, status(422, "Invalid", str(exc)))
        if updated is None:
            return self._not_found(f'{plural} "{name}"')
        return self._send(200, _scale(updated) if sub == "scale" else updated)

    def do_DELETE(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        path, query = begun
        route = self._route(path)
        if route is None or not route[2]:
            return self._not_found(path)
        plural, namespace, name, _ = route
        policy = query.get("propagationPolicy", [None])[0] or self.body.get("propagationPolicy")
        if not self.state.delete(plural, namespace, name, policy):
            return self._not_found(f'{plural} "{name}"')
        return self._send(200, status(200, "", ""))


def _scale(obj: Obj) -> Obj:
    """The ``autoscaling/v1`` Scale of a workload."""
    meta = obj["metadata"]
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion")},
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
        "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: Cluster


class KubeApiDouble:
    """The API server on 127.0.0.1, its ``state`` and the kubelet; ``start``/``stop``
    or a context manager."""

    def __init__(self) -> None:
        self.state = Cluster()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = self.state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True),
            Kubelet(self.state),
        ]

    def start(self) -> KubeApiDouble:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.state.stop()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self) -> str:
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: double\n"
            f"clusters: [{{name: double, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: tester, user: {token: test-token}}]\n"
            "contexts: [{name: double, context: {cluster: double, user: tester}}]\n"
        )
