"""The state behind the Kubernetes API double (``tests.support.kube_api``): the cluster.

Objects by (plural, namespace, name), a log of watch events by resourceVersion, and
the API's semantics over them: create with names checked, merge and JSON patches of
objects, of ``/status`` and of ``/scale`` (generation bumped on spec changes),
deletion held by finalizers and propagated to owned objects, list with label and
field selectors, and watch from a resourceVersion with BOOKMARKs and 410 Gone. Besides
objects it holds what the API serves from elsewhere: container logs (current and
previous, per container), metrics.k8s.io usage, and namespaces where RBAC forbids
everything (403 with the API's message).

Tests use it as kubectl: ``put`` (any object as ``kubectl apply`` would leave it,
status included), ``load`` (a scenario: objects, logs, metrics, forbidden
namespaces), ``set_log``, ``set_metrics``, ``set_status`` and
``roll_out_when_restarted`` (playing a controller), ``create``, ``update_spec``,
``delete``, ``get``; and read what clients did (``requests``, ``patched``,
``deleted``). The HTTP layer and the kubelet only call it.

It must not know HTTP, and must not decide for the clients under test.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

from shared.resources.schemas import GROUP, KINDS, VERSION
from tests.support.waiting import wait_for

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace, name); namespace "" when cluster-wide

CORE = "v1"
BATCH = "batch/v1"
APPS = "apps/v1"
# Served from the objects' usage in ``Cluster.metrics``, not from stored objects.
METRICS = "metrics.k8s.io/v1beta1"
CUSTOM = f"{GROUP}/{VERSION}"
# kopf's peering CRDs (k8s/crds/kopf-peering.yaml): no status subresource, so kopf
# merge-patches the peers into ``status`` through the object's own endpoint.
PEERING = "kopf.dev/v1"
# plural -> (apiVersion, kind, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "namespaces": (CORE, "Namespace", False),
    "secrets": (CORE, "Secret", True),
    "events": (CORE, "Event", True),
    "pods": (CORE, "Pod", True),
    "services": (CORE, "Service", True),
    "endpoints": (CORE, "Endpoints", True),
    "nodes": (CORE, "Node", False),
    "jobs": (BATCH, "Job", True),
    "deployments": (APPS, "Deployment", True),
    "replicasets": (APPS, "ReplicaSet", True),
    "statefulsets": (APPS, "StatefulSet", True),
    "daemonsets": (APPS, "DaemonSet", True),
    **{kind.plural: (CUSTOM, kind.name, True) for kind in KINDS},
    "clusterkopfpeerings": (PEERING, "ClusterKopfPeering", False),
    "kopfpeerings": (PEERING, "KopfPeering", True),
}
PLURALS = {kind: plural for plural, (_, kind, _) in RESOURCES.items()}
# Resources whose status is a subresource (``/status``); the others keep it inline.
WORKLOADS = frozenset({"deployments", "replicasets", "statefulsets", "daemonsets"})
STATUS_SUBRESOURCE = frozenset({"jobs", *WORKLOADS, *(kind.plural for kind in KINDS)})
# Resources with a ``/scale`` subresource (autoscaling/v1 Scale over spec.replicas).
SCALE_SUBRESOURCE = frozenset({"deployments", "replicasets", "statefulsets"})
GROUP_VERSIONS = (APPS, BATCH, CUSTOM, PEERING, METRICS)
# A Job's name is also its pods' ``job-name`` label value: a DNS label, not a subdomain.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# Seconds a quiet watch waits before sending a BOOKMARK (the way a watch whose client
# went away is noticed, too).
BOOKMARK_EVERY = 0.3


class Call(NamedTuple):
    """One request: who sent it (the bearer token, "" without one), method, path, query."""

    caller: str
    method: str
    path: str
    query: dict[str, list[str]]


@dataclasses.dataclass
class Script:
    """What the container of a Job does (played by ``tests.support.kubelet``)."""

    logs: str = ""
    exit_code: int = 0
    run_seconds: float = 0.05
    # Termination message (what the container wrote to /dev/termination-log).
    message: str = ""
    # terminated.reason; default Completed / Error by exit code.
    reason: str = ""
    # "ErrImagePull": the image never comes (then ImagePullBackOff). Another waiting
    # reason (CreateContainerConfigError) stays as it is, with ``pull_message``.
    pull_error: str = ""
    pull_message: str = ""


@dataclasses.dataclass
class Failure:
    """An injected answer for the next ``times`` requests matching ``method`` and ``path``."""

    method: str
    path: re.Pattern[str]
    code: int
    reason: str
    message: str
    times: int


class PatchConflictError(Exception):
    """A JSON patch ``test`` operation failed (the object changed meanwhile)."""


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


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def json_patch(target: Any, operations: list[Obj]) -> Any:  # noqa: PLR0912
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


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str) -> Obj:
    """A ``Status`` object, as the API server answers errors (and deletions)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "reason": reason,
        "message": message,
        "code": code,
    }


