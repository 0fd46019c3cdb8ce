"""shared.runs: what the read API shows of runs and steps, on both databases."""

from __future__ import annotations

import json
import uuid

from celery import Celery
from enginekit import Harness, start_run

from shared import runs


def test_run_detail_and_runs_for_alert(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        {
            "steps": [
                {"name": "look", "type": "cli", "command": ["echo", "{{ alert.labels.pod }}"]},
                {"name": "broken", "type": "cli", "command": ["false"]},
            ],
            "sinks": ["slack"],
        }
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    harness.wait_finished(run_id)
    alert_id = harness.run(run_id).alert_id

    with harness.sessions() as session:
        detail = runs.run_detail(session, str(run_id))
        listed = runs.runs_for_alert(session, alert_id)
        assert runs.run_detail(session, uuid.uuid4()) is None
        assert runs.run_detail(session, "not-a-uuid") is None
        assert runs.runs_for_alert(session, uuid.uuid4()) == []

    assert detail is not None
    json.dumps(detail)  # JSON types only
    assert detail["id"] == str(run_id)
    assert detail["alertId"] == str(alert_id)
    assert detail["workflow"] == {"name": "triage", "namespace": "default"}
    assert (detail["phase"], detail["stepsCompleted"], detail["totalSteps"]) == ("Failed", 2, 2)
    assert detail["error"] == "step 'broken' failed: command exited with code 1"
    assert detail["durationSeconds"] >= 0
    look, broken = detail["steps"]
    assert (look["name"], look["phase"], look["attempts"]) == ("look", "Succeeded", 1)
    assert look["output"] == {"stdout": "web-1\n", "stderr": "", "exit_code": 0}
    assert look["startedAt"] is not None
    assert (broken["phase"], broken["error"]) == ("Failed", "command exited with code 1")
    assert [(d["sink"], d["phase"]) for d in detail["deliveries"]] == [("slack", "Pending")]
    assert len(listed) == 1
    assert listed[0]["steps"] == detail["steps"]
    assert listed[0]["phase"] == "Failed"
