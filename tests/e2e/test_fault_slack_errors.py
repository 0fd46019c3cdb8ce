"""Fault: Slack answers 429 (with Retry-After), then 500, then OK: one message delivered.

The 429 is waited out inside the call (a short Retry-After), the 500 is a temporary
failure that goes back to the queue, and the attempt after it first looks for a
message of its own in the channel (none: Slack refused both) and then posts. Slack
must end with exactly one parent, and the delivery must say how many attempts it took.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(120)

ALERT = {"labels": {"alertname": "SlackFault", "severity": "warning", "pod": "web-1"}}


def test_slack_429_then_500_then_ok_delivers_one_message(pipeline_for: Any) -> None:
    pipeline: Pipeline = pipeline_for("fault-slack", database_prefix="ft_")
    pipeline.slack.fail_next("chat.postMessage", status=429, retry_after=1)
    pipeline.slack.fail_next("chat.postMessage", status=500)
    pipeline.fire(ALERT)

    [alert] = pipeline.wait_alerts(1)
    [run_ref] = pipeline.alert(alert["id"])["workflowRuns"]
    run = pipeline.wait_run_finished(run_ref["id"])
    assert run["phase"] == "Succeeded", run

    def finished() -> Any:
        rows = pipeline.sql(
            "SELECT phase, attempts, error FROM sink_deliveries WHERE run_id = :r", r=run["id"]
        )
        return rows and rows[0].phase != "Pending" and rows[0]

    delivery = pipeline.wait(finished, "the Slack delivery to finish", 60)
    assert delivery.phase == "Delivered", delivery
    # The 429 was retried within the first attempt; the 500 cost one attempt.
    assert delivery.attempts == 2, delivery

    posts = pipeline.slack.calls("chat.postMessage")
    assert len(posts) == 3, [p.body.get("text") for p in posts]
    [parent] = pipeline.slack.parents()
    assert "noted web-1" in str(parent["blocks"]) + parent["text"]
    assert pipeline.slack.messages() == [parent]
    # AlertManager keeps repeating the firing alert: still one run and one message.
    pipeline.wait(
        lambda: pipeline.alert(alert["id"])["timesSeen"] >= 2,
        "AlertManager to repeat the firing alert",
        30,
    )
    assert pipeline.count("workflow_runs") == 1
    assert len(pipeline.slack.messages()) == 1
