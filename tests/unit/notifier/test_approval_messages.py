"""What a message says about an approval: the change's risk as the investigation rated it."""

from __future__ import annotations

from typing import Any

import pytest

from services.notifier.core import messages
from services.notifier.sinks import stdout


def rec(action: str, risk: str, approval: bool = True) -> dict[str, Any]:
    return {"action": action, "rationale": "", "risk": risk, "requiresApproval": approval}


@pytest.mark.parametrize(
    ("recommendations", "expected"),
    [
        # The recommendation that names the object the change touches.
        ([rec("scale api to 4", "high"), rec("restart the rollout of web", "low")], "low"),
        # Else the riskiest one that needs approval.
        ([rec("raise the limit", "medium"), rec("drain a node", "high")], "high"),
        ([rec("drain a node", "high", approval=False), rec("raise it", "low")], "low"),
        ([], "not rated"),
        ([{"action": "web", "risk": "catastrophic"}], "not rated"),
    ],
)
def test_approval_risk(recommendations: list[dict[str, Any]], expected: str) -> None:
    request = {"action": "restart-rollout", "kind": "deployment", "name": "web"}
    assert messages.approval_risk(request, {"recommendations": recommendations}) == expected


def test_an_approval_row_becomes_what_messages_show() -> None:
    row = {
        "id": "a-1",
        "status": "executed",
        "what": "restart-rollout deployment shop/web",
        "why": "restart-rollout needs approval",
        "request": {"name": "web", "reason": "stale config"},
        "decided_by": "ana",
        "result": {"executed": True, "verified": True, "verification": {"detail": "2/2 ready"}},
    }
    doc = messages.approval_doc(row, {})
    assert (doc["rationale"], doc["decidedBy"], doc["outcome"]) == (
        "stale config",
        "ana",
        "2/2 ready",
    )
    assert (doc["executed"], doc["verified"], doc["risk"]) == (True, True, "not rated")


def test_the_stdout_report_says_which_changes_a_person_must_check() -> None:
    approvals = [
        {"status": "unknown", "what": "delete pod shop/api-7"},
        {"status": "failed", "what": "restart-rollout deployment shop/web"},
        {"status": "executed", "what": "scale deployment shop/db"},
    ]
    run = messages.RunFacts(
        id="r-1",
        phase="Failed",
        workflow="triage",
        namespace="shop",
        context={},
        outputs={},
        approvals=approvals,
    )
    report = stdout.text_report(
        messages.namespace(run, None, sink_name="out", sink_type="stdout", public_url="http://pf")
    )
    checks = [line for line in report.splitlines() if line.strip().startswith("CHECK")]
    assert checks == [
        "  CHECK      delete pod shop/api-7: " + messages.NEEDS_A_CHECK["unknown"],
        "  CHECK      restart-rollout deployment shop/web: " + messages.NEEDS_A_CHECK["failed"],
    ]
