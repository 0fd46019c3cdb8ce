"""An HTTP double of the Kubernetes API for Jobs and their pods, with a fake kubelet.

Speaks what the Job runner uses: create, get, watch (chunked JSON lines from a
resourceVersion, BOOKMARKs, 410 Gone for a compacted version) and delete of
``batch/v1`` Jobs; list of pods by label selector and their logs. A background
thread plays each Job's life like the Job controller and a kubelet would: a pod
after ``schedule_delay``, then either an image that cannot be pulled or a running
container that terminates after the test's ``Script.run_seconds`` with its logs and
exit code; ``activeDeadlineSeconds`` kills it (DeadlineExceeded). Tests read what
was sent (``created``, ``requests``, ``deleted``) and inject API failures (``fail``).

For a real ``kubectl`` pointed at it, it also serves the core API's discovery and
lets pods added with ``add_pod`` be listed and deleted (``deleted_pods``): the
injection tests check that an alert label never makes kubectl delete them.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Obj = dict[str, Any]
_JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+))?$")
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?P<log>/log)?)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TICK = 0.01


@dataclasses.dataclass
class Script:
    """What the container of a Job does."""

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
    method: str
    path: re.Pattern[str]
    code: int
    reason: str
    message: str
    times: int


@dataclasses.dataclass
class _Life:
    """The fake kubelet's notes on one Job."""

    created: float
    script: Script
    pod: str = ""
    started: float | None = None
    ended: float | None = None
    finished: bool = False


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "reason": reason,
        "message": message,
        "code": code,
    }


