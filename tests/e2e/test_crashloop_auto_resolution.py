"""Seed scenario 2: pod crash loop → auto-resolution → alert resolved.

AlertManager sends PodCrashLooping for an OOMKilled pod. The model reads the pod,
recommends a higher memory limit and asks to restart the Deployment; the policy leaves
that to a human, so the run waits. Once approved (through the API in one test, through
a signed Slack button click in the other) the engine restarts the rollout on the
Kubernetes API double (the test plays the Deployment controller), verifies the
workload healthy and resolves the alert itself. AlertManager then sends ``resolved``:
the alert stays resolved with ``auto_resolved``, and the Slack thread tells the story.
The scenario's alertmanager Sink silences the alert in the real AlertManager while
the change waits for a person, and the alert's resolution expires that silence.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.harness import Pipeline
from tests.support.openai_double import call, tool_results

pytestmark = pytest.mark.timeout(180)

ALERT = {
    "labels": {
        "alertname": "PodCrashLooping",
        "namespace": "shop",
        "pod": "web-7d9f-abcde",
        "container": "web",
        "severity": "critical",
    },
    "annotations": {"summary": "shop/web-7d9f-abcde restarts over and over"},
}
POD = {"kind": "pod", "name": "web-7d9f-abcde", "namespace": "shop"}
RESTART = {
    "action": "restart-rollout",
    "kind": "deployment",
    "name": "web",
    "namespace": "shop",
    "reason": "the pods are OOMKilled; a restart clears the crash loop until the limit is raised",
}
ANSWER = {
    "summary": "web-7d9f-abcde is OOMKilled at its 256Mi memory limit",
    "findings": [
        {
            "title": "OOMKilled",
            "detail": "last termination OOMKilled, exit 137",
            "evidence": "reason=OOMKilled exitCode=137",
        }
    ],
    "rootCause": "the memory limit of 256Mi is below what web needs at start",
    "category": "oom",
    "confidence": 0.9,
    "recommendations": [
        {
            "action": "raise the memory limit of web to 512Mi",
            "rationale": "it is killed at 256Mi",
            "risk": "low",
            "requiresApproval": True,
        },
        {
            "action": "restart the web rollout",
            "rationale": "clears the crash-loop back-off",
            "risk": "low",
            "requiresApproval": True,
        },
    ],
    "canAutoFix": True,
}


def _answer_after_reading(body: dict[str, Any]) -> dict[str, Any]:
    results = "\n".join(tool_results(body))
    assert "OOMKilled" in results, results
    return call("submit_result", **ANSWER)


def _start(pipeline_for: Any) -> tuple[Pipeline, dict[str, Any], dict[str, Any]]:
    """Fire the alert and wait for the run to pause; (pipeline, alert, approval)."""
    pipeline: Pipeline = pipeline_for("crashloop-remediation")
    pipeline.model.script[:] = [
        call("kubectl", verb="describe", **POD),
        call("remediate", **RESTART),
        _answer_after_reading,
    ]
    pipeline.fire(ALERT)
    [alert] = pipeline.wait_alerts(1)
    run_id = pipeline.wait(
        lambda: (runs := pipeline.alert(alert["id"])["workflowRuns"]) and runs[0]["id"],
        "the alert's run",
    )
    pipeline.wait_run_phase(run_id, "WaitingApproval")
    [approval] = pipeline.approvals()
    assert approval["runId"] == run_id
    assert approval["what"] == "restart-rollout deployment shop/web"
    assert approval["status"] == "pending"
    # Nothing is changed before a human decides.
    assert pipeline.cluster.patched == []
    # While a person decides, the alert is silenced in AlertManager: its repeats would
    # only page people again.
    [silence] = pipeline.wait(
        lambda: [s for s in _our_silences(pipeline) if s["status"]["state"] == "active"],
        "a silence of the alert while the change waits for approval",
        30,
    )
    assert {(m["name"], m["value"]) for m in silence["matchers"]} >= {
        (name, value) for name, value in ALERT["labels"].items()
    }
    assert (
        "Waiting for a person to approve restart-rollout deployment shop/web"
        in (silence["comment"])
    )
    return pipeline, alert, approval


def _our_silences(pipeline: Pipeline) -> list[dict[str, Any]]:
    silences = pipeline.http.get(f"{pipeline.alertmanager_url}/api/v2/silences").json()
    return [s for s in silences if s["createdBy"] == "punching-fist"]


def _thread(pipeline: Pipeline) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [parent] = pipeline.slack.parents()
    return parent, pipeline.slack.replies(parent["ts"])


def _finish_and_resolve(
    pipeline: Pipeline, alert: dict[str, Any], approval: dict[str, Any], decided_by: str
) -> None:
    """After the approval: the change, its verification, AlertManager's resolve."""
    run = pipeline.wait_run_finished(approval["runId"])
    assert run["phase"] == "Succeeded", run
    # The change was made once, against the API double: a rollout restart of shop/web.
    restarts = [p for p in pipeline.cluster.patched if p[0] == "deployments"]
    assert len(restarts) == 1, pipeline.cluster.patched
    assert restarts[0][1] == "shop/web"
    assert "kubectl.kubernetes.io/restartedAt" in json.dumps(restarts[0][2])
    assert [p for p in pipeline.cluster.patched if p[0] != "deployments"] == []
    assert pipeline.cluster.deleted == []
    assert [w for w in pipeline.cluster_writes() if w[0] != "PATCH"] == []
    [step] = run["steps"]
    result = step["output"]
    assert result["category"] == "oom"
    assert result["approval"]["status"] == "executed"
    # Who decided, as the approval records it ("ana"; "slack:U0ALICE (alice)" for a click).
    assert decided_by in result["approval"]["decidedBy"]
    assert result["verification"]["healthy"] is True
    assert result["recommendations"][0]["action"].startswith("raise the memory")
    # Verified: the workflow resolved the alert itself.
    resolved = pipeline.alert(alert["id"])
    assert resolved["status"] == "resolved"
    assert resolved["autoResolved"] is True
    # The resolution expires the silence made while the change waited (the only one:
    # the run's end kept it and made no second).
    expired = pipeline.wait(
        lambda: (
            (ours := _our_silences(pipeline))
            and all(s["status"]["state"] == "expired" for s in ours)
            and ours
        ),
        "the alert's silence to be expired",
        60,
    )
    assert len(expired) == 1, expired

    # AlertManager's own resolve arrives later; the alert stays auto-resolved.
    pipeline.resolve(ALERT)
    pipeline.wait(
        lambda: any(
            e["alertStatus"] == "resolved" for e in pipeline.alert(alert["id"])["sourceEvents"]
        ),
        "AlertManager's resolved webhook",
        60,
    )
    final = pipeline.alert(alert["id"])
    assert final["status"] == "resolved"
    assert final["autoResolved"] is True
    assert len(final["workflowRuns"]) == 1
    assert pipeline.count("workflow_runs") == 1

    # Slack: one thread for the alert, its parent with the findings, turned resolved;
    # no second parent however often AlertManager repeated the alert.
    pipeline.wait(
        lambda: (
            len(parents := pipeline.slack.parents()) == 1
            and "Resolved" in json.dumps(parents[0]["blocks"])
        ),
        "the Slack parent to turn resolved",
        60,
    )
    time.sleep(2)  # one AlertManager repeat interval: a duplicate would show by now
    # The findings are in the thread (the parent, or a reply once the parent was the
    # approval request).
    parent, replies = _thread(pipeline)
    assert ANSWER["rootCause"] in json.dumps([parent, *replies])
    # No silence of ours outlives the alert in AlertManager, and none was made after
    # the alert resolved.
    silences = _our_silences(pipeline)
    assert [s["status"]["state"] for s in silences] == ["expired"], silences


