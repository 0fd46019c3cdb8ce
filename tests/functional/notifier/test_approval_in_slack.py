"""An approval asked and decided in the alert's Slack thread, through the real processes.

``punchingfist ingest`` under gunicorn (webhooks, ``/slack/interactions``),
``punchingfist engine`` and ``punchingfist notifier`` workers on Redis, the Slack
stand-in, the Kubernetes API double and a scripted model that asks to restart a
rollout. The run pauses for approval and the engine queues the request to the
Workflow's Sinks: the thread shows the proposed change, its risk and rationale, with
Approve / Deny buttons. A click (posted by the stand-in, signed as Slack signs it)
decides; the message is edited to say who decided and when, without the buttons;
the run's outcome is replied in the thread when it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notifierkit import put_resources, running_pipeline, slack_sink

from services.standins.slack import SlackAPI
from shared.domain import interactions
from tests.functional.ingest.conftest import load_fixture
from tests.functional.ingest.ingestserver import Ingest
from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.openai_double import ScriptedModel, call
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(180)

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
RESTART = {
    "action": "restart-rollout",
    "kind": "deployment",
    "name": "web",
    "namespace": "shop",
    "reason": "the pods crash-loop on a stale config",
}
ANSWER = {
    "summary": "web crash-loops on a stale config",
    "rootCause": "the config map changed under a running rollout",
    "category": "crashloop",
    "confidence": 0.8,
    "recommendations": [
        {
            "action": "restart the rollout of deployment shop/web",
            "rationale": "new pods read the current config",
            "risk": "medium",
            "requiresApproval": True,
        }
    ],
}


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    data: dict[str, Any] = {
        "cluster": {
            "objects": [
                {
                    "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "shop", "generation": 1},
                    "spec": {"replicas": 2, "template": {"metadata": {}}},
                    "status": {"replicas": 2, "readyReplicas": 0, "availableReplicas": 0},
                }
            ]
        }
    }
    with KubeApiDouble() as api:
        yield api.state.load(data["cluster"])


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel([call("remediate", **RESTART), call("submit_result", **ANSWER)]) as scripted:
        yield scripted


def _workflow(model_url: str, approval_timeout: str) -> dict[str, Any]:
    return {
        "runtime": {
            "llmConfig": {"provider": "local", "endpoint": model_url, "model": "scripted"},
            "tools": {"remediation": {"actions": ["restart-rollout"], "namespaces": ["shop"]}},
        },
        "steps": [
            {
                "name": "investigate",
                "type": "agent",
                "goal": "Find out why the pod restarts; fix it if you can.",
                "tools": ["kubectl", "remediate"],
                "verifyTimeout": "30s",
                "approvalTimeout": approval_timeout,
            }
        ],
        "outputs": [{"name": "summary", "value": "{{ steps.investigate.output.summary }}"}],
        "sinks": ["slack"],
    }


@pytest.fixture
def approval_timeout(request: pytest.FixtureRequest) -> str:
    """The agent step's approvalTimeout (parametrize indirectly to shorten it)."""
    return str(getattr(request, "param", "30m"))


@pytest.fixture
def pipeline(  # noqa: PLR0917  (one argument per fixture it needs)
    database_url: str,
    redis_url: str,
    tmp_path: Path,
    slack: SlackAPI,
    cluster: Cluster,
    model: ScriptedModel,
    approval_timeout: str,
) -> Iterator[Ingest]:
    workflow = _workflow(model.url, approval_timeout)
    put_resources(database_url, workflow, {"slack": slack_sink(slack.url)})
    secret_file = tmp_path / "slack-signing-secret"
    secret_file.write_text(SIGNING_SECRET + "\n")
    with running_pipeline(
        database_url,
        redis_url,
        tmp_path,
        PF_ENGINE_RECOVERY_INTERVAL="0.5",
        PF_ENGINE_KUBERNETES_API_URL=cluster.url,
        PF_SLACK_SIGNING_SECRET_FILE=str(secret_file),
    ) as running:
        yield running.ingest


def _text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in message["blocks"] if b["type"] == "actions"]


def _fire(pipeline: Ingest) -> tuple[str, str]:
    answer = pipeline.post(load_fixture("01-firing-single.json"))
    assert answer.status == 200, answer.body
    return answer.body["runs"][0], answer.body["alerts"][0]


def _asking(slack: SlackAPI) -> dict[str, Any]:
    """The thread's parent once it shows the Approve / Deny buttons."""
    return wait_for(
        lambda: next((m for m in slack.parents() if _buttons(m)), None),
        90,
        "no Slack message with approval buttons while the run waits",
    )


def _click(slack: SlackAPI, pipeline: Ingest, ts: str, action: str) -> dict[str, Any]:
    status, answer = slack.click(
        ts,
        action,
        request_url=f"{pipeline.url}/slack/interactions",
        signing_secret=SIGNING_SECRET,
    )
    assert status == 200, answer
    assert answer["ok"] is True, answer
    return dict(answer)


