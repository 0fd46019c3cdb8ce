"""A real ``punchingfist notifier`` worker process on Redis, posting to the Slack stand-in.

The worker runs as a child process (prefork pool) against a SQLite file or the
PostgreSQL test database. Duplicated messages, a SIGKILLed worker and a killed pool
process, each while Slack has the message but the worker has not recorded it, must
all end with one Slack parent per alert occurrence.
"""

from __future__ import annotations

import os
import uuid

import pytest
from celery import Celery
from notifierkit import Harness, NotifierProcess, slack_sink

from services.standins.slack import SlackAPI
from shared.queueing import ALERT_RESOLVED, DELIVER, NOTIFIER_QUEUE
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def send(app: Celery, delivery_id: uuid.UUID) -> None:
    app.send_task(DELIVER, args=[str(delivery_id)], queue=NOTIFIER_QUEUE)


def delivered(harness: Harness, delivery_id: uuid.UUID, timeout: float = 40) -> object:
    return wait_for(
        lambda: (row := harness.delivery(delivery_id)).phase == "Delivered" and row,
        timeout,
        f"delivery {delivery_id} was not delivered",
    )


def test_deliveries_and_duplicates_on_a_worker_process(
    harness: Harness, slack: SlackAPI, sender: Celery, notifier_process: NotifierProcess
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, first = harness.add_finished_run(["slack"], alert_id)
    _, second = harness.add_finished_run(["slack"], alert_id)
    notifier_process.start()
    # The outbox may publish an entry twice; both runs' messages arrive together.
    for delivery_id in (first["slack"], first["slack"], second["slack"], second["slack"]):
        send(sender, delivery_id)
    delivered(harness, first["slack"])
    delivered(harness, second["slack"])
    [parent] = slack.parents()
    assert len(slack.replies(parent["ts"])) == 1
    assert harness.state(alert_id, "slack").thread_ts == parent["ts"]
    assert harness.alert(alert_id).status == "escalated"


def test_sigkill_between_post_and_record_leaves_one_parent(
    harness: Harness, slack: SlackAPI, sender: Celery, notifier_process: NotifierProcess
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], alert_id)
    # Slack stores the parent and holds its answer: the worker dies in that window.
    slack.delay_next("chat.postMessage", 5)
    notifier_process.start()
    send(sender, ids["slack"])
    wait_for(lambda: len(slack.parents()) == 1, 30, "the parent was not posted")
    notifier_process.kill()
    claimed = harness.delivery(ids["slack"])
    assert (claimed.phase, claimed.attempts) == ("Pending", 1)
    assert claimed.worker is not None

    # The restarted worker's recovery pass finds the dead claim and sends it again;
    # the second attempt finds the parent in the channel instead of posting another.
    notifier_process.start()
    row = delivered(harness, ids["slack"])
    assert row.attempts == 2  # type: ignore[attr-defined]
    assert row.response["found"] is True  # type: ignore[attr-defined]
    assert len(slack.parents()) == 1
    assert harness.state(alert_id, "slack").thread_ts == slack.parents()[0]["ts"]
    assert "re-sending a delivery" in notifier_process.log()


def test_a_killed_pool_process_is_replaced_and_its_delivery_finished_once(
    harness: Harness, slack: SlackAPI, sender: Celery, notifier_process: NotifierProcess
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], alert_id)
    slack.delay_next("chat.postMessage", 5)
    notifier_process.start()
    send(sender, ids["slack"])
    wait_for(lambda: len(slack.parents()) == 1, 30, "the parent was not posted")
    owner = harness.delivery(ids["slack"]).worker
    pid = int(owner.rpartition(":")[2])
    assert pid != notifier_process.process.pid  # type: ignore[union-attr]
    os.kill(pid, 9)
    # No restart: Celery re-queues the lost message and a new pool process takes it.
    row = delivered(harness, ids["slack"])
    assert row.attempts == 2  # type: ignore[attr-defined]
    assert len(slack.parents()) == 1
    _, later = harness.add_finished_run(["slack"], alert_id)
    send(sender, later["slack"])
    delivered(harness, later["slack"])
    assert len(slack.parents()) == 1
    assert len(slack.replies(slack.parents()[0]["ts"])) == 1


def test_a_resolution_message_updates_the_thread_once(
    harness: Harness, slack: SlackAPI, sender: Celery, notifier_process: NotifierProcess
) -> None:
    harness.put_sink("slack", slack_sink(slack.url))
    alert_id = harness.add_alert()
    _, ids = harness.add_finished_run(["slack"], alert_id)
    notifier_process.start()
    send(sender, ids["slack"])
    delivered(harness, ids["slack"])
    harness.resolve(alert_id)
    for _ in range(2):
        sender.send_task(ALERT_RESOLVED, args=[str(alert_id)], queue=NOTIFIER_QUEUE)
    wait_for(
        lambda: (state := harness.state(alert_id, "slack")).resolved_at is not None and state,
        30,
        "the resolution was not handled",
    )
    [parent] = slack.parents()
    assert parent.get("edited")
    wait_for(lambda: len(slack.calls("chat.update")) >= 1, 10, "no update")
    assert len(slack.replies(parent["ts"])) == 1
