"""An HTTP double of the Kubernetes API, just enough for a kopf controller.

Discovery (``/api``, ``/api/v1`` with namespaces, secrets and events, ``/apis``,
``/apis/punchingfist.io/v1alpha1``, ``/apis/kopf.dev/v1`` with kopf's peering
resources), list and watch (chunked JSON lines from a resourceVersion, with BOOKMARK
events), merge-patch of objects and of ``/status``, deletion with finalizers
(deletionTimestamp first), secrets and event posting. Tests act as ``kubectl``
through the Python methods (``create``, ``update_spec``, ``delete``); the controller
sees only HTTP. Every request is recorded in ``calls`` with the bearer token it
came with, so that a test giving each replica its own token can tell who did what.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from shared.resources.schemas import GROUP, KINDS, VERSION

CORE = "v1"
CUSTOM = f"{GROUP}/{VERSION}"
# kopf's peering CRDs (k8s/crds/kopf-peering.yaml): no status subresource, so kopf
# merge-patches the peers into ``status`` through the object's own endpoint.
PEERING = "kopf.dev/v1"
# plural -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": (CORE, "Namespace", False),
    "secrets": (CORE, "Secret", True),
    "events": (CORE, "Event", True),
    **{kind.plural: (CUSTOM, kind.name, True) for kind in KINDS},
    "clusterkopfpeerings": (PEERING, "ClusterKopfPeering", False),
    "kopfpeerings": (PEERING, "KopfPeering", True),
}
# Resources whose status is a subresource (``/status``); the others keep it inline.
STATUS_SUBRESOURCE = frozenset(kind.plural for kind in KINDS)
GROUP_VERSIONS = (CUSTOM, PEERING)
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<namespace>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?"
    r"(?:/(?P<sub>status))?$"
)
# Seconds a quiet watch waits before sending a BOOKMARK.
BOOKMARK_EVERY = 0.5


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


class Call(NamedTuple):
    """One request: who sent it (the bearer token, "" without one), method, path."""

    caller: str
    method: str
    path: str


class PatchConflictError(Exception):
    """A JSON patch ``test`` operation failed (the object changed meanwhile)."""


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def json_patch(target: Any, operations: list[dict[str, Any]]) -> Any:  # noqa: PLR0912
    """RFC 6902: add, remove, replace, test (what kopf sends for finalizers)."""
    doc = copy.deepcopy(target)
    for operation in operations:
        *parents, last = _pointer(operation["path"])
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        op = operation["op"]
        if op == "test":
            actual = node[int(last)] if isinstance(node, list) else node.get(last)
            if actual != operation["value"]:
                raise PatchConflictError(f"test failed at {operation['path']}")
        elif op in ("add", "replace"):
            if isinstance(node, list):
                index = len(node) if last == "-" else int(last)
                if op == "add":
                    node.insert(index, operation["value"])
                else:
                    node[index] = operation["value"]
            else:
                node[last] = operation["value"]
        elif op == "remove":
            if isinstance(node, list):
                del node[int(last)]
            else:
                del node[last]
        else:
            raise PatchConflictError(f"unsupported op {op}")
    return doc


class KubeState:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.version = 1
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.log: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, type, plural, object)
        self.requests: list[tuple[str, str]] = []
        self.calls: list[Call] = []
        # (caller, plural) -> watch requests of that caller open now.
        self.open_watches: dict[tuple[str, str], int] = {}
        self.status_patches: list[tuple[str, str, dict[str, Any]]] = []
        self.stopping = False
        self.create("namespaces", "", {"metadata": {"name": "default"}})

    # -- what kubectl would do -------------------------------------------------
    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        api_version, kind, _ = RESOURCES[plural]
        obj = copy.deepcopy(body)
        obj.update(apiVersion=api_version, kind=kind)
        meta = obj.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        meta.update(
            uid=f"uid-{plural}-{meta['name']}",
            generation=1,
            creationTimestamp=_now(),
        )
        with self.lock:
            key = (plural, namespace, meta["name"])
            assert key not in self.objects, key
            self._store(plural, key, obj, "ADDED")
        return obj

    def update_spec(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        with self.lock:
            key = (plural, namespace, name)
            obj = copy.deepcopy(self.objects[key])
            obj["spec"] = spec
            obj["metadata"]["generation"] += 1
            self._store(plural, key, obj, "MODIFIED")

    def delete(self, plural: str, namespace: str, name: str) -> None:
        with self.lock:
            self._delete((plural, namespace, name))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            found = self.objects.get((plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def calls_by(self, caller: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.caller == caller]

    def watching(self, caller: str, plural: str) -> bool:
        """Has ``caller`` a watch on ``plural`` open (noticed closed within a BOOKMARK)?"""
        with self.lock:
            return self.open_watches.get((caller, plural), 0) > 0

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    # -- internals ------------------------------------------------------------
    def _store(
        self, plural: str, key: tuple[str, str, str], obj: dict[str, Any], event: str
    ) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects.pop(key, None)
            event = "DELETED"
        else:
            self.objects[key] = obj
        self.log.append((self.version, event, plural, copy.deepcopy(obj)))
        self.lock.notify_all()

    def _delete(self, key: tuple[str, str, str]) -> bool:
        obj = self.objects.get(key)
        if obj is None:
            return False
        obj = copy.deepcopy(obj)
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", _now())
            self._store(key[0], key, obj, "MODIFIED")
        else:
            obj["metadata"]["deletionTimestamp"] = _now()
            self._store(key[0], key, obj, "DELETED")
        return True

    def patch(
        self, key: tuple[str, str, str], patch: Any, status: bool, json_ops: bool = False
    ) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get(key)
            if obj is None:
                return None
            before = copy.deepcopy(obj)
            if json_ops:
                updated = json_patch(before, patch)
                # With a status subresource each endpoint changes only its part:
                # /status the status, the object everything else.
                if status:
                    updated = {**before, "status": updated.get("status") or {}}
                elif key[0] in STATUS_SUBRESOURCE:
                    if "status" in before:
                        updated["status"] = before["status"]
                    else:
                        updated.pop("status", None)
                self._store(key[0], key, updated, "MODIFIED")
                return copy.deepcopy(self.objects.get(key, updated))
            if status:
                self.status_patches.append((key[0], key[2], copy.deepcopy(patch)))
                updated = copy.deepcopy(before)
                updated["status"] = merge_patch(
                    before.get("status") or {}, patch.get("status") or {}
                )
            else:
                if key[0] in STATUS_SUBRESOURCE:
                    # The status subresource owns status: the main endpoint ignores it.
                    patch = {k: v for k, v in patch.items() if k != "status"}
                updated = merge_patch(before, patch)
                if updated.get("spec") != before.get("spec"):
                    updated["metadata"]["generation"] += 1
            self._store(key[0], key, updated, "MODIFIED")
            return copy.deepcopy(self.objects.get(key, updated))

    def listing(self, plural: str, namespace: str | None) -> tuple[list[dict[str, Any]], int]:
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (p, ns, _), obj in sorted(self.objects.items())
                if p == plural and (namespace is None or ns == namespace)
            ]
            return items, self.version

    def events_after(
        self, plural: str, namespace: str | None, since: int, timeout: float
    ) -> Iterator[dict[str, Any]]:
        """Watch events of ``plural`` after resourceVersion ``since``; BOOKMARKs when quiet."""
        deadline = _monotonic() + timeout
        position = since
        api_version, kind_name, _ = RESOURCES[plural]
        while not self.stopping and _monotonic() < deadline:
            with self.lock:
                fresh = self._fresh(plural, namespace, position)
                if not fresh:
                    self.lock.wait(BOOKMARK_EVERY)
                    fresh = self._fresh(plural, namespace, position)
                    if not fresh:
                        # Nothing of ours up to the current version: say so.
                        position = max(position, self.version)
            if not fresh:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": api_version,
                        "kind": kind_name,
                        "metadata": {"resourceVersion": str(position)},
                    },
                }
            for rv, event, obj in fresh:
                position = rv
                yield {"type": event, "object": obj}

    def _fresh(
        self, plural: str, namespace: str | None, position: int
    ) -> list[tuple[int, str, dict[str, Any]]]:
        return [
            (rv, event, obj)
            for rv, event, p, obj in self.log
            if rv > position
            and p == plural
            and (namespace is None or obj["metadata"].get("namespace") == namespace)
        ]


def _monotonic() -> float:
    import time

    return time.monotonic()


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _discovery(group_version: str) -> dict[str, Any]:
    resources = []
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
        if plural in STATUS_SUBRESOURCE:
            resources.append(
                {
                    "name": f"{plural}/status",
                    "singularName": "",
                    "namespaced": True,
                    "kind": kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> KubeState:
        return self.server.state

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    @property
    def caller(self) -> str:
        return (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()

    def _record(self, path: str) -> None:
        with self.state.lock:
            self.state.requests.append((self.command, path))
            self.state.calls.append(Call(self.caller, self.command, path))

    def _route(self) -> tuple[re.Match[str] | None, dict[str, list[str]]]:
        parsed = urllib.parse.urlsplit(self.path)
        self._record(parsed.path)
        return _PATH.match(parsed.path), urllib.parse.parse_qs(parsed.query)

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path
        if path == "/version":
            self._record(path)
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
        if path == "/api":
            self._record(path)
            return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            self._record(path)
            groups = []
            for group_version in GROUP_VERSIONS:
                group_name, version_name = group_version.split("/")
                entry = {"groupVersion": group_version, "version": version_name}
                groups.append({"name": group_name, "versions": [entry], "preferredVersion": entry})
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if path == "/api/v1" or path.removeprefix("/apis/") in GROUP_VERSIONS:
            self._record(path)
            return self._send(200, _discovery(CORE if path == "/api/v1" else path[len("/apis/") :]))
        match, query = self._route()
        if match is None or match["plural"] not in RESOURCES:
            return self._send(404, _status(404, "NotFound", f"no route {path}"))
        plural, namespace, name = match["plural"], match["namespace"], match["name"]
        if name:
            obj = self.state.get(plural, namespace or "", name)
            if obj is None:
                return self._send(404, _status(404, "NotFound", f'{plural} "{name}" not found'))
            return self._send(200, obj)
        if query.get("watch", ["false"])[0] in ("true", "1"):
            return self._watch(plural, namespace, query)
        items, version = self.state.listing(plural, namespace)
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

    def _watch(self, plural: str, namespace: str | None, query: dict[str, list[str]]) -> None:
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        timeout = float(query.get("timeoutSeconds", ["30"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        watch = (self.caller, plural)
        with self.state.lock:
            self.state.open_watches[watch] = self.state.open_watches.get(watch, 0) + 1
        try:
            for event in self.state.events_after(plural, namespace, since, timeout):
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

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_PATCH(self) -> None:
        match, _ = self._route()
        body = self._body()
        if match is None or not match["name"]:
            return self._send(404, _status(404, "NotFound", self.path))
        content_type = self.headers.get("Content-Type", "")
        if "merge-patch" not in content_type and "json-patch" not in content_type:
            return self._send(415, _status(415, "UnsupportedMediaType", content_type))
        if match["sub"] == "status" and match["plural"] not in STATUS_SUBRESOURCE:
            return self._send(404, _status(404, "NotFound", f"no status subresource {self.path}"))
        key = (match["plural"], match["namespace"] or "", match["name"])
        try:
            updated = self.state.patch(
                key, body, status=match["sub"] == "status", json_ops="json-patch" in content_type
            )
        except PatchConflictError as exc:
            return self._send(422, _status(422, "Invalid", str(exc)))
        if updated is None:
            return self._send(404, _status(404, "NotFound", self.path))
        return self._send(200, updated)

    def do_POST(self) -> None:
        match, _ = self._route()
        body = self._body()
        if match is None or match["name"]:
            return self._send(404, _status(404, "NotFound", self.path))
        body.setdefault("metadata", {}).setdefault("name", f"event-{len(self.state.log)}")
        return self._send(201, self.state.create(match["plural"], match["namespace"] or "", body))

    def do_DELETE(self) -> None:
        match, _ = self._route()
        if match is None or not match["name"]:
            return self._send(404, _status(404, "NotFound", self.path))
        with self.state.lock:
            found = self.state._delete((match["plural"], match["namespace"] or "", match["name"]))
        if not found:
            return self._send(404, _status(404, "NotFound", self.path))
        return self._send(200, {"kind": "Status", "status": "Success"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: KubeState


class KubeApiDouble:
    """Start with ``start()``; ``url`` is the API server address; ``state`` is the cluster."""

    def __init__(self) -> None:
        self.state = KubeState()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> KubeApiDouble:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def kubeconfig(self) -> str:
        return (
            "apiVersion: v1\nkind: Config\ncurrent-context: double\n"
            f"clusters: [{{name: double, cluster: {{server: '{self.url}'}}}}]\n"
            "users: [{name: tester, user: {token: test-token}}]\n"
            "contexts: [{name: double, context: {cluster: double, user: tester}}]\n"
        )
