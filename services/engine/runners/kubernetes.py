"""The Kubernetes runner: a cli step as a ``batch/v1`` Job from the Workflow's image.

Same contract as the local runner (``Runner.run(Command) -> Completed``): the Job's
one container runs the step's argv (or ``/bin/sh -c`` for ``shell: true``) with the
step's environment only; its log becomes ``stdout`` (Kubernetes interleaves the
container's stdout and stderr into one log), its termination message ``stderr``,
and its exit code ``exit_code``. Output is bounded like the local runner's.

A step's command may hold what an alert said, so its pod gets as little as works:
non-root, no privilege escalation, no capabilities, the runtime's default seccomp
profile, a read-only root filesystem with an emptyDir on ``/tmp`` (and ``HOME``
there), no service links, requests and limits, and the Workflow's own service
account (``runtime.serviceAccountName``) with no token unless the Workflow asks for
one. The Job goes to the Workflow's namespace unless the engine names one.

The Job is named from the command's label (run id, step index, attempt), so a
redelivered step whose Job already exists adopts it (409 AlreadyExists) instead
of running the command twice. It has ``backoffLimit: 0`` (retries are the engine's,
not Kubernetes'), ``activeDeadlineSeconds`` = the step timeout (Kubernetes kills it
when it runs over) and ``ttlSecondsAfterFinished``. The runner deletes the Job with
its pods when it is done, whatever happened; the TTL only covers a worker that died
before it could (the original implementation leaked its pods).

Waiting is a watch on the one Job, opened from the last resourceVersion seen, in
windows of ``watch_seconds``. Between windows (while no pod is ready) the runner
looks at the Job's pods for an image that cannot be pulled: Kubernetes retries a
pull forever, so past ``image_pull_grace`` that is a permanent failure naming the
image, not a timeout ten minutes later.

This module does no I/O of its own: it talks to the API only through
``services.engine.runners.kube.KubeClient``, which raises only our errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from services.engine.runners import kube
from services.engine.runners.bases import Command, CommandTimeoutError, Completed
from shared.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

CONTAINER = "step"
MANAGED_BY = "punchingfist"
LABEL_PREFIX = "punchingfist.io/"
# Pod waiting reasons of a container that cannot start. Kubernetes keeps retrying
# the first three (a missing Secret may appear; runAsNonRoot with an image that runs
# as root never will); the last two never succeed.
PULL_RETRYING = frozenset({"ErrImagePull", "ImagePullBackOff", "CreateContainerConfigError"})
PULL_HOPELESS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", *PULL_HOPELESS})
TMP_VOLUME = "tmp"
# The container's own /tmp (an emptyDir), not a shared host directory.
TMP = "/tmp"  # noqa: S108
# Suffixes of Kubernetes quantities and what they multiply by.
_QUANTITY_SUFFIXES = {
    "m": 10**-3,
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$")
_NAME_MAX = 63
# Seconds under which a watch that ended with the Job unfinished counts as cut short.
_EARLY = 0.2
_INVALID_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_INVALID_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")

Obj = dict[str, Any]


def job_name(label: str) -> str:
    """A DNS-1123 label (<= 63 chars) derived only from ``label``: same label, same Job.

    63 and not 253 because the Job's name is also the value of its pods' ``job-name``
    label. A label that had to be changed or cut gets a hash of the original, so two
    labels never share a name.
    """
    cleaned = _INVALID_NAME_CHARS.sub("-", label.lower()).strip("-")
    name = f"pf-{cleaned}"
    if cleaned == label and len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(label.encode()).hexdigest()[:10]
    return f"{name[: _NAME_MAX - len(digest) - 1].rstrip('-')}-{digest}"


def label_value(value: str) -> str:
    """``value`` made a valid label value (<= 63, alphanumeric at both ends)."""
    cleaned = _INVALID_LABEL_CHARS.sub("-", value)[:_NAME_MAX]
    return cleaned.strip("-_.")


def quantity(text: str) -> float:
    """The value of a Kubernetes quantity (``100m`` -> 0.1, ``1Ki`` -> 1024)."""
    match = _QUANTITY.match(text.strip())
    if not match or match.group(2) not in _QUANTITY_SUFFIXES:
        raise PermanentError(f"{text!r} is not a Kubernetes quantity")
    return float(match.group(1)) * _QUANTITY_SUFFIXES[match.group(2)]


def container_resources(
    defaults: Mapping[str, Mapping[str, str]], workflow: Mapping[str, Mapping[str, str]]
) -> Obj:
    """The Workflow's requests and limits over the engine's, per resource.

    A Workflow that asks for more than a default limit (requests.memory: 1Gi against
    512Mi) gets that limit raised to its request instead of an invalid pod.
    """
    requests = {**defaults.get("requests", {}), **workflow.get("requests", {})}
    limits = {**defaults.get("limits", {}), **workflow.get("limits", {})}
    for name, wanted in requests.items():
        given = workflow.get("limits", {}).get(name)
        if name in limits and given is None and quantity(wanted) > quantity(limits[name]):
            limits[name] = wanted
    out: Obj = {}
    if requests:
        out["requests"] = dict(requests)
    if limits:
        out["limits"] = dict(limits)
    return out


def job_manifest(
    name: str,
    namespace: str,
    command: Command,
    ttl_seconds: int,
    *,
    resources: Mapping[str, Mapping[str, str]] | None = None,
    run_as_user: int = 0,
) -> Obj:
    argv = ["/bin/sh", "-c", command.argv[0]] if command.shell else list(command.argv)
    labels = {
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **{
            LABEL_PREFIX + key: label_value(value)
            for key, value in command.labels.items()
            if label_value(value)
        },
    }
    # A read-only root leaves /tmp as the only writable place; tools that write
    # under $HOME (kubectl's cache) find it there.
    env = {"HOME": TMP, **command.env}
    pod_security: Obj = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    if run_as_user:
        pod_security.update(runAsUser=run_as_user, runAsGroup=run_as_user)
    container: Obj = {
        "name": CONTAINER,
        "image": command.image,
        "command": argv,
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP}],
    }
    limits = container_resources(resources or {}, command.resources)
    if limits:
        container["resources"] = limits
    pod_spec: Obj = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": command.automount_token,
        # No {SERVICE}_HOST/_PORT variables of every Service in the namespace.
        "enableServiceLinks": False,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    if command.service_account:
        pod_spec["serviceAccountName"] = command.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            # Retries belong to the engine (the step's ``retries``), with its backoff.
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(command.timeout)),
            "ttlSecondsAfterFinished": ttl_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def _condition(job: Obj) -> Obj | None:
    """The Job's ``Complete`` or ``Failed`` condition when it is finished, else None."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return dict(condition)
    return None


