"""An alert's story from first report to resolution, through the real processes.

``punchingfist ingest`` under gunicorn, ``punchingfist engine`` and ``punchingfist
notifier`` workers on Redis, the Slack stand-in and a real AlertManager: a firing
alert is investigated, its report becomes the Slack thread's parent and a silence;
the resolved webhook then edits the parent, replies once in the thread and expires
the silence, however many times AlertManager repeats the resolve.
"""

from __future__ import annotations

import copy
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notifierkit import put_resources, running_pipeline, slack_sink

from services.standins.slack import SlackAPI
from tests.functional.ingest.conftest import load_fixture
from tests.functional.ingest.ingestserver import Ingest
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.alertmanager, pytest.mark.timeout(120)]


WORKFLOW = {
    "steps": [{"name": "look", "type": "cli", "command": ["echo", "restarts: 7"]}],
    "outputs": [{"name": "summary", "value": "{{ steps.look.output.stdout }}"}],
    "sinks": ["slack", "am"],
}


def _silences(alertmanager: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{alertmanager}/api/v2/silences", timeout=5) as response:
        found: list[dict[str, Any]] = json.load(response)
    return [s for s in found if s["createdBy"] == "punching-fist"]


@pytest.fixture
def pipeline(
    database_url: str, redis_url: str, tmp_path: Path, slack: SlackAPI, alertmanager: str
) -> Iterator[Ingest]:
    silence = {"url": alertmanager, "actions": ["silence"], "silenceDuration": "1h"}
    sinks = {"slack": slack_sink(slack.url), "am": {"type": "alertmanager", "config": silence}}
    put_resources(database_url, WORKFLOW, sinks)
    with running_pipeline(database_url, redis_url, tmp_path) as running:
        yield running.ingest


def test_resolved_webhook_edits_the_parent_replies_once_and_expires_the_silence(
    pipeline: Ingest, slack: SlackAPI, alertmanager: str
) -> None:
    firing = load_fixture("01-firing-single.json")
    answer = pipeline.post(firing)
    assert answer.status == 200, answer.body
    assert answer.body["workflowsStarted"] == 1
    [parent] = wait_for(slack.parents, 60, "no Slack parent for the alert")
    assert "KubePodCrashLooping" in json.dumps(parent["blocks"])
    [silence] = wait_for(lambda: _silences(alertmanager), 30, "no silence for the alert")
    assert silence["status"]["state"] == "active"
    alert_id = answer.body["alerts"][0]
    # A person was told (the Slack message): the alert is escalated.
    wait_for(
        lambda: pipeline.get(f"/api/v1/alerts/{alert_id}").body["status"] == "escalated",
        30,
        "the alert was not escalated after the Slack message",
    )

    # The run shows what each Sink did and left: the Slack ts, the silence id.
    run_id = answer.body["runs"][0]

    def delivered() -> list[dict[str, Any]] | None:
        found = pipeline.get(f"/api/v1/runs/{run_id}").body["deliveries"]
        return found if {d["phase"] for d in found} == {"Delivered"} else None

    am, to_slack = wait_for(delivered, 30, "the run's deliveries are not shown Delivered")
    assert (am["sink"], am["type"], am["attempts"]) == ("am", "alertmanager", 1)
    assert am["reference"]["silenceId"] == silence["id"]
    assert (to_slack["sink"], to_slack["type"], to_slack["error"]) == ("slack", "slack", None)
    assert to_slack["reference"]["ts"] == parent["ts"]
    assert to_slack["reference"]["channel"] == "C0INCIDENTS"
    assert to_slack["nextAttemptAt"] is None
    assert to_slack["sentAt"] is not None

    resolved = copy.deepcopy(firing)
    resolved["status"] = "resolved"
    resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-11-26T04:30:00Z"
    for _ in range(3):  # AlertManager repeats a resolve (HA peers, resend interval)
        again = pipeline.post(resolved)
        assert again.status == 200, again.body
    wait_for(
        lambda: "Resolved" in json.dumps(slack.parents()[0]["blocks"]),
        60,
        "the parent was not edited to show the alert resolved",
    )
    [reply] = wait_for(lambda: slack.replies(parent["ts"]), 30, "no reply in the thread")
    assert "Resolved at" in reply["text"]
    assert "AlertManager reported it resolved" in reply["text"]
    wait_for(
        lambda: _silences(alertmanager)[0]["status"]["state"] == "expired",
        30,
        "the silence was not expired",
    )
    # The repeats queued nothing more: one reply, one update, and no second parent.
    time.sleep(2)
    assert len(slack.replies(parent["ts"])) == 1
    assert len(slack.calls("chat.update")) == 1
    assert len(slack.parents()) == 1