def test_an_approval_is_asked_decided_and_reported_in_the_alerts_thread(
    pipeline: Ingest, slack: SlackAPI, cluster: Cluster
) -> None:
    run_id, alert_id = _fire(pipeline)
    parent = _asking(slack)
    assert pipeline.get(f"/api/v1/runs/{run_id}").body["phase"] == "WaitingApproval"
    shown = _text(parent)
    assert "restart-rollout deployment shop/web" in shown
    assert "*Risk:* medium" in shown
    assert "*Rationale:* the pods crash-loop on a stale config" in shown
    [actions] = _buttons(parent)
    approve, reject = actions["elements"]
    assert (approve["text"]["text"], reject["text"]["text"]) == ("Approve", "Deny")
    [approval] = [
        a for a in pipeline.get("/api/v1/approvals").body["approvals"] if a["runId"] == run_id
    ]
    assert approve["value"] == reject["value"] == approval["id"]

    def recorded() -> dict[str, Any] | None:
        [asked] = pipeline.get(f"/api/v1/runs/{run_id}").body["deliveries"]
        return asked if asked["phase"] == "Delivered" else None

    asked = wait_for(recorded, 30, "the approval request is not recorded Delivered")
    assert (asked["event"], asked["eventId"]) == ("approval_requested", approval["id"])
    assert asked["reference"]["ts"] == parent["ts"]
    assert cluster.patched == []

    roller = cluster.roll_out_when_restarted("shop", "web", replicas=2)
    decided = _click(slack, pipeline, parent["ts"], interactions.APPROVE_ACTION)
    assert decided["decisions"][0]["by"] == "slack:U0ALICE (alice)"

    # The message is edited: who approved and when, and the buttons are gone.
    edited = wait_for(
        lambda: next(
            (m for m in slack.parents() if m["ts"] == parent["ts"] and not _buttons(m)), None
        ),
        60,
        "the approval message still shows its buttons",
    )
    assert ":white_check_mark: *Approved* by <@U0ALICE> at 20" in _text(edited)
    with pytest.raises(LookupError):  # nothing left to press
        slack.click(
            parent["ts"],
            interactions.APPROVE_ACTION,
            request_url=f"{pipeline.url}/slack/interactions",
            signing_secret=SIGNING_SECRET,
        )

    # The run resumes, makes the change, verifies it and ends: the outcome is replied
    # in the thread, and the alert (resolved by the workflow) says so too.
    roller.join(120)
    outcome = wait_for(
        lambda: next((r for r in slack.replies(parent["ts"]) if "Remediation" in _text(r)), None),
        90,
        "no reply with the remediation's outcome",
    )
    assert "restart-rollout deployment shop/web`: made and verified healthy" in _text(outcome)
    assert "decided by <@U0ALICE>" in _text(outcome)
    wait_for(
        lambda: any("auto-resolved" in r["text"] for r in slack.replies(parent["ts"])),
        60,
        "no resolve reply for the alert the fix resolved",
    )
    assert pipeline.get(f"/api/v1/alerts/{alert_id}").body["status"] == "resolved"
    time.sleep(1)  # what a duplicate message would add arrives within this
    assert len(slack.parents()) == 1
    assert len(slack.replies(parent["ts"])) == 2
    assert len(cluster.patched) == 1


def test_a_rejection_is_shown_and_the_change_is_not_made(
    pipeline: Ingest, slack: SlackAPI, cluster: Cluster
) -> None:
    run_id, _ = _fire(pipeline)
    parent = _asking(slack)
    _click(slack, pipeline, parent["ts"], interactions.DENY_ACTION)
    edited = wait_for(
        lambda: next(
            (m for m in slack.parents() if m["ts"] == parent["ts"] and not _buttons(m)), None
        ),
        60,
        "the approval message still shows its buttons",
    )
    assert ":no_entry: *Denied* by <@U0ALICE> at 20" in _text(edited)
    outcome = wait_for(
        lambda: next((r for r in slack.replies(parent["ts"]) if "Remediation" in _text(r)), None),
        90,
        "no reply with the remediation's outcome",
    )
    assert "restart-rollout deployment shop/web`: not made: denied" in _text(outcome)
    assert pipeline.get(f"/api/v1/runs/{run_id}").body["phase"] == "Succeeded"
    assert cluster.patched == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("approval_timeout", ["10s"], indirect=True)
def test_an_expired_approval_is_shown_without_its_buttons(
    pipeline: Ingest, slack: SlackAPI, cluster: Cluster
) -> None:
    # Nobody clicks: the engine's recovery pass expires the approval, which edits the
    # message as a click does (the decision did not come from Slack).
    run_id, _ = _fire(pipeline)
    [parent] = wait_for(slack.parents, 60, "no Slack message while the run waits")
    assert "restart-rollout deployment shop/web" in _text(parent)
    edited = wait_for(
        lambda: next(
            (
                m
                for m in slack.parents()
                if m["ts"] == parent["ts"] and not _buttons(m) and "Expired" in _text(m)
            ),
            None,
        ),
        60,
        "the expired approval's message still shows its buttons",
    )
    assert ":hourglass: *Expired* at 20" in _text(edited)
    outcome = wait_for(
        lambda: next((r for r in slack.replies(parent["ts"]) if "Remediation" in _text(r)), None),
        60,
        "no reply with the remediation's outcome",
    )
    assert "not made: nobody decided in time" in _text(outcome)
    assert pipeline.get(f"/api/v1/runs/{run_id}").body["phase"] == "Succeeded"
    assert cluster.patched == []
