"""Scenario 4: duplicates and groups.

AlertManager re-sends a firing alert every repeat interval (two seconds here) and sends
a group of alerts in one webhook. Each occurrence starts exactly one run and gets one
Slack parent, however many times it was notified; the same fingerprint firing again
after it resolved is a new occurrence, with its own run and parent.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

GROUP = [
    {
        "labels": {
            "alertname": "KubePodNotReady",
            "namespace": "shop",
            "pod": f"web-{n}",
            "severity": "warning",
        },
        "annotations": {"summary": f"web-{n} is not ready"},
    }
    for n in range(6)
]
DISK = {
    "labels": {"alertname": "DiskFull", "namespace": "db", "pod": "pg-0", "severity": "critical"},
    "annotations": {"summary": "pg-0's volume is full"},
}


def _runs(pipeline: Pipeline) -> list[Any]:
    return pipeline.sql("SELECT alert_id, phase FROM workflow_runs")


def test_repeats_and_groups_start_one_run_and_one_parent_per_occurrence(
    pipeline_for: Any,
) -> None:
    pipeline: Pipeline = pipeline_for("duplicates-and-groups")
    first_start = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).replace(microsecond=0)
    # The same alert pushed again and again (as several Prometheus replicas do) and a
    # group of six arriving together.
    for _ in range(5):
        pipeline.fire({**DISK, "startsAt": first_start.isoformat()})
    pipeline.fire(*GROUP)

    alerts = pipeline.wait_alerts(7)
    assert len(alerts) == 7
    # AlertManager repeats every notification: each alert is seen again and again.
    pipeline.wait(
        lambda: all(a["timesSeen"] >= 3 for a in pipeline.alerts()),
        "AlertManager to repeat every alert at least twice",
        40,
    )
    # The six arrived together: their first source event is one webhook.
    group_ids = [a["id"] for a in pipeline.alerts() if a["alertName"] == "KubePodNotReady"]
    first_events = {pipeline.alert(i)["sourceEvents"][0]["id"] for i in group_ids}
    assert len(first_events) == 1, first_events

    pipeline.wait(
        lambda: len(runs := _runs(pipeline)) == 7 and all(r.phase == "Succeeded" for r in runs),
        "seven runs to succeed",
        60,
    )
    parents = pipeline.wait(
        lambda: len(found := pipeline.slack.parents()) >= 7 and found, "seven Slack parents", 60
    )
    runs = _runs(pipeline)
    assert len(runs) == 7
    assert len({r.alert_id for r in runs}) == 7
    assert len(parents) == 7
    assert sorted("DiskFull" in json.dumps(p) for p in parents) == [False] * 6 + [True]

    # DiskFull ends and fires again: a second occurrence, a second run and parent.
    # Ended ten seconds ago: AlertManager merges a new alert whose start overlaps the
    # old one's activity into the old one (as for a flapping alert); this one does not.
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)
    pipeline.resolve({**DISK, "startsAt": first_start.isoformat(), "endsAt": ended.isoformat()})
    [disk] = [a for a in alerts if a["alertName"] == "DiskFull"]
    pipeline.wait(
        lambda: pipeline.alert(disk["id"])["status"] == "resolved",
        "the first DiskFull occurrence to resolve",
        30,
    )
    pipeline.fire(DISK)
    pipeline.wait(lambda: len(_runs(pipeline)) == 8, "a run for the second occurrence", 30)
    pipeline.wait(
        lambda: len(pipeline.slack.parents()) == 8, "a parent for the second occurrence", 30
    )
    # Two more repeat intervals: the repeats of the new occurrence start nothing more.
    pipeline.wait(
        lambda: any(
            a["alertName"] == "DiskFull" and a["id"] != disk["id"] and a["timesSeen"] >= 3
            for a in pipeline.alerts()
        ),
        "the second occurrence to be repeated",
        30,
    )
    disk_alerts = [a for a in pipeline.alerts() if a["alertName"] == "DiskFull"]
    assert len(disk_alerts) == 2
    assert len(_runs(pipeline)) == 8
    assert len(pipeline.slack.parents()) == 8
