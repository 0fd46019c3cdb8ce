"""Slack deliveries against the Web API stand-in, on SQLite and PostgreSQL.

The task functions run in this process (no broker): one parent per alert occurrence,
later runs as replies in its thread, the parent edited and a reply on resolution,
and the failures Slack really produces (429 with Retry-After, 500, ok: false, an
answer that never arrives).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from notifierkit import SLACK_TOKEN, Harness, slack_sink

from services.notifier import tasks
from services.notifier.app import Runtime
from tests.support.slack_api import SlackAPI


def deliver(runtime: Runtime, delivery_id: uuid.UUID) -> tasks.Step:
    return tasks.deliver_once(runtime, str(delivery_id))


def block_text(message: dict[str, Any]) -> str:
    return json.dumps(message["blocks"])


def test_first_message_is_the_parent_and_later_runs_reply_in_its_thread(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, first = harness.add_finished_run(["slack"], alert_id)
    assert deliver(runtime, first["slack"]).retry_in is None

    [parent] = slack.messages()
    assert parent["channel"] == "C0INCIDENTS"
    assert "PodCrashLooping" in block_text(parent)
    assert "memory limit 128Mi is too low" in block_text(parent)
    assert parent["metadata"]["event_payload"]["delivery_id"] == str(first["slack"])
    call = slack.calls("chat.postMessage")[0]
    assert call.authorization == f"Bearer {SLACK_TOKEN}"
    assert call.content_type.startswith("application/json")

    delivery = harness.delivery(first["slack"])
    assert (delivery.phase, delivery.attempts, delivery.error) == ("Delivered", 1, None)
    assert delivery.response == {"channel": "C0INCIDENTS", "ts": parent["ts"], "threadTs": None}
    assert delivery.sent_at is not None
    state = harness.state(alert_id, "slack")
    assert (state.channel, state.thread_ts) == ("C0INCIDENTS", parent["ts"])
    # A person was told: the alert is escalated.
    assert harness.alert(alert_id).status == "escalated"

    _, second = harness.add_finished_run(["slack"], alert_id)
    deliver(runtime, second["slack"])
    assert len(slack.parents()) == 1
    [reply] = slack.replies(parent["ts"])
    assert harness.delivery(second["slack"]).response["threadTs"] == parent["ts"]
    assert reply["metadata"]["event_payload"]["delivery_id"] == str(second["slack"])


def test_each_alert_occurrence_gets_its_own_thread(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    for _ in range(2):
        _, ids = harness.add_finished_run(["slack"], harness.add_alert())
        deliver(runtime, ids["slack"])
    assert len(slack.parents()) == 2
    assert slack.replies(slack.parents()[0]["ts"]) == []


def test_without_thread_updates_every_message_stands_alone(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url, threadUpdates=False))
    alert_id = harness.add_alert()
    for _ in range(2):
        _, ids = harness.add_finished_run(["slack"], alert_id)
        deliver(runtime, ids["slack"])
    assert len(slack.parents()) == 2
    assert harness.state(alert_id, "slack") is None


def test_resolution_edits_the_parent_and_replies_once(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], alert_id)
    deliver(runtime, ids["slack"])
    harness.resolve(alert_id, auto=True)

    assert tasks.on_alert_resolved(runtime, str(alert_id)).retry_in is None
    [parent] = slack.parents()
    assert parent.get("edited")
    assert "Resolved" in block_text(parent)
    assert "auto-resolved" in block_text(parent)
    assert "memory limit 128Mi is too low" in block_text(parent)  # findings kept
    [reply] = slack.replies(parent["ts"])
    assert "Resolved at" in reply["text"]
    state = harness.state(alert_id, "slack")
    assert state.resolved_at is not None
    assert state.resolution == {"updated": True, "replyTs": reply["ts"]}

    # A second resolution message (the outbox may publish twice) changes nothing.
    tasks.on_alert_resolved(runtime, str(alert_id))
    assert len(slack.replies(parent["ts"])) == 1
    assert len(slack.calls("chat.update")) == 1


def test_a_short_retry_after_is_waited_inside_the_call(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    assert deliver(runtime, ids["slack"]).retry_in is None
    assert len(slack.calls("chat.postMessage")) == 2
    assert len(slack.parents()) == 1
    assert harness.delivery(ids["slack"]).attempts == 1


def test_a_long_retry_after_sends_the_delivery_back_to_wait(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    slack.fail_next("chat.postMessage", status=429, retry_after=30)
    step = deliver(runtime, ids["slack"])
    assert step.retry_in is not None
    assert step.retry_in >= 30
    delivery = harness.delivery(ids["slack"])
    assert (delivery.phase, delivery.attempts, delivery.worker) == ("Pending", 1, None)
    assert "ratelimited" in delivery.error
    assert slack.messages() == []
    # A duplicate of the retry message that arrives early does nothing.
    assert deliver(runtime, ids["slack"]).retry_in is None
    assert len(slack.calls("chat.postMessage")) == 1


def test_a_server_error_is_retried_and_then_delivered(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    slack.fail_next("chat.postMessage", status=500)
    step = deliver(runtime, ids["slack"])
    assert step.retry_in is not None
    delivery = harness.delivery(ids["slack"])
    assert (delivery.phase, delivery.attempts) == ("Pending", 1)
    assert "HTTP 500" in delivery.error

    _make_due(harness, ids["slack"])
    assert deliver(runtime, ids["slack"]).retry_in is None
    delivery = harness.delivery(ids["slack"])
    assert (delivery.phase, delivery.attempts, delivery.error) == ("Delivered", 2, None)
    assert len(slack.parents()) == 1


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth", "not_in_channel"])
def test_a_permanent_slack_error_fails_at_once_and_frees_the_parent(
    harness: Harness, slack: SlackAPI, runtime: Runtime, error: str
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], alert_id)
    slack.fail_next("chat.postMessage", error=error)
    assert deliver(runtime, ids["slack"]).retry_in is None
    delivery = harness.delivery(ids["slack"])
    assert (delivery.phase, delivery.attempts) == ("Failed", 1)
    assert error in delivery.error
    assert harness.alert(alert_id).status == "triaging"  # nobody was told
    # The next run of the alert may post the parent.
    _, later = harness.add_finished_run(["slack"], alert_id)
    deliver(runtime, later["slack"])
    assert len(slack.parents()) == 1
    assert harness.state(alert_id, "slack").thread_ts == slack.parents()[0]["ts"]


def test_an_ok_answer_without_ts_is_not_taken_for_a_parent(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], alert_id)
    slack.fail_next("chat.postMessage", answer={"ok": True})
    deliver(runtime, ids["slack"])
    delivery = harness.delivery(ids["slack"])
    assert delivery.phase == "Failed"
    assert "without channel and ts" in delivery.error
    assert harness.state(alert_id, "slack").thread_ts is None


def test_a_wrong_token_is_invalid_auth(harness: Harness, slack: SlackAPI, runtime: Runtime) -> None:
    harness.put_secret("slack-bot", "token", "xoxb-wrong")
    harness.put_sink("slack", slack_sink(slack.url))
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    deliver(runtime, ids["slack"])
    delivery = harness.delivery(ids["slack"])
    assert delivery.phase == "Failed"
    assert "invalid_auth" in delivery.error


def test_an_answer_lost_after_slack_posted_does_not_post_twice(
    harness: Harness, slack: SlackAPI, notifier_settings: Any
) -> None:
    from services.notifier.app import create_app, runtime_for

    runtime = runtime_for(create_app(notifier_settings(PF_NOTIFIER_HTTP_TIMEOUT="1")))
    try:
        harness.put_sink("slack", slack_sink(slack.url))
        alert_id = harness.add_alert()
        _, ids = harness.add_finished_run(["slack"], alert_id)
        # Slack stores the message, then answers after the client gave up.
        slack.delay_next("chat.postMessage", 2.5)
        assert deliver(runtime, ids["slack"]).retry_in is not None
        assert len(slack.parents()) == 1
        assert harness.delivery(ids["slack"]).phase == "Pending"

        _make_due(harness, ids["slack"])
        deliver(runtime, ids["slack"])
        assert len(slack.parents()) == 1
        delivery = harness.delivery(ids["slack"])
        assert (delivery.phase, delivery.attempts) == ("Delivered", 2)
        assert delivery.response["ts"] == slack.parents()[0]["ts"]
        assert delivery.response["found"] is True
        assert harness.state(alert_id, "slack").thread_ts == slack.parents()[0]["ts"]
        assert len(slack.calls("conversations.history")) == 1
    finally:
        runtime.close()


def test_a_duplicated_message_posts_once(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    deliver(runtime, ids["slack"])
    deliver(runtime, ids["slack"])
    assert len(slack.messages()) == 1
    assert harness.delivery(ids["slack"]).attempts == 1


def test_mentions_only_when_the_run_escalates(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url, mentions=["U0ONCALL", "S0SRE"]))
    escalating = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], escalating)
    deliver(runtime, ids["slack"])
    resolved = harness.add_alert(status="resolved")
    _, quiet = harness.add_finished_run(["slack"], resolved)
    deliver(runtime, quiet["slack"])
    first, second = slack.parents()
    assert "<@U0ONCALL> <!subteam^S0SRE>" in block_text(first)
    assert "U0ONCALL" not in block_text(second)


def test_alert_values_cannot_write_mentions_or_links(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert(
        labels={"alertname": "<!channel> wake up", "severity": "critical", "pod": "<http://x|y>"},
        annotations={"summary": "&<>", "runbook_url": "javascript:alert(1)"},
        generator_url="http://evil|click here",
    )
    _, ids = harness.add_finished_run(["slack"], alert_id)
    deliver(runtime, ids["slack"])
    text = "".join(block["text"]["text"] for block in slack.messages()[0]["blocks"][:1])
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; wake up" in text
    assert "&amp;&lt;&gt;" in text
    footer = json.dumps(slack.messages()[0]["blocks"][-1])
    assert "javascript:" not in footer
    assert "http://evil%7Cclick here|Source" in footer


def test_a_template_override_renders_in_the_sandbox(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink(
        "slack",
        slack_sink(
            slack.url,
            template="*{{ alert.name }}* on {{ alert.labels.pod }}: {{ outputs.summary }}",
        ),
    )
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    deliver(runtime, ids["slack"])
    [block] = slack.messages()[0]["blocks"]
    assert block["text"]["text"] == "*PodCrashLooping* on web-1: web-1 is OOMKilled"


def test_a_template_that_reaches_for_internals_fails_the_delivery(
    harness: Harness, slack: SlackAPI, runtime: Runtime
) -> None:
    harness.put_sink("slack", slack_sink(slack.url, template="{{ alert.__class__.__mro__ }}"))
    _, ids = harness.add_finished_run(["slack"], harness.add_alert())
    deliver(runtime, ids["slack"])
    delivery = harness.delivery(ids["slack"])
    assert delivery.phase == "Failed"
    assert "template" in delivery.error
    assert slack.messages() == []


def _make_due(harness: Harness, delivery_id: uuid.UUID) -> None:
    """Let the retry happen now instead of after its backoff (Celery's countdown)."""
    import sqlalchemy as sa

    from shared.db.models import SinkDelivery, utcnow

    with harness.sessions.begin() as session:
        session.execute(
            sa.update(SinkDelivery.__table__)
            .where(SinkDelivery.__table__.c.id == delivery_id)
            .values(next_attempt_at=utcnow())
        )
