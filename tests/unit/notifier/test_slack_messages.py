"""The Slack layout: Block Kit from the sandboxed template, escaping, overrides."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from services.notifier.core import messages
from services.notifier.sinks import slack_blocks
from shared.domain import interactions
from shared.errors import PermanentError


def message(
    outputs: dict[str, Any] | None = None, *, alert: bool = True, **run: Any
) -> dict[str, Any]:
    facts = messages.RunFacts(
        id="r-1",
        phase=run.pop("phase", "Succeeded"),
        workflow="triage",
        namespace="default",
        context={"steps": {"look": {"phase": "Succeeded", "output": {}}}},
        outputs=outputs or {},
        completed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        **run,
    )
    alert_facts = (
        messages.AlertFacts(
            id="a-1",
            status="triaging",
            labels={"alertname": "HighLatency", "namespace": "shop", "pod": "api-7"},
            annotations={"summary": "p99 over 2s", "runbook_url": "https://runbooks/latency"},
            generator_url="http://prom/graph?a=1&b=2",
            alert_name="HighLatency",
            severity="warning",
        )
        if alert
        else None
    )
    return messages.namespace(
        facts, alert_facts, sink_name="slack", sink_type="slack", public_url="http://pf:8080"
    )


def texts(rendered: dict[str, Any]) -> str:
    parts = []
    for block in rendered["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(element["text"])
    return "\n".join(parts)


def test_the_default_layout_shows_the_alert_the_findings_and_the_links() -> None:
    rendered = slack_blocks.render(
        None,
        message(
            {
                "summary": "GC pauses",
                "rootCause": "heap too small",
                "confidence": 0.8,
                "recommendations": "raise -Xmx",
            }
        ),
        ["U0ONCALL"],
        "Sink default/slack template",
    )
    text = texts(rendered)
    for expected in (
        "*HighLatency* `warning`",
        "`shop/api-7`",
        "p99 over 2s",
        "*Summary*\nGC pauses",
        "*Root cause*\nheap too small",
        "*Confidence*\n0.8",
        "*Recommendations*\nraise -Xmx",
        "<http://prom/graph?a=1&amp;b=2|Source>",
        "<https://runbooks/latency|Runbook>",
        "<http://pf:8080/api/v1/runs/r-1|Run>",
        "<@U0ONCALL>",
    ):
        assert expected in text
    assert rendered["text"] == "HighLatency (warning): workflow triage Succeeded"


def test_the_default_layout_without_alert_or_outputs() -> None:
    rendered = slack_blocks.render(
        None, message(alert=False, phase="Failed", error="boom"), [], "t"
    )
    text = texts(rendered)
    assert ":x: *triage* · Investigation failed" in text
    assert "*Error*\n```boom```" in text
    assert "<@" not in text  # no alert, nobody to mention


def test_plain_text_template_is_one_section() -> None:
    rendered = slack_blocks.render("Look at {{ alert.labels.pod }}", message(), [], "t")
    assert rendered["blocks"] == [
        {"type": "section", "text": {"type": "mrkdwn", "text": "Look at api-7"}}
    ]


def test_json_that_is_not_blocks_is_refused() -> None:
    with pytest.raises(PermanentError, match="not a list of Block Kit blocks"):
        slack_blocks.render('{"blocks": [1, 2]}', message(), [], "t")


def test_a_missing_field_names_the_sink_and_field() -> None:
    with pytest.raises(PermanentError, match="Sink default/slack template"):
        slack_blocks.render(
            "{{ outputs.nothing.here }}", message(), [], "Sink default/slack template"
        )


def test_resolved_banner_replaces_an_earlier_one() -> None:
    original = [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]
    once = slack_blocks.resolved_blocks(original, "2026-01-01T00:00:00+00:00", auto_resolved=False)
    twice = slack_blocks.resolved_blocks(once, "2026-01-01T00:00:00+00:00", auto_resolved=True)
    assert [b.get("block_id") for b in twice] == ["pf-resolved", None]
    assert "auto-resolved" in twice[0]["elements"][0]["text"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x/y", "https://x/y"),
        ("javascript:alert(1)", None),
        ("http://a|b", "http://a%7Cb"),
        ("http://a/<b>", "http://a/&lt;b&gt;"),
        (None, None),
    ],
)
def test_safe_link(url: str | None, expected: str | None) -> None:
    assert slack_blocks.safe_link(url) == expected


APPROVAL = {
    "id": "0b6c1c4e-8f5e-4f55-9a39-3c1a4f9f2a10",
    "what": "delete pod shop/api-7 <!channel>",
    "why": "it is stuck in CrashLoopBackOff",
}


@pytest.mark.parametrize("template", [None, "plain *text* template"])
def test_a_run_waiting_for_approval_gets_approve_and_reject_buttons(template: str | None) -> None:
    rendered = slack_blocks.render(
        template, message(phase="WaitingApproval", approval=APPROVAL), [], "Sink slack"
    )
    actions = rendered["blocks"][-1]
    assert actions["type"] == "actions"
    approve, deny = actions["elements"]
    assert (approve["action_id"], deny["action_id"]) == (
        interactions.APPROVE_ACTION,
        interactions.DENY_ACTION,
    )
    assert approve["value"] == deny["value"] == APPROVAL["id"]
    # The confirmation shows the change, escaped: no mention from the request.
    assert approve["confirm"]["text"]["text"] == "delete pod shop/api-7 &lt;!channel&gt;"
    if template is None:
        shown = texts({"blocks": rendered["blocks"][:-1]})
        assert "Waiting for approval" in shown
        assert "*Proposed change:* `delete pod shop/api-7 &lt;!channel&gt;`" in shown
        assert "*Risk:* not rated" in shown
    # What the button sends back is what ingest reads as the decision.
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice"},
        "actions": [{"action_id": deny["action_id"], "value": deny["value"]}],
    }
    [click] = interactions.parse(json.dumps(payload))
    assert (str(click.approval_id), click.decision, click.by) == (
        APPROVAL["id"],
        "deny",
        "slack:U0ALICE (alice)",
    )


def test_no_buttons_once_the_run_no_longer_waits() -> None:
    rendered = slack_blocks.render(
        None, message(phase="Succeeded", approval=APPROVAL), [], "Sink slack"
    )
    assert all(block["type"] != "actions" for block in rendered["blocks"])
    assert "Approval needed" not in texts(rendered)


def test_a_decided_approval_shows_who_decided_and_when_instead_of_the_buttons() -> None:
    decided = {
        **APPROVAL,
        "status": "denied",
        "risk": "high",
        "rationale": "the pod <!here> never starts",
        "decidedBy": "slack:U0ALICE (alice)",
        "decidedAt": "2026-11-29T08:40:00+00:00",
        "comment": "decided in Slack",
    }
    msg = message(phase="Running", approval=decided, event="approval_requested")
    rendered = slack_blocks.render(None, msg, [], "Sink slack")
    assert all(block["type"] != "actions" for block in rendered["blocks"])
    shown = texts(rendered)
    assert "Approval denied" in shown
    assert "*Risk:* high" in shown
    assert "*Rationale:* the pod &lt;!here&gt; never starts" in shown
    assert ":no_entry: *Denied* by <@U0ALICE> at 2026-11-29T08:40:00+00:00" in shown


def test_a_finished_run_says_what_became_of_its_changes() -> None:
    made = {
        **APPROVAL,
        "status": "executed",
        "decidedBy": "ana",
        "verified": True,
        "outcome": "2/2 ready, 2 available, 2 updated",
    }
    msg = message(event="run_finished", approvals=[made])
    shown = texts(slack_blocks.render(None, msg, [], "Sink slack"))
    assert "*Remediation*" in shown
    assert "`delete pod shop/api-7 &lt;!channel&gt;`: made and verified healthy" in shown
    assert "(decided by ana)" in shown
    assert "2/2 ready" in shown


LOST = {
    **APPROVAL,
    "decidedBy": "slack:U0ALICE (alice)",
    "decidedAt": "2026-11-29T08:40:00+00:00",
    "outcome": "the engine worker w-1 was lost while making the approved change",
}


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("unknown", "it is unknown whether the change was made"),
        ("failed", "making the change failed: it may not have been made, or only in part"),
    ],
)
def test_the_request_edit_says_a_person_must_check_a_change_that_did_not_end_cleanly(
    status: str, said: str
) -> None:
    msg = message(phase="Running", approval={**LOST, "status": status}, event="approval_requested")
    shown = texts(slack_blocks.render(None, msg, [], "Sink slack"))
    assert f"*Approved* by <@U0ALICE> at 2026-11-29T08:40:00+00:00\n*{said}" in shown
    assert "A person must check the workload.*" in shown
    assert "the engine worker w-1 was lost" in shown
    assert ":white_check_mark: *Approved*" not in shown


@pytest.mark.parametrize(
    ("status", "said"),
    [
        ("unknown", "approved, but it is unknown whether the change was made"),
        ("failed", "approved, but making the change failed"),
    ],
)
def test_the_run_end_remediation_says_a_person_must_check(status: str, said: str) -> None:
    msg = message(event="run_finished", approvals=[{**LOST, "status": status}])
    shown = texts(slack_blocks.render(None, msg, [], "Sink slack"))
    assert f"*Remediation*\n• `delete pod shop/api-7 &lt;!channel&gt;`: {said}" in shown
    assert "A person must check the workload (decided by <@U0ALICE>)" in shown
    assert "not made" not in shown


def test_a_made_change_needs_no_check() -> None:
    made = {**LOST, "status": "executed", "verified": True}
    msg = message(event="run_finished", approvals=[made])
    assert "must check" not in texts(slack_blocks.render(None, msg, [], "Sink slack"))
