"""The approval gate end to end: a real engine worker, `punchingfist ingest` (gunicorn)
for the API, the Kubernetes API double and a scripted model that asks for a change.

The model asks to restart the rollout of shop/web; the step needs approval, so the
run pauses in ``WaitingApproval`` with no worker waiting. Approving through the API
makes the change once (a second approval is refused, a redelivered resume does
nothing), the test plays the Deployment controller, and the verification sees the
workload healthy: the alert is resolved by the workflow. Denial and expiry end the
run without the change.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run
from test_agent_steps import ANSWER, scenario

from shared.queueing import APPROVAL_DECIDED, RESUME_STEP
from tests.functional.ingest.conftest import API_TOKEN
from tests.functional.ingest.ingestserver import Ingest, running_ingest
from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.openai_double import ScriptedModel, call
from tests.support.waiting import wait_for

RESTART = {
    "action": "restart-rollout",
    "kind": "deployment",
    "name": "web",
    "namespace": "shop",
    "reason": "the pods crash-loop on a stale config",
}


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    data = scenario("crashloop")
    data["cluster"]["objects"] += [
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 2, "template": {"metadata": {}}},
            "status": {"replicas": 2, "readyReplicas": 0, "availableReplicas": 0},
        },
        {
            "kind": "ReplicaSet",
            "metadata": {
                "name": "web-7d9f",
                "namespace": "shop",
                "ownerReferences": [{"kind": "Deployment", "name": "web"}],
            },
            "spec": {"replicas": 2},
        },
    ]
    with KubeApiDouble() as api:
        yield api.state.load(data["cluster"])


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel([call("remediate", **RESTART), call("submit_result", **ANSWER)]) as scripted:
        yield scripted


@pytest.fixture
def ingest(database_url: str, engine_redis_url: str, tmp_path: Path) -> Iterator[Ingest]:
    workdir = tmp_path / "ingest"
    workdir.mkdir()
    with running_ingest(database_url, workdir, engine_redis_url, {}) as server:
        yield server


@dataclasses.dataclass
class Doubles:
    cluster: Cluster
    model: ScriptedModel
    ingest: Ingest


@pytest.fixture
def doubles(cluster: Cluster, model: ScriptedModel, ingest: Ingest) -> Doubles:
    return Doubles(cluster, model, ingest)


def spec(model: ScriptedModel, approval_timeout: str = "30m") -> dict[str, Any]:
    return {
        "runtime": {
            "llmConfig": {"provider": "local", "endpoint": model.url, "model": "scripted"},
            "tools": {"remediation": {"actions": ["restart-rollout"], "namespaces": ["shop"]}},
        },
        "steps": [
            {
                "name": "investigate",
                "type": "agent",
                "goal": "Find out why the pod restarts; fix it if you can.",
                "tools": ["kubectl", "remediate"],
                "approvalTimeout": approval_timeout,
                "verifyTimeout": "20s",
            },
            {"name": "after", "type": "cli", "command": ["echo", "went on"]},
        ],
    }


def decide(ingest: Ingest, approval_id: str, token: str = API_TOKEN, **body: Any) -> Any:
    return ingest.request(
        "POST",
        f"/api/v1/approvals/{approval_id}",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )


def paused(harness: Harness, ingest: Ingest, run_id: Any) -> dict[str, Any]:
    """Wait for the run to pause; returns its pending approval as the API lists it."""
    wait_for(
        lambda: harness.run(run_id).phase == "WaitingApproval",
        30,
        "the run to wait for approval",
    )
    listed = ingest.get("/api/v1/approvals")
    assert listed.status == 200, listed.body
    (approval,) = [a for a in listed.body["approvals"] if a["runId"] == str(run_id)]
    return approval


def start(
    harness: Harness,
    redis_app: Celery,
    worker: WorkerProcess,
    cluster: Cluster,
    model: ScriptedModel,
    **spec_fields: Any,
) -> Any:
    harness.put_workflow(spec(model, **spec_fields))
    run_id = harness.add_run(labels=scenario("crashloop")["alert"]["labels"])
    worker.env["PF_ENGINE_KUBERNETES_API_URL"] = cluster.url
    worker.start()
    start_run(redis_app, run_id)
    return run_id


def test_an_approved_change_is_made_once_verified_and_resolves_the_alert(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    doubles: Doubles,
) -> None:
    cluster, model, ingest = doubles.cluster, doubles.model, doubles.ingest
    run_id = start(harness, redis_app, worker_process, cluster, model)
    approval = paused(harness, ingest, run_id)
    assert approval["what"] == "restart-rollout deployment shop/web"
    assert approval["status"] == "pending"
    step = harness.steps(run_id)[0]
    assert step.phase == "WaitingApproval"
    assert step.output["actionsTaken"][0]["decision"] == "approval_required"
    assert cluster.patched == []
    # The run's detail shows what waits for whom, with its risk and deadline.
    (shown,) = ingest.get(f"/api/v1/runs/{run_id}").body["approvals"]
    assert {k: shown[k] for k in ("id", "step", "status", "action", "risk", "reason")} == {
        "id": approval["id"],
        "step": "investigate",
        "status": "pending",
        "action": "restart-rollout",
        "risk": "medium",
        "reason": RESTART["reason"],
    }
    assert shown["expiresAt"] == approval["expiresAt"]
    assert shown["decidedBy"] is None
    assert shown["decidedAt"] is None
    # Nobody without the token decides; bad input is refused and changes nothing.
    assert decide(ingest, approval["id"], token="wrong", decision="approve", by="x").status == 401
    bad = decide(ingest, approval["id"], decision="maybe", by="ana")
    assert bad.status == 400
    assert "approve" in bad.body["error"]
    assert decide(ingest, approval["id"], decision="approve").status == 400
    missing = decide(ingest, "00000000-0000-0000-0000-000000000000", decision="deny", by="x")
    assert missing.status == 404

    controller = cluster.roll_out_when_restarted("shop", "web", replicas=2, after=0.5)
    first = decide(ingest, approval["id"], decision="approve", by="ana", comment="go")
    assert first.status == 200, first.body
    assert first.body["status"] == "approved"
    assert first.body["decidedBy"] == "ana"
    second = decide(ingest, approval["id"], decision="approve", by="bob")
    assert second.status == 409
    assert "already" in second.body["error"]
    # A redelivered resume message (after the first one) does nothing either.
    redis_app.send_task(RESUME_STEP, args=[approval["id"]], queue="engine")

    run = harness.wait_finished(run_id, timeout=60)
    controller.join(5)
    assert run.phase == "Succeeded", (run.error, worker_process.log()[-3000:])
    redis_app.send_task(RESUME_STEP, args=[approval["id"]], queue="engine")
    # Both redelivered resumes were dropped (the original one made the change).
    wait_for(
        lambda: worker_process.log().count("resume_step: nothing to do") >= 2,
        30,
        "both redelivered resumes to be dropped",
    )
    restarts = [p for p in cluster.patched if p[0] == "deployments"]
    assert len(restarts) == 1, cluster.patched
    assert "kubectl.kubernetes.io/restartedAt" in json.dumps(restarts[0][2])
    steps = harness.steps(run_id)
    assert [(s.name, s.phase) for s in steps] == [
        ("investigate", "Succeeded"),
        ("after", "Succeeded"),
    ]
    result = steps[0].output
    assert result["approval"]["status"] == "executed"
    assert result["approval"]["decidedBy"] == "ana"
    assert result["verification"]["healthy"] is True
    assert result["verification"]["object"] == "deployment shop/web"
    assert [a["decision"] for a in result["actionsTaken"]] == ["approval_required", "executed"]
    assert "pendingApproval" not in result
    alert = harness.alert(run_id)
    assert alert.status == "resolved"
    assert alert.auto_resolved is True
    assert ingest.get("/api/v1/approvals").body["approvals"] == []
    # The run's detail, and the alert's, keep the decision and what came of it.
    (shown,) = ingest.get(f"/api/v1/runs/{run_id}").body["approvals"]
    assert shown["status"] == "executed"
    assert shown["decidedBy"] == "ana"
    assert shown["comment"] == "go"
    assert shown["decidedAt"] is not None
    assert shown["completedAt"] is not None
    assert shown["result"]["verified"] is True
    (alert_run,) = ingest.get(f"/api/v1/alerts/{alert.id}").body["workflowRuns"]
    assert alert_run["approvals"] == [shown]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_denied_change_ends_the_run_without_it(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    doubles: Doubles,
) -> None:
    cluster, model, ingest = doubles.cluster, doubles.model, doubles.ingest
    run_id = start(harness, redis_app, worker_process, cluster, model)
    approval = paused(harness, ingest, run_id)
    denied = decide(ingest, approval["id"], decision="deny", by="ana", comment="not now")
    assert denied.status == 200, denied.body
    run = harness.wait_finished(run_id, timeout=30)
    assert run.phase == "Succeeded", run.error
    assert run.message == (
        "not made: restart-rollout deployment shop/web was denied by ana: not now"
    )
    assert cluster.patched == []
    steps = harness.steps(run_id)
    assert [s.phase for s in steps] == ["Succeeded", "Pending"]
    assert steps[0].output["approval"]["status"] == "denied"
    assert steps[0].output["actionsTaken"][-1]["decision"] == "denied"
    (shown,) = ingest.get(f"/api/v1/runs/{run_id}").body["approvals"]
    assert (shown["status"], shown["decidedBy"], shown["comment"]) == ("denied", "ana", "not now")
    # The run's end does not escalate: a delivery that tells a person does (notifier).
    assert harness.alert(run_id).status == "triaging"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_undecided_change_expires_and_the_run_ends_without_it(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    doubles: Doubles,
) -> None:
    cluster, model, ingest = doubles.cluster, doubles.model, doubles.ingest
    run_id = start(harness, redis_app, worker_process, cluster, model, approval_timeout="2s")
    approval = paused(harness, ingest, run_id)
    run = harness.wait_finished(run_id, timeout=30)
    assert run.phase == "Succeeded", run.error
    assert "nobody approved" in run.message
    assert cluster.patched == []
    late = decide(ingest, approval["id"], decision="approve", by="ana")
    assert late.status == 409
    assert "expired" in late.body["error"]
    assert harness.steps(run_id)[0].output["approval"]["status"] == "expired"


def test_a_worker_killed_while_making_an_approved_change_never_makes_it_again(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    doubles: Doubles,
) -> None:
    """SIGKILL the worker after the change reached the API, while it verifies: on
    restart, recovery does not run the step (or the change) again; the approval is
    ``unknown`` and the step fails saying what to check."""
    cluster, model, ingest = doubles.cluster, doubles.model, doubles.ingest
    run_id = start(harness, redis_app, worker_process, cluster, model)
    approval = paused(harness, ingest, run_id)
    assert decide(ingest, approval["id"], decision="approve", by="ana").status == 200
    # Nobody plays the Deployment controller: the worker waits for a healthy rollout.
    wait_for(lambda: cluster.patched, 30, "the rollout restart")
    worker_process.kill()
    (shown,) = ingest.get(f"/api/v1/runs/{run_id}").body["approvals"]
    assert shown["status"] == "executing"

    worker_process.start()
    run = harness.wait_finished(run_id, timeout=60)
    assert run.phase == "Failed", (run.message, worker_process.log()[-3000:])
    assert "was lost while making the approved change restart-rollout deployment shop/web" in (
        run.error or ""
    )
    assert "whether it was made is unknown, and it was not tried again" in (run.error or "")
    # Recovery read the Deployment before telling people: the restart's annotation,
    # stamped by the lost worker after the approval, is there.
    traces = "deployment shop/web was restarted at "
    assert f"(the cluster shows: {traces}" in (run.error or "")
    (shown,) = ingest.get(f"/api/v1/runs/{run_id}").body["approvals"]
    assert shown["status"] == "unknown"
    assert shown["completedAt"] is not None
    assert "was lost" in shown["result"]["error"]
    assert shown["result"]["traces"].startswith(traces)
    assert shown["result"]["traces"].endswith(", after the approval")
    steps = harness.steps(run_id)
    assert [(s.name, s.phase) for s in steps] == [("investigate", "Failed"), ("after", "Skipped")]
    result = steps[0].output
    assert result["approval"]["status"] == "unknown"
    assert result["approval"]["traces"] == shown["result"]["traces"]
    assert result["escalate"] is True
    assert [a["decision"] for a in result["actionsTaken"]] == ["approval_required", "unknown"]
    # The notifier is told twice to edit the request's messages: at the decision, and
    # once the change is unknown (they say that a person must check).
    edits = [tuple(e.args) for e in harness.outbox(APPROVAL_DECIDED)]
    assert edits == [(approval["id"],), (approval["id"],)]
    # The investigation was not run again: the model was asked twice, before the pause.
    assert len(model.requests) == 2
    # A late redelivery of the resume finds nothing to do.
    redis_app.send_task(RESUME_STEP, args=[approval["id"]], queue="engine")
    wait_for(
        lambda: worker_process.log().count("resume_step: nothing to do") >= 1,
        30,
        "the redelivered resume to be dropped",
    )
    assert [p for p in cluster.patched if p[0] == "deployments"] == [cluster.patched[0]]
    assert len(cluster.patched) == 1
    assert harness.alert(run_id).status == "triaging"
