"""Agent steps through a real engine worker: rules against the Kubernetes API double,
a model's loop against the scripted OpenAI-compatible server.

The cluster is the suite's Kubernetes API double (``tests/support/kube_api.py``)
loaded with the eval's crashloop scenario.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run

from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.openai_double import ScriptedModel, call, tool_results
from tests.support.workers import REPO

SCENARIOS = REPO / "tests" / "evals" / "scenarios"
POD = {"kind": "pod", "name": "web-7d9f-abcde", "namespace": "shop"}
ANSWER = {
    "summary": "web crash-loops: it exits at start because PAYMENT_API_URL is not set.",
    "findings": [
        {
            "title": "KeyError at start",
            "detail": "the previous container logged a traceback",
            "evidence": "KeyError: 'PAYMENT_API_URL'",
        }
    ],
    "rootCause": "missing setting PAYMENT_API_URL",
    "category": "crashloop",
    "confidence": 0.9,
    "recommendations": [
        {
            "action": "set PAYMENT_API_URL",
            "rationale": "it is read at start",
            "risk": "low",
            "requiresApproval": True,
        }
    ],
}


def scenario(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    return data


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with KubeApiDouble() as api:
        yield api.state.load(scenario("crashloop")["cluster"])


def workflow(runtime: dict[str, Any] | None = None, **step: Any) -> dict[str, Any]:
    investigate = {
        "name": "investigate",
        "type": "agent",
        "goal": "Find out why {{ alert.labels.pod }} restarts.",
        "tools": ["kubectl"],
        "timeout": "60s",
        **step,
    }
    return {
        "runtime": runtime or {"tools": {"kubectl": {"namespaces": ["shop"]}}},
        "steps": [
            investigate,
            {
                "name": "is-app",
                "type": "conditional",
                "condition": "steps.investigate.output.category == 'crashloop'",
                "then": {"stop": "succeeded", "message": "application error"},
                "else": {"stop": "failed", "message": "not diagnosed"},
            },
        ],
        "outputs": [
            {"name": "category", "value": "{{ steps.investigate.output.category }}"},
            {"name": "cause", "value": "{{ steps.investigate.output.rootCause }}"},
        ],
    }


def start_worker(worker: WorkerProcess, cluster: Cluster, **env: str) -> None:
    worker.env.update({"PF_ENGINE_KUBERNETES_API_URL": cluster.url, **env})
    worker.start()


def test_a_rules_investigation_runs_as_a_step_of_a_worker(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, cluster: Cluster
) -> None:
    harness.put_workflow(workflow())
    run_id = harness.add_run(labels=scenario("crashloop")["alert"]["labels"])
    start_worker(worker_process, cluster)
    start_run(redis_app, run_id)
    run = harness.wait_finished(run_id, timeout=40)
    assert run.phase == "Succeeded", (run.error, worker_process.log()[-3000:])
    assert run.message == "application error"
    result = harness.steps(run_id)[0].output
    assert result["mode"] == "rules"
    assert result["category"] == "crashloop"
    assert result["template"] == "crashloop"
    assert result["goal"] == "Find out why web-7d9f-abcde restarts."
    # The scenario serves no metrics: that, and only that, could not be checked.
    assert [text.split(":")[0] for text in result["unchecked"]] == [
        "kubectl top pod web-7d9f-abcde shop"
    ]
    assert run.outputs["category"] == "crashloop"
    # It followed the evidence: the crashed container's previous log was read.
    assert any(
        call.path.endswith("/pods/web-7d9f-abcde/log") and call.query.get("previous") == ["true"]
        for call in cluster.requests
    )
    assert {c["tool"] for c in result["toolCalls"]} == {"kubectl"}
    assert [c["status"] for c in result["toolCalls"]] == ["ok", "ok", "error"]


def test_a_model_investigation_runs_as_a_step_of_a_worker(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "llm").mkdir(parents=True)
    (secrets / "llm" / "apiKey").write_text("sk-test-123\n")

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        assert any("KeyError: 'PAYMENT_API_URL'" in r for r in tool_results(body))
        return call("submit_result", **ANSWER)

    script = [
        call("kubectl", verb="describe", **POD),
        call("kubectl", verb="logs", previous=True, container="web", **POD),
        answer,
    ]
    with ScriptedModel(script) as model:
        runtime = {
            "llmConfig": {
                "provider": "local",
                "endpoint": model.url,
                "model": "scripted",
                "apiKeySecretRef": {"name": "llm", "key": "apiKey"},
            },
            "tools": {"kubectl": {"namespaces": ["shop"]}},
        }
        harness.put_workflow(workflow(runtime, prompt="Be brief about {{ alert.labels.pod }}."))
        run_id = harness.add_run(labels=scenario("crashloop")["alert"]["labels"])
        start_worker(worker_process, cluster, PF_SECRETS_DIR=str(secrets))
        start_run(redis_app, run_id)
        run = harness.wait_finished(run_id, timeout=40)
    assert run.phase == "Succeeded", (run.error, worker_process.log()[-3000:])
    result = harness.steps(run_id)[0].output
    assert result["mode"] == "llm"
    assert result["rootCause"] == "missing setting PAYMENT_API_URL"
    assert run.outputs["cause"] == "missing setting PAYMENT_API_URL"
    assert [(c["tool"], c["arguments"]["verb"]) for c in result["toolCalls"]] == [
        ("kubectl", "describe"),
        ("kubectl", "logs"),
    ]
    # The API key came from the secretRef.
    assert model.authorizations == ["Bearer sk-test-123"] * 3
    first = model.requests[0]
    system, user = first["messages"][0]["content"], first["messages"][1]["content"]
    # The instructions hold the Workflow's template text; the rendered values (alert
    # data) travel only inside the quoted data.
    assert "Find out why {{ alert.labels.pod }} restarts." in system
    assert "Be brief about {{ alert.labels.pod }}." in system
    data = json.loads(user.split("<alert-data>")[1].split("</alert-data>")[0])
    assert data["context"]["goal"] == "Find out why web-7d9f-abcde restarts."
    assert data["context"]["prompt"] == "Be brief about web-7d9f-abcde."
