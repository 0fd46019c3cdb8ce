"""The edit that shows an approval's decision, with the task functions called directly.

The end-to-end story (engine, ingest, a click) is in ``test_approval_in_slack.py``;
these are the orders of events that a test through the processes cannot pick.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from notifierkit import Harness, slack_sink

from services.notifier import tasks
from services.notifier.app import Runtime
from services.standins.slack import SlackAPI
from shared import approvals
from shared.db.models import Approval, utcnow


def _decide(harness: Harness, approval_id: Any, decision: approvals.Decision) -> list[str]:
    with harness.sessions.begin() as session:
        decided = approvals.decide(
            session, approval_id, decision, "slack:U0BOB (bob)", "", utcnow()
        )
    return [task.task_name for task in decided.tasks]


def _asking(harness: Harness, runtime: Runtime, slack: SlackAPI) -> tuple[Any, Any, Any]:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    run_id, _ = harness.add_finished_run([], alert_id, phase="WaitingApproval")
    approval_id = harness.add_approval(run_id)
    delivery_id = harness.add_delivery(run_id, "slack", "approval_requested", str(approval_id))
    return alert_id, approval_id, delivery_id


def _buttons(message: dict[str, Any]) -> bool:
    return any(block["type"] == "actions" for block in message["blocks"])


def test_a_decision_keeps_the_resolved_line_of_the_parent_it_edits(
    harness: Harness, runtime: Runtime, slack: SlackAPI
) -> None:
    alert_id, approval_id, delivery_id = _asking(harness, runtime, slack)
    tasks.deliver_once(runtime, str(delivery_id))
    [parent] = slack.parents()
    assert _buttons(parent)
    harness.resolve(alert_id)
    tasks.on_alert_resolved(runtime, str(alert_id))
    queued = _decide(harness, approval_id, approvals.Decision.DENY)
    assert queued == ["engine.resume_step", "notifier.approval_decided"]
    tasks.on_approval_decided(runtime, str(approval_id))
    [parent] = slack.parents()
    assert not _buttons(parent)
    blocks = json.dumps(parent["blocks"])
    assert parent["blocks"][0]["block_id"] == "pf-resolved"
    assert "*Denied* by <@U0BOB>" in blocks
    # The delivery notes the edit; a second message edits nothing more.
    assert harness.delivery(delivery_id).response["decisionShown"] == "denied"
    edits = len(slack.calls("chat.update"))
    tasks.on_approval_decided(runtime, str(approval_id))
    assert len(slack.calls("chat.update")) == edits


def test_a_request_delivered_after_the_decision_shows_it_and_its_record_queues_the_edit(
    harness: Harness, runtime: Runtime, slack: SlackAPI
) -> None:
    _, approval_id, delivery_id = _asking(harness, runtime, slack)
    # The decision's message runs while the request is still queued: nothing to edit.
    _decide(harness, approval_id, approvals.Decision.APPROVE)
    tasks.on_approval_decided(runtime, str(approval_id))
    assert slack.calls("chat.update") == []
    # Delivered now, the request shows the decision already: no buttons to remove.
    tasks.deliver_once(runtime, str(delivery_id))
    [parent] = slack.parents()
    assert not _buttons(parent)
    assert "*Approved* by <@U0BOB>" in json.dumps(parent["blocks"])
    # Its record queued the edit too (it found the approval decided): harmless here,
    # and what edits a request that was rendered before the decision landed.
    with harness.engine.connect() as conn:
        queued = conn.exec_driver_sql(
            "SELECT args FROM outbox WHERE task_name = 'notifier.approval_decided'"
        ).all()
    assert len(queued) == 2  # the decision's and the record's


def test_a_change_whose_worker_was_lost_is_edited_to_say_a_person_must_check(
    harness: Harness, runtime: Runtime, slack: SlackAPI
) -> None:
    _, approval_id, delivery_id = _asking(harness, runtime, slack)
    tasks.deliver_once(runtime, str(delivery_id))
    _decide(harness, approval_id, approvals.Decision.APPROVE)
    tasks.on_approval_decided(runtime, str(approval_id))
    [parent] = slack.parents()
    assert "must check" not in json.dumps(parent["blocks"])
    # The engine's recovery found the change's worker lost (services.engine.approvals
    # .interrupted): the approval ends unknown and the messages that asked are edited.
    with harness.sessions.begin() as session:
        session.execute(
            sa.update(Approval)
            .where(Approval.id == approval_id)
            .values(status=approvals.Status.UNKNOWN, result={"error": "worker w-1 was lost"})
        )
        queued = approvals.change_ended(session, approval_id, approvals.Status.UNKNOWN, 30)
    assert [task.task_name for task in queued] == ["notifier.approval_decided"]
    tasks.on_approval_decided(runtime, str(approval_id))
    [parent] = slack.parents()
    shown = json.dumps(parent["blocks"])
    assert ":warning: *Approved* by <@U0BOB>" in shown
    assert "it is unknown whether the change was made" in shown
    assert "A person must check the workload" in shown
    assert "worker w-1 was lost" in shown
    assert harness.delivery(delivery_id).response["decisionShown"] == "unknown"