class KubeJobs:
    """The cluster's state; every change to a Job is an event for watchers."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.version = 100
        self.oldest_version = 0
        self.jobs: dict[tuple[str, str], Obj] = {}
        self.pods: dict[tuple[str, str], Obj] = {}
        self.logs: dict[tuple[str, str], bytes] = {}
        self.events: list[tuple[int, str, Obj]] = []
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.created: list[Obj] = []
        self.deleted: list[tuple[str, str | None]] = []
        self.deleted_pods: list[tuple[str, str]] = []
        self.failures: list[Failure] = []
        self.script: Callable[[Obj], Script] = lambda job: Script()
        self.honour_deadline = True
        # Watches (from a version) still to answer with 410 Gone.
        self.expire_watches = 0
        self.schedule_delay = 0.03
        self.stopping = False
        self.url = ""
        self._lives: dict[tuple[str, str], _Life] = {}
        self._pod_ids = itertools.count(1)

    # -- for tests ---------------------------------------------------------------
    def fail(
        self, method: str, path: str, code: int, *, reason: str, message: str, times: int = 1
    ) -> None:
        """The next ``times`` ``method`` requests whose path matches ``path`` get ``code``."""
        with self.lock:
            self.failures.append(Failure(method, re.compile(path), code, reason, message, times))

    def add_pod(self, namespace: str, name: str) -> None:
        """A running pod of no Job, for kubectl to find."""
        with self.lock:
            self.pods[(namespace, name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app": name},
                    "uid": f"uid-{name}",
                    "resourceVersion": str(self.version),
                    "creationTimestamp": _now(),
                },
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
                "status": {"phase": "Running"},
            }

    def delete_pod(self, namespace: str, name: str) -> Obj | None:
        with self.lock:
            pod = self.pods.pop((namespace, name), None)
            if pod is not None:
                self.deleted_pods.append((namespace, name))
            return pod

    def posts(self) -> list[str]:
        return [path for method, path, _ in self.requests if method == "POST"]

    def compact(self) -> None:
        """Forget every event so far: watches from an older version get 410 Gone."""
        with self.lock:
            self.oldest_version = self.version
            self.events.clear()

    # -- the API -----------------------------------------------------------------
    def create_job(self, namespace: str, body: Obj) -> tuple[int, Obj]:
        name = str((body.get("metadata") or {}).get("name") or "")
        if not _DNS_LABEL.match(name) or len(name) > 63:
            return 422, _status(422, "Invalid", f'Job.batch "{name}" is invalid: metadata.name')
        with self.lock:
            if (namespace, name) in self.jobs:
                return 409, _status(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            self.created.append(copy.deepcopy(body))
            job = copy.deepcopy(body)
            job.update(apiVersion="batch/v1", kind="Job")
            meta = job["metadata"]
            meta.update(namespace=namespace, uid=f"uid-{name}", creationTimestamp=_now())
            job["status"] = {}
            self._lives[(namespace, name)] = _Life(time.monotonic(), self.script(job))
            self._store(namespace, name, job, "ADDED")
            return 201, copy.deepcopy(job)

    def delete_job(self, namespace: str, name: str, policy: str | None) -> bool:
        with self.lock:
            job = self.jobs.pop((namespace, name), None)
            if job is None:
                return False
            self.deleted.append((name, policy))
            self._lives.pop((namespace, name), None)
            self.version += 1
            job["metadata"]["resourceVersion"] = str(self.version)
            self.events.append((self.version, "DELETED", copy.deepcopy(job)))
            if policy in ("Background", "Foreground"):
                for key in [k for k, pod in self.pods.items() if _owned(pod, name, namespace)]:
                    del self.pods[key]
            self.lock.notify_all()
            return True

    def job(self, namespace: str, name: str) -> Obj | None:
        with self.lock:
            found = self.jobs.get((namespace, name))
            return copy.deepcopy(found) if found else None

    def pods_matching(self, namespace: str, selector: str) -> list[Obj]:
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
        with self.lock:
            return [
                copy.deepcopy(pod)
                for (ns, _), pod in sorted(self.pods.items())
                if ns == namespace
                and all(pod["metadata"]["labels"].get(k) == v for k, v in wanted.items())
            ]

    def watch(
        self, namespace: str, name: str | None, since: int, seconds: float, bookmarks: bool
    ) -> Iterator[Obj]:
        deadline = time.monotonic() + seconds
        position = since
        with self.lock:
            expired = bool(since and self.expire_watches)
            self.expire_watches -= expired
            if expired or (since and since < self.oldest_version):
                yield {"type": "ERROR", "object": _status(410, "Expired", "too old")}
                return
            if not since:
                position = self.version
                current = [
                    job
                    for (ns, n), job in self.jobs.items()
                    if ns == namespace and name in (None, n)
                ]
            else:
                current = []
        for job in current:
            yield {"type": "ADDED", "object": copy.deepcopy(job)}
        while not self.stopping and time.monotonic() < deadline:
            with self.lock:
                fresh = self._fresh(namespace, name, position)
                if not fresh:
                    self.lock.wait(min(0.3, max(0.0, deadline - time.monotonic())))
                    fresh = self._fresh(namespace, name, position)
                if not fresh:
                    position = max(position, self.version)
            if not fresh and bookmarks:
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "metadata": {"resourceVersion": str(position)},
                    },
                }
            for version, event, obj in fresh:
                position = version
                yield {"type": event, "object": obj}

    def _fresh(self, namespace: str, name: str | None, position: int) -> list[tuple[int, str, Obj]]:
        return [
            (version, event, copy.deepcopy(obj))
            for version, event, obj in self.events
            if version > position
            and obj["metadata"]["namespace"] == namespace
            and name in (None, obj["metadata"]["name"])
        ]

    def _store(self, namespace: str, name: str, job: Obj, event: str) -> None:
        self.version += 1
        job["metadata"]["resourceVersion"] = str(self.version)
        self.jobs[(namespace, name)] = job
        self.events.append((self.version, event, copy.deepcopy(job)))
        self.lock.notify_all()

    # -- the Job controller and the kubelet ---------------------------------------
    def play(self) -> None:
        while not self.stopping:
            with self.lock:
                for key, life in list(self._lives.items()):
                    if not life.finished:
                        self._step(key, life, time.monotonic())
            time.sleep(TICK)

    def _step(self, key: tuple[str, str], life: _Life, now: float) -> None:
        namespace, name = key
        job = copy.deepcopy(self.jobs[key])
        status = job["status"]
        deadline = job["spec"].get("activeDeadlineSeconds")
        if (
            self.honour_deadline
            and deadline
            and now - life.created >= deadline
            and not status.get("conditions")
        ):
            self.pods.pop((namespace, life.pod), None)
            status.update(active=0, ready=0, failed=1)
            status["conditions"] = [
                _cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            ]
            life.finished = True
            return self._store(namespace, name, job, "MODIFIED")
        if not life.pod:
            if now - life.created < self.schedule_delay:
                return None
            life.pod = f"{name}-{next(self._pod_ids):05d}"
            labels = {
                "job-name": name,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": job["metadata"]["uid"],
                **(job["spec"]["template"].get("metadata") or {}).get("labels", {}),
            }
            self.pods[(namespace, life.pod)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": life.pod,
                    "namespace": namespace,
                    "labels": labels,
                    "creationTimestamp": _now(),
                },
                "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                "status": {"phase": "Pending", "containerStatuses": [_container(waiting={})]},
            }
            status.update(active=1, ready=0, startTime=_now())
            return self._store(namespace, name, job, "MODIFIED")
        pod = self.pods[(namespace, life.pod)]
        script = life.script
        if script.pull_error:
            waited = now - life.created
            pulling = script.pull_error == "ErrImagePull"
            reason = "ImagePullBackOff" if pulling and waited >= 0.3 else script.pull_error
            image = pod["spec"]["containers"][0]["image"]
            message = script.pull_message or f'Back-off pulling image "{image}": not found'
            pod["status"]["containerStatuses"] = [
                _container(waiting={"reason": reason, "message": message})
            ]
            return None
        if life.started is None:
            life.started = now
            pod["status"].update(phase="Running")
            pod["status"]["containerStatuses"] = [_container(running={}, ready=True)]
            status.update(ready=1)
            return self._store(namespace, name, job, "MODIFIED")
        if life.ended is None and now - life.started >= script.run_seconds:
            life.ended = now
            code = script.exit_code
            pod["status"].update(phase="Succeeded" if code == 0 else "Failed")
            terminated = {
                "exitCode": code,
                "reason": script.reason or ("Completed" if code == 0 else "Error"),
            }
            if script.message:
                terminated["message"] = script.message
            pod["status"]["containerStatuses"] = [_container(terminated=terminated)]
            self.logs[(namespace, life.pod)] = script.logs.encode()
            status.update(active=0, ready=0, **({"succeeded": 1} if code == 0 else {"failed": 1}))
            # Since Kubernetes 1.31 a target condition comes before the final one.
            status["conditions"] = [
                _cond("SuccessCriteriaMet" if code == 0 else "FailureTarget", "", "")
            ]
            return self._store(namespace, name, job, "MODIFIED")
        if life.ended is not None:
            code = script.exit_code
            final = (
                _cond("Complete", "", "")
                if code == 0
                else _cond("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit")
            )
            status["conditions"] = [*status.get("conditions", []), final]
            status["completionTime"] = _now()
            life.finished = True
            return self._store(namespace, name, job, "MODIFIED")
        return None


def _cond(kind: str, reason: str, message: str) -> Obj:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


def _container(ready: bool = False, **state: Obj) -> Obj:
    return {"name": "step", "ready": ready, "state": state, "image": "", "restartCount": 0}


def _owned(pod: Obj, job: str, namespace: str) -> bool:
    return bool(
        pod["metadata"]["namespace"] == namespace and pod["metadata"]["labels"]["job-name"] == job
    )


def _resource(name: str, kind: str) -> Obj:
    verbs = ["create", "delete", "get", "list", "watch"]
    return {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": verbs}


# Legacy (not aggregated) discovery: enough for kubectl to map pods and jobs.
_DISCOVERY: dict[str, Obj] = {
    "/api": {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [_resource("pods", "Pod"), _resource("pods/log", "Pod")],
    },
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "batch",
                "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
            }
        ],
    },
    "/apis/batch/v1": {
        "kind": "APIResourceList",
        "groupVersion": "batch/v1",
        "resources": [_resource("jobs", "Job")],
    },
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def state(self) -> KubeJobs:
        return self.server.state

    def _send(self, code: int, body: Obj | bytes, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _begin(self) -> tuple[str, dict[str, list[str]]] | None:
        """Record the request and answer an injected failure; None when answered."""
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        length = int(self.headers.get("Content-Length") or 0)
        self.body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        with self.state.lock:
            self.state.requests.append((self.command, parsed.path, query))
            for failure in self.state.failures:
                if (
                    failure.times
                    and failure.method == self.command
                    and failure.path.search(parsed.path)
                ):
                    failure.times -= 1
                    status = _status(failure.code, failure.reason, failure.message)
                    self._send(failure.code, status)
                    return None
        return parsed.path, query

    def do_POST(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        match = _JOBS.match(begun[0])
        if match is None or match["name"]:
            return self._send(404, _status(404, "NotFound", begun[0]))
        code, obj = self.state.create_job(match["ns"], self.body)
        return self._send(code, obj)

    def do_DELETE(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        path, query = begun
        pod_match = _PODS.match(path)
        if pod_match and pod_match["name"] and not pod_match["log"]:
            pod = self.state.delete_pod(pod_match["ns"], pod_match["name"])
            if pod is None:
                return self._send(404, _status(404, "NotFound", f'pods "{pod_match["name"]}"'))
            return self._send(200, pod)
        match = _JOBS.match(path)
        if match is None or not match["name"]:
            return self._send(404, _status(404, "NotFound", path))
        policy = query.get("propagationPolicy", [None])[0] or self.body.get("propagationPolicy")
        if not self.state.delete_job(match["ns"], match["name"], policy):
            return self._send(
                404, _status(404, "NotFound", f'jobs.batch "{match["name"]}" not found')
            )
        return self._send(200, _status(200, "", ""))

    def do_GET(self) -> None:
        begun = self._begin()
        if begun is None:
            return None
        path, query = begun
        if path in _DISCOVERY:
            return self._send(200, _DISCOVERY[path])
        if match := _JOBS.match(path):
            return self._get_jobs(match["ns"], match["name"], query)
        if (match := _PODS.match(path)) and match["log"]:
            log = self.state.logs.get((match["ns"], match["name"]))
            if log is None:
                return self._send(404, _status(404, "NotFound", f'pods "{match["name"]}"'))
            return self._send(200, log, "text/plain")
        if match and not match["name"]:
            selector = query.get("labelSelector", [""])[0]
            items = self.state.pods_matching(match["ns"], selector)
            return self._send(
                200,
                {
                    "apiVersion": "v1",
                    "kind": "PodList",
                    "metadata": {"resourceVersion": str(self.state.version)},
                    "items": items,
                },
            )
        return self._send(404, _status(404, "NotFound", path))

    def _get_jobs(self, namespace: str, name: str | None, query: dict[str, list[str]]) -> None:
        if name:
            job = self.state.job(namespace, name)
            if job is None:
                return self._send(404, _status(404, "NotFound", f'jobs.batch "{name}" not found'))
            return self._send(200, job)
        selector = query.get("fieldSelector", [""])[0]
        only = selector.removeprefix("metadata.name=") if selector else None
        if query.get("watch", [""])[0] not in ("true", "1"):
            with self.state.lock:
                items = [
                    copy.deepcopy(job)
                    for (ns, n), job in self.state.jobs.items()
                    if ns == namespace and only in (None, n)
                ]
            return self._send(200, {"kind": "JobList", "apiVersion": "batch/v1", "items": items})
        since = int(query.get("resourceVersion", ["0"])[0] or 0)
        seconds = float(query.get("timeoutSeconds", ["30"])[0])
        bookmarks = query.get("allowWatchBookmarks", [""])[0] in ("true", "1")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in self.state.watch(namespace, only, since, seconds, bookmarks):
                line = json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: KubeJobs


class JobsDouble:
    """The server, its state and the fake kubelet thread; a context manager."""

    def __init__(self) -> None:
        self.state = KubeJobs()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.url = self.state.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True),
            threading.Thread(target=self.state.play, daemon=True),
        ]

    def __enter__(self) -> KubeJobs:
        for thread in self._threads:
            thread.start()
        return self.state

    def __exit__(self, *exc: object) -> None:
        with self.state.lock:
            self.state.stopping = True
            self.state.lock.notify_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(5)
