"""A small HTTP double of the Kubernetes API serving one agent eval scenario's cluster state.

What the agent's tools use, spoken the way the API server speaks it: get and list
(label selectors with ``=``/``!=``, ``involvedObject.name`` field selectors, across
namespaces), pod logs (``previous``, ``tailLines``, ``container``), the metrics API
(pods, nodes), merge-patch (objects and the ``scale`` subresource) and delete.
Namespaces in ``forbidden`` answer 403 with a Status message like RBAC's. Tests
read ``requests``, ``patched`` and ``deleted`` to see what was asked and changed.

It stays small on purpose (the suite's shared double, ``kube_api.py``, plays Jobs,
watches and the controller's resources; porting the agent's scenarios onto it is left
to do): no watches, no resourceVersions, no admission.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Obj = dict[str, Any]
PLURALS = {
    "Pod": "pods",
    "Service": "services",
    "Endpoints": "endpoints",
    "Event": "events",
    "Node": "nodes",
    "Namespace": "namespaces",
    "Deployment": "deployments",
    "ReplicaSet": "replicasets",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
}
CLUSTER_SCOPED = {"nodes", "namespaces"}
_PATH = re.compile(
    r"^/(?:api/v1|apis/apps/v1|apis/(?P<metrics>metrics\.k8s\.io)/v1beta1)"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>log|scale))?)?$"
)


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _selected(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif labels.get(term) is None:
            return False
    return True


class Cluster:
    """The state one scenario describes, behind a real HTTP server on loopback."""

    def __init__(
        self,
        objects: list[Obj] | None = None,
        logs: list[Obj] | None = None,
        metrics: Obj | None = None,
        forbidden: list[str] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.objects: dict[tuple[str, str, str], Obj] = {}
        for obj in objects or []:
            self.put(obj)
        self.logs = {
            (
                log.get("namespace", "default"),
                log["pod"],
                log.get("container", ""),
                bool(log.get("previous")),
            ): log.get("text", "")
            for log in logs or []
        }
        self.metrics = metrics or {}
        self.forbidden = set(forbidden or [])
        self.requests: list[tuple[str, str]] = []
        self.patched: list[tuple[str, str, Obj]] = []
        self.deleted: list[str] = []
        self.server: ThreadingHTTPServer | None = None

    @classmethod
    def from_scenario(cls, scenario: Mapping[str, Any]) -> Cluster:
        cluster = scenario.get("cluster") or {}
        return cls(
            cluster.get("objects"),
            cluster.get("logs"),
            cluster.get("metrics"),
            cluster.get("forbidden"),
        )

    def put(self, obj: Obj) -> None:
        plural = PLURALS[obj["kind"]]
        meta = obj.setdefault("metadata", {})
        namespace = "" if plural in CLUSTER_SCOPED else meta.setdefault("namespace", "default")
        meta.setdefault("uid", f"uid-{plural}-{namespace}-{meta['name']}")
        self.objects[(plural, namespace, meta["name"])] = obj

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        plural = PLURALS.get(kind, kind)
        return self.objects.get((plural, "" if plural in CLUSTER_SCOPED else namespace, name))

    # -- HTTP ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Cluster:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this, Nagle and
            # delayed ACKs add 40 ms to every request.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                with cluster.lock:
                    cluster.requests.append((method, self.path))
                    if method in ("POST", "PUT"):
                        # Recorded (a test asserts that no write came) and refused: the
                        # scenarios' tools never create or replace objects.
                        refused = _status(405, "MethodNotAllowed", f"{method} is not served")
                        code, answer, content_type = 405, refused, "application/json"
                    else:
                        code, answer, content_type = cluster.answer(
                            method, parsed.path, query, body
                        )
                self._send(code, answer, content_type)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(
        self, method: str, path: str, query: Mapping[str, str], body: Any
    ) -> tuple[int, Any, str]:
        match = _PATH.match(path)
        if not match:
            return (
                404,
                _status(
                    404, "NotFound", f"the server could not find the requested resource {path}"
                ),
                "application/json",
            )
        ns, plural, name, sub = (
            match.group("ns") or "",
            match.group("plural"),
            match.group("name"),
            match.group("sub"),
        )
        ns, name = urllib.parse.unquote(ns), urllib.parse.unquote(name or "")
        if ns in self.forbidden:
            verb = {"GET": "get" if name else "list", "PATCH": "patch", "DELETE": "delete"}[method]
            message = (
                f'{plural} is forbidden: User "system:serviceaccount:punchingfist:agent" '
                f"cannot {verb} "
                f'resource "{plural}" in API group "" in the namespace "{ns}"'
            )
            return 403, _status(403, "Forbidden", message), "application/json"
        if match.group("metrics"):
            return self._metrics(plural, ns, name)
        if method == "DELETE":
            key = (plural, "" if plural in CLUSTER_SCOPED else ns, name)
            if key not in self.objects:
                return (
                    404,
                    _status(404, "NotFound", f'{plural} "{name}" not found'),
                    "application/json",
                )
            self.deleted.append(f"{plural}/{ns + '/' if ns else ''}{name}")
            return 200, self.objects.pop(key), "application/json"
        if method == "PATCH":
            key = (plural, "" if plural in CLUSTER_SCOPED else ns, name)
            if key not in self.objects:
                return (
                    404,
                    _status(404, "NotFound", f'{plural} "{name}" not found'),
                    "application/json",
                )
            if sub == "scale":
                body = {"spec": {"replicas": (body or {}).get("spec", {}).get("replicas")}}
            self.objects[key] = merge_patch(self.objects[key], body)
            self.patched.append((plural, f"{ns + '/' if ns else ''}{name}", body))
            return 200, self.objects[key], "application/json"
        if sub == "log":
            return self._log(ns, name, query)
        if name:
            obj = self.objects.get((plural, "" if plural in CLUSTER_SCOPED else ns, name))
            if obj is None:
                return (
                    404,
                    _status(404, "NotFound", f'{plural} "{name}" not found'),
                    "application/json",
                )
            return 200, obj, "application/json"
        items = [
            obj
            for (p, o_ns, _), obj in sorted(self.objects.items())
            if p == plural
            and (not ns or o_ns == ns)
            and _selected(
                (obj.get("metadata") or {}).get("labels") or {}, query.get("labelSelector", "")
            )
            and self._field_selected(obj, query.get("fieldSelector", ""))
        ]
        return (
            200,
            {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": items},
            "application/json",
        )

    @staticmethod
    def _field_selected(obj: Obj, selector: str) -> bool:
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            node: Any = obj
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if str(node) != value:
                return False
        return True

    def _log(self, ns: str, name: str, query: Mapping[str, str]) -> tuple[int, Any, str]:
        if ("pods", ns, name) not in self.objects:
            return 404, _status(404, "NotFound", f'pods "{name}" not found'), "application/json"
        previous = query.get("previous") == "true"
        container = query.get("container", "")
        text = self.logs.get((ns, name, container, previous))
        if text is None:
            text = next(
                (
                    t
                    for (n, p, _, prev), t in self.logs.items()
                    if n == ns and p == name and prev == previous
                ),
                None,
            )
        if text is None:
            which = "previous terminated container" if previous else "container"
            return (
                400,
                _status(
                    400, "BadRequest", f'{which} "{container or name}" in pod "{name}" not found'
                ),
                "application/json",
            )
        if query.get("tailLines"):
            text = "\n".join(text.splitlines()[-int(query["tailLines"]) :])
        return 200, text, "text/plain"

    def _metrics(self, plural: str, ns: str, name: str) -> tuple[int, Any, str]:
        items = [dict(m) for m in self.metrics.get(plural, [])]
        if plural == "pods" and ns:
            items = [
                m for m in items if (m.get("metadata") or {}).get("namespace", "default") == ns
            ]
        if name:
            found = [m for m in items if (m.get("metadata") or {}).get("name") == name]
            if not found:
                return (
                    404,
                    _status(404, "NotFound", f'{plural}.metrics.k8s.io "{name}" not found'),
                    "application/json",
                )
            return 200, found[0], "application/json"
        return (
            200,
            {"kind": "PodMetricsList" if plural == "pods" else "NodeMetricsList", "items": items},
            "application/json",
        )


def running(cluster: Cluster) -> Iterator[Cluster]:
    with cluster:
        yield cluster