def _resource_version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _container_status(pod: Obj) -> Obj:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def _terminated(pod: Obj) -> Obj | None:
    status = _container_status(pod)
    state = (status.get("state") or {}).get("terminated")
    if state is None:
        state = (status.get("lastState") or {}).get("terminated")
    return dict(state) if state else None


def _created(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


class JobRunner:
    """Runs a Command as a Kubernetes Job and waits for it.

    The Job goes to ``namespace`` when one is given, else to the command's (the
    Workflow's) namespace.
    """

    def __init__(
        self,
        client: kube.KubeClient,
        *,
        namespace: str = "",
        ttl_seconds: int,
        resources: Mapping[str, Mapping[str, str]] | None = None,
        run_as_user: int = 0,
        watch_seconds: int = 5,
        image_pull_grace: float = 30.0,
        deadline_slack: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._ttl = ttl_seconds
        # Requests and limits of every Job, under the Workflow's runtime.resources.
        self._resources = resources or {}
        self._run_as_user = run_as_user
        # Seconds one watch request stays open (the API takes whole seconds); also
        # how often pods are looked at for image pull failures.
        self._watch_seconds = max(1, int(watch_seconds))
        # Seconds a pod may fail to pull its image before the step fails: a registry
        # hiccup recovers within Kubernetes' first backoffs, a wrong image never does.
        self._pull_grace = image_pull_grace
        # Seconds past the step timeout before the runner stops waiting on its own:
        # activeDeadlineSeconds counts from the Job's start, after scheduling.
        self._slack = deadline_slack
        self._clock = clock
        self._sleep = sleep

    def run(self, command: Command) -> Completed:
        if not command.image:
            raise PermanentError("runner 'kubernetes' needs the Workflow's runtime.image")
        # cli steps always give a label; without one there is nothing to adopt.
        name = job_name(command.label or uuid.uuid4().hex)
        namespace = self._namespace or command.namespace
        if not namespace:
            raise PermanentError("runner 'kubernetes' needs a namespace for the Job")
        deadline = self._clock() + command.timeout + self._slack
        manifest = job_manifest(
            name,
            namespace,
            command,
            self._ttl,
            resources=self._resources,
            run_as_user=self._run_as_user,
        )
        job = self._create_or_adopt(namespace, manifest)
        try:
            job = self._wait(namespace, name, job, command, deadline)
            return self._collect(namespace, name, job, command)
        finally:
            self._delete(namespace, name)

    def _create_or_adopt(self, namespace: str, manifest: Obj) -> Obj:
        name = manifest["metadata"]["name"]
        try:
            return self._client.create_job(namespace, manifest)
        except kube.ConflictError:
            pass
        # The same run, step and attempt created it before (a redelivered message, or
        # a create whose response was lost): wait for that one instead of running twice.
        job = self._client.read_job(namespace, name)
        meta = job.get("metadata") or {}
        if (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != MANAGED_BY:
            raise PermanentError(
                f"Job {namespace}/{name} exists and was not created by Punching Fist"
            )
        if meta.get("deletionTimestamp"):
            raise TemporaryError(
                f"Job {namespace}/{name} from an earlier delivery is being deleted",
                delay=1.0,
            )
        log.info("adopting existing Job", extra={"job": name, "namespace": namespace})
        return job

    def _wait(self, namespace: str, name: str, job: Obj, command: Command, deadline: float) -> Obj:
        """Watch the Job until it finishes; raise on a timeout or an unpullable image."""
        version = _resource_version(job)
        pull_failing_since: float | None = None
        while _condition(job) is None:
            now = self._clock()
            if now >= deadline:
                raise self._timeout(command)
            if not (job.get("status") or {}).get("ready"):
                pull_failing_since = self._check_image(namespace, name, command, pull_failing_since)
            window = max(1, min(self._watch_seconds, math.ceil(deadline - now)))
            opened = self._clock()
            try:
                job, version = self._watch_window(namespace, name, job, version, window)
            except kube.GoneError:
                # The version we watched from is too old: start again from the present.
                job = self._client.read_job(namespace, name)
                version = _resource_version(job)
            if _condition(job) is None and self._clock() - opened < _EARLY:
                # The server (or a proxy) closed the watch at once: do not spin on it.
                self._sleep(_EARLY)
        condition = _condition(job) or {}
        if condition.get("type") == "Failed" and condition.get("reason") == "DeadlineExceeded":
            raise self._timeout(command)
        return job

    def _watch_window(
        self, namespace: str, name: str, job: Obj, version: str, seconds: int
    ) -> tuple[Obj, str]:
        """The Job and resourceVersion after one watch request (or its end)."""
        # closing: leaving the loop early ends the watch request now, not at GC.
        with contextlib.closing(
            self._client.watch_job(namespace, name, version, seconds)
        ) as events:
            for event, obj in events:
                version = _resource_version(obj) or version
                if event == "DELETED":
                    raise TemporaryError(f"Job {namespace}/{name} was deleted before it finished")
                if event in ("ADDED", "MODIFIED"):
                    job = obj
                    if _condition(job) is not None:
                        break
        return job, version

    def _check_image(
        self, namespace: str, name: str, command: Command, since: float | None
    ) -> float | None:
        """When the pod's image first failed to pull (None: it did not); raise past the grace."""
        for pod in self._client.list_pods(namespace, f"job-name={name}"):
            waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason not in PULL_RETRYING | PULL_HOPELESS:
                continue
            now = self._clock()
            since = now if since is None else since
            if reason in PULL_HOPELESS or now - since >= self._pull_grace:
                detail = str(waiting.get("message") or "").strip()
                what = (
                    f"image {command.image!r} cannot be pulled"
                    if reason in _PULL_REASONS
                    else "the step's container cannot be created"
                )
                raise PermanentError(f"{what} ({reason})" + (f": {detail}" if detail else ""))
            return since
        return None

    def _collect(self, namespace: str, name: str, job: Obj, command: Command) -> Completed:
        pods = self._client.list_pods(namespace, f"job-name={name}")
        # backoffLimit 0 makes one pod; an evicted one may have been replaced.
        finished = sorted((pod for pod in pods if _terminated(pod)), key=_created)
        condition = _condition(job) or {}
        if not finished:
            why = ": ".join(
                part for part in (condition.get("reason"), condition.get("message")) if part
            )
            raise TemporaryError(
                f"Job {namespace}/{name} finished ({condition.get('type')}) "
                f"without a terminated container" + (f": {why}" if why else "")
            )
        pod = finished[-1]
        terminated = _terminated(pod) or {}
        kept, dropped = self._client.read_log(
            namespace, pod["metadata"]["name"], CONTAINER, command.output_limit
        )
        message = str(terminated.get("message") or "")
        reason = str(terminated.get("reason") or "")
        if not message and reason not in ("", "Completed", "Error"):
            message = reason  # OOMKilled, ContainerCannotRun, ...
        return Completed(
            exit_code=int(terminated.get("exitCode", 1)),
            stdout=kept.decode("utf-8", errors="replace"),
            stderr=message[: command.output_limit],
            truncated=dropped,
        )

    def _delete(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods; the TTL is the backstop if this fails."""
        try:
            self._client.delete_job(namespace, name)
        except kube.NotFoundError:
            pass
        except (PermanentError, TemporaryError) as exc:
            log.warning(
                "could not delete Job; its TTL will",
                extra={"job": name, "namespace": namespace, "error": str(exc)},
            )

    @staticmethod
    def _timeout(command: Command) -> CommandTimeoutError:
        # The same outcome as the local runner's, so retries behave the same.
        return CommandTimeoutError(f"timed out after {command.timeout:g}s and was killed", delay=0)
