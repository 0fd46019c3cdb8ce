"""Scenario 5: the seed's three scenarios with no ``llmConfig`` (rule-based investigator).

HighCPUUsage on a pod at its CPU limit, PodCrashLooping on an OOMKilled pod and an
alert nothing explains go through one pipeline; each run's investigation, from the
cluster and Prometheus alone, names the right category, and each alert gets one
Slack parent that says it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

SEEDS = {
    "HighCPUUsage": ({"namespace": "api", "pod": "api-6f4-qq1", "container": "api"}, "cpu"),
    "PodCrashLooping": ({"namespace": "shop", "pod": "web-7d9f-abcde", "container": "web"}, "oom"),
    "SomethingOdd": ({"namespace": "misc", "pod": "misc-1"}, "unknown"),
}


def test_rules_name_the_category_of_each_seed_scenario(pipeline_for: Any) -> None:
    pipeline: Pipeline = pipeline_for("seed-rules")
    pipeline.fire(
        *(
            {"labels": {"alertname": name, "severity": "warning", **labels}}
            for name, (labels, _) in SEEDS.items()
        )
    )
    alerts = pipeline.wait_alerts(3)
    found = {}
    for alert in alerts:
        run_id = pipeline.wait(
            lambda alert=alert: (
                (runs := pipeline.alert(alert["id"])["workflowRuns"]) and runs[0]["id"]
            ),
            f"the run of {alert['alertName']}",
        )
        run = pipeline.wait_run_finished(run_id)
        assert run["phase"] == "Succeeded", run
        output = run["steps"][0]["output"]
        assert output["mode"] == "rules"
        found[alert["alertName"]] = (output["category"], run["outputs"]["category"])
    assert found == {name: (category, category) for name, (_, category) in SEEDS.items()}

    parents = pipeline.wait(
        lambda: len(messages := pipeline.slack.parents()) >= 3 and messages,
        "three Slack parents",
        60,
    )
    assert len(parents) == 3
    for name in SEEDS:
        [parent] = [p for p in parents if name in json.dumps(p["blocks"])]
        assert "*Summary*" in json.dumps(parent["blocks"])
    # Rules read the cluster, never change it.
    assert pipeline.cluster_writes() == []
