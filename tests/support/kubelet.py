"""The Kubernetes API double's Job controller and kubelet: each Job's life, scripted.

A thread plays what the Job controller and a kubelet would do to every Job in the
double's ``Cluster``: a pod after ``schedule_delay``, then either an image that
cannot be pulled (ErrImagePull, then ImagePullBackOff) or a running container that
terminates after its ``Script.run_seconds`` with its logs, exit code and reason;
``activeDeadlineSeconds`` kills it (DeadlineExceeded). Conditions come as Kubernetes
1.31 writes them (a target condition before the final one).

It only writes through the cluster's ``store`` and ``remove``, so every change is a
watch event like any other; it must not answer requests itself.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
import time

from tests.support.kube_cluster import Cluster, Key, Obj, Script
from tests.support.kube_cluster import now as timestamp

# Seconds between two looks at the Jobs.
TICK = 0.01
# Seconds an image pull fails as ErrImagePull before the kubelet backs off.
PULL_BACKOFF_AFTER = 0.3


@dataclasses.dataclass
class _Life:
    """The kubelet's notes on one Job."""

    created: float
    script: Script
    pod: str = ""
    started: float | None = None
    ended: float | None = None
    finished: bool = False


def _cond(kind: str, reason: str, message: str) -> Obj:
    return {"type": kind, "status": "True", "reason": reason, "message": message}


def _container(ready: bool = False, **state: Obj) -> Obj:
    return {"name": "step", "ready": ready, "state": state, "image": "", "restartCount": 0}


class Kubelet(threading.Thread):
    """Plays the life of every Job in ``cluster`` until the cluster stops."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(name="kubelet", daemon=True)
        self.cluster = cluster
        self._lives: dict[str, _Life] = {}  # by the Job's uid
        self._pod_ids = itertools.count(1)

    def run(self) -> None:
        cluster = self.cluster
        while not cluster.stopping:
            with cluster.lock:
                now = time.monotonic()
                jobs = {
                    job["metadata"]["uid"]: (key, job)
                    for key, job in cluster.objects.items()
                    if key[0] == "jobs"
                }
                for gone in set(self._lives) - set(jobs):
                    del self._lives[gone]
                for uid, (key, job) in jobs.items():
                    life = self._lives.get(uid)
                    if life is None:
                        life = self._lives[uid] = _Life(now, cluster.script(copy.deepcopy(job)))
                    if not life.finished:
                        self._step(key, copy.deepcopy(job), life, now)
            time.sleep(TICK)

    def _step(self, key: Key, job: Obj, life: _Life, now: float) -> None:
        cluster = self.cluster
        status = job.setdefault("status", {})
        deadline = job["spec"].get("activeDeadlineSeconds")
        if (
            cluster.honour_deadline
            and deadline
            and now - life.created >= deadline
            and not status.get("conditions")
        ):
            pod_key = ("pods", key[1], life.pod)
            if life.pod and pod_key in cluster.objects:
                cluster.remove(pod_key)
            status.update(active=0, ready=0, failed=1)
            status["conditions"] = [
                _cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            ]
            life.finished = True
            return cluster.store(key, job, "MODIFIED")
        if not life.pod:
            if now - life.created < cluster.schedule_delay:
                return None
            return self._schedule(key, job, life)
        pod_key = ("pods", key[1], life.pod)
        if pod_key not in cluster.objects:
            return None
        pod = copy.deepcopy(cluster.objects[pod_key])
        script = life.script
        if script.pull_error:
            pulling = script.pull_error == "ErrImagePull"
            backing_off = pulling and now - life.created >= PULL_BACKOFF_AFTER
            image = pod["spec"]["containers"][0]["image"]
            waiting = {
                "reason": "ImagePullBackOff" if backing_off else script.pull_error,
                "message": script.pull_message or f'Back-off pulling image "{image}": not found',
            }
            if pod["status"]["containerStatuses"][0]["state"].get("waiting") != waiting:
                pod["status"]["containerStatuses"] = [_container(waiting=waiting)]
                cluster.store(pod_key, pod, "MODIFIED")
            return None
        if life.started is None:
            life.started = now
            pod["status"].update(phase="Running")
            pod["status"]["containerStatuses"] = [_container(running={}, ready=True)]
            cluster.store(pod_key, pod, "MODIFIED")
            status.update(ready=1)
            return cluster.store(key, job, "MODIFIED")
        if life.ended is None and now - life.started >= script.run_seconds:
            life.ended = now
            return self._terminate(key, job, pod_key, pod, script)
        if life.ended is not None:
            final = (
                _cond("Complete", "", "")
                if script.exit_code == 0
                else _cond("Failed", "BackoffLimitExceeded", "Job has reached the backoff limit")
            )
            status["conditions"] = [*status.get("conditions", []), final]
            status["completionTime"] = timestamp()
            life.finished = True
            return cluster.store(key, job, "MODIFIED")
        return None

    def _schedule(self, key: Key, job: Obj, life: _Life) -> None:
        _, namespace, name = key
        life.pod = f"{name}-{next(self._pod_ids):05d}"
        template = job["spec"]["template"]
        labels = {
            "job-name": name,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": job["metadata"]["uid"],
            **(template.get("metadata") or {}).get("labels", {}),
        }
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": job["metadata"]["uid"],
            "controller": True,
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": life.pod,
                "namespace": namespace,
                "labels": labels,
                "ownerReferences": [owner],
                "uid": f"{job['metadata']['uid']}-{life.pod}",
                "creationTimestamp": timestamp(),
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending", "containerStatuses": [_container(waiting={})]},
        }
        self.cluster.store(("pods", namespace, life.pod), pod, "ADDED")
        job["status"].update(active=1, ready=0, startTime=timestamp())
        self.cluster.store(key, job, "MODIFIED")

    def _terminate(self, key: Key, job: Obj, pod_key: Key, pod: Obj, script: Script) -> None:
        code = script.exit_code
        pod["status"].update(phase="Succeeded" if code == 0 else "Failed")
        terminated: Obj = {
            "exitCode": code,
            "reason": script.reason or ("Completed" if code == 0 else "Error"),
        }
        if script.message:
            terminated["message"] = script.message
        pod["status"]["containerStatuses"] = [_container(terminated=terminated)]
        self.cluster.set_log(pod_key[1], pod_key[2], script.logs)
        self.cluster.store(pod_key, pod, "MODIFIED")
        status = job["status"]
        status.update(active=0, ready=0, **({"succeeded": 1} if code == 0 else {"failed": 1}))
        # Since Kubernetes 1.31 a target condition comes before the final one.
        status["conditions"] = [
            _cond("SuccessCriteriaMet" if code == 0 else "FailureTarget", "", "")
        ]
        self.cluster.store(key, job, "MODIFIED")