def _assert_the_thread_tells_each_step(pipeline: Pipeline, decided_by: str) -> None:
    """The parent, then a reply per step: the decision, the change verified, the resolve."""
    pipeline.wait(lambda: len(_thread(pipeline)[1]) >= 2, "replies in the alert's thread", 20)
    parent, replies = _thread(pipeline)
    story = json.dumps(replies)
    assert decided_by in story
    assert "restart-rollout deployment shop/web" in story
    assert "Resolved" in json.dumps(parent["blocks"])
    assert "resolved" in json.dumps(replies[-1]).lower()


def _approval_buttons(pipeline: Pipeline, approval_id: str) -> dict[str, str]:
    """The Approve button of the Slack message posted while the run waits."""
    for message in pipeline.slack.messages():
        for block in message.get("blocks") or []:
            for element in block.get("elements") or []:
                if (element.get("type"), element.get("value"), element.get("action_id")) == (
                    "button",
                    approval_id,
                    "punchingfist_approve",
                ):
                    return dict(element)
    return {}


def test_an_approval_through_the_api_fixes_verifies_and_resolves(pipeline_for: Any) -> None:
    pipeline, alert, approval = _start(pipeline_for)
    controller = pipeline.cluster.roll_out_when_restarted("shop", "web", replicas=2)
    decided = pipeline.decide(approval["id"], decision="approve", by="ana", comment="go ahead")
    assert decided.status_code == 200, decided.text
    assert decided.json()["status"] == "approved"
    # A second decision is refused: the change is made once.
    again = pipeline.decide(approval["id"], decision="approve", by="bob")
    assert again.status_code == 409, again.text
    _finish_and_resolve(pipeline, alert, approval, "ana")
    controller.join(5)


def test_an_approval_through_a_signed_slack_click_fixes_verifies_and_resolves(
    pipeline_for: Any,
) -> None:
    pipeline, alert, approval = _start(pipeline_for)
    # The run waits: Slack shows the approval with its buttons.
    button = pipeline.wait(
        lambda: _approval_buttons(pipeline, approval["id"]),
        "a Slack message with the approval's Approve button",
        20,
    )
    # A click without Slack's signature decides nothing.
    forged = pipeline.http.post(
        f"{pipeline.ingest_url}/slack/interactions",
        content=b"payload=%7B%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert forged.status_code == 401, forged.text
    assert pipeline.approvals()[0]["status"] == "pending"
    controller = pipeline.cluster.roll_out_when_restarted("shop", "web", replicas=2)
    clicked = pipeline.slack_click(button["value"], button["action_id"], user="U0ALICE")
    assert clicked.status_code == 200, clicked.text
    _finish_and_resolve(pipeline, alert, approval, "U0ALICE")
    controller.join(5)
    _assert_the_thread_tells_each_step(pipeline, "U0ALICE")
