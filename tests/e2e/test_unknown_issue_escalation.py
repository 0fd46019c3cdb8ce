"""Seed scenario 3: unknown issue → enriched context → escalation.

An alert that no specific investigation template is for (SomethingOdd) on a pod that
looks healthy: the rule-based investigation reads the cluster, finds nothing that
explains it, and says so (``unknown``, low confidence, ``escalate``). The escalation
Sink's ``condition`` then sends it to #ops with the context and the mentions; an OOM
alert in the same pipeline is explained and pages nobody.

This scenario's controller watches the Kubernetes API double (the resources are
custom resources there), not a folder.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

ODD = {
    "labels": {
        "alertname": "SomethingOdd",
        "namespace": "misc",
        "pod": "misc-1",
        "severity": "warning",
    },
    "annotations": {"summary": "misc-1 behaves oddly"},
}
OOM = {
    "labels": {
        "alertname": "PodRestarting",
        "namespace": "batch",
        "pod": "worker-5c8-xyz12",
        "container": "worker",
        "severity": "warning",
    },
    "annotations": {"description": "worker restarted 4 times in 10 minutes"},
}


def _texts(messages: list[dict[str, Any]]) -> str:
    return json.dumps([m.get("blocks") or m.get("text") for m in messages])


def _source_ready(pipeline: Pipeline) -> bool:
    assert pipeline.kube is not None
    source = pipeline.kube.state.get("sources", "default", "alertmanager") or {}
    return (source.get("status") or {}).get("ready") is True


def test_an_unexplained_alert_is_escalated_with_context_and_mentions(pipeline_for: Any) -> None:
    pipeline: Pipeline = pipeline_for("unknown-escalation", controller="kubernetes")
    # The controller stored what it read from the API and reports it ready there.
    pipeline.wait(lambda: _source_ready(pipeline), "the Source's status to say ready", 30)

    pipeline.fire(ODD, OOM)
    alerts = pipeline.wait_alerts(2)
    by_name = {a["alertName"]: a for a in alerts}
    runs = {}
    for name, alert in by_name.items():
        run_id = pipeline.wait(
            lambda alert=alert: (
                (found := pipeline.alert(alert["id"])["workflowRuns"]) and found[0]["id"]
            ),
            f"the run of {name}",
        )
        runs[name] = pipeline.wait_run_finished(run_id)

    odd = runs["SomethingOdd"]
    assert odd["phase"] == "Succeeded", odd
    result = odd["steps"][0]["output"]
    assert result["mode"] == "rules"
    assert result["category"] == "unknown"
    assert result["confidence"] < 0.6
    assert result["escalate"] is True
    # Enriched: it looked at the pod the alert names before giving up.
    assert ("kubectl", "describe", "ok") in [
        (c["tool"], c["arguments"].get("verb"), c["status"]) for c in result["toolCalls"]
    ]

    oom = runs["PodRestarting"]
    assert oom["steps"][0]["output"]["category"] == "oom"
    assert oom["steps"][0]["output"]["escalate"] is False

    # #ops got exactly one message: the unexplained alert, with mentions and context.
    def in_ops() -> list[dict[str, Any]]:
        return [m for m in pipeline.slack.messages() if m["channel"] == "C0000000OPS"]

    [escalated] = pipeline.wait(in_ops, "the escalation in #ops", 60)
    text = _texts([escalated])
    assert "<@U0ONCALL>" in text
    assert "<!subteam^S0SRETEAM>" in text
    assert "SomethingOdd" in text
    assert "misc/misc-1" in text
    assert "cluster e2e" in text
    assert "Category: unknown" in text
    assert "kubectl describe pod (ok)" in text
    # The incidents channel has both alerts, one parent each.
    incidents = pipeline.wait(
        lambda: len(found := pipeline.slack.parents()) >= 3 and found,
        "both alerts in #incidents",
        60,
    )
    in_incidents = [m for m in incidents if m["channel"] == "C0INCIDENTS"]
    assert len(in_incidents) == 2
    assert "PodRestarting" in _texts(in_incidents)

    # The OOM alert's escalation delivery was skipped by the condition, not lost.
    def escalation_delivery() -> dict[str, Any] | None:
        found = pipeline.run(oom["id"])["deliveries"]
        [delivery] = [d for d in found if d["sink"] == "escalation"]
        return delivery if delivery["phase"] != "Pending" else None

    skipped = pipeline.wait(escalation_delivery, "the OOM run's escalation delivery to end")
    assert skipped["phase"] == "Skipped", skipped
    assert len(in_ops()) == 1
