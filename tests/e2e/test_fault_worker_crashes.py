"""Fault: an engine worker SIGKILLed in the middle of a step, a notifier worker
SIGKILLed in the middle of a Slack delivery.

The engine is killed (with the step's command) while the step waits on a file the
test creates; after the restart the run goes on from that step and finishes. The
notifier is killed after Slack stored the parent message but before the answer came
back, so it never recorded the post; after its restart the delivery is finished from
what Slack already has (the message's metadata) and no second parent is posted.

The step's ledgers say what ran: ``started`` gets the run id each time the gated step
begins (twice: the killed attempt and the one after the restart, since a step that
dies with its worker is run again), ``done`` each time it got through (once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.faults_support import ledger
from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

ALERT = {"labels": {"alertname": "GatedFault", "severity": "warning", "gate": "a"}}
# Short enough that the crashed notifier's claim lapses within seconds, and longer
# than the longest send (2 x 5 s HTTP timeout + 1 s rate-limit wait), as required.
NOTIFIER_ENV = {"PF_NOTIFIER_RATE_LIMIT_WAIT_MAX": "1", "PF_NOTIFIER_LEASE_SECONDS": "12"}


def test_killed_engine_and_notifier_workers_finish_the_run_with_one_slack_parent(
    pipeline_for: Any, tmp_path: Path
) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    pipeline: Pipeline = pipeline_for(
        "fault-crash", env={"TMPDIR": str(steps), **NOTIFIER_ENV}, database_prefix="ft_"
    )
    pipeline.fire(ALERT)

    # The engine dies in the middle of the step (its command dies with it).
    [run_id] = pipeline.wait(lambda: ledger(steps / "started"), "the gated step to start", 60)
    pipeline.kill_engine()
    assert pipeline.run(run_id)["phase"] == "Running"
    (steps / "go-a").touch()
    # Slack will store the parent and hold its answer: the window to kill the sender in.
    pipeline.slack.delay_next("chat.postMessage", 60)
    pipeline.start_again("engine")

    # The notifier dies after Slack has the message and before it has the answer.
    pipeline.wait(pipeline.slack.parents, "the notifier to post the parent", 90)
    pipeline.kill_notifier()
    run = pipeline.wait_run_finished(run_id)
    assert run["phase"] == "Succeeded", run
    assert run["outputs"]["summary"].strip() == "after the gate of a"
    [delivery] = pipeline.sql("SELECT phase FROM sink_deliveries WHERE run_id = :r", r=run_id)
    assert delivery.phase == "Pending"
    pipeline.start_again("notifier")

    def delivered() -> bool:
        rows = pipeline.sql("SELECT phase FROM sink_deliveries WHERE run_id = :r", r=run_id)
        assert rows[0].phase in ("Pending", "Delivered"), rows
        return rows[0].phase == "Delivered"

    pipeline.wait(delivered, "the delivery to be finished by the restarted notifier", 90)

    # Nothing twice: one run, the step got through once, one Slack parent, and the
    # delivery recorded the message Slack already had.
    assert ledger(steps / "started") == [run_id, run_id]
    assert ledger(steps / "done") == [run_id]
    assert pipeline.count("workflow_runs") == 1
    [parent] = pipeline.slack.parents()
    assert pipeline.slack.replies(parent["ts"]) == []
    [response] = pipeline.sql("SELECT response FROM sink_deliveries WHERE run_id = :r", r=run_id)
    assert parent["ts"] in str(response[0]), response
    assert len(pipeline.slack.calls("chat.postMessage")) == 1
