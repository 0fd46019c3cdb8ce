"""Seed scenario 1: High CPU → investigation → Slack.

AlertManager sends HighCPUUsage; the model (scripted over HTTP) queries Prometheus and
the pod through the agent's tools; the findings become one Slack parent message, and
nothing in the cluster was changed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.harness import Pipeline
from tests.support.openai_double import call, tool_results

pytestmark = pytest.mark.timeout(180)

ALERT = {
    "labels": {
        "alertname": "HighCPUUsage",
        "namespace": "api",
        "pod": "api-6f4-qq1",
        "container": "api",
        "severity": "warning",
    },
    "annotations": {"summary": "api-6f4-qq1 uses 98% of its CPU limit"},
}
ANSWER = {
    "summary": "api-6f4-qq1 runs at 98% of its 1-CPU limit",
    "findings": [
        {
            "title": "CPU at the limit",
            "detail": "rate of container_cpu_usage_seconds_total is 0.98 of 1 CPU",
            "evidence": "0.98",
        },
        {"title": "No restarts", "detail": "restartCount 0", "evidence": "kubectl top: 985m"},
    ],
    "rootCause": "the api container is CPU-bound at its limit of 1 CPU",
    "category": "cpu",
    "confidence": 0.85,
    "recommendations": [
        {
            "action": "raise the CPU limit of api to 2",
            "rationale": "it is throttled",
            "risk": "low",
            "requiresApproval": True,
        }
    ],
}


def _answer_after_reading(body: dict[str, Any]) -> dict[str, Any]:
    """The model submits only once the tools have shown it the evidence."""
    results = "\n".join(tool_results(body))
    assert "0.98" in results, results
    assert "985m" in results, results
    return call("submit_result", **ANSWER)


def test_high_cpu_is_investigated_and_reported_once_without_changing_anything(
    pipeline_for: Any,
) -> None:
    pipeline: Pipeline = pipeline_for("high-cpu")
    pipeline.model.script[:] = [
        call("promql", query='rate(container_cpu_usage_seconds_total{namespace="api"}[5m])'),
        call("kubectl", verb="top", kind="pod", name="api-6f4-qq1", namespace="api"),
        _answer_after_reading,
    ]
    pipeline.fire(ALERT)

    [parent] = pipeline.wait(pipeline.slack.parents, "a Slack parent for HighCPUUsage", 90)
    blocks = json.dumps(parent["blocks"])
    assert "HighCPUUsage" in blocks
    assert ANSWER["summary"] in blocks
    assert ANSWER["rootCause"] in blocks

    [alert] = pipeline.alerts()
    assert alert["alertName"] == "HighCPUUsage"
    [run_ref] = pipeline.alert(alert["id"])["workflowRuns"]
    run = pipeline.wait_run_finished(run_ref["id"])
    assert run["phase"] == "Succeeded", run
    assert run["outputs"]["category"] == "cpu"
    [step] = run["steps"]
    output = step["output"]
    assert output["mode"] == "llm"
    assert [(c["tool"], c["status"]) for c in output["toolCalls"]] == [
        ("promql", "ok"),
        ("kubectl", "ok"),
    ]
    assert [f["title"] for f in output["findings"]] == ["CPU at the limit", "No restarts"]
    # The tools really went to the doubles: Prometheus got the query, the API the read.
    assert any("container_cpu_usage_seconds_total" in q for q in pipeline.prometheus.queries)
    reads = [(c.method, c.path) for c in pipeline.cluster.requests]
    assert ("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/api/pods/api-6f4-qq1") in reads
    # Read only: the Kubernetes API double saw no write of any kind.
    assert pipeline.cluster_writes() == []
    assert pipeline.cluster.patched == []
    assert pipeline.cluster.deleted == []

    # AlertManager kept repeating the firing alert (repeat_interval 2 s): still one
    # alert, one run, one parent, and the model was asked for exactly three turns.
    pipeline.wait(
        lambda: pipeline.alert(alert["id"])["timesSeen"] >= 3,
        "AlertManager to repeat the firing alert",
        30,
    )
    assert pipeline.count("workflow_runs") == 1
    assert len(pipeline.slack.parents()) == 1
    assert len(pipeline.model.requests) == 3
