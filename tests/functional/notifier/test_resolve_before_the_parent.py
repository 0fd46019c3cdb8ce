"""An alert that resolves before its Slack parent is posted still gets its resolve reply.

``punchingfist ingest`` under gunicorn, ``punchingfist engine`` and ``punchingfist
notifier`` workers on Redis, the Slack stand-in. The run ends and its Slack delivery
waits, either queued (no notifier worker is running yet) or on its way (the stand-in
holds the ``chat.postMessage`` answer); meanwhile AlertManager resolves the alert.
Whichever comes first, the thread ends up with one parent, edited to show it
resolved, and exactly one resolve reply.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notifierkit import Pipeline, put_resources, running_pipeline, slack_sink

from services.standins.slack import SlackAPI
from tests.functional.ingest.conftest import load_fixture
from tests.functional.ingest.ingestserver import Ingest
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(150)


WORKFLOW = {
    "steps": [{"name": "look", "type": "cli", "command": ["echo", "restarts: 7"]}],
    "outputs": [{"name": "summary", "value": "{{ steps.look.output.stdout }}"}],
    "sinks": ["slack"],
}


@pytest.fixture
def pipeline(
    database_url: str, redis_url: str, tmp_path: Path, slack: SlackAPI
) -> Iterator[Pipeline]:
    put_resources(database_url, WORKFLOW, {"slack": slack_sink(slack.url)})
    # The notifier starts in the test, after the run has ended.
    with running_pipeline(database_url, redis_url, tmp_path, start_notifier=False) as running:
        yield running


def _resolved(firing: dict[str, Any]) -> dict[str, Any]:
    resolved = copy.deepcopy(firing)
    resolved["status"] = "resolved"
    resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-11-26T04:30:00Z"
    return resolved


def _delivery(ingest: Ingest, run_id: str) -> dict[str, Any] | None:
    run = ingest.get(f"/api/v1/runs/{run_id}").body
    found = run.get("deliveries") or []
    return found[0] if run.get("phase") == "Succeeded" and found else None


@pytest.mark.parametrize("parent", ["queued", "on its way"])
def test_a_resolve_before_the_parent_is_posted_is_replied_once(
    pipeline: Pipeline, slack: SlackAPI, parent: str
) -> None:
    ingest = pipeline.ingest
    firing = load_fixture("01-firing-single.json")
    answer = ingest.post(firing)
    assert answer.status == 200, answer.body
    run_id = answer.body["runs"][0]
    if parent == "queued":
        # The run ends; its delivery waits in the queue (no notifier worker yet).
        delivery = wait_for(lambda: _delivery(ingest, run_id), 60, "the run did not end")
        assert delivery["phase"] == "Pending"
        assert ingest.post(_resolved(firing)).status == 200
        pipeline.notifier.start()
    else:
        # Slack stores the parent and answers 3 s later: the resolve arrives meanwhile.
        slack.delay_next("chat.postMessage", 3.0)
        pipeline.notifier.start()
        wait_for(lambda: slack.calls("chat.postMessage"), 60, "no chat.postMessage")
        assert ingest.post(_resolved(firing)).status == 200

    [posted] = wait_for(slack.parents, 60, "no Slack parent for the alert")
    wait_for(
        lambda: any("Resolved at" in r["text"] for r in slack.replies(posted["ts"])),
        60,
        "no resolve reply in the thread",
    )
    wait_for(
        lambda: "pf-resolved" in json.dumps(slack.parents()[0]["blocks"]),
        30,
        "the parent was not edited to show the alert resolved",
    )
    [reply] = slack.replies(posted["ts"])
    assert "AlertManager reported it resolved" in reply["text"]
    # Both orders may queue the resolution twice (ingest, and the parent's record):
    # the second finds it done.
    time.sleep(2)
    assert len(slack.parents()) == 1
    assert len(slack.replies(posted["ts"])) == 1
    assert len(slack.calls("chat.update")) == 1