def _terms(selector: str) -> Iterator[tuple[str, str, str]]:
    """(key, operator, value) of an equality-based selector: ``=``, ``==``, ``!=``,
    ``key`` (exists) and ``!key`` (does not)."""
    for term in filter(None, (part.strip() for part in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            yield key.strip(), "!=", value.strip()
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            yield key.strip(), "=", value.strip()
        elif term.startswith("!"):
            yield term[1:], "!", ""
        else:
            yield term, "exists", ""


def _selected(values: Callable[[str], str | None], selector: str) -> bool:
    for key, operator, value in _terms(selector):
        found = values(key)
        if (
            (operator == "=" and found != value)
            or (operator == "!=" and found == value)
            or (operator == "exists" and found is None)
            or (operator == "!" and found is not None)
        ):
            return False
    return True


def _field(obj: Obj, path: str) -> str | None:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return None if node is None else str(node)


def _matches(
    obj: Obj, namespace: str | None, name: str | None, labels: str, fields: str = ""
) -> bool:
    meta = obj["metadata"]
    own = meta.get("labels") or {}
    return (
        (namespace is None or meta.get("namespace", "") == namespace)
        and name in (None, meta["name"])
        and _selected(own.get, labels)
        and _selected(lambda path: _field(obj, path), fields)
    )


class LogKey(NamedTuple):
    namespace: str
    pod: str
    container: str  # "" for a pod's only (or default) container
    previous: bool  # the last terminated container's log (``?previous=true``)


class Cluster:
    """The cluster's state; every change to an object is an event for watchers."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.version = 1
        # Watches from before this resourceVersion get 410 Gone (``compact``).
        self.oldest_version = 0
        self.objects: dict[Key, Obj] = {}
        self.log: list[tuple[int, str, str, Obj]] = []  # (rv, event type, plural, object)
        self.logs: dict[LogKey, str] = {}
        # metrics.k8s.io items by plural ("pods", "nodes"), as PodMetrics/NodeMetrics.
        self.metrics: dict[str, list[Obj]] = {"pods": [], "nodes": []}
        # Namespaces where every request answers 403, as RBAC without a Role would.
        self.forbidden: set[str] = set()
        self.requests: list[Call] = []
        self.created: list[Obj] = []  # bodies as clients (and ``create``) sent them
        self.deleted: list[tuple[str, str | None]] = []  # (name, propagationPolicy)
        self.status_patches: list[tuple[str, str, Obj]] = []  # (plural, name, patch)
        # Patches of objects and of /scale as clients sent them: (plural, "ns/name", body).
        self.patched: list[tuple[str, str, Obj]] = []
        self.failures: list[Failure] = []
        # (caller, plural) -> watch requests of that caller open now.
        self.open_watches: dict[tuple[str, str], int] = {}
        # Watches (from a version) still to answer with 410 Gone.
        self.expire_watches = 0
        # What the workloads do, for the kubelet: each Job's container, how soon its
        # pod is scheduled, and whether activeDeadlineSeconds is enforced.
        self.script: Callable[[Obj], Script] = lambda job: Script()
        self.schedule_delay = 0.03
        self.honour_deadline = True
        self.stopping = False
        self.url = ""
        self._names = itertools.count(1)
        self.create("namespaces", "", {"metadata": {"name": "default"}})
        self.created.clear()  # the cluster came with it; no client created it

    # -- what kubectl would do -------------------------------------------------------
    def put(self, obj: Obj) -> Obj:
        """Store ``obj`` (any known ``kind``) as it is, status included, as if applied
        and reconciled; namespaced objects default to ``default``. Replaces one of the
        same name."""
        plural = PLURALS[obj["kind"]]
        api_version, kind, namespaced = RESOURCES[plural]
        obj = copy.deepcopy(obj)
        obj.update(apiVersion=api_version, kind=kind)
        meta = obj.setdefault("metadata", {})
        namespace = meta.setdefault("namespace", "default") if namespaced else ""
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", now())
        with self.lock:
            key = (plural, namespace, meta["name"])
            self.store(key, obj, "MODIFIED" if key in self.objects else "ADDED")
        return copy.deepcopy(obj)

    def set_log(
        self, namespace: str, pod: str, text: str, *, container: str = "", previous: bool = False
    ) -> None:
        with self.lock:
            self.logs[LogKey(namespace, pod, container, previous)] = text

    def set_metrics(self, plural: str, items: list[Obj]) -> None:
        """Usage as ``kubectl top`` reads it: PodMetrics (``metadata``, ``containers[]``
        with ``usage``) for "pods", NodeMetrics (``metadata``, ``usage``) for "nodes"."""
        with self.lock:
            self.metrics[plural] = [copy.deepcopy(item) for item in items]

    def set_status(self, plural: str, namespace: str, name: str, status: Obj) -> None:
        """Merge ``status`` into the object, as its controller would (not a client's patch)."""
        with self.lock:
            key = (plural, namespace, name)
            obj = copy.deepcopy(self.objects[key])
            obj["status"] = merge_patch(obj.get("status") or {}, status)
            self.store(key, obj, "MODIFIED")

    def roll_out_when_restarted(
        self, namespace: str, name: str, *, replicas: int, after: float = 0.0, timeout: float = 120
    ) -> threading.Thread:
        """Play the Deployment controller in a thread: once a client patches anything
        (the rollout restart), ``after`` seconds later the Deployment's new pods are all
        ready for its generation. Join the thread to see its failure."""

        def roll() -> None:
            wait_for(lambda: self.patched, timeout, "the rollout restart")
            time.sleep(after)
            deployment = self.get("deployments", namespace, name)
            assert deployment is not None, f"no Deployment {namespace}/{name}"
            ready = {
                "observedGeneration": deployment["metadata"]["generation"],
                "replicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "updatedReplicas": replicas,
            }
            self.set_status("deployments", namespace, name, ready)

        thread = threading.Thread(target=roll, daemon=True, name=f"rollout {namespace}/{name}")
        thread.start()
        return thread

    def load(self, state: Mapping[str, Any]) -> Cluster:
        """A recorded scenario's cluster: ``objects`` (each with its ``kind``), ``logs``
        (``namespace``, ``pod``, ``container``, ``previous``, ``text``), ``metrics``
        (``pods``, ``nodes``) and ``forbidden`` namespaces."""
        for obj in state.get("objects") or []:
            self.put(obj)
        for log in state.get("logs") or []:
            self.set_log(
                log.get("namespace", "default"),
                log["pod"],
                log.get("text", ""),
                container=log.get("container", ""),
                previous=bool(log.get("previous")),
            )
        for plural, items in (state.get("metrics") or {}).items():
            self.set_metrics(plural, items or [])
        with self.lock:
            self.forbidden.update(state.get("forbidden") or [])
        return self

    def create(self, plural: str, namespace: str, body: Obj) -> Obj:
        code, obj = self.post(plural, namespace, body)
        assert code == 201, obj
        return obj

    def create_job(self, namespace: str, body: Obj) -> tuple[int, Obj]:
        return self.post("jobs", namespace, body)

    def update_spec(self, plural: str, namespace: str, name: str, spec: Obj) -> None:
        with self.lock:
            key = (plural, namespace, name)
            obj = copy.deepcopy(self.objects[key])
            obj["spec"] = spec
            obj["metadata"]["generation"] += 1
            self.store(key, obj, "MODIFIED")

    def delete(self, plural: str, namespace: str, name: str, policy: str | None = None) -> bool:
        with self.lock:
            if (plural, namespace, name) not in self.objects:
                return False
            self.deleted.append((name, policy))
            self.remove((plural, namespace, name), policy)
            return True

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            found = self.objects.get((plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def job(self, namespace: str, name: str) -> Obj | None:
        return self.get("jobs", namespace, name)

    def pods_matching(self, namespace: str, selector: str) -> list[Obj]:
        return self.listing("pods", namespace, labels=selector)[0]

    # -- what tests read and inject --------------------------------------------------
    def calls_by(self, caller: str) -> list[Call]:
        with self.lock:
            return [call for call in self.requests if call.caller == caller]

    def posts(self) -> list[str]:
        with self.lock:
            return [call.path for call in self.requests if call.method == "POST"]

    def watching(self, caller: str, plural: str) -> bool:
        """Has ``caller`` a watch on ``plural`` open (noticed closed within a BOOKMARK)?"""
        with self.lock:
            return self.open_watches.get((caller, plural), 0) > 0

    def fail(
        self, method: str, path: str, code: int, *, reason: str, message: str, times: int = 1
    ) -> None:
        """The next ``times`` ``method`` requests whose path matches ``path`` get ``code``."""
        with self.lock:
            self.failures.append(Failure(method, re.compile(path), code, reason, message, times))

    def compact(self) -> None:
        """Forget every event so far: watches from an older version get 410 Gone."""
        with self.lock:
            self.oldest_version = self.version
            self.log.clear()

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    # -- the API -----------------------------------------------------------------------
    def log_of(self, namespace: str, pod: str, container: str, previous: bool) -> str | None:
        """The log ``GET .../pods/<pod>/log`` serves: the container's, else the pod's
        only one; None when there is none (the API's 400)."""
        with self.lock:
            exact = self.logs.get(LogKey(namespace, pod, container, previous))
            if exact is not None:
                return exact
            candidates = [
                text
                for key, text in self.logs.items()
                if (key.namespace, key.pod, key.previous) == (namespace, pod, previous)
                and (not container or not key.container)
            ]
            return candidates[0] if candidates else None

    def usage(self, plural: str, namespace: str | None, name: str = "") -> list[Obj]:
        """metrics.k8s.io items of ``plural`` in ``namespace`` (all when None)."""
        with self.lock:
            return [
                copy.deepcopy(item)
                for item in self.metrics.get(plural, [])
                if (
                    plural != "pods"
                    or namespace is None
                    or item["metadata"].get("namespace", "default") == namespace
                )
                and name in ("", item["metadata"]["name"])
            ]

    def post(self, plural: str, namespace: str, body: Obj) -> tuple[int, Obj]:
        """Create, as ``POST`` does: 201 with the object, or the error Status."""
        api_version, kind, namespaced = RESOURCES[plural]
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{next(self._names):05d}"
        name = str(meta.get("name") or "")
        valid = _DNS_LABEL if plural == "jobs" else _DNS_SUBDOMAIN
        if not valid.match(name) or len(name) > (63 if plural == "jobs" else 253):
            return 422, status(422, "Invalid", f'{kind} "{name}" is invalid: metadata.name')
        namespace = namespace if namespaced else ""
        with self.lock:
            key = (plural, namespace, name)
            if key in self.objects:
                return 409, status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            self.created.append(copy.deepcopy(body))
            obj.update(apiVersion=api_version, kind=kind)
            if namespace:
                meta["namespace"] = namespace
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=now())
            if plural in STATUS_SUBRESOURCE:
                # Only /status writes the status; a new Job starts with an empty one.
                obj.pop("status", None)
                if plural == "jobs":
                    obj["status"] = {}
            self.store(key, obj, "ADDED")
            return 201, copy.deepcopy(obj)

    def patch(self, key: Key, patch: Any, status: bool, json_ops: bool = False) -> Obj | None:
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
            elif status:
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
            self.store(key, updated, "MODIFIED")
            return copy.deepcopy(self.objects.get(key, updated))

    def listing(
        self,
        plural: str,
        namespace: str | None,
        *,
        name: str | None = None,
        labels: str = "",
        fields: str = "",
    ) -> tuple[list[Obj], int]:
        with self.lock:
            items = [
                copy.deepcopy(obj)
                for (p, _, _), obj in sorted(self.objects.items())
                if p == plural and _matches(obj, namespace, name, labels, fields)
            ]
            return items, self.version

    def watch(
        self,
        plural: str,
        namespace: str | None,
        since: int,
        seconds: float,
        *,
        name: str | None = None,
        bookmarks: bool = True,
    ) -> Iterator[Obj]:
        """Events of ``plural`` after resourceVersion ``since`` for ``seconds``.

        From version 0, the objects there are now come first as ADDED, as the API
        server does. A version older than the last ``compact`` is 410 Gone.
        """
        deadline = time.monotonic() + seconds
        api_version, kind, _ = RESOURCES[plural]
        with self.lock:
            expired = bool(since and self.expire_watches)
            self.expire_watches -= expired
            gone = expired or bool(since and since < self.oldest_version)
            position = since or self.version
            current = (
                []
                if since or gone
                else [
                    copy.deepcopy(obj)
                    for (p, _, _), obj in sorted(self.objects.items())
                    if p == plural and _matches(obj, namespace, name, "")
                ]
            )
        if gone:
            yield {"type": "ERROR", "object": status(410, "Expired", "too old resource version")}
            return
        for obj in current:
            yield {"type": "ADDED", "object": obj}
        while not self.stopping and time.monotonic() < deadline:
            with self.lock:
                fresh = self._fresh(plural, namespace, name, position)
                if not fresh:
                    self.lock.wait(min(BOOKMARK_EVERY, max(0.0, deadline - time.monotonic())))
                    fresh = self._fresh(plural, namespace, name, position)
                    if not fresh:
                        # Nothing of ours up to the current version: say so.
                        position = max(position, self.version)
            if not fresh and bookmarks:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": api_version,
                        "kind": kind,
                        "metadata": {"resourceVersion": str(position)},
                    },
                }
            for version, event, obj in fresh:
                position = version
                yield {"type": event, "object": obj}

    # -- for the fake controllers (the kubelet, garbage collection) -------------------
    def store(self, key: Key, obj: Obj, event: str) -> None:
        """Write ``obj`` as the new version of ``key`` (caller holds the lock)."""
        self.version += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.version)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.objects.pop(key, None)
            event = "DELETED"
        else:
            self.objects[key] = obj
        self.log.append((self.version, event, key[0], copy.deepcopy(obj)))
        self.lock.notify_all()

    def remove(self, key: Key, policy: str | None = None) -> None:
        """Delete ``key`` (caller holds the lock): finalizers delay it; Background and
        Foreground also delete what it owns, as the garbage collector would."""
        obj = copy.deepcopy(self.objects[key])
        obj["metadata"].setdefault("deletionTimestamp", now())
        self.store(key, obj, "MODIFIED" if obj["metadata"].get("finalizers") else "DELETED")
        if policy in ("Background", "Foreground") and key not in self.objects:
            uid = obj["metadata"]["uid"]
            for owned, child in list(self.objects.items()):
                refs = child["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == uid for ref in refs) and owned in self.objects:
                    self.remove(owned, policy)

    def _fresh(
        self, plural: str, namespace: str | None, name: str | None, position: int
    ) -> list[tuple[int, str, Obj]]:
        return [
            (version, event, copy.deepcopy(obj))
            for version, event, p, obj in self.log
            if version > position and p == plural and _matches(obj, namespace, name, "")
        ]
